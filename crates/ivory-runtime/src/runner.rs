//! The sync runner: runs one connector for one installation, one run at a time.
//!
//! 1. Ensures the tenant's installation exists and takes its lease (a second concurrent run is
//!    refused with [`RunError::AlreadyRunning`], naming the holder; a lease whose process died
//!    is taken over once it expires — at once when the holder was a dead process on this host).
//! 2. Builds the [`Context`]: committed cursor (none on a full refresh), the tenant's
//!    credentials, a [`Fetcher`] paced at the manifest's rate, and the store as the
//!    [`RecordSink`](ivory_sdk::RecordSink), whose every commit renews and checks the lease.
//! 3. Runs the connector, flushes what it staged, and records the run with its counts (its
//!    conflicts per outcome and outbound totals included), final cursor and error. A failed
//!    run keeps everything it committed; the next run resumes from the committed cursor.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use ivory_sdk::conflict::ConflictCounts;
use ivory_sdk::context::OutboundTotals;
use ivory_sdk::fetch::RetryPolicy;
use ivory_sdk::fetch::TokenSource;
use ivory_sdk::manifest::Manifest;
use ivory_sdk::{
    Clock, Context, ContextParts, Credentials, DynConnector, FetchConfig, Fetcher, HttpConfig,
    Progress, RecordSink,
};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;

use crate::store::{InstallationSink, LockHolder, NewRun, RunStatus, RunTotals, Store, StoreError};

/// Options of one sync.
#[derive(Clone)]
pub struct SyncOptions {
    /// Ignore the committed cursor and pull everything.
    pub full_refresh: bool,
    /// The upstream base URL override (a local fake in tests and the demo).
    pub base_url: Option<Url>,
    /// HTTP client settings ([`HttpConfig::virtual_time`] in paused-clock tests).
    pub http: HttpConfig,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The run's lease, renewed on every commit.
    pub lease: Duration,
    /// Staged records flushed once this many accumulate.
    pub flush_threshold: usize,
    /// A progress observer.
    pub progress: Option<Arc<dyn Progress>>,
    /// Seed of the backoff jitter.
    pub jitter_seed: Option<u64>,
    /// Where request credentials come from (an OAuth source that refreshes); `None`: the
    /// `credentials` passed to [`Runner::sync`], as a static bearer.
    pub token_source: Option<Arc<dyn TokenSource>>,
    /// Wraps the store's sink: certification and tests inject faults between the connector
    /// and the store with it (a crash inside a commit, say). `None` in production.
    pub wrap_sink: Option<SinkWrapper>,
    /// Cancelled to stop the run at the next page boundary (a graceful shutdown): the run ends
    /// [`RunStatus::Interrupted`] with everything it committed kept. `None`: runs to the end.
    pub stop: Option<CancellationToken>,
    /// Renew the run's lease this often even between commits (a worker's heartbeat, so a
    /// short lease can detect a dead worker quickly). `None`: commits renew it.
    pub heartbeat: Option<Duration>,
    /// Share the installation's rate limit with every other process on the store
    /// ([`StoreRateLimit`](crate::store::StoreRateLimit)): workers and servers on one
    /// PostgreSQL together stay within `rateLimitPerMinute`. Off: this run paces itself alone.
    pub shared_rate_limit: bool,
}

/// A function that wraps the run's [`RecordSink`] (fault injection).
pub type SinkWrapper = Arc<dyn Fn(Arc<dyn RecordSink>) -> Arc<dyn RecordSink> + Send + Sync>;

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("full_refresh", &self.full_refresh)
            .field("base_url", &self.base_url.as_ref().map(Url::as_str))
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            full_refresh: false,
            base_url: None,
            http: HttpConfig::default(),
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(300),
            flush_threshold: 1000,
            progress: None,
            jitter_seed: None,
            wrap_sink: None,
            token_source: None,
            stop: None,
            heartbeat: None,
            shared_rate_limit: false,
        }
    }
}

/// The outcome of a sync, as `ivory sync --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncSummary {
    /// The run id.
    pub run_id: String,
    /// The tenant.
    pub tenant: String,
    /// The connector.
    pub connector: String,
    /// The installation.
    pub installation: String,
    /// How the run ended.
    pub status: RunStatus,
    /// Records upserted (created + updated + unchanged).
    pub records_upserted: u64,
    /// The counts.
    #[serde(flatten)]
    pub totals: RunTotals,
    /// The committed cursor at the end (`kind:value`), if any.
    pub cursor: Option<String>,
    /// Wall time of the run, in milliseconds.
    pub duration_ms: u64,
    /// Notes from the connector.
    pub notes: Vec<String>,
    /// The error of a failed run.
    pub error: Option<String>,
    /// Records changed on both sides since the last sync, per outcome of the conflict policy.
    pub conflicts: ConflictCounts,
    /// Platform-side changes pushed upstream (created upstream, superseded by the upstream).
    pub outbound: OutboundTotals,
}

