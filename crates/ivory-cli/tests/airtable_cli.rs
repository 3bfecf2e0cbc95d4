//! The Airtable connector's CLI contract (issue 8), end to end through the binary against the
//! fake Airtable: install with the base and table settings, connect with an access token
//! obtained elsewhere, sync with `--base-url --json`, export `airtable_<table>` records that
//! carry the platform-computed formula values, a platform-side edit recomputing them, and a
//! deletion upstream landing on the next sync.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use ivory_testkit::airtable::{BASE_ID, FakeAirtable, TEST_ACCESS_TOKEN};
use serde_json::Value;

async fn ivory(db: &Path, args: &[&str]) -> Output {
    let mut command = Command::cargo_bin("ivory").expect("binary");
    command
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("IVORY_MASTER_KEY")
        // The platform's OAuth app (refreshes would use it; this grant has no refresh token).
        .env("IVORY_OAUTH_CLIENT_ID", "ivory-test-client")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || command.output().expect("run"))
        .await
        .expect("join")
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn export(db: &Path, kind: &str) -> Vec<Value> {
    let export = ivory(
        db,
        &["records", "export", "--tenant", "acme", "--kind", kind],
    )
    .await;
    assert!(export.status.success(), "{}", err(&export));
    out(&export)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_connect_sync_export_with_platform_computed_formulas() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let fake = FakeAirtable::start(250, 12).await.expect("fake");
    let base = fake.base_url().to_string();

    let no_base = ivory(
        &db,
        &["install", "airtable", "--tenant", "acme", "--approve"],
    )
    .await;
    assert_eq!(no_base.status.code(), Some(2), "{}", err(&no_base));
    assert!(err(&no_base).contains("baseId"), "{}", err(&no_base));

    let base_setting = format!("baseId={BASE_ID}");
    let installed = ivory(
        &db,
        &[
            "install",
            "airtable",
            "--tenant",
            "acme",
            "--approve",
            "--setting",
            &base_setting,
            "--setting",
            "tables=Orders",
        ],
    )
    .await;
    assert!(installed.status.success(), "{}", err(&installed));

    let connected = ivory(
        &db,
        &[
            "connect",
            "airtable",
            "--tenant",
            "acme",
            "--access-token",
            TEST_ACCESS_TOKEN,
        ],
    )
    .await;
    assert!(connected.status.success(), "{}", err(&connected));
    assert!(!out(&connected).contains(TEST_ACCESS_TOKEN));

    let synced = ivory(
        &db,
        &[
            "sync",
            "airtable",
            "--tenant",
            "acme",
            "--base-url",
            &base,
            "--json",
        ],
    )
    .await;
    assert!(synced.status.success(), "{}", err(&synced));
    assert!(!out(&synced).contains(TEST_ACCESS_TOKEN));
    let summary: Value = serde_json::from_str(out(&synced).trim()).expect("one JSON object");
    assert_eq!(summary["records_upserted"], 250);
    assert_eq!(summary["records_created"], 250);
    assert_eq!(summary["pages"], 3);
    assert_eq!(summary["responses_429"], 0);
    assert_eq!(summary["cursor"], Value::Null);
    let notes = summary["notes"].to_string();
    assert!(
        notes.contains("Status Code") && notes.contains("SWITCH"),
        "{notes}"
    );

    // Records carry the formula values the platform computed, equal to Airtable's.
    let lines = export(&db, "airtable_orders").await;
    assert_eq!(lines.len(), 250);
    let airtable: Vec<Value> = fake.records("Orders");
    for line in &lines {
        let upstream = airtable
            .iter()
            .find(|r| r["id"] == line["id"])
            .expect("an Airtable record");
        assert_eq!(line["kind"], "airtable_orders");
        for field in [
            "Total",
            "Total with tax",
            "Label",
            "Outstanding",
            "Status Code",
        ] {
            assert_eq!(
                line["data"][field], upstream["fields"][field],
                "{field} of {}",
                line["id"]
            );
        }
    }
    assert!(
        export(&db, "airtable_customers").await.is_empty(),
        "--setting tables=Orders"
    );

    // A platform-side edit: the platform recomputes the formulas.
    let id = lines[0]["id"].as_str().expect("id").to_owned();
    let price = lines[0]["data"]["Unit Price"].as_f64().expect("price");
    let edit = ivory(
        &db,
        &[
            "records",
            "update",
            "--tenant",
            "acme",
            "--kind",
            "airtable_orders",
            "--id",
            &id,
            "--set",
            "Qty=10",
            "--json",
        ],
    )
    .await;
    assert!(edit.status.success(), "{}", err(&edit));
    let edited: Value = serde_json::from_str(out(&edit).trim()).expect("json");
    assert_eq!(edited["data"]["Total"].as_f64(), Some(10.0 * price));

    // Deleted in Airtable: tombstoned by the next full pass (and the edit is overwritten:
    // Airtable is the source of truth).
    let gone = lines[1]["id"].as_str().expect("id").to_owned();
    assert!(fake.delete_record("Orders", &gone));
    let again = ivory(
        &db,
        &[
            "sync",
            "airtable",
            "--tenant",
            "acme",
            "--base-url",
            &base,
            "--json",
        ],
    )
    .await;
    assert!(again.status.success(), "{}", err(&again));
    let summary: Value = serde_json::from_str(out(&again).trim()).expect("json");
    assert_eq!(summary["records_deleted"], 1);
    assert_eq!(
        summary["records_updated"], 1,
        "the platform edit, overwritten"
    );
    let lines = export(&db, "airtable_orders").await;
    assert_eq!(lines.len(), 249);
    assert!(lines.iter().all(|l| l["id"] != gone.as_str()));
}
