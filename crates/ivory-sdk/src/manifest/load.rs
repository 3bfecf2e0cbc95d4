//! Reading a manifest: JSON text (duplicate keys detected), the schema stage, deserialization,
//! then the semantic rules.

use std::cell::RefCell;
use std::fmt;
use std::path::Path;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::ManifestError;
use super::path::{Findings, JsonPath};
use super::types::{Manifest, ValidationMode};
use super::{rules, schema};

/// The file looked for when `load` is given a directory.
pub(crate) const FILE_NAME: &str = "manifest.json";

impl Manifest {
    /// Parses and strictly validates a manifest from JSON text.
    ///
    /// Validation runs in two stages: the document is checked against
    /// [`Manifest::json_schema`] (unknown keys, wrong types and enum values, missing keys,
    /// numeric bounds), then, when it is structurally valid, the semantic rules run (slugs,
    /// semver, oauth2 URLs and scopes, https, conflict policy by direction, declared hosts,
    /// objects and workflows). Every error is reported, ordered by path.
    ///
    /// ```
    /// use ivory_sdk::manifest::{Manifest, ManifestError, ValidationMode};
    ///
    /// let json = r#"{ "id": "acme", "name": "Acme", "version": "1.0.0",
    ///   "publisher": "Acme Inc.", "description": "Acme records.",
    ///   "hosts": ["api.acme.test"],
    ///   "connection": { "type": "api_key", "sync": { "cursor": "none",
    ///     "direction": "inbound", "conflictPolicy": "source_wins",
    ///     "rateLimitPerMinute": 0 } } }"#;
    /// let error = Manifest::parse(json, ValidationMode::Production).unwrap_err();
    /// assert!(matches!(error, ManifestError::Invalid(_)));
    /// assert_eq!(
    ///     error.validation_errors()[0].to_string(),
    ///     "connection.sync.rateLimitPerMinute: must be > 0"
    /// );
    /// ```
    pub fn parse(json: &str, mode: ValidationMode) -> Result<Manifest, ManifestError> {
        let json = json.strip_prefix('\u{feff}').unwrap_or(json);
        let (doc, duplicates) = read_json(json)?;

        let mut findings = Findings::default();
        for path in duplicates {
            findings.push(path, "duplicate key");
        }
        schema::check(&doc, &mut findings);
        if !findings.is_empty() {
            return Err(ManifestError::Invalid(findings.into_errors()));
        }

        let manifest: Manifest = match serde_path_to_error::deserialize(&doc) {
            Ok(manifest) => manifest,
            Err(error) => {
                findings.push(serde_path(error.path()), serde_message(error.inner()));
                return Err(ManifestError::Invalid(findings.into_errors()));
            }
        };
        manifest.validate(mode)?;
        Ok(manifest)
    }

    /// Reads and validates a manifest file. `path` is the file itself or a directory holding
    /// `manifest.json`.
    pub fn load(path: &Path, mode: ValidationMode) -> Result<Manifest, ManifestError> {
        let file = if path.is_dir() {
            path.join(FILE_NAME)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|source| ManifestError::Io {
            path: file.clone(),
            source,
        })?;
        Manifest::parse(&text, mode)
    }

    /// Checks the semantic rules on a manifest built in code (parsing already does this).
    /// Returns [`ManifestError::Invalid`] with every broken rule.
    pub fn validate(&self, mode: ValidationMode) -> Result<(), ManifestError> {
        let mut findings = Findings::default();
        rules::check(self, mode, &mut findings);
        if findings.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Invalid(findings.into_errors()))
        }
    }

    /// The manifest's JSON Schema (draft 2020-12), generated from these types. The committed
    /// copy is `schema/manifest.schema.json`.
    pub fn json_schema() -> Value {
        schema::generate()
    }
}

fn serde_path(path: &serde_path_to_error::Path) -> JsonPath {
    use serde_path_to_error::Segment;
    path.iter()
        .fold(JsonPath::root(), |acc, segment| match segment {
            Segment::Seq { index } => acc.index(*index),
            Segment::Map { key } => acc.key(key),
            Segment::Enum { variant } => acc.key(variant),
            Segment::Unknown => acc,
        })
}

/// A deserialization error left after the schema stage (such as a number too large for its
/// field), reworded without serde's jargon.
fn serde_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if text.starts_with("invalid type: floating point") {
        "must be an integer written without a fraction, such as 110".to_owned()
    } else if text.contains("expected u32") {
        "must be an integer between 0 and 4294967295".to_owned()
    } else {
        text
    }
}

/// Parses JSON text into a value, noting every key that appears twice in one object (the last
/// one would otherwise win silently).
fn read_json(json: &str) -> Result<(Value, Vec<JsonPath>), ManifestError> {
    let duplicates = RefCell::new(Vec::new());
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let seed = ValueSeed {
        path: JsonPath::root(),
        duplicates: &duplicates,
    };
    let value = seed
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(syntax)?;
    Ok((value, duplicates.into_inner()))
}

fn syntax(error: serde_json::Error) -> ManifestError {
    let (line, column) = (error.line(), error.column());
    let text = error.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = text.strip_suffix(&suffix).unwrap_or(&text).to_owned();
    ManifestError::Syntax {
        line,
        column,
        message,
    }
}

struct ValueSeed<'a> {
    path: JsonPath,
    duplicates: &'a RefCell<Vec<JsonPath>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let seed = ValueSeed {
                path: self.path.index(items.len()),
                duplicates: self.duplicates,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = self.path.key(&key);
            let seed = ValueSeed {
                path: path.clone(),
                duplicates: self.duplicates,
            };
            let value = map.next_value_seed(seed)?;
            if object.insert(key, value).is_some() {
                self.duplicates.borrow_mut().push(path);
            }
        }
        Ok(Value::Object(object))
    }
}
