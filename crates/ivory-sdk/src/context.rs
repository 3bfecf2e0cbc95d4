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
//!
//! ## Outbound sync: pending platform changes, acknowledgements, upstream ids
//! A platform-side edit (a tenant user's `ivory records update`, a workflow's write) stamps the
//! record's `platform_updated_at`. Until the connector **acknowledges** it, the edit is a
//! [`PlatformChange`], listed by [`Context::pending_changes`] (in pages, oldest edit first) and
//! looked up by id with [`Context::pending_changes_for`] (to detect conflicts while pulling).
//! [`Context::commit_outbound`] records, in one transaction:
//! - [`UpstreamLink`]s: a record created on the platform was created upstream; the record takes
//!   the upstream's id as its external id (so the next pull updates it instead of duplicating
//!   it), optionally with the upstream's data;
//! - [`ChangeAck`]s: the edit was pushed ([`Disposition::Pushed`]) or lost a conflict to the
//!   upstream's version ([`Disposition::Superseded`]). An ack covers the edit made at its
//!   `platform_updated_at` and every earlier one; a later edit is pending again.
//!
//! Acknowledge a push only after the upstream accepted it: a crash before the ack means the
//! edit is pushed again by the next sync (pushes of the same values are idempotent upstream),
//! never that it is lost. Acknowledgements are per record, not a single "last push"
//! timestamp: an edit stamped before a push read the store but committed after it (a writer
//! waiting for the store's write lock) would fall behind such a watermark and never be pushed;
//! a per-record acknowledgement cannot miss it.
//!
//! Conflicts (a record changed on both sides) are decided by [`Context::resolve_conflict`] with
//! the manifest's policy (see [`crate::conflict`]), which also counts them for the sync run.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::clock::Clock;
use crate::conflict::{ConflictCounts, ConflictPolicy, Resolution, resolve};
use crate::connector::BoxFuture;
use crate::error::{AckedTimestamp, CursorError, Error, SinkError};
use crate::fetch::{FetchStats, Fetcher, RequestBuilder};
use crate::manifest::CursorKind;
use crate::manifest::ObjectSpec;
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

    /// Platform-side changes not acknowledged yet (outbound sync): records of the sink's tenant
    /// and `query`'s kind whose last platform-side edit is newer than their acknowledgement,
    /// tombstones excluded. The default refuses: a sink without outbound support. A sink that
    /// wraps another (fault injection) must forward this.
    fn pending_changes<'a>(
        &'a self,
        query: &'a ChangeQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<PlatformChange>, SinkError>> {
        let _ = query;
        Box::pin(async { Err(SinkError::new(OUTBOUND_UNSUPPORTED)) })
    }

    /// Applies `commit`'s links, then its acknowledgements (naming records by their ids after
    /// the links), atomically. Renews and checks the run's lease like [`RecordSink::commit`].
    /// The default refuses: a sink without outbound support. A wrapping sink must forward this.
    fn commit_outbound<'a>(
        &'a self,
        commit: &'a OutboundCommit,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        let _ = commit;
        Box::pin(async { Err(SinkError::new(OUTBOUND_UNSUPPORTED)) })
    }

    /// Provisions (creates, or migrates additively) the custom object kind `spec` for the
    /// sink's tenant, owned by the sink's installation: see [`Context::provision_object`] for
    /// the rules. The default refuses: a sink that stores records but cannot provision objects.
    /// A sink that wraps another (fault injection) must forward this.
    fn provision_object<'a>(
        &'a self,
        spec: &'a ObjectSpec,
    ) -> BoxFuture<'a, Result<ProvisionedObject, SinkError>> {
        Box::pin(async move {
            Err(SinkError::new(format!(
                "this record sink cannot provision object kinds (asked for {:?})",
                spec.kind
            )))
        })
    }

    /// Starts a full pass over the installation's records of `kind` and returns its id: the
    /// ids the pass sees are remembered by the platform (not in memory) until
    /// [`RecordSink::end_full_pass`]. Starting a pass abandons any earlier unfinished pass of
    /// the same kind. The default refuses. A wrapping sink must forward this.
    fn begin_full_pass<'a>(&'a self, kind: &'a str) -> BoxFuture<'a, Result<String, SinkError>> {
        Box::pin(async move {
            Err(SinkError::new(format!(
                "this record sink cannot run full passes (asked for kind {kind:?})"
            )))
        })
    }

    /// Remembers that the full pass `pass` saw the records `ids` (of the pass's kind). The
    /// [`Context`] calls it with the ids of every upsert of that kind, right before the commit
    /// that stores them. The default refuses. A wrapping sink must forward this.
    fn full_pass_seen<'a>(
        &'a self,
        pass: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let _ = ids;
            Err(SinkError::new(format!(
                "this record sink cannot run full passes (pass {pass})"
            )))
        })
    }

    /// Ends the full pass `pass` of `kind`: tombstones the installation's live records of
    /// `kind` that the pass did not see (and that nobody wrote since the pass began), forgets
    /// the pass, and returns how many were tombstoned. The default refuses. A wrapping sink
    /// must forward this.
    fn end_full_pass<'a>(
        &'a self,
        pass: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<u64, SinkError>> {
        Box::pin(async move {
            Err(SinkError::new(format!(
                "this record sink cannot run full passes (pass {pass}, kind {kind:?})"
            )))
        })
    }
}

