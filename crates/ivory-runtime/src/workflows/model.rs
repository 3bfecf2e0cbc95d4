//! Workflow definitions (compiled) and runs (stored).

use ivory_formula::{Formula, Value as FValue};
use ivory_sdk::manifest::{Action, Trigger, WebhookScheme, WorkflowSpec};
use jiff::Timestamp;
use serde::Serialize;

use crate::objects::ObjectError;
use crate::objects::definition::{CompiledObject, FieldKind};

/// Where a webhook event names the record it is about: a JSON pointer into the verified
/// payload, chosen by the connector's webhook scheme.
///
/// | scheme | pointer | example |
/// |---|---|---|
/// | `stripe` | `/data/object/id` | `invoice.payment_failed` → the invoice `in_…` |
/// | `standard-webhooks` | `/data/id` | the `data` object's id |
/// | `hubspot-v3` | `/objectId` | one event of the batch (the ingress calls once per event) |
/// | `airtable`, `hmac-sha256` | `/id` | a top-level `id` |
///
/// A `setField` action of a webhook workflow writes the record of its `kind` whose external id
/// is the value there (a string, or a number as its decimal text). When the payload has no
/// value there, or no such record is mirrored yet, the action fails and the run can be retried
/// once the record has synced.
pub fn record_locator(scheme: WebhookScheme) -> &'static str {
    match scheme {
        WebhookScheme::Stripe => "/data/object/id",
        WebhookScheme::StandardWebhooks => "/data/id",
        WebhookScheme::HubspotV3 => "/objectId",
        WebhookScheme::Airtable | WebhookScheme::HmacSha256 => "/id",
    }
}

/// The external id a payload names at `pointer`, if any.
pub(crate) fn locate(payload: &serde_json::Value, pointer: &str) -> Option<String> {
    match payload.pointer(pointer)? {
        serde_json::Value::String(id) if !id.is_empty() => Some(id.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A compiled trigger.
#[derive(Debug, Clone)]
pub(crate) enum CompiledTrigger {
    /// A verified webhook delivery of this event type.
    Webhook {
        event_type: String,
        /// JSON pointer to the subject record's external id.
        locator: String,
    },
    /// A false-to-true transition of a condition on a record of `kind`.
    Condition { kind: String, formula: Formula },
}

/// A workflow ready to trigger and run.
#[derive(Debug, Clone)]
pub(crate) struct CompiledWorkflow {
    pub(crate) id: String,
    pub(crate) installation_id: String,
    pub(crate) version: i64,
    pub(crate) spec: WorkflowSpec,
    pub(crate) trigger: CompiledTrigger,
}

impl CompiledWorkflow {
    /// Compiles the condition against the watched kind (fields of a kind without a definition
    /// read as `json`, i.e. text) and checks that every action writes declared, non-formula
    /// fields of defined kinds.
    pub(crate) fn compile<'a>(
        id: String,
        installation_id: String,
        version: i64,
        spec: WorkflowSpec,
        locator: Option<String>,
        objects: &dyn Fn(&str) -> Option<&'a CompiledObject>,
    ) -> Result<CompiledWorkflow, ObjectError> {
        let invalid = |message: String| ObjectError::InvalidWorkflow {
            workflow: spec.name.clone(),
            message,
        };
        if spec.actions.is_empty() {
            return Err(invalid("at least one action is required".into()));
        }
        let trigger = match &spec.trigger {
            Trigger::WebhookEvent(event_type) => {
                if event_type.trim().is_empty() {
                    return Err(invalid("the webhook event type is empty".into()));
                }
                CompiledTrigger::Webhook {
                    event_type: event_type.clone(),
                    locator: locator.ok_or_else(|| {
                        invalid("a webhookEvent trigger requires a webhooks block".into())
                    })?,
                }
            }
            Trigger::RecordCondition(condition) => {
                let object = objects(&condition.kind);
                let lookup = |field: &str| match object {
                    Some(object) => object.field(field).map(FieldKind::formula_view),
                    None => Some(ivory_formula::FieldType::Json),
                };
                let formula = Formula::compile(&condition.condition, &lookup).map_err(|error| {
                    ObjectError::Condition {
                        workflow: spec.name.clone(),
                        error,
                    }
                })?;
                CompiledTrigger::Condition {
                    kind: condition.kind.clone(),
                    formula,
                }
            }
        };
        let writable = |kind: &str, field: &str| -> Result<(), ObjectError> {
            match objects(kind).map(|o| o.field(field)) {
                Some(None) => Err(invalid(format!("object {kind:?} has no field {field:?}"))),
                Some(Some(FieldKind::Formula(_))) => Err(invalid(format!(
                    "field {field:?} of object {kind:?} is a formula field, computed by the platform"
                ))),
                _ => Ok(()),
            }
        };
        for (index, action) in spec.actions.iter().enumerate() {
            match action {
                Action::SetField(set) => {
                    let kind = match (&trigger, &set.kind) {
                        (CompiledTrigger::Webhook { .. }, Some(kind)) => kind,
                        (CompiledTrigger::Webhook { .. }, None) => {
                            return Err(invalid(format!(
                                "action {index}: setField needs a kind when the trigger is a webhookEvent"
                            )));
                        }
                        (CompiledTrigger::Condition { kind, .. }, None) => kind,
                        (CompiledTrigger::Condition { kind, .. }, Some(other)) if other == kind => {
                            kind
                        }
                        (CompiledTrigger::Condition { kind, .. }, Some(other)) => {
                            return Err(invalid(format!(
                                "action {index}: setField of a record-condition workflow writes the \
                                 triggering {kind} record, not a {other} record"
                            )));
                        }
                    };
                    writable(kind, &set.field)?;
                }
                Action::CreateRecord(create) => {
                    for field in create.fields.keys() {
                        writable(&create.kind, field)?;
                    }
                    if let Some(object) = objects(&create.kind) {
                        for field in object.required_fields() {
                            if !create.fields.contains_key(field) {
                                return Err(invalid(format!(
                                    "action {index}: createRecord misses the required field {field:?} of object {:?}",
                                    create.kind
                                )));
                            }
                        }
                    }
                }
                Action::Log(_) => {}
            }
        }
        Ok(CompiledWorkflow {
            id,
            installation_id,
            version,
            spec,
            trigger,
        })
    }

    /// Whether the condition holds for `data` (a `kind` record as stored). An error value
    /// counts as false, like blank, `0`, `""` and `FALSE()`.
    pub(crate) fn condition_holds(
        &self,
        object: Option<&CompiledObject>,
        data: &serde_json::Value,
        now: Timestamp,
    ) -> bool {
        let CompiledTrigger::Condition { formula, .. } = &self.trigger else {
            return false;
        };
        let read = |field: &str| -> Option<FValue> {
            match object {
                Some(object) => object.read(data, field),
                None => Some(FValue::from_json(
                    data.get(field)?,
                    ivory_formula::FieldType::Json,
                )),
            }
        };
        truthy(&formula.evaluate(&read, now))
    }
}

/// The formula language's truthiness; errors are false.
fn truthy(value: &FValue) -> bool {
    match value {
        FValue::Blank | FValue::Error(_) => false,
        FValue::Number(x) => *x != 0.0,
        FValue::String(text) => !text.is_empty(),
        FValue::Boolean(b) => *b,
        FValue::Datetime(_) => true,
    }
}

/// The state of a workflow run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowRunStatus {
    /// Recorded, not executed yet (or its executor died; [`Store::run_pending_workflows`]
    /// picks it up).
    ///
    /// [`Store::run_pending_workflows`]: crate::Store::run_pending_workflows
    Pending,
    /// Every action ran; their effects were committed with this status.
    Succeeded,
    /// An action failed: none of the run's effects were kept; `error` says why. Retry with
    /// [`Store::retry_workflow_run`](crate::Store::retry_workflow_run).
    Failed,
}

impl WorkflowRunStatus {
    /// `pending`, `succeeded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowRunStatus::Pending => "pending",
            WorkflowRunStatus::Succeeded => "succeeded",
            WorkflowRunStatus::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<WorkflowRunStatus> {
        Some(match text {
            "pending" => WorkflowRunStatus::Pending,
            "succeeded" => WorkflowRunStatus::Succeeded,
            "failed" => WorkflowRunStatus::Failed,
            _ => return None,
        })
    }
}

/// What triggered a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunTrigger {
    /// A verified webhook delivery.
    WebhookEvent {
        /// Its event type, such as `invoice.payment_failed`.
        event_type: String,
    },
    /// A record condition that became true.
    RecordCondition {
        /// The watched kind.
        kind: String,
    },
}

