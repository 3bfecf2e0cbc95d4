//! The HubSpot connector's CLI contract, end to end through the binary against the fake
//! HubSpot (enforcing HubSpot's rate limits): install, connect with a grant obtained elsewhere,
//! sync (pull, then push) with `--json`, export, a platform-side edit that the next sync pushes,
//! and one that loses a newest_wins conflict to a later HubSpot edit.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use ivory_testkit::hubspot::{
    ACCESS_TOKEN, CLIENT_ID, CLIENT_SECRET, FakeHubSpot, Limits, REFRESH_TOKEN,
};
use serde_json::Value;

async fn ivory(db: &Path, args: &[&str]) -> Output {
    let mut command = Command::cargo_bin("ivory").expect("binary");
    command
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("IVORY_MASTER_KEY")
        .env("IVORY_OAUTH_CLIENT_ID", CLIENT_ID)
        .env("IVORY_OAUTH_CLIENT_SECRET", CLIENT_SECRET)
        .env("IVORY_OAUTH_CLIENT_AUTH", "body")
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

async fn sync_json(db: &Path, base: &str) -> Value {
    let synced = ivory(
        db,
        &[
            "sync",
            "hubspot",
            "--tenant",
            "acme",
            "--base-url",
            base,
            "--json",
        ],
    )
    .await;
    assert!(synced.status.success(), "{}", err(&synced));
    serde_json::from_str(out(&synced).trim()).expect("one JSON object")
}

async fn export(db: &Path) -> Vec<Value> {
    let exported = ivory(
        db,
        &["records", "export", "--tenant", "acme", "--kind", "contact"],
    )
    .await;
    assert!(exported.status.success(), "{}", err(&exported));
    out(&exported)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_connect_sync_export_edit_push() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let fake = FakeHubSpot::start(Limits::HUBSPOT).await.expect("fake");
    // The fake's clock is now: platform edits (stamped now) and HubSpot's compare sensibly.
    let now_ms = jiff::Timestamp::now().as_millisecond();
    fake.set_now_ms(now_ms);
    let ids = fake.create_contacts(300, now_ms - 3_600_000);
    let base = fake.base_url().to_string();

    let installed = ivory(
        &db,
        &["install", "hubspot", "--tenant", "acme", "--approve"],
    )
    .await;
    assert!(installed.status.success(), "{}", err(&installed));
    let connected = ivory(
        &db,
        &[
            "connect",
            "hubspot",
            "--tenant",
            "acme",
            "--access-token",
            ACCESS_TOKEN,
            "--refresh-token",
            REFRESH_TOKEN,
            "--expires-in",
            "1800",
        ],
    )
    .await;
    assert!(connected.status.success(), "{}", err(&connected));
    assert!(!out(&connected).contains(ACCESS_TOKEN) && !err(&connected).contains(ACCESS_TOKEN));

    let summary = sync_json(&db, &base).await;
    for key in [
        "records_upserted",
        "pages",
        "requests",
        "retries",
        "responses_429",
        "cursor",
        "conflicts",
        "outbound",
    ] {
        assert!(summary.get(key).is_some(), "{key} missing from {summary}");
    }
    assert_eq!(summary["records_upserted"], 300);
    assert_eq!(
        summary["responses_429"], 0,
        "paced under both HubSpot limits"
    );
    assert!(
        summary["cursor"]
            .as_str()
            .is_some_and(|c| c.starts_with("updated_at:")),
        "{summary}"
    );
    assert_eq!(
        summary["conflicts"],
        serde_json::json!({"source_wins": 0, "platform_wins": 0, "ties": 0})
    );
    assert!(
        !out(&ivory(
            &db,
            &["installations", "list", "--tenant", "acme", "--json"]
        )
        .await)
        .contains(ACCESS_TOKEN)
    );

    let lines = export(&db).await;
    assert_eq!(lines.len(), 300);
    let first = lines.iter().find(|l| l["id"] == ids[0]).expect("contact");
    assert_eq!(first["kind"], "contact");
    assert_eq!(
        first["data"]["email"],
        format!("contact{}@example.com", ids[0])
    );

    // A platform-side edit, as a tenant user makes it; the next sync pushes it.
    let edit = ivory(
        &db,
        &[
            "records",
            "update",
            "--tenant",
            "acme",
            "--kind",
            "contact",
            "--id",
            &ids[0],
            "--set",
            "firstname=Ada",
            "--set",
            "company=Ivorycom",
        ],
    )
    .await;
    assert!(edit.status.success(), "{}", err(&edit));
    let unknown = ivory(
        &db,
        &[
            "records",
            "update",
            "--tenant",
            "acme",
            "--kind",
            "contact",
            "--id",
            &ids[0],
            "--set",
            "shoe_size=42",
        ],
    )
    .await;
    assert_eq!(
        unknown.status.code(),
        Some(2),
        "not a contact field: {}",
        err(&unknown)
    );

    let pushed = sync_json(&db, &base).await;
    assert_eq!(pushed["outbound"]["pushed"], 1, "{pushed}");
    let upstream = fake.contact(&ids[0]).expect("in HubSpot");
    assert_eq!(upstream["properties"]["firstname"], "Ada");
    assert_eq!(upstream["properties"]["company"], "Ivorycom");

    // Edited on both sides, HubSpot later: newest_wins keeps HubSpot's version.
    let edit = ivory(
        &db,
        &[
            "records",
            "update",
            "--tenant",
            "acme",
            "--kind",
            "contact",
            "--id",
            &ids[1],
            "--set",
            "firstname=Platform",
        ],
    )
    .await;
    assert!(edit.status.success(), "{}", err(&edit));
    let later = jiff::Timestamp::now().as_millisecond() + 60_000;
    assert!(fake.edit(&ids[1], &[("firstname", "HubSpot")], later));
    let decided = sync_json(&db, &base).await;
    assert_eq!(decided["conflicts"]["source_wins"], 1, "{decided}");
    assert_eq!(decided["outbound"]["pushed"], 0, "{decided}");
    let lines = export(&db).await;
    let second = lines.iter().find(|l| l["id"] == ids[1]).expect("contact");
    assert_eq!(second["data"]["firstname"], "HubSpot");
    assert_eq!(
        fake.contact(&ids[1]).expect("contact")["properties"]["firstname"],
        "HubSpot"
    );
}