/// Why a sync did not run, or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Another run of this installation holds the lease.
    #[error(
        "a sync of installation {installation} is already running (run {}, process {}, lease until {}); try again when it finishes",
        holder.run_id, holder.holder, holder.expires_at
    )]
    AlreadyRunning {
        /// The installation.
        installation: String,
        /// Who holds it.
        holder: LockHolder,
    },
    /// The tenant has not installed this connector (or uninstalled it).
    #[error(
        "tenant {tenant} has not installed {connector}: run `ivory install {connector} --tenant {tenant}` first"
    )]
    NotInstalled {
        /// The tenant.
        tenant: String,
        /// The connector.
        connector: String,
    },
    /// The connector now calls hosts the tenant admin did not consent to.
    #[error("installation {installation} calls hosts not consented to ({}); upgrade it with `ivory install` to review and approve", hosts.join(", "))]
    ConsentRequired {
        /// The installation.
        installation: String,
        /// The hosts without consent.
        hosts: Vec<String>,
    },
    /// The installation's grant was revoked upstream: the tenant must connect again.
    #[error("installation {installation} needs the tenant to connect again: {reason}")]
    NeedsReconsent {
        /// The installation.
        installation: String,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sync could not be set up (bad base URL, unusable credentials, …).
    #[error("cannot start the sync: {0}")]
    Setup(String),
    /// The run was asked to stop ([`SyncOptions::stop`]) and stopped at a page boundary; what
    /// it committed is kept and the next run resumes from the committed cursor.
    #[error("sync of {} for tenant {} stopped at a page boundary (shutdown); the next run resumes from the committed cursor", summary.connector, summary.tenant)]
    Interrupted {
        /// The run as recorded.
        summary: Box<SyncSummary>,
    },
    /// The connector's sync failed; what it committed before the failure is kept.
    #[error("sync failed: {error}")]
    Failed {
        /// The run as recorded.
        summary: Box<SyncSummary>,
        /// The connector's error.
        error: ivory_sdk::Error,
    },
}

/// Runs syncs against a store.
#[derive(Debug, Clone)]
pub struct Runner {
    store: Store,
    clock: Clock,
    holder: String,
}

