//! `ivory dsar export|delete` end to end: the real binary on a real SQLite file seeded through
//! the store's commit path.

use std::path::Path;
use std::process::{Command, Output};

use futures::StreamExt as _;
use ivory_runtime::Store;
use ivory_runtime::store::{CommitScope, Tombstones};
use ivory_sdk::{Clock, Record, RecordOp};
use serde_json::{Value, json};

const TENANT: &str = "acme-test";

fn ivory(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ivory"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env("IVORY_ACTOR", "operator-test")
        .output()
        .expect("runs")
}

fn json_out(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

async fn seed(db: &Path) {
    let store = Store::open(db.to_str().expect("utf-8"))
        .await
        .expect("store");
    let scope = CommitScope {
        tenant: TENANT,
        installation: "inst_test",
        now: Clock::system().now(),
        fence: None,
    };
    let ops = vec![
        RecordOp::Upsert {
            kind: "contact".into(),
            record: Record::new(
                "501",
                json!({"email": "cli.fake@example.test", "firstname": "Fake"}),
            ),
        },
        RecordOp::Upsert {
            kind: "stripe_invoice".into(),
            record: Record::new(
                "in_test_cli",
                json!({"customer_email": "cli.fake@example.test", "total": 1234}),
            ),
        },
    ];
    store.commit(&scope, &ops, None).await.expect("commit");
    store.close().await;
}

#[tokio::test]
async fn export_then_delete_then_idempotent_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("ivory.db");
    seed(&db).await;

    let export = json_out(&ivory(
        &db,
        &["dsar", "export", "--tenant", TENANT, "--contact", "501"],
    ));
    assert_eq!(export["contact_id"], "501");
    let kinds: Vec<&str> = export["slices"]
        .as_array()
        .expect("slices")
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["contact", "stripe_invoice"]);

    let held = json_out(&ivory(
        &db,
        &[
            "dsar",
            "delete",
            "--tenant",
            TENANT,
            "--contact",
            "501",
            "--held",
        ],
    ));
    assert_eq!(held["blocked"], true);

    let erased = json_out(&ivory(
        &db,
        &["dsar", "delete", "--tenant", TENANT, "--contact", "501"],
    ));
    assert_eq!(
        (&erased["deleted"], &erased["anonymized"]),
        (&json!(1), &json!(1))
    );
    let again = json_out(&ivory(
        &db,
        &[
            "dsar",
            "delete",
            "--tenant",
            TENANT,
            "--contact",
            "501",
            "--mode",
            "anonymize",
        ],
    ));
    assert_eq!(
        (&again["deleted"], &again["anonymized"]),
        (&json!(0), &json!(0))
    );

    let store = Store::open(db.to_str().expect("utf-8"))
        .await
        .expect("store");
    let mut invoices = store.export_records(TENANT, "stripe_invoice", Tombstones::Include);
    let invoice = invoices.next().await.expect("one").expect("row");
    assert_eq!(invoice.data, json!({"customer_email": null, "total": 1234}));
    let events = store.audit_events(TENANT).await.expect("audit");
    let first = events.first().expect("an event");
    assert_eq!(first.event_type, "audit.contact.export");
    assert_eq!(first.payload["user_id"], "operator-test");

    let refused = ivory(
        &db,
        &["dsar", "export", "--tenant", TENANT, "--contact", " "],
    );
    assert_eq!(refused.status.code(), Some(2));
}
