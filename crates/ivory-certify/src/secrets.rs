//! The secret scanner: no connector source may hold a live-looking secret.
//!
//! A connector acts with the *tenant's* credentials, handed over by the platform at run time;
//! a key in its source is a publisher's key shipped to every tenant. [`scan_secrets`] walks a
//! connector's tree and reports every live-looking secret it finds, by file, line, column and
//! rule, with a redacted preview: the public prefix only (`sk_live_…`), never the value.
//!
//! # What is scanned
//!
//! Every regular file under the root, hidden ones included (`.env`), except: `.git/` and the
//! directories of [`ScanOptions::exclude_dirs`] (default `target/` and `node_modules/`) at any
//! depth, files the tree's own `.gitignore` files ignore, the allow-list file, binary files (a NUL byte in the first
//! 8 KiB) and files over [`ScanOptions::max_file_bytes`] (2 MiB by default). Skipped files are
//! listed in [`ScanReport::skipped`].
//!
//! # Rules
//!
//! The rules are data ([`rules`]): a [`regex::RegexSet`] finds which rules hit a file, then
//! each rule's own regex locates the hits. Provider tokens (Stripe `sk_live_`/`rk_live_`,
//! `whsec_`, HubSpot `pat-na1-…`, Airtable `pat….…`, AWS, GitHub) and PEM private keys are
//! findings on sight; generic values assigned to names such as `client_secret`, `api_key`,
//! `token` or `password` are findings when they look random (at least 16 characters, at least
//! 3.5 bits of Shannon entropy per character, a digit or a long mix of cases).
//!
//! # Fake values and the allow-list
//!
//! Test fixtures need secret-shaped values. A value is let through when it is **obviously
//! fake** ([`is_obviously_fake`]): it contains `test`, `fake`, `example`, `dummy`, `not_real`,
//! `notreal` or `xxxx` (any case), or a run of 8 identical characters. Stripe test keys
//! (`sk_test_`, `rk_test_`) never match. Private keys are never judged fake; list them, and
//! any other deliberate value, in [`ALLOW_FILE`] at the root, by `path:line` or by
//! `rule-id:fingerprint` (the fingerprint each finding prints). See
//! `docs/specs/secret-scan.md` for the full rules.
//!
//! ```no_run
//! use std::path::Path;
//! use ivory_certify::secrets::{scan_secrets, ScanOptions};
//!
//! let report = scan_secrets(Path::new("connectors/stripe"), &ScanOptions::default())?;
//! for finding in &report.findings {
//!     eprintln!("{finding}"); // src/lib.rs:12:23: stripe-live-secret-key: sk_live_… (32 chars) […]
//! }
//! # Ok::<(), ivory_certify::ScanError>(())
//! ```

mod allow;
mod rules;

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use allow::ALLOW_FILE;
pub use rules::{Rule, is_obviously_fake, rules};

use crate::error::ScanError;
use crate::walk;
use allow::AllowList;
use rules::{Compiled, Gate, RULES};

/// Largest file scanned by default (2 MiB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;

/// How much of a file's start is looked at to tell binary files (a NUL byte) from text.
const BINARY_SNIFF_BYTES: usize = 8 * 1024;

/// What to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOptions {
    /// Directory names skipped at any depth (besides `.git`, always skipped). Default:
    /// `target`, `node_modules` (the directories the certification's source digest skips).
    pub exclude_dirs: Vec<String>,
    /// Files larger than this are skipped and listed in [`ScanReport::skipped`]. Default
    /// 2 MiB.
    pub max_file_bytes: u64,
    /// Honour the tree's `.gitignore` files (even outside a git repository). Default true.
    pub respect_gitignore: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            exclude_dirs: vec!["target".into(), "node_modules".into()],
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            respect_gitignore: true,
        }
    }
}

/// One live-looking secret. Holds no part of the secret beyond its public prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Finding {
    /// The file, relative to the scanned root, `/`-separated.
    pub path: String,
    /// 1-based line where the match starts (at its prefix: the key's prefix, the PEM header,
    /// or the name a generic value is assigned to).
    pub line: usize,
    /// 1-based column (in characters) of that start.
    pub column: usize,
    /// The rule id, such as `stripe-live-secret-key`.
    pub rule: String,
    /// The redacted preview: the public prefix and the length, such as `sk_live_… (32 chars)`
    /// or `client_secret = … (40 chars)`.
    pub preview: String,
    /// 16 hex digits identifying the value (a truncated SHA-256 of the rule id and the value),
    /// for `rule-id:fingerprint` allow-list entries.
    pub fingerprint: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {} [{}:{}]",
            self.path, self.line, self.column, self.rule, self.preview, self.rule, self.fingerprint
        )
    }
}

