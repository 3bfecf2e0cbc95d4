//! The fake upstream in its own process (`ivory-bench serve`), so that the syncing process's
//! CPU time and peak RSS are its own.
//!
//! Protocol: the server prints one JSON line `{"url": …}` when it listens, then answers each
//! line read on stdin: `stats` → one JSON line of [`FakeStats`] (`log` → the same with the
//! arrival time of every request). It exits at the end of stdin.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::UNIX_EPOCH;

use anyhow::{Context as _, bail};
use ivory_testkit::items::ItemsUpstream;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

/// `ivory-bench serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Items served.
    #[arg(long)]
    count: u64,
    /// Items sharing each `updated` second.
    #[arg(long, default_value_t = 10)]
    ties: u64,
    /// Padding bytes in each item's `note`.
    #[arg(long)]
    pad: usize,
    /// Answer 429 (`Retry-After: 60`) beyond this many requests in any trailing minute.
    #[arg(long)]
    rpm: Option<u32>,
}

/// What the fake saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct FakeStats {
    /// Requests received.
    pub(crate) requests: u64,
    /// Answered 200.
    pub(crate) ok: u64,
    /// Answered 429.
    pub(crate) too_many: u64,
    /// Unix time of the first request, in nanoseconds.
    pub(crate) first_unix_ns: Option<u64>,
    /// Unix time of the last request, in nanoseconds.
    pub(crate) last_unix_ns: Option<u64>,
    /// (milliseconds since the first request, status) of every request (`log` only).
    pub(crate) arrivals: Vec<(f64, u16)>,
}

/// Runs the fake until stdin closes.
pub(crate) fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let fake = ItemsUpstream::start_generated(args.count, args.ties, args.pad).await?;
        if let Some(rpm) = args.rpm {
            fake.enforce_rpm(rpm);
        }
        println!("{}", serde_json::json!({ "url": fake.base_url().as_str() }));
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            let with_log = match line.trim() {
                "stats" => false,
                "log" => true,
                other => bail!("unknown command {other:?}"),
            };
            let stats = stats_of(&fake, with_log);
            println!("{}", serde_json::to_string(&stats)?);
        }
        Ok(())
    })
}

fn stats_of(fake: &ItemsUpstream, with_log: bool) -> FakeStats {
    let log = fake.requests();
    let first_at = log.first().map(|r| r.at).unwrap_or_default();
    let first_wall = fake.first_request_at();
    let unix_ns = |wall: std::time::SystemTime| {
        wall.duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_nanos()).ok())
    };
    let last_wall = match (first_wall, log.last()) {
        (Some(first), Some(last)) => first.checked_add(last.at.saturating_sub(first_at)),
        _ => None,
    };
    FakeStats {
        requests: log.len() as u64,
        ok: log.iter().filter(|r| r.status == 200).count() as u64,
        too_many: log.iter().filter(|r| r.status == 429).count() as u64,
        first_unix_ns: first_wall.and_then(unix_ns),
        last_unix_ns: last_wall.and_then(unix_ns),
        arrivals: if with_log {
            log.iter()
                .map(|r| (r.at.saturating_sub(first_at).as_secs_f64() * 1e3, r.status))
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// A running `ivory-bench serve` child. Dropping it closes its stdin (it exits) and reaps it.
#[derive(Debug)]
pub(crate) struct FakeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    url: String,
}

impl FakeProcess {
    /// Starts a fake of `count` generated items padded with `pad` bytes.
    pub(crate) fn start(count: u64, pad: usize, rpm: Option<u32>) -> anyhow::Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args([
                "serve",
                "--count",
                &count.to_string(),
                "--pad",
                &pad.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(rpm) = rpm {
            command.args(["--rpm", &rpm.to_string()]);
        }
        let mut child = command.spawn().context("starting the fake upstream")?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("fake stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let ready: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("fake said {line:?}"))?;
        let url = ready["url"]
            .as_str()
            .context("the fake printed no url")?
            .to_owned();
        Ok(Self {
            child,
            stdin,
            stdout,
            url,
        })
    }

    /// Its base URL.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// What it saw so far (with every arrival when `with_log`).
    pub(crate) fn stats(&mut self, with_log: bool) -> anyhow::Result<FakeStats> {
        let stdin = self.stdin.as_mut().context("fake stdin closed")?;
        writeln!(stdin, "{}", if with_log { "log" } else { "stats" })?;
        stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        serde_json::from_str(&line).with_context(|| format!("fake stats {line:?}"))
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn unix_ns_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}
