//! Why a manifest could not be loaded.

use std::fmt;
use std::path::PathBuf;

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest file is missing or unreadable.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file that was tried (`manifest.json` inside the directory when a directory was
        /// given).
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not JSON.
    #[error("not valid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The manifest is JSON but breaks the schema or the semantic rules. Holds every error
    /// found, ordered by path.
    #[error("invalid manifest: {}", join(.0))]
    Invalid(Vec<ValidationError>),
}

impl ManifestError {
    /// The validation errors when the manifest is [`ManifestError::Invalid`], else an empty
    /// slice.
    pub fn validation_errors(&self) -> &[ValidationError] {
        match self {
            ManifestError::Invalid(errors) => errors,
            _ => &[],
        }
    }
}

fn join(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One broken rule, located by its JSON path. Displays as `path: message`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidationError {
    /// Where the error is, as a dotted path with array indices:
    /// `connection.sync.rateLimitPerMinute`, `objects[0].fields[2].type`; `(root)` for the
    /// document itself.
    pub path: String,
    /// What is wrong, such as `must be > 0`.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ValidationError {}