/// Why a file was not scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum SkipReason {
    /// A NUL byte in its first 8 KiB.
    Binary,
    /// Larger than [`ScanOptions::max_file_bytes`].
    TooLarge {
        /// Its size.
        bytes: u64,
    },
}

/// A file that was not scanned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SkippedFile {
    /// The file, relative to the root.
    pub path: String,
    /// Why.
    #[serde(flatten)]
    pub reason: SkipReason,
}

/// The outcome of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    /// Live-looking secrets, ordered by path, line, column. Empty means clean.
    pub findings: Vec<Finding>,
    /// Findings let through by the allow-list file.
    pub allowed: Vec<Finding>,
    /// How many files were scanned.
    pub files_scanned: usize,
    /// Files not scanned (binary or too large).
    pub skipped: Vec<SkippedFile>,
    /// Allow-list entries that allowed nothing (stale; worth removing).
    pub unused_allow_entries: Vec<String>,
}

impl ScanReport {
    /// Whether no finding is left.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Scans the tree at `root` for live-looking secrets.
///
/// Reads the allow-list from `root/.ivory-secrets-allow` when present. Errors only when the
/// tree cannot be read (or the allow-list is malformed); findings are data, in the report.
pub fn scan_secrets(root: &Path, options: &ScanOptions) -> Result<ScanReport, ScanError> {
    let compiled = compile()?;
    let files = walk::files(root, options)?;
    let allow = AllowList::load(root)?;
    let mut report = ScanReport::default();
    for file in files {
        // The allow-list holds fingerprints and places, not secrets.
        if file.relative == ALLOW_FILE {
            continue;
        }
        match read_text(&file.absolute, options.max_file_bytes)? {
            Content::Text(text) => {
                report.files_scanned += 1;
                for finding in scan_with(compiled, &file.relative, &text) {
                    if allow.allows(&finding) {
                        report.allowed.push(finding);
                    } else {
                        report.findings.push(finding);
                    }
                }
            }
            Content::Skipped(reason) => report.skipped.push(SkippedFile {
                path: file.relative,
                reason,
            }),
            Content::Gone => {}
        }
    }
    report.unused_allow_entries = allow.unused();
    Ok(report)
}

/// Scans one text (a log, a report, a generated file) as if it were the file `path`. No
/// allow-list applies.
///
/// ```
/// use ivory_certify::secrets::scan_text;
///
/// let key = format!("sk_{}_{}", "live", "Q2w9ErT5yU8iN1pA4sD7fG3h");
/// let findings = scan_text("config.toml", &format!("api_key = \"{key}\"\n"))?;
/// assert_eq!(findings.len(), 1);
/// assert_eq!(findings[0].rule, "stripe-live-secret-key");
/// assert_eq!(findings[0].preview, "sk_live_… (32 chars)");
/// assert!(!findings[0].to_string().contains(&key));
/// # Ok::<(), ivory_certify::ScanError>(())
/// ```
pub fn scan_text(path: &str, text: &str) -> Result<Vec<Finding>, ScanError> {
    Ok(scan_with(compile()?, path, text))
}

/// The rules, compiled once per process.
fn compile() -> Result<&'static Compiled, ScanError> {
    static COMPILED: OnceLock<Result<Compiled, (&'static str, String)>> = OnceLock::new();
    COMPILED
        .get_or_init(Compiled::new)
        .as_ref()
        .map_err(|(id, message)| ScanError::Rule {
            id,
            message: message.clone(),
        })
}

/// A file's text, or `None` when it is binary or too large.
pub(crate) fn read_source(path: &Path, max_bytes: u64) -> Result<Option<String>, ScanError> {
    Ok(match read_text(path, max_bytes)? {
        Content::Text(text) => Some(text),
        Content::Skipped(_) | Content::Gone => None,
    })
}

enum Content {
    Text(String),
    Skipped(SkipReason),
    Gone,
}

fn read_text(path: &Path, max_bytes: u64) -> Result<Content, ScanError> {
    let read_error = |source| ScanError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        // Deleted since the walk listed it: it holds nothing any more.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Content::Gone),
        Err(error) => return Err(read_error(error)),
    };
    let size = file.metadata().map_err(read_error)?.len();
    if size > max_bytes {
        return Ok(Content::Skipped(SkipReason::TooLarge { bytes: size }));
    }
    let mut bytes = Vec::new();
    // Bounded, in case the file grew since the size was read.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > max_bytes {
        return Ok(Content::Skipped(SkipReason::TooLarge {
            bytes: bytes.len() as u64,
        }));
    }
    if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
        return Ok(Content::Skipped(SkipReason::Binary));
    }
    Ok(Content::Text(String::from_utf8_lossy(&bytes).into_owned()))
}