/// What the platform did when a connector provisioned an object kind
/// ([`Context::provision_object`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisionedObject {
    /// The kind.
    pub kind: String,
    /// What happened.
    pub outcome: ProvisionOutcome,
    /// The definition's version now (bumped on every change).
    pub version: i64,
    /// Fields this version added.
    pub added_fields: Vec<String>,
    /// Fields of the stored definition that the spec no longer has: kept declared (a connector
    /// cannot remove fields, so formulas and workflows reading them keep working); records
    /// hold whatever the connector writes for them from now on.
    pub kept_fields: Vec<String>,
    /// Fields that switched between a formula and a synced value of the same type (their
    /// records keep their values; formulas are recomputed where they apply).
    pub migrated_fields: Vec<String>,
    /// Existing records whose formula fields were recomputed because formulas changed.
    pub recomputed: u64,
}

/// What provisioning did to an object kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionOutcome {
    /// The kind is new.
    Created,
    /// The kind changed: a new version.
    Updated,
    /// Identical to the stored definition: nothing written.
    Unchanged,
}

const OUTBOUND_UNSUPPORTED: &str =
    "this record sink does not support outbound sync (pending platform changes)";

/// A platform-side change of one record, not pushed upstream yet.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformChange {
    /// The record's kind.
    pub kind: String,
    /// The record's external id: the upstream's id, or the platform's own id for a record
    /// created on the platform and not linked to an upstream object yet.
    pub id: String,
    /// The record's data as it is now (the platform's version).
    pub data: serde_json::Value,
    /// Incremented on every write of the record.
    pub version: i64,
    /// The upstream's last-modified time of the version last stored from the upstream; `None`
    /// for a record that never came from (nor was linked to) the upstream: create it there.
    pub source_updated_at: Option<Timestamp>,
    /// When the platform-side edit was made.
    pub platform_updated_at: Timestamp,
}

impl PlatformChange {
    /// True for a record that exists on the platform only (create it upstream, then link it).
    pub fn is_new(&self) -> bool {
        self.source_updated_at.is_none()
    }

    /// This change's position in the order of [`Context::pending_changes`].
    pub fn key(&self) -> ChangeKey {
        ChangeKey {
            platform_updated_at: self.platform_updated_at,
            id: self.id.clone(),
        }
    }

    /// The acknowledgement of this change, for the record now named `id`.
    pub fn ack(&self, id: &str, disposition: Disposition) -> ChangeAck {
        ChangeAck {
            kind: self.kind.clone(),
            id: id.to_owned(),
            platform_updated_at: self.platform_updated_at,
            disposition,
        }
    }
}

/// Where a page of pending changes starts: after this `(platform_updated_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChangeKey {
    /// The edit's time.
    pub platform_updated_at: Timestamp,
    /// The record's external id.
    pub id: String,
}

