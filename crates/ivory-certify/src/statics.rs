//! The static checks of `ivory certify`: what can be judged from the manifest and the source
//! tree without running the connector.
//!
//! | check | passes when |
//! |---|---|
//! | `manifest valid` | the manifest passes [`Manifest::parse`] (schema + semantic rules) |
//! | `secret scan` | [`crate::scan_secrets`] finds no live-looking secret in the tree |
//! | `declared hosts` | every URL literal of the Rust sources is on a declared host |
//! | `oauth2 scopes` | an `oauth2` connector declares at least one scope |
//! | `conflict policy documented` | `listing.conflictPolicy` explains the policy to tenants |
//! | `webhooks declared` | code that references a webhook verifier has a `webhooks` block |
//!
//! The connector's tree is the directory holding `manifest.json`.
//!
//! **Declared hosts** are the manifest's `hosts` plus the hosts of its OAuth URLs
//! (`authorizationUrl`, `tokenUrl`, `revocationUrl`). URL literals in comments and attributes
//! are ignored; test code (under `tests/` or `benches/`, `#[cfg(test)]` modules, `#[test]`
//! functions) may also use loopback addresses, `localhost`, `example.com`/`.org`/`.net` and the
//! reserved `.test`, `.example`, `.invalid` names.
//!
//! **The listing** of every connector must explain its conflict policy in
//! `listing.conflictPolicy` (SPEC §2: the listing holds "at least a `conflictPolicy` text");
//! for a bidirectional connector that is the rule the SPEC names explicitly.
//!
//! When the manifest is not valid, the other checks still run on whatever of it can be read,
//! so that one report lists every problem.

mod hosts;
mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ivory_sdk::manifest::{AuthType, Direction, Manifest, ManifestError, ValidationMode};

use crate::check::{Check, evidence_lines};
use crate::check_names::{
    CONFLICT_POLICY, DECLARED_HOSTS, MANIFEST_VALID, OAUTH2_SCOPES, SECRET_SCAN, WEBHOOKS_DECLARED,
};
use crate::error::CertifyError;
use crate::secrets::{self, ALLOW_FILE, ScanOptions, ScanReport, SkipReason};
use crate::walk;
use hosts::{UrlHost, allowed_in_tests, is_test_path, literal_host};
use source::{Facts, Position};

/// The most evidence lines a check prints before "… and N more".
const EVIDENCE_LIMIT: usize = 50;

/// Identifiers that mean the code verifies webhooks itself.
const VERIFIER_IDENTS: &[&str] = &["Verifier", "VerifierConfig", "verify_webhook"];

/// How the static checks run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticOptions {
    /// How strictly the manifest's URLs and hosts are validated. Certification uses
    /// [`ValidationMode::Production`] (the default); [`ValidationMode::Test`] admits loopback
    /// URLs, for connectors under development against local fakes.
    pub mode: ValidationMode,
    /// Which files of the tree are read (the secret scan and the source checks share it).
    pub scan: ScanOptions,
}

/// Runs every static check on the connector whose manifest is `manifest_path` (the file, or
/// the directory holding `manifest.json`), with the default [`StaticOptions`].
///
/// Returns one [`Check`] per rule, in a fixed order (see the [module docs](self)). A connector
/// that breaks a rule gets a failing check, not an error; errors mean the manifest or the tree
/// could not be read at all.
///
/// ```no_run
/// use std::path::Path;
///
/// let checks = ivory_certify::static_checks(Path::new("connectors/stripe/manifest.json"))?;
/// for check in &checks {
///     println!("{:<28} {:<4} {}", check.name, check.verdict, check.evidence);
/// }
/// let passed = ivory_certify::all_pass(&checks);
/// # Ok::<(), ivory_certify::CertifyError>(())
/// ```
pub fn static_checks(manifest_path: &Path) -> Result<Vec<Check>, CertifyError> {
    static_checks_with(manifest_path, &StaticOptions::default())
}

/// [`static_checks`] with explicit options.
pub fn static_checks_with(
    manifest_path: &Path,
    options: &StaticOptions,
) -> Result<Vec<Check>, CertifyError> {
    let (file, root) = locate(manifest_path);
    let text = std::fs::read_to_string(&file).map_err(|source| CertifyError::Manifest {
        path: file.clone(),
        source,
    })?;
    let (manifest_check, manifest) = check_manifest(&text, options.mode);
    let scan = secrets::scan_secrets(&root, &options.scan)?;
    let sources = read_sources(&root, &options.scan)?;

    Ok(vec![
        manifest_check,
        check_secret_scan(&scan),
        check_hosts(manifest.as_ref(), &sources),
        check_scopes(manifest.as_ref()),
        check_conflict_policy(manifest.as_ref()),
        check_webhooks(manifest.as_ref(), &sources),
    ])
}

/// The manifest file and the connector's root.
fn locate(manifest_path: &Path) -> (PathBuf, PathBuf) {
    if manifest_path.is_dir() {
        return (manifest_path.join("manifest.json"), manifest_path.into());
    }
    let root = match manifest_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    (manifest_path.to_path_buf(), root)
}

