//! `ivory sync` and `ivory records export` end to end: the real binary, a real
//! SQLite file, the fake items API on loopback.

use std::process::Output;

use assert_cmd::Command;
use ivory_testkit::items::{BASE_UPDATED, ItemsUpstream};
use serde_json::Value;

/// Runs `ivory` with `args` against the store `db`, off the async runtime (the fake upstream
/// keeps serving on it meanwhile).
async fn ivory(db: &std::path::Path, args: &[&str]) -> Output {
    let mut command = Command::cargo_bin("ivory").expect("binary");
    command.arg("--db").arg(db).args(args);
    tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("join")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_json_then_incremental_then_export() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let fake = ItemsUpstream::start(230, 1, 32).await.expect("fake");
    let base = fake.base_url().to_string();

    let not_installed = ivory(
        &db,
        &[
            "sync",
            "example-items",
            "--tenant",
            "acme",
            "--base-url",
            &base,
        ],
    )
    .await;
    assert_eq!(not_installed.status.code(), Some(1));
    assert!(
        stderr(&not_installed).contains("ivory install example-items --tenant acme"),
        "{}",
        stderr(&not_installed)
    );
    let installed = ivory(
        &db,
        &["install", "example-items", "--tenant", "acme", "--approve"],
    )
    .await;
    assert!(installed.status.success(), "{}", stderr(&installed));

    let first = ivory(
        &db,
        &[
            "sync",
            "example-items",
            "--tenant",
            "acme",
            "--base-url",
            &base,
            "--json",
        ],
    )
    .await;
    assert!(first.status.success(), "{}", stderr(&first));
    let summary: Value = serde_json::from_str(stdout(&first).trim()).expect("one JSON object");
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["records_upserted"], 230);
    assert_eq!(summary["pages"], 3);
    assert_eq!(summary["requests"], 3);
    assert_eq!(summary["retries"], 0);
    assert_eq!(summary["responses_429"], 0);
    assert_eq!(summary["cursor"], "opaque_token:it_0000200");

    fake.append(5, BASE_UPDATED + 10, 32);
    let second = ivory(
        &db,
        &[
            "sync",
            "example-items",
            "--tenant",
            "acme",
            "--base-url",
            &base,
            "--json",
        ],
    )
    .await;
    assert!(second.status.success(), "{}", stderr(&second));
    let summary: Value = serde_json::from_str(stdout(&second).trim()).expect("json");
    assert_eq!(summary["records_created"], 5);
    assert_eq!(summary["records_unchanged"], 30);

    let export = ivory(
        &db,
        &["records", "export", "--tenant", "acme", "--kind", "item"],
    )
    .await;
    assert!(export.status.success(), "{}", stderr(&export));
    let lines: Vec<Value> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 235);
    assert_eq!(lines[0]["id"], "it_0000001");
    assert_eq!(lines[0]["data"]["amount"], 100);
    assert_eq!(lines[0]["version"], 1);

    let other = ivory(
        &db,
        &[
            "records",
            "export",
            "--tenant",
            "someone-else",
            "--kind",
            "item",
        ],
    )
    .await;
    assert!(other.status.success());
    assert!(stdout(&other).is_empty(), "another tenant sees nothing");

    let human = ivory(
        &db,
        &[
            "sync",
            "example-items",
            "--tenant",
            "acme",
            "--base-url",
            &base,
        ],
    )
    .await;
    assert!(human.status.success());
    let text = stdout(&human);
    assert!(
        text.contains("Synced example-items for tenant acme"),
        "{text}"
    );
    assert!(text.contains("cursor    opaque_token:it_0000200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_against_nothing_fails_with_exit_1_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let installed = ivory(
        &db,
        &["install", "example-items", "--tenant", "acme", "--approve"],
    )
    .await;
    assert!(installed.status.success(), "{}", stderr(&installed));
    let output = ivory(
        &db,
        &[
            "sync",
            "example-items",
            "--tenant",
            "acme",
            "--base-url",
            &base,
            "--json",
            "--max-retries",
            "1",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("failed after 1 retries"), "{err}");
    let summary: Value =
        serde_json::from_str(stdout(&output).trim()).expect("summary still printed");
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["records_upserted"], 0);
    let export = ivory(
        &db,
        &["records", "export", "--tenant", "acme", "--kind", "item"],
    )
    .await;
    assert!(stdout(&export).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let cases: &[(&[&str], &str)] = &[
        (
            &["sync", "no-such-connector", "--tenant", "a"],
            "unknown connector",
        ),
        (
            &[
                "sync",
                "example-items",
                "--tenant",
                "a",
                "--base-url",
                "not a url",
            ],
            "--base-url",
        ),
        (
            &[
                "sync",
                "example-items",
                "--tenant",
                "bad tenant",
                "--base-url",
                "http://127.0.0.1:9",
            ],
            "tenant id",
        ),
        (
            &["records", "export", "--tenant", "a", "--kind", "Bad-Kind"],
            "--kind",
        ),
        (&["sync", "example-items"], "--tenant"),
        (
            &["sync", "example-items", "--tenant", "a", "--bogus"],
            "--bogus",
        ),
    ];
    for (args, needle) in cases {
        let output = ivory(&db, args).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(needle),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_store_path_is_a_clear_error() {
    let output = ivory(
        std::path::Path::new("/nonexistent-dir/sub/ivory.db"),
        &["records", "export", "--tenant", "a", "--kind", "item"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("directory /nonexistent-dir/sub does not exist"),
        "{}",
        stderr(&output)
    );
}
