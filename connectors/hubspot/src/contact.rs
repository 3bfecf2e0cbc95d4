//! HubSpot's contact object, as the connector reads it and writes it.
//!
//! A contact record's data is the flat map of the synced [`PROPERTIES`] (every one present,
//! `null` when HubSpot has no value), so that a platform-side edit is `--set firstname=Ada`.
//! HubSpot's property values are all strings; `createdate` and `lastmodifieddate` come as
//! ISO-8601 (epoch milliseconds are accepted too).

use ivory_sdk::{Error, Record};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The record kind of HubSpot contacts on the platform.
pub const CONTACT_KIND: &str = "contact";

/// The contact properties the connector syncs (and asks HubSpot for).
pub const PROPERTIES: &[&str] = &[
    "email",
    "firstname",
    "lastname",
    "phone",
    "company",
    "jobtitle",
    "lifecyclestage",
    "createdate",
    "lastmodifieddate",
    "hs_object_id",
];

/// Properties HubSpot computes: read, never written back.
pub const READ_ONLY: &[&str] = &["createdate", "lastmodifieddate", "hs_object_id"];

/// A contact as HubSpot's list, search and batch endpoints return it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Contact {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) properties: Map<String, Value>,
    #[serde(default, rename = "updatedAt")]
    updated_at: Option<String>,
}

impl Contact {
    /// HubSpot's last-modified time of the contact (`lastmodifieddate`, else `updatedAt`).
    pub(crate) fn modified(&self) -> Result<Timestamp, Error> {
        self.properties
            .get("lastmodifieddate")
            .and_then(Value::as_str)
            .and_then(parse_time)
            .or_else(|| self.updated_at.as_deref().and_then(parse_time))
            .ok_or_else(|| {
                Error::Upstream(format!(
                    "contact {} has no readable lastmodifieddate or updatedAt",
                    self.id
                ))
            })
    }

    /// `hs_object_id` as a number (the tie split pages on it).
    pub(crate) fn numeric_id(&self) -> Result<u64, Error> {
        self.id
            .parse()
            .map_err(|_| Error::Upstream(format!("contact id {:?} is not numeric", self.id)))
    }

    /// The record's data: every synced property, `null` when absent.
    pub(crate) fn data(&self) -> Value {
        Value::Object(
            PROPERTIES
                .iter()
                .map(|name| {
                    let value = match self.properties.get(*name) {
                        Some(Value::String(s)) => Value::String(s.clone()),
                        Some(Value::Null) | None => Value::Null,
                        Some(other) => Value::String(other.to_string()),
                    };
                    ((*name).to_owned(), value)
                })
                .collect(),
        )
    }

    /// The contact as a record of [`CONTACT_KIND`].
    pub(crate) fn record(&self) -> Result<Record, Error> {
        if self.id.is_empty() {
            return Err(Error::Upstream("a contact without an id".into()));
        }
        Ok(Record::new(self.id.clone(), self.data()).updated_at(self.modified()?))
    }

    /// The contact's email, lowercased (HubSpot's emails are unique per account, case aside).
    pub(crate) fn email(&self) -> Option<String> {
        email_of(&Value::Object(self.properties.clone()))
    }
}

/// Parses a HubSpot time: ISO-8601 (`2026-03-01T10:00:00.123Z`) or epoch milliseconds.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Timestamp::from_millisecond(ms).ok();
    }
    text.parse::<Timestamp>().ok()
}

/// The properties of a record's data that go upstream: the synced, writable ones, as strings
/// (`null` → `""`, which clears the value in HubSpot; numbers and booleans as text). Fields
/// that are not synced properties (and HubSpot's read-only ones) are left out.
pub fn writable_properties(data: &Value) -> Map<String, Value> {
    let empty = Map::new();
    let map = data.as_object().unwrap_or(&empty);
    PROPERTIES
        .iter()
        .filter(|name| !READ_ONLY.contains(name))
        .filter_map(|name| {
            let value = map.get(*name)?;
            let text = match value {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(((*name).to_owned(), Value::String(text)))
        })
        .collect()
}

/// Two records' writable properties are the same (absent, `null` and `""` alike).
pub(crate) fn same_writable(a: &Value, b: &Value) -> bool {
    let (a, b) = (writable_properties(a), writable_properties(b));
    PROPERTIES
        .iter()
        .filter(|name| !READ_ONLY.contains(name))
        .all(|name| {
            let get = |m: &Map<String, Value>| {
                m.get(*name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            get(&a) == get(&b)
        })
}

/// The lowercased email in a record's data, if any.
pub(crate) fn email_of(data: &Value) -> Option<String> {
    data.get("email")
        .and_then(Value::as_str)
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_parse_in_both_forms() {
        let iso = parse_time("2026-03-01T00:00:00.042Z").expect("iso");
        assert_eq!(iso.as_millisecond(), 1_772_323_200_042);
        assert_eq!(parse_time("1772323200042"), Some(iso));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn contacts_become_flat_records() {
        let contact: Contact = serde_json::from_value(json!({
            "id": "512",
            "properties": {"email": "a@b.example", "firstname": "Ada", "lastmodifieddate": "2026-03-01T00:00:01.000Z", "phone": null},
            "createdAt": "2026-03-01T00:00:00.000Z",
            "updatedAt": "2026-03-01T00:00:01.000Z",
            "archived": false
        }))
        .expect("contact");
        let record = contact.record().expect("record");
        assert_eq!(record.id, "512");
        assert_eq!(record.data["firstname"], "Ada");
        assert_eq!(record.data["lastname"], Value::Null);
        assert_eq!(
            record.data.as_object().map(Map::len),
            Some(PROPERTIES.len())
        );
        assert_eq!(
            record.updated_at.map(|t| t.as_millisecond()),
            Some(1_772_323_201_000)
        );
        let bad: Contact = serde_json::from_value(json!({"id": "1", "properties": {}})).expect("c");
        assert!(bad.record().is_err());
    }

    #[test]
    fn only_writable_properties_go_upstream() {
        let data = json!({
            "email": "a@b.example", "firstname": null, "lastname": "Lovelace", "phone": 42,
            "lastmodifieddate": "2026-03-01T00:00:01.000Z", "hs_object_id": "512", "favourite": "x"
        });
        let props = writable_properties(&data);
        assert_eq!(
            Value::Object(props),
            json!({"email": "a@b.example", "firstname": "", "lastname": "Lovelace", "phone": "42"})
        );
        assert!(same_writable(
            &json!({"email": "a@b.example", "phone": null}),
            &json!({"email": "a@b.example", "phone": "", "hs_object_id": "9"})
        ));
        assert!(!same_writable(
            &json!({"email": "a"}),
            &json!({"email": "b"})
        ));
        assert_eq!(
            email_of(&json!({"email": " A@B.example "})).as_deref(),
            Some("a@b.example")
        );
    }
}
