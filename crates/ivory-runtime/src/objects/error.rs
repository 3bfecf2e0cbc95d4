//! Why provisioning, a formula computation or a platform-side edit was refused.

use std::fmt;

use ivory_formula::CompileError;

use crate::store::StoreError;

/// A change to a definition that existing records may not survive: refused by provisioning
/// unless the call passes [`ChangePolicy::AllowBreaking`](super::ChangePolicy).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakingChange {
    /// A field of the current definition is missing from the manifest.
    FieldRemoved {
        /// The object kind.
        kind: String,
        /// The field.
        field: String,
    },
    /// A field changed type (a formula field whose result type changed, a field that became
    /// or stopped being a formula, a reference to another kind).
    FieldRetyped {
        /// The object kind.
        kind: String,
        /// The field.
        field: String,
        /// The type it had (`currency`, `formula (number)`, `reference to task`).
        from: String,
        /// The type it would have.
        to: String,
    },
    /// An object kind this installation provisioned is missing from the manifest.
    ObjectRemoved {
        /// The object kind.
        kind: String,
    },
}

impl fmt::Display for BreakingChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakingChange::FieldRemoved { kind, field } => {
                write!(f, "object {kind:?}: field {field:?} removed")
            }
            BreakingChange::FieldRetyped {
                kind,
                field,
                from,
                to,
            } => write!(
                f,
                "object {kind:?}: field {field:?} retyped from {from} to {to}"
            ),
            BreakingChange::ObjectRemoved { kind } => write!(f, "object {kind:?} removed"),
        }
    }
}

/// Errors of object definitions, formula computation and platform-side record edits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// A formula field's formula does not parse or type-check against the object's fields.
    #[error("object {kind:?}, field {field:?}: {error}")]
    Formula {
        /// The object kind.
        kind: String,
        /// The formula field.
        field: String,
        /// What is wrong, with its line and column in the formula.
        #[source]
        error: CompileError,
    },
    /// Formula fields reference each other in a cycle (the list starts and ends with the same
    /// field).
    #[error("object {kind:?}: formula fields reference each other in a cycle: {}", cycle_text(.cycle))]
    Cycle {
        /// The object kind.
        kind: String,
        /// The fields of the cycle, in reference order, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// An object spec is malformed (duplicate kinds or fields, a formula field without a
    /// formula, a formula on a plain field).
    #[error("object {kind:?}: {message}")]
    InvalidObject {
        /// The object kind.
        kind: String,
        /// What is wrong.
        message: String,
    },
    /// A workflow's record condition does not parse or type-check against the watched kind.
    #[error("workflow {workflow:?}, condition: {error}")]
    Condition {
        /// The workflow.
        workflow: String,
        /// What is wrong, with its line and column in the condition.
        #[source]
        error: CompileError,
    },
    /// A workflow is malformed (an action writes a formula or unknown field, a set-field
    /// action of a record-condition workflow names another kind…).
    #[error("workflow {workflow:?}: {message}")]
    InvalidWorkflow {
        /// The workflow.
        workflow: String,
        /// What is wrong.
        message: String,
    },
    /// Provisioning would remove or retype fields or objects, and the call did not allow
    /// breaking changes. Nothing was written.
    #[error(
        "breaking changes refused (provision with breaking changes allowed to apply them): {}",
        breaking_text(.changes)
    )]
    Breaking {
        /// Every breaking change found.
        changes: Vec<BreakingChange>,
    },
    /// The tenant's object kind belongs to another installation.
    #[error("object {kind:?} is provisioned by installation {owner} of this tenant")]
    KindOwned {
        /// The object kind.
        kind: String,
        /// The installation that owns it.
        owner: String,
    },
    /// No such installation.
    #[error("unknown installation {installation}")]
    UnknownInstallation {
        /// The installation id.
        installation: String,
    },
    /// The installation was uninstalled.
    #[error("installation {installation} is uninstalled")]
    Uninstalled {
        /// The installation id.
        installation: String,
    },
    /// No live record of this kind and id for the tenant.
    #[error("no {kind} record {id:?}")]
    RecordNotFound {
        /// The kind.
        kind: String,
        /// The external id.
        id: String,
    },
    /// A platform-side write named a field the object definition does not declare.
    #[error("object {kind:?} has no field {field:?}")]
    UnknownField {
        /// The kind.
        kind: String,
        /// The field.
        field: String,
    },
    /// A platform-side write targeted a formula field (the platform computes those).
    #[error("field {field:?} of object {kind:?} is a formula field, computed by the platform")]
    FormulaField {
        /// The kind.
        kind: String,
        /// The field.
        field: String,
    },
    /// A value does not fit its field's type.
    #[error("field {field:?} of object {kind:?}: {message}")]
    FieldType {
        /// The kind.
        kind: String,
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
    /// A required field would be missing or null.
    #[error("field {field:?} of object {kind:?} is required")]
    RequiredField {
        /// The kind.
        kind: String,
        /// The field.
        field: String,
    },
    /// Record data of a kind with formula fields is not a JSON object.
    #[error("{kind} record data must be a JSON object to compute its formula fields")]
    NotAnObject {
        /// The kind.
        kind: String,
    },
    /// The record changed between the read and the write of an edit (another writer won);
    /// retry the edit.
    #[error("{kind} record {id:?} changed concurrently; retry")]
    Conflict {
        /// The kind.
        kind: String,
        /// The external id.
        id: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ObjectError {
    /// Whether the input was refused (as opposed to the store failing): a CLI exits 2 on
    /// these.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ObjectError::Store(_))
    }
}

impl From<ObjectError> for StoreError {
    /// Store errors pass through; refusals become [`StoreError::Invalid`] (for callers such
    /// as `Store::commit` that speak `StoreError`).
    fn from(error: ObjectError) -> StoreError {
        match error {
            ObjectError::Store(error) => error,
            other => StoreError::Invalid {
                what: "record",
                message: other.to_string(),
            },
        }
    }
}

fn cycle_text(cycle: &[String]) -> String {
    cycle
        .iter()
        .map(|f| format!("{{{f}}}"))
        .collect::<Vec<_>>()
        .join(" → ")
}

fn breaking_text(changes: &[BreakingChange]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
