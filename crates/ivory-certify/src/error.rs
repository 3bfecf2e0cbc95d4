//! Why a scan or the static checks could not run.
//!
//! A connector that *breaks* a rule is not an error: it is a failing [`crate::Check`]. These
//! errors mean the suite could not look at the connector at all (a missing manifest, an
//! unreadable file, a malformed allow-list), and certification cannot pass.

use std::path::PathBuf;

/// Why [`crate::scan_secrets`] could not scan a tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The root to scan is missing or not a directory.
    #[error("cannot scan {}: {source}", path.display())]
    Root {
        /// The root given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Walking the tree failed (an unreadable directory, a broken `.gitignore`).
    #[error("cannot walk {}: {message}", path.display())]
    Walk {
        /// The directory or file concerned (the root when unknown).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file of the tree could not be read. Unread files are never silently skipped, since a
    /// secret could hide in them.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of the allow-list file (`.ivory-secrets-allow`) is malformed.
    #[error("{}:{line}: {message}", path.display())]
    AllowList {
        /// The allow-list file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A built-in rule failed to compile: a bug in this crate, caught by its tests.
    #[error("secret rule {id} does not compile: {message}")]
    Rule {
        /// The rule id.
        id: &'static str,
        /// The regex error.
        message: String,
    },
}

/// Why [`crate::static_checks`] could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertifyError {
    /// The manifest file is missing or unreadable. (A manifest that reads but is invalid is a
    /// failing `manifest valid` check, not an error.)
    #[error("cannot read {}: {source}", path.display())]
    Manifest {
        /// The manifest file tried (`manifest.json` inside the directory when a directory was
        /// given).
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The connector's tree could not be scanned.
    #[error(transparent)]
    Scan(#[from] ScanError),
}