/// Which pending changes a [`RecordSink::pending_changes`] call reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeQuery<'a> {
    /// At most `limit` changes of `kind` ordered by `(platform_updated_at, id)`, after `after`.
    Page {
        /// The kind.
        kind: &'a str,
        /// Start after this key (`None`: from the oldest).
        after: Option<&'a ChangeKey>,
        /// At most this many.
        limit: usize,
    },
    /// The pending changes among these records of `kind` (any order).
    Ids {
        /// The kind.
        kind: &'a str,
        /// The external ids.
        ids: &'a [String],
    },
}

/// A record created on the platform now exists upstream: it takes the upstream's id.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamLink {
    /// The record's kind.
    pub kind: String,
    /// Its current (platform) external id.
    pub platform_id: String,
    /// The upstream's id, its external id from now on. A record already stored under that id
    /// (pulled before the link) is replaced by the linked one.
    pub upstream_id: String,
    /// The upstream's last-modified time of the object, stored as the record's
    /// `source_updated_at` (so the record no longer counts as new).
    pub source_updated_at: Timestamp,
    /// The upstream's version of the data, to store in place of the platform's (when the
    /// upstream's version won a conflict); `None` keeps the platform's data.
    pub data: Option<serde_json::Value>,
}

/// What became of a platform-side change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// The upstream accepted it.
    Pushed,
    /// It lost a conflict to the upstream's version, which replaced it on the platform.
    Superseded,
}

impl Disposition {
    /// The name stored and shown (`pushed`, `superseded`).
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Pushed => "pushed",
            Disposition::Superseded => "superseded",
        }
    }
}

/// The acknowledgement of a platform-side change: it (and every earlier edit of the record) is
/// dealt with.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeAck {
    /// The record's kind.
    pub kind: String,
    /// The record's external id (after the links of the same commit).
    pub id: String,
    /// The edit acknowledged ([`PlatformChange::platform_updated_at`]).
    pub platform_updated_at: Timestamp,
    /// What became of it.
    pub disposition: Disposition,
}

/// Links and acknowledgements committed together ([`Context::commit_outbound`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboundCommit {
    /// Records created upstream, renamed to their upstream ids (applied first).
    pub links: Vec<UpstreamLink>,
    /// Changes dealt with.
    pub acks: Vec<ChangeAck>,
}

/// What a sync did in the outbound direction (as `ivory sync --json` prints it under
/// `outbound`, and as the sync run records it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboundTotals {
    /// Platform-side changes the upstream accepted (creates included).
    pub pushed: u64,
    /// Records created on the platform that now carry their upstream ids ([`UpstreamLink`]s
    /// committed): created upstream, or found there already (a create whose write-back was
    /// lost).
    pub created: u64,
    /// Platform-side changes that lost a conflict to the upstream's version.
    pub superseded: u64,
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
    outbound_state: OutboundState,
    /// Full passes in progress: `(kind, pass id)`.
    full_passes: Vec<(String, String)>,
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
            outbound_state: OutboundState::default(),
            full_passes: Vec::new(),
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
        self.note_full_pass_ids().await?;
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

