//! Custom objects: typed object definitions with formula fields the platform computes.
//!
//! # Definitions
//!
//! A connector's manifest declares object kinds (`objects`: typed fields — `string`,
//! `number`, `currency`, `boolean`, `datetime`, `reference`, `json` — and `formula` fields).
//! [`Store::provision`](crate::Store::provision) stores them for the installation's tenant:
//!
//! - **Per tenant.** A kind names the tenant's records of that kind (records are keyed by
//!   tenant, kind and external id), so one definition exists per tenant and kind, owned by the
//!   installation that provisioned it; another installation of the tenant declaring the same
//!   kind is refused. Two tenants with the same connector have separate definitions.
//! - **Idempotent and versioned.** Provisioning the same manifest again writes nothing. A
//!   changed definition gets the next version; every version is kept
//!   (`object_definition_versions`).
//! - **Additive changes migrate, breaking ones are refused.** New fields and kinds, changed
//!   formulas of the same result type, labels and `required` flags apply. A removed field, a
//!   retyped field (including a formula whose result type changed, or a field becoming or
//!   ceasing to be a formula) and a removed kind are refused with
//!   [`ObjectError::Breaking`], naming each, unless the call passes
//!   [`ChangePolicy::AllowBreaking`].
//! - **Eager recomputation.** When a kind's formulas change (or a new kind with formulas
//!   arrives over existing records), its live records are recomputed right after the
//!   definitions commit, 200 records per transaction
//!   ([`Store::recompute_formulas`](crate::Store::recompute_formulas)); a crash in between
//!   leaves records that the next write (or calling it again) recomputes.
//! - **Formulas compile at provisioning** ([`ivory_formula::Formula::compile`]) against the
//!   object's fields, formula fields seen with their result type, compiled in dependency
//!   order. A formula that does not parse or type-check is refused naming the object, the
//!   field and the position (`object "invoice", field "outstanding": column 16: unknown field
//!   {amount_du}`); formula fields that reference each other in a cycle are refused with the
//!   cycle (`{a} → {b} → {a}`).
//!
//! Kinds without a definition (platform kinds such as `task`, plain synced kinds) are
//! free-form: nothing is validated or computed.
//!
//! # Formula fields on every write
//!
//! Every write of a record of a kind with formula fields goes through
//! [`ObjectCatalog::apply`]: synced writes (`Store::commit`), platform-side edits
//! ([`Store::update_record_fields`](crate::Store::update_record_fields)), records workflows
//! create or change, and recomputation. Formulas read the record's plain fields (typed by the
//! definition: `"1500.00"` in a currency field is 1500) and the freshly computed values of
//! other formula fields, with the caller's `now` as `TODAY()`/`NOW()` (never the system
//! clock). Whatever the upstream sent for a formula field is overwritten. Results are stored
//! as JSON ([`ivory_formula::Value::to_json`]): blank is `null`, an error
//! `{"error": "#ERROR!", "message": …}`. Undeclared fields pass through untouched.
//!
//! # Platform-side edits
//!
//! [`Store::update_record_fields`](crate::Store::update_record_fields) is a tenant user's edit:
//! typed validation against the definition, no writes to formula fields, formulas recomputed,
//! `version + 1`, `platform_updated_at`, an audit event `record.update` with the before/after
//! values, and the record conditions of the kind's workflows evaluated (see
//! [`crate::workflows`]).

mod catalog;
pub(crate) mod definition;
pub(crate) mod edit;
mod error;
mod provision;

pub use catalog::ObjectCatalog;
pub use edit::{FieldInput, RecordUpdate};
pub use error::{BreakingChange, ObjectError};
pub use provision::{
    ChangeOutcome, ChangePolicy, ObjectChange, ObjectDefinition, ProvisionReport, WorkflowChange,
};
