//! The allow-list file (`.ivory-secrets-allow` at the connector root).
//!
//! One entry per line; blank lines and `#` comments (whole-line, or after whitespace) are
//! ignored:
//!
//! ```text
//! # a test private key generated for the fixtures
//! tests/fixtures/signing-key.pem:1
//! # the same value wherever it appears
//! private-key:3f2a9c0d1e2b4f56
//! ```
//!
//! - `path:line` allows every finding on that line of that file (path relative to the root,
//!   with `/`).
//! - `rule-id:fingerprint` allows that value (the fingerprint a finding prints) for that rule,
//!   wherever it is.

use std::cell::Cell;
use std::path::Path;

use super::Finding;
use super::rules::RULES;
use crate::error::ScanError;

/// The allow-list file's name, looked for at the root of the scanned tree.
pub const ALLOW_FILE: &str = ".ivory-secrets-allow";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Location { path: String, line: usize },
    Fingerprint { rule: String, fingerprint: String },
}

#[derive(Debug)]
struct Slot {
    entry: Entry,
    text: String,
    used: Cell<bool>,
}

/// A parsed allow-list.
#[derive(Debug, Default)]
pub(crate) struct AllowList {
    slots: Vec<Slot>,
}

impl AllowList {
    /// Reads `root/.ivory-secrets-allow`; no file is an empty list.
    pub(crate) fn load(root: &Path) -> Result<Self, ScanError> {
        let path = root.join(ALLOW_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map_err(|(line, message)| ScanError::AllowList {
                path,
                line,
                message,
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ScanError::Read { path, source }),
        }
    }

    /// Parses the file's text; an error is `(1-based line, message)`.
    pub(crate) fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut slots = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            let entry = parse_entry(line).map_err(|message| (index + 1, message))?;
            slots.push(Slot {
                entry,
                text: line.to_owned(),
                used: Cell::new(false),
            });
        }
        Ok(Self { slots })
    }

    /// Whether an entry allows `finding`; marks the entries that do as used.
    pub(crate) fn allows(&self, finding: &Finding) -> bool {
        let mut allowed = false;
        for slot in &self.slots {
            let hit = match &slot.entry {
                Entry::Location { path, line } => *path == finding.path && *line == finding.line,
                Entry::Fingerprint { rule, fingerprint } => {
                    *rule == finding.rule && *fingerprint == finding.fingerprint
                }
            };
            if hit {
                slot.used.set(true);
                allowed = true;
            }
        }
        allowed
    }

    /// The entries that allowed nothing (stale entries are worth removing).
    pub(crate) fn unused(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| !s.used.get())
            .map(|s| s.text.clone())
            .collect()
    }
}

fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    match line.find(" #").or_else(|| line.find("\t#")) {
        Some(at) => &line[..at],
        None => line,
    }
}

fn parse_entry(line: &str) -> Result<Entry, String> {
    let Some((left, right)) = line.rsplit_once(':') else {
        return Err(format!(
            "{line:?}: expected `path:line` or `rule-id:fingerprint`"
        ));
    };
    let (left, right) = (left.trim(), right.trim());
    if RULES.iter().any(|r| r.id() == left) {
        if right.len() == 16 && right.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(Entry::Fingerprint {
                rule: left.to_owned(),
                fingerprint: right.to_ascii_lowercase(),
            });
        }
        return Err(format!(
            "{line:?}: a fingerprint is 16 hex digits, as printed with the finding"
        ));
    }
    let path = left.replace('\\', "/");
    let path = path.strip_prefix("./").unwrap_or(&path).to_owned();
    if path.is_empty() {
        return Err(format!("{line:?}: the path is empty"));
    }
    match right.parse::<usize>() {
        Ok(number) if number > 0 => Ok(Entry::Location { path, line: number }),
        _ => Err(format!(
            "{line:?}: expected `path:line` (a line number from 1) or `rule-id:fingerprint` (a known rule id)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(path: &str, line: usize, rule: &str, fingerprint: &str) -> Finding {
        Finding {
            path: path.into(),
            line,
            column: 1,
            rule: rule.into(),
            preview: String::new(),
            fingerprint: fingerprint.into(),
        }
    }

    #[test]
    fn parses_both_forms_and_comments() {
        let list = AllowList::parse(
            "# comment\n\n./tests/key.pem:3   # why\nprivate-key:00112233AABBCCDD\n",
        )
        .expect("parses");
        assert!(list.allows(&finding("tests/key.pem", 3, "private-key", "ffff")));
        assert!(!list.allows(&finding("tests/key.pem", 4, "private-key", "ffff")));
        assert!(list.allows(&finding("src/x.rs", 9, "private-key", "00112233aabbccdd")));
        assert!(!list.allows(&finding("src/x.rs", 9, "github-token", "00112233aabbccdd")));
        assert!(list.unused().is_empty());
    }

    #[test]
    fn reports_unused_entries() {
        let list = AllowList::parse("a.rs:1\nb.rs:2\n").expect("parses");
        assert!(list.allows(&finding("a.rs", 1, "github-token", "0")));
        assert_eq!(list.unused(), vec!["b.rs:2".to_owned()]);
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        for (text, line) in [
            ("a.rs:1\nnot an entry\n", 2),
            ("a.rs:0\n", 1),
            ("a.rs:x\n", 1),
            ("private-key:123\n", 1),
            (":4\n", 1),
        ] {
            let (at, message) = AllowList::parse(text).expect_err("malformed");
            assert_eq!(at, line, "{text:?}: {message}");
        }
    }
}