/// Custom objects and full passes.
///
/// ## Provisioning an object kind
/// [`Context::provision_object`] lets a connector whose schema is only known at run time (an
/// Airtable base's tables) provision object kinds, as a manifest's `objects` block does for a
/// fixed schema. The platform computes the kind's formula fields on every write.
///
/// ## Full passes: deletions without a change feed
/// An upstream that has no deletion feed shows deletions only by what a complete listing no
/// longer returns. Bracket such a listing with [`Context::begin_full_pass`] and
/// [`Context::end_full_pass`]: the platform remembers every id upserted in between (in its
/// store, so memory stays flat whatever the count) and, at the end, tombstones the
/// installation's live records of that kind that were not seen. A pass that does not end (the
/// sync failed or crashed, the listing stopped early) deletes nothing; beginning a pass again
/// (say, after restarting an expired listing) starts it afresh.
impl Context {
    /// Provisions the custom object kind `spec` for this installation's tenant: created when
    /// new; otherwise migrated when the change is additive, and refused (a
    /// [`SinkError`] naming each field) when it is not.
    ///
    /// - New fields and changed formulas apply; existing records are recomputed when formulas
    ///   change.
    /// - A field the stored definition has but `spec` lacks is **kept** (reported in
    ///   [`ProvisionedObject::kept_fields`]): an upstream field that disappears (or is
    ///   renamed) does not delete the platform's field, so nothing reading it breaks; records
    ///   hold whatever the connector writes for it from then on.
    /// - A field switching between a formula and a synced value of the same value type is
    ///   migrated ([`ProvisionedObject::migrated_fields`]).
    /// - A retyped field, or a kind owned by another installation of the tenant, is refused.
    ///
    /// Provisioning the same spec again writes nothing. Staged records are not flushed: they
    /// are computed with the new definition when they commit.
    pub async fn provision_object(
        &mut self,
        spec: &ObjectSpec,
    ) -> Result<ProvisionedObject, Error> {
        validate_kind(&spec.kind).map_err(|reason| Error::InvalidRecord {
            kind: spec.kind.clone(),
            id: String::new(),
            reason,
        })?;
        Ok(self.parts.sink.provision_object(spec).await?)
    }

    /// Begins a full pass over this installation's records of `kind` (see the section above).
    /// Staged records are committed first. Beginning a pass of a kind whose pass is in progress
    /// restarts it: the ids seen so far are forgotten.
    pub async fn begin_full_pass(&mut self, kind: &str) -> Result<(), Error> {
        validate_kind(kind).map_err(|reason| Error::InvalidRecord {
            kind: kind.to_owned(),
            id: String::new(),
            reason,
        })?;
        self.flush().await?;
        let pass = self.parts.sink.begin_full_pass(kind).await?;
        self.full_passes.retain(|(k, _)| k != kind);
        self.full_passes.push((kind.to_owned(), pass));
        Ok(())
    }

    /// Ends the full pass of `kind`: commits what is staged, then tombstones the installation's
    /// live records of `kind` that the pass did not see. Returns how many were tombstoned
    /// (they count as deleted in the sync's totals). Without a pass in progress this is
    /// refused.
    pub async fn end_full_pass(&mut self, kind: &str) -> Result<u64, Error> {
        if !self.full_passes.iter().any(|(k, _)| k == kind) {
            return Err(SinkError::new(format!(
                "no full pass of kind {kind:?} is in progress (call begin_full_pass first)"
            ))
            .into());
        }
        self.flush().await?;
        let Some(index) = self.full_passes.iter().position(|(k, _)| k == kind) else {
            return Ok(0);
        };
        let (kind, pass) = self.full_passes.remove(index);
        let deleted = self.parts.sink.end_full_pass(&pass, &kind).await?;
        self.totals.deleted += deleted;
        Ok(deleted)
    }

    /// Kinds with a full pass in progress.
    pub fn full_passes(&self) -> impl Iterator<Item = &str> {
        self.full_passes.iter().map(|(kind, _)| kind.as_str())
    }

    /// Tells the sink which staged upserts the full passes in progress see, before the commit
    /// that stores them (a pass ends only after every such commit succeeded, so remembering
    /// an id whose commit then fails can only spare a record, never delete one).
    async fn note_full_pass_ids(&mut self) -> Result<(), Error> {
        for (kind, pass) in &self.full_passes {
            let ids: Vec<String> = self
                .staged
                .iter()
                .filter_map(|op| match op {
                    RecordOp::Upsert { kind: k, record } if k == kind => Some(record.id.clone()),
                    _ => None,
                })
                .collect();
            if !ids.is_empty() {
                self.parts.sink.full_pass_seen(pass, &ids).await?;
            }
        }
        Ok(())
    }
}

/// Conflicts and outbound sync (see the module doc).
impl Context {
    /// Sets the manifest's conflict policy ([`Context::resolve_conflict`] decides with it; the
    /// runtime sets it from `connection.sync.conflictPolicy`). Without it: `source_wins`.
    #[must_use]
    pub fn with_conflict_policy(mut self, policy: ConflictPolicy) -> Self {
        self.outbound_state.policy = policy;
        self
    }

