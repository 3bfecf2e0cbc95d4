//! Workflows: a trigger runs actions, with a recorded run history.
//!
//! Definitions come from the manifest's `workflows` block and are provisioned with the
//! objects ([`Store::provision`](crate::Store::provision)), per installation; a workflow
//! dropped from the manifest is disabled (its runs stay).
//!
//! # Triggers
//!
//! - **`webhookEvent`**: a verified webhook delivery of that event type.
//!   [`Store::run_webhook_workflows`](crate::Store::run_webhook_workflows) is called by the
//!   webhook ingress after signature verification with the delivery id (the replay key or the
//!   scheme's event id). The record the event is about is located in the payload by the
//!   connector's webhook scheme ([`record_locator`]: Stripe's `invoice.payment_failed` names
//!   the mirrored invoice at `/data/object/id`).
//! - **`recordCondition`**: a formula (the objects' formula language) over a record of the
//!   watched kind, evaluated after every write of such a record: platform-side edits, synced
//!   writes (`Store::commit`), records created or changed by workflow runs. A run starts on
//!   the **transition from false to true** only, not on every write while the condition
//!   holds: the last value per workflow and record is stored (`workflow_condition_states`);
//!   a record never evaluated counts as false (so a new record that satisfies the condition
//!   fires, and so do existing ones on their first write after the workflow is
//!   provisioned). The condition must become false again before it can fire again. Blank and
//!   error values are false. Fields of a kind without a definition read as text (`json`).
//!
//! # Runs
//!
//! A trigger first records a run (`workflow_runs`: workflow, installation, tenant, trigger,
//! delivery id, subject record, **the triggering payload**, status `pending`), then executes
//! it. `UNIQUE (workflow_id, delivery_id)` makes **each delivery trigger a workflow at most
//! once**, also under concurrent deliveries; a record condition's n-th transition uses the
//! delivery id `record:<external id>:<n>`.
//!
//! A run's actions execute **in one transaction** with its `succeeded` status and its audit
//! event (`workflow_run`, actor `workflow:<name>`): all of its effects are kept or none. When
//! an action fails, that transaction rolls back and the run is recorded `failed` with the
//! error (and an audit event); the payload stays on the run, so
//! [`Store::retry_workflow_run`](crate::Store::retry_workflow_run) can run it again later
//! (with the workflow's current definition). Retrying a run that succeeded is a no-op.
//! Synced writes only record runs inside the sync's transaction;
//! [`Store::run_pending_workflows`](crate::Store::run_pending_workflows) executes them (and
//! any run left pending by a crashed executor).
//!
//! # Actions
//!
//! - **`setField`** writes one field of a record as a platform-side edit by the workflow
//!   (validated, formulas recomputed, `record.update` audited, conditions evaluated). Which
//!   record: for a record-condition trigger, the triggering record (`kind` defaults to the
//!   watched kind and may not name another); for a webhook trigger, the record of the action's
//!   `kind` whose external id the payload names at the [`record_locator`] pointer. No such
//!   record (the event arrived before the sync mirrored it) fails the run, retryably.
//! - **`createRecord`** creates a record of the kind (a declared kind is validated: declared,
//!   non-formula fields, required ones present; a platform kind such as `task` is free-form),
//!   owned by the workflow's installation, with the external id `<run id>-<action index>` (so
//!   a retry never duplicates it), audited as `record.create`.
//! - **`log`** appends a line to the run's log (stored on the run and in its audit event).
//!
//! # Templates
//!
//! String values of `setField` and `createRecord` (at any depth) and `log` messages may hold
//! templates `{{path}}` (spaces around the path are ignored). The path is a root and
//! dot-separated steps; a step is an object key (spaces allowed, dots not) or, on an array, a
//! 0-based index:
//!
//! | root | value |
//! |---|---|
//! | `payload` | the triggering event: the webhook payload (`payload.data.object.customer`), or for a record condition `{"kind", "id", "record"}` as at the transition |
//! | `record` | the run's subject record as it is now (`record.amount_due`), updated by the run's own `setField`s; `null` when there is none |
//! | `trigger` | `{"type", "event_type" or "kind", "delivery_id", "record_id"}` |
//! | `run` | `{"id", "attempt"}` |
//! | `workflow` | `{"name"}` |
//! | `created` | ids of records created by earlier actions of the run, by action index: `created.1` |
//! | `now` | the run's clock, RFC 3339 |
//!
//! A string that is exactly one template takes the value's JSON type
//! (`"{{payload.data.object.amount_due}}"` stays a number); anywhere else a value is spliced in
//! as text (a string as is, `null` as nothing, anything else as compact JSON). A path that
//! leads nowhere is `null` (or nothing in text), not an error. `{{` without a closing `}}` is
//! literal text.
//!
//! Writes of a run evaluate record conditions too, so workflows can trigger each other; the
//! triggered runs execute after the run commits, and a chain deeper than 8 runs records the
//! transition without starting a run.

pub(crate) mod execute;
pub(crate) mod model;
mod template;
pub(crate) mod trigger;

use crate::store::StoreError;

pub use model::{
    RecordRef, RunTrigger, WorkflowDefinition, WorkflowRun, WorkflowRunStatus, record_locator,
};

/// Errors of the workflow entry points. An action failure is not one of them: it is recorded
/// on the run (status `failed`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// No such installation.
    #[error("unknown installation {installation}")]
    UnknownInstallation {
        /// The installation id.
        installation: String,
    },
    /// The installation was uninstalled: its deliveries trigger nothing.
    #[error("installation {installation} is uninstalled")]
    Uninstalled {
        /// The installation id.
        installation: String,
    },
    /// The delivery cannot be recorded (an empty delivery id).
    #[error("invalid webhook delivery: {message}")]
    InvalidDelivery {
        /// Why.
        message: String,
    },
    /// No such workflow run.
    #[error("unknown workflow run {run_id}")]
    UnknownRun {
        /// The run id.
        run_id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
