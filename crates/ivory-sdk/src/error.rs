//! The error a connector's `sync` returns.

use jiff::Timestamp;

use crate::fetch::FetchError;
use crate::pagination::PageError;

/// Why a sync (or one of its steps) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An upstream request failed (after pacing and retries).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A listing stopped early (paging loop, max pages, or a page fetch failed).
    #[error(transparent)]
    Page(#[from] PageError),
    /// The platform's store refused or failed a commit; nothing of that commit was stored.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A cursor operation broke the cursor discipline.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// A record the connector produced is unusable.
    #[error("invalid record (kind {kind:?}, id {id:?}): {reason}")]
    InvalidRecord {
        /// The kind.
        kind: String,
        /// The record id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The upstream sent something the connector cannot make sense of.
    #[error("upstream: {0}")]
    Upstream(String),
    /// A setting or credential the connector needs is missing or malformed.
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// True when an upstream rate limit caused the failure.
    pub fn is_rate_limited(&self) -> bool {
        match self {
            Error::Fetch(e) | Error::Page(PageError::Fetch(e)) => e.is_rate_limited(),
            _ => false,
        }
    }

    /// True when the run stopped because it was asked to (a graceful shutdown), at a page
    /// boundary: not a failure, the next run resumes from the committed cursor.
    pub fn is_stopped(&self) -> bool {
        match self {
            Error::Fetch(e) | Error::Page(PageError::Fetch(e)) => e.is_stopped(),
            _ => false,
        }
    }
}

/// A commit the store could not make.
#[derive(Debug, thiserror::Error)]
#[error("store: {message}")]
pub struct SinkError {
    /// What went wrong.
    pub message: String,
}

impl SinkError {
    /// A store error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A cursor operation that breaks the cursor discipline.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CursorError {
    /// The manifest declares `cursor: none`.
    #[error("this connector declares cursor: none; it cannot set a cursor")]
    NotDeclared,
    /// The cursor's kind differs from the manifest's declaration.
    #[error("the manifest declares cursor: {declared}, but a {given} cursor was set")]
    WrongKind {
        /// The declared kind.
        declared: &'static str,
        /// The kind given.
        given: &'static str,
    },
    /// An `updated_at` watermark past every record the store has acknowledged in this run:
    /// committing it could skip records that were never stored.
    #[error(
        "watermark {requested} is ahead of the newest stored record ({acknowledged}); a watermark can only cover records the store has acknowledged"
    )]
    AheadOfRecords {
        /// The watermark asked for.
        requested: Timestamp,
        /// The newest record timestamp stored in this run, if any (`none` otherwise).
        acknowledged: AckedTimestamp,
    },
}

/// The newest acknowledged record timestamp, printable when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckedTimestamp(pub Option<Timestamp>);

impl std::fmt::Display for AckedTimestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(at) => write!(f, "{at}"),
            None => f.write_str("none in this run"),
        }
    }
}
