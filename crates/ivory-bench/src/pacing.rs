//! Pacing accuracy on the real clock: the fake enforces R requests per trailing minute with
//! 429s (`Retry-After: 60`); the connector declares R (burst 1); the sync runs in its own
//! process for the given duration and is then stopped. The fake's log is the judge.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::child::ChildReport;
use crate::fake::FakeProcess;

/// `ivory-bench pacing`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PacingArgs {
    /// R: the rate the fake enforces and the connector declares, requests per minute.
    #[arg(long, default_value_t = 600)]
    pub(crate) rpm: u32,
    /// The rate the connector declares (default: R). A lower value shows what a safety margin
    /// in the pacer would give; the ratio is always against R.
    #[arg(long)]
    pub(crate) declared: Option<u32>,
    /// How long the sync runs, seconds (counted from the first request).
    #[arg(long, default_value_t = 120.0)]
    pub(crate) seconds: f64,
    /// Items per page.
    #[arg(long, default_value_t = 100)]
    pub(crate) page_size: u32,
    /// Where the store is created.
    #[arg(long)]
    pub(crate) dir: Option<std::path::PathBuf>,
}

/// The result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PacingResult {
    pub(crate) rpm: u32,
    /// What the connector declared.
    pub(crate) declared: u32,
    pub(crate) seconds: f64,
    /// Requests the fake answered 200 within the window (from the first request, half-open).
    pub(crate) ok_in_window: u64,
    /// R × seconds / 60.
    pub(crate) declared_in_window: f64,
    /// 429 answers (whole run).
    pub(crate) too_many: u64,
    /// Requests (whole run).
    pub(crate) requests: u64,
    /// The most requests in any half-open 60 s window.
    pub(crate) max_in_minute: u64,
    /// Mean gap between consecutive requests, ms.
    pub(crate) mean_gap_ms: f64,
    /// Smallest gap between consecutive requests, ms.
    pub(crate) min_gap_ms: f64,
    /// The syncing process's report.
    pub(crate) child: ChildReport,
}

impl PacingResult {
    /// Achieved over declared.
    pub(crate) fn ratio(&self) -> f64 {
        self.ok_in_window as f64 / self.declared_in_window
    }
}

/// Runs it.
pub(crate) fn run(args: &PacingArgs) -> anyhow::Result<PacingResult> {
    eprintln!(
        "pacing: the fake enforces {} requests/minute, the connector declares {}, for {} s (real time) …",
        args.rpm,
        args.declared.unwrap_or(args.rpm),
        args.seconds
    );
    // Enough items that the listing outlasts the run.
    let pages = (f64::from(args.rpm) * args.seconds / 60.0 * 1.5).ceil() as u64 + 10;
    let count = pages * u64::from(args.page_size);
    let mut fake = FakeProcess::start(count, crate::ITEM_PAD, Some(args.rpm))?;
    let dir = crate::throughput::temp_dir(args.dir.as_deref())?;
    let db = dir.path().join("ivory.db");
    let db = db.to_str().context("non-UTF-8 temp path")?;
    let declared = args.declared.unwrap_or(args.rpm);
    crate::child::prepare_store(db, declared, 1)?;
    let output = Command::new(std::env::current_exe()?)
        .args(["sync-child", "--url", fake.url()])
        .args(["--db", db])
        .args(["--rate", &declared.to_string(), "--burst", "1"])
        .args(["--page-size", &args.page_size.to_string()])
        .args(["--max-seconds", &(args.seconds + 2.0).to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running the sync child")?;
    if !output.status.success() {
        bail!("the sync child failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .context("the sync child printed nothing")?;
    let child: ChildReport = serde_json::from_str(line)?;
    if let Some(error) = &child.error {
        bail!("the sync failed: {error}");
    }
    let stats = fake.stats(true)?;
    let window_ms = args.seconds * 1e3;
    let ok: Vec<f64> = stats
        .arrivals
        .iter()
        .filter(|(_, status)| *status == 200)
        .map(|(at, _)| *at)
        .collect();
    let in_window: Vec<f64> = ok.iter().copied().filter(|at| *at < window_ms).collect();
    let max_in_minute = ok
        .iter()
        .enumerate()
        .map(|(i, start)| {
            ok[i..]
                .iter()
                .take_while(|t| **t < start + 60_000.0)
                .count()
        })
        .max()
        .unwrap_or(0) as u64;
    let gaps: Vec<f64> = in_window.windows(2).map(|w| w[1] - w[0]).collect();
    let result = PacingResult {
        rpm: args.rpm,
        declared,
        seconds: args.seconds,
        ok_in_window: in_window.len() as u64,
        declared_in_window: f64::from(args.rpm) * args.seconds / 60.0,
        too_many: stats.too_many,
        requests: stats.requests,
        max_in_minute,
        mean_gap_ms: gaps.iter().sum::<f64>() / gaps.len().max(1) as f64,
        min_gap_ms: gaps.iter().copied().fold(f64::INFINITY, f64::min),
        child,
    };
    eprintln!(
        "  achieved/R {:.4}, {} × 429, at most {} requests in any minute",
        result.ratio(),
        result.too_many,
        result.max_in_minute
    );
    Ok(result)
}