const UNREADABLE: &str = "not checked: the manifest could not be read (see `manifest valid`)";

// ---------------------------------------------------------------------------------------------
// Manifest

fn check_manifest(text: &str, mode: ValidationMode) -> (Check, Option<Manifest>) {
    let mode_name = match mode {
        ValidationMode::Production => "production",
        ValidationMode::Test => "test",
    };
    match Manifest::parse(text, mode) {
        Ok(manifest) => {
            let evidence = format!(
                "{} {} is valid ({mode_name} rules)",
                manifest.id, manifest.version
            );
            (Check::pass(MANIFEST_VALID, evidence), Some(manifest))
        }
        Err(error) => {
            let evidence = match &error {
                ManifestError::Invalid(errors) => evidence_lines(errors, EVIDENCE_LIMIT),
                other => other.to_string(),
            };
            // Keep checking what can be read, so one report lists every problem.
            let body = text.strip_prefix('\u{feff}').unwrap_or(text);
            let lenient = serde_json::from_str::<Manifest>(body).ok();
            (Check::fail(MANIFEST_VALID, evidence), lenient)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Secret scan

fn check_secret_scan(scan: &ScanReport) -> Check {
    let too_large: Vec<&str> = scan
        .skipped
        .iter()
        .filter(|s| matches!(s.reason, SkipReason::TooLarge { .. }))
        .map(|s| s.path.as_str())
        .collect();
    let mut notes = Vec::new();
    if !scan.allowed.is_empty() {
        notes.push(format!("{} allowed by {ALLOW_FILE}", scan.allowed.len()));
    }
    if !too_large.is_empty() {
        notes.push(format!("not scanned (too large): {}", too_large.join(", ")));
    }
    if !scan.unused_allow_entries.is_empty() {
        notes.push(format!(
            "unused {ALLOW_FILE} entries: {}",
            scan.unused_allow_entries.join(", ")
        ));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!("; {}", notes.join("; "))
    };
    if scan.findings.is_empty() {
        Check::pass(
            SECRET_SCAN,
            format!(
                "no live-looking secret in {} files{notes}",
                scan.files_scanned
            ),
        )
    } else {
        let mut lines = vec![format!(
            "{} live-looking secret(s) in {} files{notes}",
            scan.findings.len(),
            scan.files_scanned
        )];
        lines.push(evidence_lines(&scan.findings, EVIDENCE_LIMIT));
        Check::fail(SECRET_SCAN, lines.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------------
// Sources

/// A Rust source file of the tree, lexed.
struct SourceFile {
    path: String,
    facts: Facts,
}

fn read_sources(root: &Path, options: &ScanOptions) -> Result<Vec<SourceFile>, CertifyError> {
    let mut sources = Vec::new();
    for file in walk::files(root, options)? {
        if !file.relative.ends_with(".rs") {
            continue;
        }
        if let Some(text) = secrets::read_source(&file.absolute, options.max_file_bytes)? {
            let facts = source::lex(&text, is_test_path(&file.relative));
            sources.push(SourceFile {
                path: file.relative,
                facts,
            });
        }
    }
    Ok(sources)
}

fn location(path: &str, at: Position) -> String {
    format!("{path}:{}:{}", at.line, at.column)
}

// ---------------------------------------------------------------------------------------------
// Hosts

/// The manifest's hosts plus the hosts of its OAuth URLs.
fn declared_hosts(manifest: &Manifest) -> BTreeSet<String> {
    let mut declared: BTreeSet<String> = manifest
        .hosts
        .iter()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let connection = &manifest.connection;
    for url in [
        &connection.authorization_url,
        &connection.token_url,
        &connection.revocation_url,
    ]
    .into_iter()
    .flatten()
    {
        if let Some(UrlHost::Host(host)) = literal_host(url) {
            declared.insert(host);
        }
    }
    declared
}

fn check_hosts(manifest: Option<&Manifest>, sources: &[SourceFile]) -> Check {
    let Some(manifest) = manifest else {
        return Check::fail(DECLARED_HOSTS, UNREADABLE);
    };
    let declared = declared_hosts(manifest);
    let mut undeclared: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut on_declared = 0usize;
    let mut test_only = 0usize;
    let mut computed = Vec::new();
    for file in sources {
        for literal in &file.facts.literals {
            match literal_host(&literal.text) {
                None => {}
                Some(UrlHost::Computed) => computed.push(location(&file.path, literal.at)),
                Some(UrlHost::Host(host)) => {
                    if declared.contains(&host) {
                        on_declared += 1;
                    } else if literal.in_test && allowed_in_tests(&host) {
                        test_only += 1;
                    } else {
                        undeclared
                            .entry(host)
                            .or_default()
                            .push(location(&file.path, literal.at));
                    }
                }
            }
        }
    }

    let declared_list = declared.iter().cloned().collect::<Vec<_>>().join(", ");
    let mut notes = Vec::new();
    if test_only > 0 {
        notes.push(format!(
            "{test_only} in test code on loopback or reserved hosts"
        ));
    }
    if !computed.is_empty() {
        notes.push(format!(
            "{} with a computed host, left to fetch's run-time allow-list ({})",
            computed.len(),
            computed.join(", ")
        ));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!("; {}", notes.join("; "))
    };

    if undeclared.is_empty() {
        return Check::pass(
            DECLARED_HOSTS,
            format!(
                "{on_declared} URL literal(s) in {} Rust file(s), all on declared hosts [{declared_list}]{notes}",
                sources.len()
            ),
        );
    }
    let mut lines = vec![format!(
        "{} undeclared host(s) called (declared: [{declared_list}]){notes}",
        undeclared.len()
    )];
    lines.extend(undeclared.into_iter().map(|(host, places)| {
        let shown = places
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        let more = places.len().saturating_sub(5);
        if more > 0 {
            format!("{host} at {shown} and {more} more")
        } else {
            format!("{host} at {shown}")
        }
    }));
    Check::fail(DECLARED_HOSTS, evidence_lines(lines, EVIDENCE_LIMIT))
}

// ---------------------------------------------------------------------------------------------
// Scopes, listing, webhooks

fn check_scopes(manifest: Option<&Manifest>) -> Check {
    let Some(manifest) = manifest else {
        return Check::fail(OAUTH2_SCOPES, UNREADABLE);
    };
    let connection = &manifest.connection;
    if connection.auth != AuthType::Oauth2 {
        return Check::pass(
            OAUTH2_SCOPES,
            format!(
                "not applicable: {} connectors have no OAuth scopes",
                connection.auth.as_str()
            ),
        );
    }
    let scopes = &connection.scopes;
    if scopes.is_empty() {
        return Check::fail(
            OAUTH2_SCOPES,
            "connection.scopes is empty: an oauth2 connector must declare the scopes tenants consent to",
        );
    }
    let blank: Vec<String> = scopes
        .iter()
        .enumerate()
        .filter(|(_, s)| s.trim().is_empty())
        .map(|(i, _)| format!("connection.scopes[{i}] is empty"))
        .collect();
    if !blank.is_empty() {
        return Check::fail(OAUTH2_SCOPES, blank.join("\n"));
    }
    Check::pass(
        OAUTH2_SCOPES,
        format!("{} scope(s): {}", scopes.len(), scopes.join(", ")),
    )
}

fn check_conflict_policy(manifest: Option<&Manifest>) -> Check {
    let Some(manifest) = manifest else {
        return Check::fail(CONFLICT_POLICY, UNREADABLE);
    };
    let sync = &manifest.connection.sync;
    let (direction, policy) = (sync.direction.as_str(), sync.conflict_policy.as_str());
    let text = manifest
        .listing
        .conflict_policy
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match text {
        Some(text) => Check::pass(
            CONFLICT_POLICY,
            format!(
                "{direction}, {policy}: listing.conflictPolicy explains it ({} characters)",
                text.chars().count()
            ),
        ),
        None if sync.direction == Direction::Bidirectional => Check::fail(
            CONFLICT_POLICY,
            format!(
                "bidirectional connector ({policy}) without listing.conflictPolicy: tenants must be told which side wins when a record changed on both sides"
            ),
        ),
        None => Check::fail(
            CONFLICT_POLICY,
            format!(
                "listing.conflictPolicy is missing: every listing explains its conflict policy ({direction}, {policy}) to tenants"
            ),
        ),
    }
}

fn check_webhooks(manifest: Option<&Manifest>, sources: &[SourceFile]) -> Check {
    let Some(manifest) = manifest else {
        return Check::fail(WEBHOOKS_DECLARED, UNREADABLE);
    };
    let references: Vec<String> = sources
        .iter()
        .flat_map(|file| {
            file.facts
                .idents
                .iter()
                .filter(|i| !i.in_test && VERIFIER_IDENTS.contains(&i.name.as_str()))
                .map(|i| format!("{} at {}", i.name, location(&file.path, i.at)))
        })
        .collect();
    let shown = references
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match (&manifest.webhooks, references.is_empty()) {
        (Some(webhooks), true) => Check::pass(
            WEBHOOKS_DECLARED,
            format!(
                "webhooks declared (scheme {}); the SDK's default verification applies",
                webhooks.scheme.as_str()
            ),
        ),
        (Some(webhooks), false) => Check::pass(
            WEBHOOKS_DECLARED,
            format!(
                "webhooks declared (scheme {}) for the code's verifier ({shown})",
                webhooks.scheme.as_str()
            ),
        ),
        (None, true) => Check::pass(
            WEBHOOKS_DECLARED,
            "no webhooks: neither declared nor verified in code",
        ),
        (None, false) => Check::fail(
            WEBHOOKS_DECLARED,
            format!(
                "the code verifies webhooks ({shown}) but the manifest has no `webhooks` block declaring the scheme"
            ),
        ),
    }
}
