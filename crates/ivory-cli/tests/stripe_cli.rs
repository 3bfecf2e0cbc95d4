//! The Stripe connector's CLI contract, end to end through the binary against the fake
//! Stripe: install, connect with the tenant's key on stdin, sync, export, a platform-side edit,
//! and a sync against nothing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use ivory_testkit::stripe::{FakeStripe, TEST_API_KEY};
use serde_json::Value;

async fn ivory(db: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::cargo_bin("ivory").expect("binary");
    command
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("IVORY_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("spawn");
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input.write_all(text.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("wait")
    })
    .await
    .expect("join")
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_connect_sync_export_edit() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    // The fake's clock is now, so Stripe's 30-day event retention is judged like in production.
    let fake = FakeStripe::start_at(1_200, jiff::Timestamp::now().as_second())
        .await
        .expect("fake");
    let base = fake.base_url().to_string();

    let installed = ivory(
        &db,
        &["install", "stripe", "--tenant", "acme", "--approve"],
        None,
    )
    .await;
    assert!(installed.status.success(), "{}", err(&installed));
    let connected = ivory(
        &db,
        &["connect", "stripe", "--tenant", "acme", "--api-key-stdin"],
        Some(TEST_API_KEY),
    )
    .await;
    assert!(connected.status.success(), "{}", err(&connected));
    assert!(!out(&connected).contains(TEST_API_KEY) && !err(&connected).contains(TEST_API_KEY));
    let secret = ivory(
        &db,
        &[
            "connect",
            "stripe",
            "--tenant",
            "acme",
            "--webhook-secret-stdin",
        ],
        Some("whsec_test_ivory_fake_secret_0000"),
    )
    .await;
    assert!(secret.status.success(), "{}", err(&secret));

    let synced = ivory(
        &db,
        &[
            "sync",
            "stripe",
            "--tenant",
            "acme",
            "--base-url",
            &base,
            "--json",
        ],
        None,
    )
    .await;
    assert!(synced.status.success(), "{}", err(&synced));
    let summary: Value = serde_json::from_str(out(&synced).trim()).expect("one JSON object");
    for key in [
        "records_upserted",
        "pages",
        "requests",
        "retries",
        "responses_429",
        "cursor",
    ] {
        assert!(summary.get(key).is_some(), "{key} missing from {summary}");
    }
    assert_eq!(summary["records_upserted"], 1_200);
    assert_eq!(summary["responses_429"], 0);

    fake.create_invoice();
    fake.void("in_00000002").expect("void");
    let again = ivory(
        &db,
        &[
            "sync",
            "stripe",
            "--tenant",
            "acme",
            "--base-url",
            &base,
            "--json",
        ],
        None,
    )
    .await;
    assert!(again.status.success(), "{}", err(&again));
    let summary: Value = serde_json::from_str(out(&again).trim()).expect("json");
    assert_eq!(summary["records_created"], 1);

    let export = ivory(
        &db,
        &[
            "records",
            "export",
            "--tenant",
            "acme",
            "--kind",
            "stripe_invoice",
        ],
        None,
    )
    .await;
    let lines: Vec<Value> = out(&export)
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    assert_eq!(lines.len(), 1_201);
    let void = lines
        .iter()
        .find(|l| l["id"] == "in_00000002")
        .expect("in 2");
    assert_eq!(void["data"]["status"], "void");
    assert_eq!(void["data"]["outstanding"], 0, "platform-computed formula");
    let open = lines
        .iter()
        .find(|l| l["id"] == "in_00000003")
        .expect("in 3");
    assert_eq!(open["data"]["outstanding"], open["data"]["amount_due"]);

    // A platform-side edit: the formula reacts; formula fields cannot be written.
    let edit = ivory(
        &db,
        &[
            "records",
            "update",
            "--tenant",
            "acme",
            "--kind",
            "stripe_invoice",
            "--id",
            "in_00000003",
            "--set",
            "amount_paid=100",
            "--json",
        ],
        None,
    )
    .await;
    assert!(edit.status.success(), "{}", err(&edit));
    let edited: Value = serde_json::from_str(out(&edit).trim()).expect("json");
    let due = edited["data"]["amount_due"].as_f64().expect("due");
    assert_eq!(edited["data"]["outstanding"].as_f64(), Some(due - 100.0));
    let refused = ivory(
        &db,
        &[
            "records",
            "update",
            "--tenant",
            "acme",
            "--kind",
            "stripe_invoice",
            "--id",
            "in_00000003",
            "--set",
            "outstanding=5",
        ],
        None,
    )
    .await;
    assert_eq!(refused.status.code(), Some(2), "{}", err(&refused));

    let runs = ivory(
        &db,
        &["workflows", "runs", "--tenant", "acme", "--json"],
        None,
    )
    .await;
    assert!(runs.status.success(), "{}", err(&runs));
    let missing = ivory(&db, &["workflows", "retry", "wfr_does_not_exist"], None).await;
    assert_eq!(missing.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_against_nothing_fails_in_bounded_time_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        ivory(
            &db,
            &["install", "stripe", "--tenant", "acme", "--approve"],
            None
        )
        .await
        .status
        .success()
    );
    let not_connected = ivory(
        &db,
        &["sync", "stripe", "--tenant", "acme", "--base-url", &base],
        None,
    )
    .await;
    assert_eq!(not_connected.status.code(), Some(1));
    assert!(
        err(&not_connected).contains("ivory connect stripe --tenant acme"),
        "{}",
        err(&not_connected)
    );
    assert!(
        ivory(
            &db,
            &["connect", "stripe", "--tenant", "acme", "--api-key-stdin"],
            Some(TEST_API_KEY)
        )
        .await
        .status
        .success()
    );
    let started = std::time::Instant::now();
    let failed = ivory(
        &db,
        &[
            "sync",
            "stripe",
            "--tenant",
            "acme",
            "--base-url",
            &base,
            "--max-retries",
            "2",
        ],
        None,
    )
    .await;
    assert_eq!(failed.status.code(), Some(1));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(
        err(&failed).contains("failed after 2 retries"),
        "{}",
        err(&failed)
    );
    let export = ivory(
        &db,
        &[
            "records",
            "export",
            "--tenant",
            "acme",
            "--kind",
            "stripe_invoice",
        ],
        None,
    )
    .await;
    assert!(out(&export).is_empty());
}
