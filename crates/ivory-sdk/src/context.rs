//! The `Context` a connector syncs through, and the `RecordSink` the platform implements.
//!
//! ## The cursor discipline, enforced here
//! Records are *staged* by [`Context::upsert`] / [`Context::delete`]; a cursor is only ever
//! committed by the store **in the same transaction as every record staged before it**
//! ([`RecordSink::commit`]). There is no API that writes a cursor alone, so "cursor advanced
//! past records that were never stored" cannot be written:
//! - `opaque_token`: call [`Context::set_opaque_cursor`] after each page; the page's records and
//!   the token commit atomically.
//! - `updated_at`: call [`Context::complete_window`] when a window is complete; the watermark
//!   committed is the newest `updated_at` among records the store has acknowledged in this run,
//!   never later. Read the next window from [`Context::watermark`] with an inclusive bound
//!   (`>=`): ties at the boundary are re-read and absorbed by idempotent upserts, never skipped.
//! - Staged records are flushed without a cursor when the stage grows past a threshold and at
//!   the end of the sync: storing records early is always safe (a re-run re-pulls them
//!   idempotently).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::clock::Clock;
use crate::connector::BoxFuture;
use crate::error::{AckedTimestamp, CursorError, Error, SinkError};
use crate::fetch::{FetchStats, Fetcher, RequestBuilder};
use crate::manifest::CursorKind;
use crate::record::{Cursor, Record, RecordOp, validate_kind};
use crate::secret::Secret;

/// What the store did with one commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommitReceipt {
    /// Records inserted.
    pub created: u64,
    /// Records whose data changed.
    pub updated: u64,
    /// Records upserted with data identical to what was stored (idempotent re-pulls).
    pub unchanged: u64,
    /// Records marked deleted.
    pub deleted: u64,
}

impl CommitReceipt {
    fn add(&mut self, other: CommitReceipt) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.deleted += other.deleted;
    }

    /// Records upserted (created + updated + unchanged).
    pub fn upserted(&self) -> u64 {
        self.created + self.updated + self.unchanged
    }
}

/// The platform's side of a sync: applies staged record ops and, optionally, a new cursor, in
/// one transaction. Implemented by the runtime's store (bound to one tenant and installation)
/// and by test harnesses.
pub trait RecordSink: Send + Sync {
    /// Applies `ops` and sets `cursor` (when given) atomically: either all of it is durably
    /// stored, or none of it.
    fn commit<'a>(
        &'a self,
        ops: &'a [RecordOp],
        cursor: Option<&'a Cursor>,
    ) -> BoxFuture<'a, Result<CommitReceipt, SinkError>>;
}

/// Observes a sync's progress (a terminal progress bar, metrics).
pub trait Progress: Send + Sync {
    /// Called after every commit.
    fn on_commit(&self, snapshot: &ProgressSnapshot);
}

/// Counts so far, passed to [`Progress::on_commit`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProgressSnapshot {
    /// What the store did so far.
    pub records: CommitReceipt,
    /// Fetch counters so far.
    pub fetch: FetchStats,
}

/// The tenant's own credentials for the upstream (never the publisher's).
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Credentials {
    /// The connector needs none.
    #[default]
    None,
    /// An API key.
    ApiKey(Secret),
    /// An OAuth 2.0 grant.
    OAuth2 {
        /// The access token.
        access_token: Secret,
        /// When it expires, if known.
        expires_at: Option<Timestamp>,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("Credentials::None"),
            Credentials::ApiKey(_) => f.write_str("Credentials::ApiKey([REDACTED])"),
            Credentials::OAuth2 { expires_at, .. } => f
                .debug_struct("Credentials::OAuth2")
                .field("access_token", &"[REDACTED]")
                .field("expires_at", expires_at)
                .finish(),
        }
    }
}

impl Credentials {
    /// The bearer secret for upstream requests, if any.
    pub fn bearer(&self) -> Option<&Secret> {
        match self {
            Credentials::None => None,
            Credentials::ApiKey(key) => Some(key),
            Credentials::OAuth2 { access_token, .. } => Some(access_token),
        }
    }
}

/// Everything a [`Context`] is made of; built by the runtime (or a test harness).
#[derive(Clone)]
pub struct ContextParts {
    /// The tenant.
    pub tenant: String,
    /// The installation.
    pub installation: String,
    /// The connector id.
    pub connector: String,
    /// The manifest's declared cursor kind.
    pub cursor_kind: CursorKind,
    /// The committed cursor to resume from (`None`: from the beginning / full refresh).
    pub cursor: Option<Cursor>,
    /// `updated_at` lookback subtracted by [`Context::watermark`] (upstream index lag).
    pub lookback: Duration,
    /// The tenant's credentials.
    pub credentials: Credentials,
    /// Installation settings.
    pub settings: BTreeMap<String, String>,
    /// The paced fetcher.
    pub fetcher: Fetcher,
    /// Where records and cursors go.
    pub sink: Arc<dyn RecordSink>,
    /// Progress observer.
    pub progress: Option<Arc<dyn Progress>>,
    /// Staged ops flushed (without a cursor) once this many accumulate.
    pub flush_threshold: usize,
}

