//! # Ivory certification: the static half
//!
//! `ivory certify PATH/manifest.json` judges a connector against the contract (SPEC §8). This
//! crate holds the checks that need no running connector: the manifest's validity, a scan of
//! the connector's tree for live-looking secrets, the hosts its code calls, its OAuth scopes,
//! its listing's conflict-policy text and its webhook declaration. The dynamic checks (pages,
//! 429s, pacing, crash and re-run, webhook deliveries, conflicts, canary secrets) run the
//! connector and produce the same [`Check`] rows; the CLI prints them as a table or JSON.
//!
//! ## Example
//!
//! ```no_run
//! use std::path::Path;
//! use ivory_certify::{all_pass, static_checks};
//!
//! let checks = static_checks(Path::new("connectors/hubspot/manifest.json"))?;
//! for check in &checks {
//!     println!("{}\t{}\t{}", check.name, check.verdict, check.evidence);
//! }
//! std::process::exit(if all_pass(&checks) { 0 } else { 1 });
//! # Ok::<(), ivory_certify::CertifyError>(())
//! ```
//!
//! ## Concepts
//!
//! - [`Check`]: a named rule, a [`Verdict`] and its evidence (one item per line, never a
//!   secret). Serializable, so the certification report embeds it as is. Names are stable:
//!   [`check_names`].
//! - [`static_checks`] / [`static_checks_with`]: every static check of one connector, in a
//!   fixed order. See [`statics`] for what each one accepts.
//! - [`scan_secrets`]: the secret scanner on its own, with a [`ScanReport`] of redacted
//!   [`Finding`]s; [`secrets::scan_text`] scans one text (a log, a report) with the same rules.
//!   The rules are data ([`secrets::rules`]); `docs/specs/secret-scan.md` documents them, the
//!   "obviously fake" rule and the `.ivory-secrets-allow` file for connector authors.
//!
//! ## Errors
//!
//! A connector that breaks a rule gets a failing check. [`CertifyError`] and [`ScanError`]
//! mean the suite could not look at the connector (missing manifest, unreadable file,
//! malformed allow-list): certification cannot pass either way.

pub mod check;
mod error;
pub mod external;
pub mod harness;
pub mod secrets;
pub mod statics;
mod walk;

pub use check::{Check, Verdict, all_pass};
pub use error::{CertifyError, ScanError};
pub use secrets::{Finding, ScanOptions, ScanReport, scan_secrets};
pub use statics::{StaticOptions, static_checks, static_checks_with};

/// The stable names of the static checks, as they appear in reports.
pub mod check_names {
    /// The manifest passes strict validation (schema and semantic rules).
    pub const MANIFEST_VALID: &str = "manifest valid";
    /// No live-looking secret in the connector's tree.
    pub const SECRET_SCAN: &str = "secret scan";
    /// Every host the code calls is declared in the manifest.
    pub const DECLARED_HOSTS: &str = "declared hosts";
    /// An oauth2 connector declares its scopes.
    pub const OAUTH2_SCOPES: &str = "oauth2 scopes";
    /// The listing explains the conflict policy to tenants.
    pub const CONFLICT_POLICY: &str = "conflict policy documented";
    /// Code that verifies webhooks has a `webhooks` block.
    pub const WEBHOOKS_DECLARED: &str = "webhooks declared";

    /// Every static check, in the order [`crate::static_checks`] returns them.
    pub const ALL: &[&str] = &[
        MANIFEST_VALID,
        SECRET_SCAN,
        DECLARED_HOSTS,
        OAUTH2_SCOPES,
        CONFLICT_POLICY,
        WEBHOOKS_DECLARED,
    ];
}
