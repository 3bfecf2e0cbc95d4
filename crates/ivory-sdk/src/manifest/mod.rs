//! The connector manifest (`manifest.json`): types, strict validation, JSON Schema.
//!
//! [`Manifest::parse`] and [`Manifest::load`] validate in two stages: the document against the
//! JSON Schema generated from these types ([`Manifest::json_schema`], committed as
//! `schema/manifest.schema.json`), then the semantic rules. Every broken rule is reported as a
//! [`ValidationError`] that displays as `path: message`, such as
//! `connection.sync.rateLimitPerMinute: must be > 0`.

mod error;
mod load;
mod path;
mod rules;
mod schema;
mod types;

pub use error::{ManifestError, ValidationError};
pub use types::{
    Action, AuthType, ConflictPolicy, Connection, CreateRecord, CursorKind, Direction, FieldSpec,
    FieldType, Listing, LogAction, Manifest, ObjectSpec, PLATFORM_KINDS, RecordCondition, SetField,
    SettingSpec, SyncSpec, Trigger, ValidationMode, WebhookScheme, WebhookSpec, WorkflowSpec,
};