impl fmt::Debug for ContextParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextParts")
            .field("tenant", &self.tenant)
            .field("installation", &self.installation)
            .field("connector", &self.connector)
            .field("cursor_kind", &self.cursor_kind)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

/// A connector's handle on one sync of one installation.
pub struct Context {
    parts: ContextParts,
    staged: Vec<RecordOp>,
    staged_high_water: Option<Timestamp>,
    high_water: Option<Timestamp>,
    totals: CommitReceipt,
    commits: u64,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("parts", &self.parts)
            .field("staged", &self.staged.len())
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context from its parts.
    pub fn new(parts: ContextParts) -> Self {
        Self {
            parts,
            staged: Vec::new(),
            staged_high_water: None,
            high_water: None,
            totals: CommitReceipt::default(),
            commits: 0,
        }
    }

    /// The tenant this sync runs for.
    pub fn tenant(&self) -> &str {
        &self.parts.tenant
    }

    /// The installation this sync runs for.
    pub fn installation(&self) -> &str {
        &self.parts.installation
    }

    /// The tenant's credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.parts.credentials
    }

    /// An installation setting.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.parts.settings.get(key).map(String::as_str)
    }

    /// The paced fetcher (cheap to clone; pagination helpers take one).
    pub fn fetcher(&self) -> Fetcher {
        self.parts.fetcher.clone()
    }

    /// A paced GET (see [`Fetcher::get`]).
    pub fn get(&self, path_or_url: &str) -> RequestBuilder {
        self.parts.fetcher.get(path_or_url)
    }

    /// A paced POST (see [`Fetcher::post`]).
    pub fn post(&self, path_or_url: &str) -> RequestBuilder {
        self.parts.fetcher.post(path_or_url)
    }

    /// The clock (virtual in tests).
    pub fn clock(&self) -> &Clock {
        self.parts.fetcher.clock()
    }

    /// Sleeps on the SDK's clock.
    pub async fn sleep(&self, duration: Duration) {
        self.parts.fetcher.clock().sleep(duration).await;
    }

    /// The committed cursor this sync resumes from (updated as the sync commits new ones).
    pub fn cursor(&self) -> Option<&Cursor> {
        self.parts.cursor.as_ref()
    }

    /// The committed opaque token, if the cursor is one.
    pub fn opaque_cursor(&self) -> Option<&str> {
        match &self.parts.cursor {
            Some(Cursor::OpaqueToken(token)) => Some(token),
            _ => None,
        }
    }

    /// The lower bound of the next `updated_at` window: the committed watermark minus the
    /// lookback. Query the upstream with an **inclusive** bound (`>=`). `None`: from the start.
    pub fn watermark(&self) -> Option<Timestamp> {
        match &self.parts.cursor {
            Some(Cursor::UpdatedAt(at)) => {
                let lookback =
                    SignedDuration::try_from(self.parts.lookback).unwrap_or(SignedDuration::ZERO);
                Some(at.checked_sub(lookback).unwrap_or(Timestamp::MIN))
            }
            _ => None,
        }
    }

    /// Stages records of `kind` for upsert (idempotent by `(tenant, kind, id)`).
    pub async fn upsert(
        &mut self,
        kind: &str,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<(), Error> {
        validate_kind(kind).map_err(|reason| Error::InvalidRecord {
            kind: kind.to_owned(),
            id: String::new(),
            reason,
        })?;
        for record in records {
            if record.id.is_empty() {
                return Err(Error::InvalidRecord {
                    kind: kind.to_owned(),
                    id: record.id,
                    reason: "empty id".into(),
                });
            }
            if let Some(at) = record.updated_at {
                self.staged_high_water = Some(self.staged_high_water.map_or(at, |hw| hw.max(at)));
            }
            self.staged.push(RecordOp::Upsert {
                kind: kind.to_owned(),
                record,
            });
        }
        self.flush_if_large().await
    }

    /// Stages deletions (tombstones) of records of `kind` by upstream id.
    pub async fn delete(
        &mut self,
        kind: &str,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<(), Error> {
        validate_kind(kind).map_err(|reason| Error::InvalidRecord {
            kind: kind.to_owned(),
            id: String::new(),
            reason,
        })?;
        self.staged
            .extend(ids.into_iter().map(|id| RecordOp::Delete {
                kind: kind.to_owned(),
                id,
            }));
        self.flush_if_large().await
    }

    /// Commits every staged record and then `token` as the `opaque_token` cursor, in one
    /// transaction.
    pub async fn set_opaque_cursor(&mut self, token: impl Into<String>) -> Result<(), Error> {
        self.set_cursor(Cursor::OpaqueToken(token.into())).await
    }

    /// Declares the current `updated_at` window complete: commits every staged record and the
    /// newest acknowledged `updated_at` as the watermark, in one transaction. Returns the
    /// watermark now committed (unchanged when no record carried a newer timestamp).
    pub async fn complete_window(&mut self) -> Result<Option<Timestamp>, Error> {
        self.check_kind(CursorKind::UpdatedAt, "updated_at")?;
        let newest = max_opt(self.high_water, self.staged_high_water);
        let current = match &self.parts.cursor {
            Some(Cursor::UpdatedAt(at)) => Some(*at),
            _ => None,
        };
        match newest {
            Some(at) if current.is_none_or(|c| at > c) => {
                self.set_cursor(Cursor::UpdatedAt(at)).await?;
                Ok(Some(at))
            }
            _ => {
                self.flush().await?;
                Ok(current)
            }
        }
    }

    /// Commits every staged record and then `cursor`, in one transaction.
    ///
    /// An `UpdatedAt` watermark may not be later than the newest `updated_at` among the records
    /// stored in this run (including those committed by this call): [`CursorError::AheadOfRecords`].
    /// Prefer [`Context::complete_window`], which picks the watermark itself.
    pub async fn set_cursor(&mut self, cursor: Cursor) -> Result<(), Error> {
        match &cursor {
            Cursor::OpaqueToken(_) => self.check_kind(CursorKind::OpaqueToken, "opaque_token")?,
            Cursor::UpdatedAt(requested) => {
                self.check_kind(CursorKind::UpdatedAt, "updated_at")?;
                let acknowledged = max_opt(self.high_water, self.staged_high_water);
                let current = match &self.parts.cursor {
                    Some(Cursor::UpdatedAt(at)) => Some(*at),
                    _ => None,
                };
                let covered = acknowledged.is_some_and(|a| *requested <= a)
                    || current.is_some_and(|c| *requested <= c);
                if !covered {
                    return Err(CursorError::AheadOfRecords {
                        requested: *requested,
                        acknowledged: AckedTimestamp(acknowledged),
                    }
                    .into());
                }
            }
        }
        self.commit(Some(cursor)).await
    }

    /// Commits staged records without moving the cursor.
    pub async fn flush(&mut self) -> Result<(), Error> {
        if self.staged.is_empty() {
            return Ok(());
        }
        self.commit(None).await
    }

    /// Flushes what is staged and returns the totals of this sync. Called by the runtime after
    /// the connector's `sync` returned successfully.
    pub async fn finish(&mut self) -> Result<CommitReceipt, Error> {
        self.flush().await?;
        Ok(self.totals)
    }

    /// What the store did in this sync so far.
    pub fn totals(&self) -> CommitReceipt {
        self.totals
    }

    /// Commits made in this sync so far.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// The fetch counters so far.
    pub fn fetch_stats(&self) -> FetchStats {
        self.parts.fetcher.stats()
    }

    fn check_kind(&self, wanted: CursorKind, given: &'static str) -> Result<(), CursorError> {
        match self.parts.cursor_kind {
            CursorKind::None => Err(CursorError::NotDeclared),
            declared if declared == wanted => Ok(()),
            CursorKind::UpdatedAt => Err(CursorError::WrongKind {
                declared: "updated_at",
                given,
            }),
            CursorKind::OpaqueToken => Err(CursorError::WrongKind {
                declared: "opaque_token",
                given,
            }),
        }
    }

    async fn flush_if_large(&mut self) -> Result<(), Error> {
        if self.staged.len() >= self.parts.flush_threshold.max(1) {
            self.commit(None).await?;
        }
        Ok(())
    }

    async fn commit(&mut self, cursor: Option<Cursor>) -> Result<(), Error> {
        let receipt = self
            .parts
            .sink
            .commit(&self.staged, cursor.as_ref())
            .await?;
        self.staged.clear();
        self.high_water = max_opt(self.high_water, self.staged_high_water.take());
        self.totals.add(receipt);
        self.commits += 1;
        if let Some(cursor) = cursor {
            self.parts.cursor = Some(cursor);
        }
        if let Some(progress) = &self.parts.progress {
            progress.on_commit(&ProgressSnapshot {
                records: self.totals,
                fetch: self.parts.fetcher.stats(),
            });
        }
        Ok(())
    }
}

fn max_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
