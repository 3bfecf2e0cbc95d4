//! `ivory serve` as an operator runs it: the real binary on a free port, a scheduled sync of
//! an installation against the fake items API, SIGTERM in the middle of it.

use std::io::{BufRead, BufReader};
use std::process::{Command as StdCommand, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use assert_cmd::cargo::CommandCargoExt;
use ivory_testkit::items::ItemsUpstream;
use serde_json::Value;

const ITEMS: u64 = 20_000;

async fn ivory(db: &std::path::Path, args: &[&str]) -> Output {
    let mut command = Command::cargo_bin("ivory").expect("binary");
    command.arg("--db").arg(db).args(args);
    tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_scheduled_sync_at_a_page_boundary_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let upstream = ItemsUpstream::start_generated(ITEMS, 3, 50)
        .await
        .expect("upstream");
    let installed = ivory(
        &db,
        &[
            "install",
            "example-items",
            "--tenant",
            "acme",
            "--approve",
            "--setting",
            "schedule=10s",
        ],
    )
    .await;
    assert!(installed.status.success(), "{}", text(&installed.stderr));
    let bad = ivory(&db, &["serve", "--upstream", "nope=http://127.0.0.1:1"]).await;
    assert_eq!(
        bad.status.code(),
        Some(2),
        "unknown connector is a usage error"
    );
    assert!(text(&bad.stderr).contains("unknown connector \"nope\""));

    let mut child = StdCommand::cargo_bin("ivory")
        .expect("binary")
        .arg("--db")
        .arg(&db)
        .args(["serve", "--bind", "127.0.0.1:0", "--upstream"])
        .arg(format!("example-items={}", upstream.base_url()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("join")
    .expect("a line");
    let base = first_line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
        .to_owned();
    ivory_sdk::fetch::install_tls_provider();
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);

    // The scheduler starts the sync within a second (a tenth of the interval at most).
    let deadline = Instant::now() + Duration::from_secs(20);
    while upstream.requests().len() < 20 {
        assert!(Instant::now() < deadline, "the scheduled sync started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("ivory_syncs_running 1"), "{metrics}");

    let killed = StdCommand::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let stopping = Instant::now();
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("exits");
    assert!(
        status.status.success(),
        "exit 0 on SIGTERM: {}",
        text(&status.stderr)
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stopped at a page boundary, not at the end of the sync ({:?})",
        stopping.elapsed()
    );
    let served_before = upstream.requests().len();
    assert!(
        (served_before as u64) < ITEMS / 100,
        "the sync did not run to its end"
    );

    let kept = ivory(
        &db,
        &["records", "export", "--tenant", "acme", "--kind", "item"],
    )
    .await;
    let kept = text(&kept.stdout).lines().count() as u64;
    assert!(kept > 0 && kept < ITEMS, "{kept} records kept");

    // The next run resumes from the committed cursor: exactly the rest, nothing twice.
    let resumed = ivory(
        &db,
        &[
            "sync",
            "example-items",
            "--tenant",
            "acme",
            "--json",
            "--base-url",
            upstream.base_url().as_str(),
        ],
    )
    .await;
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let summary: Value = serde_json::from_slice(&resumed.stdout).expect("json");
    assert_eq!(summary["records_created"], ITEMS - kept, "{summary}");
    assert_eq!(summary["records_updated"], 0, "{summary}");
    let all = ivory(
        &db,
        &["records", "export", "--tenant", "acme", "--kind", "item"],
    )
    .await;
    let all = text(&all.stdout);
    assert_eq!(all.lines().count() as u64, ITEMS);
    assert!(
        all.lines().all(|l| l.contains("\"version\":1")),
        "no record written twice"
    );
}
