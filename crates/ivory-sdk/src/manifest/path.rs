//! Locations inside a manifest and the collector of validation findings.

use std::collections::HashSet;
use std::fmt;

use super::error::ValidationError;

/// A location inside a manifest document, rendered as `connection.sync.cursor`,
/// `objects[0].fields[2].type` or `createRecord.fields["Amount Due"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct JsonPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Segment {
    Index(usize),
    Key(String),
}

/// How the document root is named in messages.
pub(crate) const ROOT: &str = "(root)";

impl JsonPath {
    /// The document root.
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// This path followed by an object key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path followed by an array index.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }
}

/// Keys that print bare after a dot; anything else prints as `["…"]`.
fn is_plain_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(ROOT);
        }
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) if is_plain_key(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => {
                    let quoted = serde_json::Value::String(key.clone());
                    write!(f, "[{quoted}]")?;
                }
            }
        }
        Ok(())
    }
}

/// Collects findings, then hands them back sorted by path and without duplicates.
#[derive(Debug, Default)]
pub(crate) struct Findings(Vec<(JsonPath, String)>);

impl Findings {
    /// Records one finding.
    pub(crate) fn push(&mut self, path: JsonPath, message: impl Into<String>) {
        self.0.push((path, message.into()));
    }

    /// Whether nothing was found.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The findings ordered by path (array indices numerically; the order of discovery for
    /// one path), each reported once.
    pub(crate) fn into_errors(mut self) -> Vec<ValidationError> {
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
        let mut seen = HashSet::new();
        self.0.retain(|finding| seen.insert(finding.clone()));
        self.0
            .into_iter()
            .map(|(path, message)| ValidationError {
                path: path.to_string(),
                message,
            })
            .collect()
    }
}