    /// The conflict policy of this sync.
    pub fn conflict_policy(&self) -> ConflictPolicy {
        self.outbound_state.policy
    }

    /// Decides a conflict (a record changed upstream at `source_updated_at` and on the platform
    /// at `platform_updated_at`, both since the last sync) with this sync's policy, and counts
    /// the decision for the sync run. See [`crate::conflict`] for the rules and the tie rule.
    pub fn resolve_conflict(
        &mut self,
        source_updated_at: Timestamp,
        platform_updated_at: Timestamp,
    ) -> Resolution {
        let resolution = resolve(
            self.outbound_state.policy,
            source_updated_at,
            platform_updated_at,
        );
        self.outbound_state.conflicts.record(resolution);
        tracing::debug!(
            outcome = ?resolution.outcome,
            rule = ?resolution.rule,
            %source_updated_at,
            %platform_updated_at,
            "Conflict resolved."
        );
        resolution
    }

    /// Conflicts decided in this sync so far.
    pub fn conflicts(&self) -> ConflictCounts {
        self.outbound_state.conflicts
    }

    /// What this sync did in the outbound direction so far.
    pub fn outbound_totals(&self) -> OutboundTotals {
        self.outbound_state.totals
    }

    /// A page of pending platform-side changes of `kind`, oldest edit first, after `after`
    /// (continue with the last change's [`PlatformChange::key`]).
    pub async fn pending_changes(
        &self,
        kind: &str,
        after: Option<&ChangeKey>,
        limit: usize,
    ) -> Result<Vec<PlatformChange>, Error> {
        Ok(self
            .parts
            .sink
            .pending_changes(&ChangeQuery::Page {
                kind,
                after,
                limit: limit.max(1),
            })
            .await?)
    }

    /// The pending platform-side changes among the records of `kind` with these ids (for
    /// conflict detection while pulling them).
    pub async fn pending_changes_for(
        &self,
        kind: &str,
        ids: &[String],
    ) -> Result<Vec<PlatformChange>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .parts
            .sink
            .pending_changes(&ChangeQuery::Ids { kind, ids })
            .await?)
    }

    /// Commits links and acknowledgements of the outbound direction in one transaction (see the
    /// module doc). Records staged by [`Context::upsert`] are **not** flushed first: to let the
    /// upstream's version win a conflict, acknowledge the platform's change (superseded) and
    /// then upsert the upstream's version — a crash in between leaves the edit acknowledged and
    /// the window uncommitted, so the re-run re-pulls the upstream's version.
    pub async fn commit_outbound(&mut self, commit: &OutboundCommit) -> Result<(), Error> {
        if commit.links.is_empty() && commit.acks.is_empty() {
            return Ok(());
        }
        for link in &commit.links {
            validate_kind(&link.kind).map_err(|reason| Error::InvalidRecord {
                kind: link.kind.clone(),
                id: link.platform_id.clone(),
                reason,
            })?;
            if link.upstream_id.is_empty() {
                return Err(Error::InvalidRecord {
                    kind: link.kind.clone(),
                    id: link.platform_id.clone(),
                    reason: "empty upstream id".into(),
                });
            }
        }
        self.parts.sink.commit_outbound(commit).await?;
        let totals = &mut self.outbound_state.totals;
        for ack in &commit.acks {
            match ack.disposition {
                Disposition::Pushed => totals.pushed += 1,
                Disposition::Superseded => totals.superseded += 1,
            }
        }
        totals.created += commit.links.len() as u64;
        Ok(())
    }
}

/// The conflict policy and the outbound counters of one sync.
#[derive(Debug, Clone, Copy)]
struct OutboundState {
    policy: ConflictPolicy,
    conflicts: ConflictCounts,
    totals: OutboundTotals,
}

impl Default for OutboundState {
    fn default() -> Self {
        Self {
            policy: ConflictPolicy::SourceWins,
            conflicts: ConflictCounts::default(),
            totals: OutboundTotals::default(),
        }
    }
}

fn max_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
