//! `ivory-bench sync-child`: one sync of the items connector into a fresh SQLite store, in a
//! process of its own, set up as `ivory sync` sets itself up (a two-worker tokio runtime, a
//! `warn` log filter on stderr). It prints one JSON line of [`ChildReport`], including its own
//! CPU time and peak RSS.

use std::time::{Duration, Instant};

use ivory_runtime::{RunError, Runner, Store, SyncOptions};
use ivory_sdk::manifest::{CursorKind, Manifest};
use ivory_sdk::{Clock, Credentials, DynConnector};
use ivory_testkit::connectors::{ItemsConnector, items_manifest};
use serde::{Deserialize, Serialize};

use crate::prefetch::PrefetchingItemsConnector;
use crate::proc_stats::{Usage, usage};

/// `ivory-bench sync-child`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChildArgs {
    /// The fake upstream's base URL.
    #[arg(long)]
    pub(crate) url: String,
    /// The SQLite file (made by [`prepare_store`]).
    #[arg(long)]
    pub(crate) db: String,
    /// The manifest's `rateLimitPerMinute`.
    #[arg(long)]
    pub(crate) rate: u32,
    /// The manifest's `burst`.
    #[arg(long, default_value_t = 1)]
    pub(crate) burst: u32,
    /// Items per page.
    #[arg(long, default_value_t = 100)]
    pub(crate) page_size: u32,
    /// Stop the sync (drop it, as a killed process would) after this many seconds.
    #[arg(long)]
    pub(crate) max_seconds: Option<f64>,
    /// Use the connector variant that fetches one page ahead (see `prefetch.rs`).
    #[arg(long)]
    pub(crate) prefetch: bool,
}

/// What the child reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChildReport {
    /// Records the run stored (created + updated + unchanged).
    pub(crate) records: u64,
    /// Requests the fetcher sent.
    pub(crate) requests: u64,
    /// 429 answers the fetcher saw.
    pub(crate) responses_429: u64,
    /// `Runner::sync` wall time, milliseconds.
    pub(crate) sync_ms: f64,
    /// Process start (`main`) to the end, milliseconds.
    pub(crate) main_ms: f64,
    /// Stopped by `--max-seconds`.
    pub(crate) stopped: bool,
    /// The sync's error, if it failed.
    pub(crate) error: Option<String>,
    /// Size of the store file plus its WAL after the sync, bytes.
    pub(crate) db_bytes: u64,
    /// CPU time and memory of this process at the end.
    pub(crate) usage: Usage,
}

/// Runs the sync and prints the report.
pub(crate) fn run(args: &ChildArgs, main_started: Instant) -> anyhow::Result<()> {
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut report = runtime.block_on(sync(args))?;
    drop(runtime);
    report.db_bytes = [
        args.db.clone(),
        format!("{}-wal", args.db),
        format!("{}-shm", args.db),
    ]
    .iter()
    .filter_map(|p| std::fs::metadata(p).ok())
    .map(|m| m.len())
    .sum();
    report.main_ms = main_started.elapsed().as_secs_f64() * 1e3;
    report.usage = usage();
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IVORY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The tenant of every benchmark sync.
const TENANT: &str = "tenant-bench";

fn bench_manifest(rate: u32, burst: u32) -> Manifest {
    let mut manifest = items_manifest("bench-items", CursorKind::OpaqueToken, rate);
    manifest.connection.sync.burst = Some(burst);
    manifest
}

/// Creates the store at `db` and installs the benchmark connector for the benchmark tenant,
/// as `ivory install` would before a first sync (run by the parent, before the measured child).
pub(crate) fn prepare_store(db: &str, rate: u32, burst: u32) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Store::open(db).await?;
        store
            .ensure_installation(
                TENANT,
                &bench_manifest(rate, burst),
                &Default::default(),
                jiff::Timestamp::now(),
            )
            .await?;
        store.close().await;
        Ok(())
    })
}

async fn sync(args: &ChildArgs) -> anyhow::Result<ChildReport> {
    let store = Store::open(&args.db).await?;
    let runner = Runner::new(store.clone(), Clock::system());
    let manifest = bench_manifest(args.rate, args.burst);
    let plain = ItemsConnector::new(args.page_size);
    let prefetching = PrefetchingItemsConnector {
        page_size: args.page_size,
    };
    let connector: &dyn DynConnector = if args.prefetch { &prefetching } else { &plain };
    let options = SyncOptions {
        base_url: Some(url::Url::parse(&args.url)?),
        ..SyncOptions::default()
    };
    let started = Instant::now();
    let run = runner.sync(TENANT, &manifest, connector, Credentials::None, options);
    let outcome = match args.max_seconds {
        Some(seconds) => tokio::time::timeout(Duration::from_secs_f64(seconds), run)
            .await
            .ok(),
        None => Some(run.await),
    };
    let sync_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut report = ChildReport {
        sync_ms,
        stopped: outcome.is_none(),
        ..ChildReport::default()
    };
    match outcome {
        Some(Ok(summary)) => {
            report.records = summary.records_upserted;
            report.requests = summary.totals.requests;
            report.responses_429 = summary.totals.responses_429;
        }
        Some(Err(RunError::Failed { summary, error })) => {
            report.records = summary.records_upserted;
            report.requests = summary.totals.requests;
            report.responses_429 = summary.totals.responses_429;
            report.error = Some(error.to_string());
        }
        Some(Err(other)) => report.error = Some(other.to_string()),
        None => {}
    }
    store.close().await;
    Ok(report)
}