/// A match that passed its rule's gate.
struct Hit {
    rule: usize,
    start: usize,
    secret: Range<usize>,
    prefix: Range<usize>,
}

fn scan_with(compiled: &Compiled, path: &str, text: &str) -> Vec<Finding> {
    let mut hits: Vec<Hit> = Vec::new();
    for index in compiled.set.matches(text) {
        let rule = &RULES[index];
        for captures in compiled.regexes[index].captures_iter(text) {
            let (Some(secret), Some(prefix)) = (captures.name("secret"), captures.name("prefix"))
            else {
                continue;
            };
            let keep = match rule.gate() {
                Gate::Token => !is_obviously_fake(secret.as_str()),
                Gate::PrivateKey => true,
                Gate::Assignment => {
                    !is_obviously_fake(secret.as_str())
                        && rules::generic_is_secret(prefix.as_str(), secret.as_str())
                }
            };
            if keep {
                hits.push(Hit {
                    rule: index,
                    start: prefix.start(),
                    secret: secret.range(),
                    prefix: prefix.range(),
                });
            }
        }
    }
    // A generic hit on a value a specific rule already reports is the same secret.
    let specific: Vec<Range<usize>> = hits
        .iter()
        .filter(|h| !RULES[h.rule].is_generic())
        .map(|h| h.secret.clone())
        .collect();
    hits.retain(|h| {
        !RULES[h.rule].is_generic()
            || !specific
                .iter()
                .any(|s| s.start < h.secret.end && h.secret.start < s.end)
    });

    let lines = LineIndex::new(text);
    let mut findings: Vec<Finding> = hits
        .into_iter()
        .map(|hit| {
            let rule = &RULES[hit.rule];
            let secret = &text[hit.secret.clone()];
            let prefix = &text[hit.prefix.clone()];
            let (line, column) = lines.position(text, hit.start);
            Finding {
                path: path.to_owned(),
                line,
                column,
                rule: rule.id().to_owned(),
                preview: preview(rule, prefix, secret),
                fingerprint: fingerprint(rule.id(), secret),
            }
        })
        .collect();
    findings.sort_by(|a, b| (a.line, a.column, &a.rule).cmp(&(b.line, b.column, &b.rule)));
    findings.dedup();
    findings
}

/// The public part and the length: never a character of the secret beyond its fixed prefix.
fn preview(rule: &Rule, prefix: &str, secret: &str) -> String {
    let length = secret.chars().count();
    if rule.is_generic() {
        format!("{prefix} = … ({length} chars)")
    } else {
        format!("{prefix}… ({length} chars)")
    }
}

/// The fingerprint of a value: 16 hex digits of SHA-256 over a domain tag, the rule id and the
/// value. One-way; it identifies a value without revealing it.
fn fingerprint(rule: &str, secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"ivory-secret-scan:v1\0");
    hasher.update(rule.as_bytes());
    hasher.update([0]);
    hasher.update(secret.as_bytes());
    hex::encode(&hasher.finalize()[..8])
}

/// Byte offsets of line starts, to turn a match offset into a line and a column.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// 1-based line and 1-based column in characters.
    fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let column = text[start..offset].chars().count() + 1;
        (line, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index() {
        let text = "ab\ncdé\nf";
        let lines = LineIndex::new(text);
        assert_eq!(lines.position(text, 0), (1, 1));
        assert_eq!(lines.position(text, 3), (2, 1));
        assert_eq!(lines.position(text, 7), (2, 4)); // after the two-byte é
        assert_eq!(lines.position(text, 8), (3, 1));
    }

    #[test]
    fn fingerprints_differ_by_rule_and_value() {
        let a = fingerprint("private-key", "one");
        assert_eq!(a.len(), 16);
        assert_eq!(a, fingerprint("private-key", "one"));
        assert_ne!(a, fingerprint("private-key", "two"));
        assert_ne!(a, fingerprint("github-token", "one"));
    }
}