impl Runner {
    /// A runner on `store`, timing everything on `clock`.
    pub fn new(store: Store, clock: Clock) -> Self {
        Self {
            store,
            clock,
            holder: process_holder(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `connector` (described by `manifest`) for `tenant`.
    pub async fn sync(
        &self,
        tenant: &str,
        manifest: &Manifest,
        connector: &dyn DynConnector,
        credentials: Credentials,
        options: SyncOptions,
    ) -> Result<SyncSummary, RunError> {
        let started = self.clock.elapsed();
        crate::store::validate_tenant(tenant)?;
        let installation = self
            .store
            .installation(tenant, &manifest.id)
            .await?
            .filter(|i| i.status != "uninstalled")
            .ok_or_else(|| RunError::NotInstalled {
                tenant: tenant.to_owned(),
                connector: manifest.id.clone(),
            })?;
        if let Some(consent) = self.store.consent(&installation.id).await? {
            let unconsented: Vec<String> = manifest
                .hosts
                .iter()
                .filter(|h| !consent.hosts.contains(*h))
                .cloned()
                .collect();
            if !unconsented.is_empty() {
                return Err(RunError::ConsentRequired {
                    installation: installation.id,
                    hosts: unconsented,
                });
            }
        }
        if installation.status == "needs_reconsent" {
            return Err(RunError::NeedsReconsent {
                installation: installation.id,
                reason: installation
                    .status_reason
                    .unwrap_or_else(|| "the grant was revoked".into()),
            });
        }
        let run_id = format!("run_{}", uuid::Uuid::now_v7().simple());
        self.take_lease(&installation.id, tenant, &run_id, &options)
            .await?;

        let span = tracing::info_span!(
            "sync",
            tenant_id = %tenant,
            connector = %manifest.id,
            installation = %installation.id,
            run_id = %run_id,
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let heartbeat = options.heartbeat.map(|every| {
            let store = self.store.clone();
            let clock = self.clock.clone();
            let installation = installation.id.clone();
            let run = run_id.clone();
            let lease = options.lease;
            tokio::spawn(async move {
                loop {
                    clock.sleep(every).await;
                    let until = clock
                        .now()
                        .checked_add(SignedDuration::try_from(lease).unwrap_or(SignedDuration::MAX))
                        .unwrap_or(Timestamp::MAX);
                    match store.renew_lease(&installation, &run, until).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(error) => tracing::warn!(%error, "Renewing the sync lease failed."),
                    }
                }
            })
        });
        let outcome = self
            .run_connector(
                tenant,
                manifest,
                connector,
                credentials,
                &options,
                &installation,
                &run_id,
            )
            .instrument(span)
            .await;
        if let Some(heartbeat) = heartbeat {
            heartbeat.abort();
        }
        let (mut summary, result) = match outcome {
            Ok(pair) => pair,
            Err(setup) => {
                let totals = RunTotals::default();
                let message = setup.to_string();
                self.store
                    .finish_run(
                        &installation.id,
                        &run_id,
                        RunStatus::Failed,
                        &totals,
                        None,
                        Some(&message),
                        self.clock.now(),
                    )
                    .await?;
                return Err(setup);
            }
        };
        summary.duration_ms =
            u64::try_from((self.clock.elapsed() - started).as_millis()).unwrap_or(u64::MAX);
        let cursor = self.store.cursor(&installation.id).await?;
        summary.cursor = cursor.as_ref().map(ToString::to_string);
        let error_text = result.as_ref().err().map(ToString::to_string);
        summary.error.clone_from(&error_text);
        self.store
            .finish_run(
                &installation.id,
                &run_id,
                summary.status,
                &summary.totals,
                cursor.as_ref(),
                error_text.as_deref(),
                self.clock.now(),
            )
            .await?;
        self.store
            .record_run_outbound(&run_id, &summary.conflicts, &summary.outbound)
            .await?;
        match result {
            Ok(()) => Ok(summary),
            Err(_) if summary.status == RunStatus::Interrupted => Err(RunError::Interrupted {
                summary: Box::new(summary),
            }),
            Err(error) => Err(RunError::Failed {
                summary: Box::new(summary),
                error,
            }),
        }
    }

    async fn take_lease(
        &self,
        installation: &str,
        tenant: &str,
        run_id: &str,
        options: &SyncOptions,
    ) -> Result<(), RunError> {
        for attempt in 0..2 {
            let now = self.clock.now();
            let until = now
                .checked_add(SignedDuration::try_from(options.lease).unwrap_or(SignedDuration::MAX))
                .unwrap_or(Timestamp::MAX);
            match self
                .store
                .begin_run(&NewRun {
                    installation_id: installation,
                    tenant,
                    run_id,
                    holder: &self.holder,
                    full_refresh: options.full_refresh,
                    now,
                    lease_until: until,
                })
                .await?
            {
                Ok(()) => return Ok(()),
                Err(holder) if attempt == 0 && holder_is_dead(&holder.holder) => {
                    tracing::warn!(
                        run_id = %holder.run_id,
                        holder = %holder.holder,
                        "Taking over the lease of a sync whose process is gone."
                    );
                    self.store
                        .expire_lease(installation, &holder.run_id)
                        .await?;
                }
                Err(holder) => {
                    return Err(RunError::AlreadyRunning {
                        installation: installation.to_owned(),
                        holder,
                    });
                }
            }
        }
        Err(RunError::Setup("could not take the sync lease".into()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_connector(
        &self,
        tenant: &str,
        manifest: &Manifest,
        connector: &dyn DynConnector,
        credentials: Credentials,
        options: &SyncOptions,
        installation: &crate::store::Installation,
        run_id: &str,
    ) -> Result<(SyncSummary, Result<(), ivory_sdk::Error>), RunError> {
        let sync = &manifest.connection.sync;
        let fetcher = self.fetcher_for(manifest, &installation.id, &credentials, options)?;
        let cursor = if options.full_refresh {
            None
        } else {
            self.store.cursor(&installation.id).await?
        };
        let sink = InstallationSink::new(
            self.store.clone(),
            tenant,
            &installation.id,
            Some(run_id),
            self.clock.clone(),
            options.lease,
        );
        let mut ctx = Context::new(ContextParts {
            tenant: tenant.to_owned(),
            installation: installation.id.clone(),
            connector: manifest.id.clone(),
            cursor_kind: sync.cursor,
            cursor,
            lookback: Duration::from_secs(u64::from(sync.lookback_seconds.unwrap_or(0))),
            credentials,
            settings: installation.settings.clone(),
            fetcher: fetcher.clone(),
            sink: match &options.wrap_sink {
                Some(wrap) => wrap(Arc::new(sink)),
                None => Arc::new(sink),
            },
            progress: options.progress.clone(),
            flush_threshold: options.flush_threshold,
        })
        .with_conflict_policy(sync.conflict_policy);
        tracing::info!(full_refresh = options.full_refresh, cursor = ?ctx.cursor(), "Sync started.");
        let mut notes = Vec::new();
        let result = match connector.sync_boxed(&mut ctx).await {
            Ok(done) => {
                notes = done.notes;
                ctx.finish().await.map(|_| ())
            }
            Err(error) => Err(error),
        };
        let records = ctx.totals();
        let fetched = fetcher.stats();
        let totals = RunTotals {
            records_created: records.created,
            records_updated: records.updated,
            records_unchanged: records.unchanged,
            records_deleted: records.deleted,
            pages: fetched.pages,
            requests: fetched.requests,
            retries: fetched.retries,
            responses_429: fetched.responses_429,
            slept_ms: fetched.slept_ms,
        };
        match &result {
            Ok(()) => tracing::info!(
                records = records.upserted(),
                requests = fetched.requests,
                "Sync finished."
            ),
            Err(error) if error.is_stopped() => {
                tracing::info!("Sync stopped at a page boundary (shutdown).");
            }
            Err(error) => tracing::warn!(%error, "Sync failed."),
        }
        let span = tracing::Span::current();
        match &result {
            Ok(()) => span.record("outcome", "succeeded"),
            Err(error) if error.is_stopped() => span.record("outcome", "interrupted"),
            Err(_) => span
                .record("outcome", "failed")
                .record("otel.status_code", "error"),
        };
        let summary = SyncSummary {
            run_id: run_id.to_owned(),
            tenant: tenant.to_owned(),
            connector: manifest.id.clone(),
            installation: installation.id.clone(),
            status: match &result {
                Ok(()) => RunStatus::Succeeded,
                Err(error) if error.is_stopped() => RunStatus::Interrupted,
                Err(_) => RunStatus::Failed,
            },
            records_upserted: records.upserted(),
            totals,
            cursor: None,
            duration_ms: 0,
            notes,
            error: None,
            conflicts: ctx.conflicts(),
            outbound: ctx.outbound_totals(),
        };
        Ok((summary, result))
    }
}

impl Runner {
    /// The paced fetcher of an installation: the manifest's rate, burst and hosts, the
    /// options' base URL, retry policy and credentials.
    pub(crate) fn fetcher_for(
        &self,
        manifest: &Manifest,
        installation: &str,
        credentials: &Credentials,
        options: &SyncOptions,
    ) -> Result<Fetcher, RunError> {
        let sync = &manifest.connection.sync;
        let rate = NonZeroU32::new(sync.rate_limit_per_minute).ok_or_else(|| {
            RunError::Setup("the manifest's rateLimitPerMinute must be > 0".into())
        })?;
        let burst = sync
            .burst
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN);
        let mut fetch = FetchConfig::new(rate, manifest.hosts.clone());
        fetch.burst = burst;
        fetch.base_url_override = options.base_url.clone();
        fetch.retry = options.retry.clone();
        fetch.http = options.http.clone();
        if let Some(source) = &options.token_source {
            fetch.auth = Some(source.clone());
        } else if let Some(secret) = credentials.bearer() {
            fetch = fetch.with_bearer(secret.clone());
        }
        fetch.jitter_seed = options.jitter_seed;
        fetch.stop.clone_from(&options.stop);
        if options.shared_rate_limit {
            fetch.shared_rate_limit = Some(crate::store::StoreRateLimit::new(
                self.store.clone(),
                installation,
                self.clock.clone(),
            ));
        }
        Fetcher::new(fetch, self.clock.clone()).map_err(|e| RunError::Setup(e.to_string()))
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

/// This process as lease holders and job claimants name it: `host:pid`.
pub fn process_holder() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// True when `holder` (`host:pid`) names a process on this host that no longer exists.
fn holder_is_dead(holder: &str) -> bool {
    let Some((host, pid)) = holder.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == hostname()
        && pid != std::process::id()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}
