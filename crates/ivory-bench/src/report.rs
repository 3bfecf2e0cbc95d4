//! Markdown tables of the results, as pasted into BENCHMARKS.md.

use std::fmt::Write as _;
use std::process::Command;

use crate::pacing::PacingResult;
use crate::peer::PeerRow;
use crate::store::StorePhase;
use crate::throughput::ThroughputRow;
use crate::workers::WorkersRow;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The machine, the date and the revision.
pub(crate) fn environment() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let revision = command_line("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let dirty = command_line("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "- Date: {} (UTC)",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M")
    );
    let _ = writeln!(
        out,
        "- Revision: `{revision}`{}",
        if dirty {
            " plus uncommitted changes"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "- Machine: `nproc` = {cores}; CPU: {model}");
    out
}

/// The throughput table.
pub(crate) fn throughput(rows: &[ThroughputRow]) -> String {
    let mut out = String::from(
        "| records | process wall (s) | records/s end to end | records/s in `Runner::sync` | CPU user+sys (s) | CPU µs / record | peak RSS (MiB) | first request (ms) | store on disk (MiB) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.0} | {:.0} | {:.2} ({:.2} + {:.2}) | {:.1} | {:.1} | {:.1} | {:.0} |",
            r.records,
            r.process_ms / 1e3,
            r.per_second(),
            r.sync_per_second(),
            r.child.usage.cpu_ms / 1e3,
            r.child.usage.user_ms / 1e3,
            r.child.usage.sys_ms / 1e3,
            r.child.usage.cpu_ms * 1e3 / r.records as f64,
            mib(r.child.usage.peak_rss_kib),
            r.first_request_ms,
            r.child.db_bytes as f64 / (1024.0 * 1024.0),
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last())
        && rows.len() > 1
    {
        let _ = writeln!(
            out,
            "\nPeak RSS at {} records / at {} records: {:.2}×.",
            last.records,
            first.records,
            last.child.usage.peak_rss_kib as f64 / first.child.usage.peak_rss_kib.max(1) as f64
        );
    }
    out
}

/// The peer table; `ours` is our row of the same size, if measured.
pub(crate) fn peers(rows: &[PeerRow], ours: Option<&ThroughputRow>) -> String {
    let mut out = String::from(
        "| puller | records | process wall (s) | records/s (process) | records/s (first → last request) | CPU user+sys (s) | peak RSS (MiB) | first request (ms) | ours / it (process) | ours / it (first → last) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    if let Some(r) = ours {
        let _ = writeln!(
            out,
            "| ivory (into SQLite) | {} | {:.2} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | 1 | 1 |",
            r.records,
            r.process_ms / 1e3,
            r.per_second(),
            r.span_per_second(),
            r.child.usage.cpu_ms / 1e3,
            mib(r.child.usage.peak_rss_kib),
            r.first_request_ms,
        );
    }
    for p in rows {
        let ratio = ours.map_or("–".to_owned(), |r| {
            format!("{:.1}×", r.per_second() / p.per_second())
        });
        let span_ratio = ours.map_or("–".to_owned(), |r| {
            format!("{:.1}×", r.span_per_second() / p.span_per_second())
        });
        let _ = writeln!(
            out,
            "| {} (to /dev/null) | {} | {:.2} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {ratio} | {span_ratio} |",
            p.peer,
            p.records,
            p.report.wall_ms / 1e3,
            p.per_second(),
            p.span_per_second(),
            (p.report.user_ms + p.report.sys_ms) / 1e3,
            mib(p.report.peak_rss_kib),
            p.first_request_ms,
        );
    }
    out
}

/// The pacing table.
pub(crate) fn pacing(r: &PacingResult) -> String {
    let mut out = String::from(
        "| R enforced (/min) | declared (/min) | window (s) | 200s in window | R × window | achieved / R | 429s | most in any 60 s | mean gap (ms) | min gap (ms) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let _ = writeln!(
        out,
        "| {} | {} | {:.0} | {} | {:.0} | {:.4} | {} | {} | {:.2} | {:.2} |",
        r.rpm,
        r.declared,
        r.seconds,
        r.ok_in_window,
        r.declared_in_window,
        r.ratio(),
        r.too_many,
        r.max_in_minute,
        r.mean_gap_ms,
        r.min_gap_ms,
    );
    out
}

/// The store table.
pub(crate) fn store(phases: &[StorePhase]) -> String {
    let mut out = String::from(
        "| phase | commits × records | records/s | commits/s | commit p50 (ms) | p99 (ms) | max (ms) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in phases {
        let _ = writeln!(
            out,
            "| {} | {} × {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} |",
            p.phase,
            p.commits,
            p.records / p.commits.max(1),
            p.records_per_second(),
            p.commits_per_second(),
            p.p50_ms,
            p.p99_ms,
            p.max_ms,
        );
    }
    out
}

/// The workers table.
pub(crate) fn workers(rows: &[WorkersRow]) -> String {
    let mut out = String::from(
        "| workers | syncs at once per worker | syncs in the window | window (s) | syncs per minute | per worker |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.0} | {:.0} |",
            row.workers,
            row.concurrency,
            row.syncs,
            row.seconds,
            row.per_minute(),
            row.per_minute() / row.workers as f64
        );
    }
    out
}
