//! Records and cursors: what a connector hands to the platform.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One upstream object, as a connector upserts it.
///
/// `id` is the upstream's own id (the external id); upserts are idempotent on
/// (tenant, kind, id). `updated_at` is the upstream's last-modified time, when it has one: the
/// runtime uses it to decide how far an `updated_at` watermark may advance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The upstream's id for this object.
    pub id: String,
    /// The object's fields, as JSON.
    pub data: serde_json::Value,
    /// The upstream's last-modified time of this object, if it has one.
    pub updated_at: Option<Timestamp>,
}

impl Record {
    /// A record without a source timestamp.
    pub fn new(id: impl Into<String>, data: serde_json::Value) -> Self {
        Self {
            id: id.into(),
            data,
            updated_at: None,
        }
    }

    /// Sets the upstream's last-modified time.
    #[must_use]
    pub fn updated_at(mut self, at: Timestamp) -> Self {
        self.updated_at = Some(at);
        self
    }
}

/// A change to the platform's records, staged by a connector and applied by the store.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOp {
    /// Insert or update a record.
    Upsert {
        /// The object kind, e.g. `stripe_invoice`.
        kind: String,
        /// The record.
        record: Record,
    },
    /// Mark a record as deleted upstream (kept as a tombstone, never hard-deleted by a sync).
    Delete {
        /// The object kind.
        kind: String,
        /// The upstream's id.
        id: String,
    },
}

impl RecordOp {
    /// The object kind this op touches.
    pub fn kind(&self) -> &str {
        match self {
            RecordOp::Upsert { kind, .. } | RecordOp::Delete { kind, .. } => kind,
        }
    }
}

/// Where a sync resumes from, persisted per installation.
///
/// An `UpdatedAt` watermark is committed once per completed window; an `OpaqueToken` once per
/// page, in the same transaction as that page's records (see [`crate::Context::set_cursor`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Cursor {
    /// The upstream's last-modified time up to which every record has been stored.
    UpdatedAt(Timestamp),
    /// An upstream page token (Stripe `starting_after`, an events cursor, …).
    OpaqueToken(String),
}

impl Cursor {
    /// The manifest's name of this cursor's kind.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Cursor::UpdatedAt(_) => "updated_at",
            Cursor::OpaqueToken(_) => "opaque_token",
        }
    }

    /// The cursor's value as text (RFC 3339 for a watermark).
    pub fn value_string(&self) -> String {
        match self {
            Cursor::UpdatedAt(at) => at.to_string(),
            Cursor::OpaqueToken(token) => token.clone(),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::UpdatedAt(at) => write!(f, "updated_at:{at}"),
            Cursor::OpaqueToken(token) => write!(f, "opaque_token:{token}"),
        }
    }
}

/// True for a valid object kind name: `^[a-z][a-z0-9_]{0,63}$`. The one rule the manifest,
/// the context and the store all check.
pub fn is_kind_slug(kind: &str) -> bool {
    (1..=64).contains(&kind.len())
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks an object kind name ([`is_kind_slug`]), with a message saying what is wrong.
pub fn validate_kind(kind: &str) -> Result<(), String> {
    if is_kind_slug(kind) {
        Ok(())
    } else {
        Err(format!(
            "record kind {kind:?} must be lower snake case (a-z, 0-9, _), start with a letter, at most 64 characters"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_through_json() {
        let at: Timestamp = "2026-03-01T10:00:00Z".parse().expect("ts");
        for cursor in [Cursor::UpdatedAt(at), Cursor::OpaqueToken("in_42".into())] {
            let json = serde_json::to_string(&cursor).expect("json");
            assert_eq!(serde_json::from_str::<Cursor>(&json).expect("back"), cursor);
        }
        assert_eq!(
            serde_json::to_string(&Cursor::OpaqueToken("x".into())).expect("json"),
            r#"{"kind":"opaque_token","value":"x"}"#
        );
    }

    #[test]
    fn kinds_are_checked() {
        assert!(validate_kind("stripe_invoice").is_ok());
        assert!(validate_kind("Invoice").is_err());
        assert!(validate_kind("").is_err());
        assert!(validate_kind("1x").is_err());
    }
}