/// A record, by kind and external id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordRef {
    /// The kind.
    pub kind: String,
    /// The external id.
    pub id: String,
}

/// A recorded workflow run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowRun {
    /// The run id (`wfr_…`).
    pub id: String,
    /// The workflow's id (`wf_…`).
    pub workflow_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The tenant.
    pub tenant_id: String,
    /// The installation whose workflow ran.
    pub installation_id: String,
    /// What triggered it.
    pub trigger: RunTrigger,
    /// The webhook delivery id, or `record:<external id>:<n>` for the n-th false-to-true
    /// transition of a record condition. Unique per workflow.
    pub delivery_id: String,
    /// The record the run is about: the record a webhook event names (when a `setField` action
    /// gives it a kind), or the record whose condition became true.
    pub subject: Option<RecordRef>,
    /// The triggering event, kept so a failed run can be retried: the webhook payload, or
    /// `{"kind", "id", "record"}` with the record as it was at the transition.
    pub payload: serde_json::Value,
    /// 0 for runs triggered from outside; n + 1 for runs triggered by the writes of a run of
    /// depth n.
    pub depth: u32,
    /// Its state.
    pub status: WorkflowRunStatus,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Executions so far.
    pub attempts: u32,
    /// Lines written by `log` actions of the successful attempt.
    pub log: Vec<String>,
    /// When it was triggered.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When its last attempt ended.
    pub finished_at: Option<Timestamp>,
}

/// A provisioned workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowDefinition {
    /// The workflow id (`wf_…`), stable across re-provisioning.
    pub id: String,
    /// The installation that provisioned it.
    pub installation_id: String,
    /// Its name (unique per installation).
    pub name: String,
    /// Bumped on every change of its spec.
    pub version: i64,
    /// False once the manifest no longer has it (its runs are kept).
    pub enabled: bool,
    /// The definition.
    pub spec: WorkflowSpec,
}
