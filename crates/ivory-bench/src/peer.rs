//! The peers: the same pull by a Singer SDK tap and by an Airbyte declarative source
//! (`scripts/bench_peer/`), against the same fake upstream in its own process, output to
//! /dev/null (they persist nothing; we persist everything).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::fake::FakeProcess;

/// `ivory-bench peer`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PeerArgs {
    /// Records pulled.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) records: u64,
    /// Padding bytes per item.
    #[arg(long, default_value_t = crate::ITEM_PAD)]
    pub(crate) pad: usize,
    /// The Python of the peers' virtualenv (default: $IVORY_BENCH_PYTHON, else
    /// target/bench-peer-venv/bin/python as made by scripts/bench_peer/setup.sh).
    #[arg(long)]
    pub(crate) python: Option<PathBuf>,
    /// Which peers, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = ["singer".to_owned(), "airbyte".to_owned()])]
    pub(crate) peers: Vec<String>,
}

/// What `run_peer.py` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PeerReport {
    pub(crate) exit_code: i32,
    pub(crate) spawn_unix_ns: u64,
    pub(crate) wall_ms: f64,
    pub(crate) user_ms: f64,
    pub(crate) sys_ms: f64,
    pub(crate) peak_rss_kib: u64,
}

/// One peer's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PeerRow {
    pub(crate) peer: String,
    pub(crate) records: u64,
    pub(crate) report: PeerReport,
    /// Spawn of the peer process to the first request, ms.
    pub(crate) first_request_ms: f64,
    /// First to last request, ms.
    pub(crate) span_ms: f64,
}

impl PeerRow {
    /// Records per second from the first request to the last.
    pub(crate) fn span_per_second(&self) -> f64 {
        self.records as f64 / (self.span_ms / 1e3)
    }

    /// Records per second, spawn to exit.
    pub(crate) fn per_second(&self) -> f64 {
        self.records as f64 / (self.report.wall_ms / 1e3)
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python(args: &PeerArgs) -> anyhow::Result<PathBuf> {
    if let Some(python) = &args.python {
        return Ok(python.clone());
    }
    if let Some(python) = std::env::var_os("IVORY_BENCH_PYTHON") {
        return Ok(python.into());
    }
    let default = workspace().join("target/bench-peer-venv/bin/python");
    if default.exists() {
        return Ok(default);
    }
    bail!(
        "no peer virtualenv: run scripts/bench_peer/setup.sh (or pass --python / set IVORY_BENCH_PYTHON)"
    )
}

/// Runs every peer.
pub(crate) fn run(args: &PeerArgs) -> anyhow::Result<Vec<PeerRow>> {
    let python = python(args)?;
    let script = workspace().join("scripts/bench_peer/run_peer.py");
    let mut rows = Vec::new();
    for peer in &args.peers {
        eprintln!("peer {peer}: {} records …", args.records);
        let mut fake = FakeProcess::start(args.records, args.pad, None)?;
        let work = tempfile::Builder::new().prefix("ivory-peer-").tempdir()?;
        let output = Command::new(&python)
            .arg(&script)
            .args([peer.as_str(), fake.url()])
            .arg(work.path())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", python.display()))?;
        if !output.status.success() {
            bail!("peer {peer} failed: {}", output.status);
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .last()
            .context("the peer runner printed nothing")?;
        let report: PeerReport =
            serde_json::from_str(line).with_context(|| format!("peer report {line:?}"))?;
        if report.exit_code != 0 {
            bail!("peer {peer} exited with {}", report.exit_code);
        }
        let stats = fake.stats(false)?;
        let pages = args.records.div_ceil(100);
        if stats.ok < pages {
            bail!(
                "peer {peer} read {} pages, expected {pages}: it did not pull everything",
                stats.ok
            );
        }
        let first = stats.first_unix_ns.context("the fake saw no request")?;
        let last = stats.last_unix_ns.unwrap_or(first);
        let row = PeerRow {
            peer: peer.clone(),
            records: args.records,
            first_request_ms: first.saturating_sub(report.spawn_unix_ns) as f64 / 1e6,
            span_ms: last.saturating_sub(first) as f64 / 1e6,
            report,
        };
        eprintln!(
            "  {:.0} records/s, {:.1} MiB peak RSS",
            row.per_second(),
            row.report.peak_rss_kib as f64 / 1024.0
        );
        rows.push(row);
    }
    Ok(rows)
}
