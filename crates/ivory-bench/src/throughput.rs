//! Sync throughput end to end into SQLite, one child process per dataset size, the fake
//! upstream in another process.

use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::child::ChildReport;
use crate::fake::{FakeProcess, unix_ns_now};

/// `ivory-bench throughput`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ThroughputArgs {
    /// Dataset sizes (records), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000, 1_000_000])]
    pub(crate) sizes: Vec<u64>,
    /// Padding bytes per item (924 makes each item's JSON ≈ 1 KiB).
    #[arg(long, default_value_t = crate::ITEM_PAD)]
    pub(crate) pad: usize,
    /// Items per page.
    #[arg(long, default_value_t = 100)]
    pub(crate) page_size: u32,
    /// The manifest's rateLimitPerMinute and burst (100000 is the manifest maximum: pacing
    /// never holds a request back for these sizes).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) rate: u32,
    /// Where the stores are created (a temporary directory inside it, removed after).
    #[arg(long)]
    pub(crate) dir: Option<std::path::PathBuf>,
    /// Sync with the connector variant that fetches one page ahead (`prefetch.rs`) instead of
    /// the testkit's `ItemsConnector`.
    #[arg(long)]
    pub(crate) prefetch: bool,
}

/// One size's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ThroughputRow {
    pub(crate) records: u64,
    /// Spawn to exit of the syncing process, ms.
    pub(crate) process_ms: f64,
    /// `Runner::sync` alone, ms.
    pub(crate) sync_ms: f64,
    /// Spawn to the fake's arrival of the first request, ms.
    pub(crate) first_request_ms: f64,
    /// The child's report.
    pub(crate) child: ChildReport,
    /// Requests the fake served.
    pub(crate) served: u64,
    /// First to last request, as the fake saw them, ms.
    pub(crate) span_ms: f64,
}

impl ThroughputRow {
    /// Records per second over the whole process (spawn to exit).
    pub(crate) fn per_second(&self) -> f64 {
        self.records as f64 / (self.process_ms / 1e3)
    }

    /// Records per second from the first request to the last (the steady state: no process
    /// start, no final commit).
    pub(crate) fn span_per_second(&self) -> f64 {
        self.records as f64 / (self.span_ms / 1e3)
    }

    /// Records per second over `Runner::sync`.
    pub(crate) fn sync_per_second(&self) -> f64 {
        self.records as f64 / (self.sync_ms / 1e3)
    }
}

/// Runs every size.
pub(crate) fn run(args: &ThroughputArgs) -> anyhow::Result<Vec<ThroughputRow>> {
    let mut rows = Vec::new();
    for &size in &args.sizes {
        eprintln!("throughput: {size} records …");
        let row = one(args, size)?;
        eprintln!(
            "  {:.0} records/s end to end ({:.0} in the sync), {:.1} MiB peak RSS, first request after {:.1} ms",
            row.per_second(),
            row.sync_per_second(),
            row.child.usage.peak_rss_kib as f64 / 1024.0,
            row.first_request_ms
        );
        rows.push(row);
    }
    Ok(rows)
}

pub(crate) fn temp_dir(base: Option<&std::path::Path>) -> anyhow::Result<tempfile::TempDir> {
    Ok(match base {
        Some(base) => {
            std::fs::create_dir_all(base)?;
            tempfile::Builder::new()
                .prefix("ivory-bench-")
                .tempdir_in(base)?
        }
        None => tempfile::Builder::new().prefix("ivory-bench-").tempdir()?,
    })
}

fn one(args: &ThroughputArgs, size: u64) -> anyhow::Result<ThroughputRow> {
    let mut fake = FakeProcess::start(size, args.pad, None)?;
    let dir = temp_dir(args.dir.as_deref())?;
    let db = dir.path().join("ivory.db");
    let db = db.to_str().context("non-UTF-8 temp path")?;
    crate::child::prepare_store(db, args.rate, args.rate)?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["sync-child", "--url", fake.url(), "--db", db])
        .args(["--rate", &args.rate.to_string()])
        .args(["--burst", &args.rate.to_string()])
        .args(["--page-size", &args.page_size.to_string()])
        .args(args.prefetch.then_some("--prefetch"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let spawned_ns = unix_ns_now();
    let started = Instant::now();
    let output = command.output().context("running the sync child")?;
    let process_ms = started.elapsed().as_secs_f64() * 1e3;
    if !output.status.success() {
        bail!("the sync child failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .context("the sync child printed nothing")?;
    let child: ChildReport =
        serde_json::from_str(line).with_context(|| format!("child report {line:?}"))?;
    if let Some(error) = &child.error {
        bail!("the sync failed: {error}");
    }
    if child.records != size {
        bail!("synced {} records, expected {size}", child.records);
    }
    let stats = fake.stats(false)?;
    let first = stats.first_unix_ns.context("the fake saw no request")?;
    Ok(ThroughputRow {
        records: child.records,
        process_ms,
        sync_ms: child.sync_ms,
        first_request_ms: first.saturating_sub(spawned_ns) as f64 / 1e6,
        served: stats.requests,
        span_ms: stats.last_unix_ns.unwrap_or(first).saturating_sub(first) as f64 / 1e6,
        child,
    })
}
