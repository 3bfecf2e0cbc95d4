//! Install governance through the binary: consent, settings, upgrades that need fresh consent,
//! listing, uninstall stopping syncs.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn ivory(db: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("ivory")
        .expect("binary")
        .arg("--db")
        .arg(db)
        .args(args)
        .env("IVORY_ACTOR", "admin@acme.test")
        .env_remove("IVORY_MASTER_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("runs")
}

fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn manifest(dir: &Path, version: &str, hosts: &[&str], scopes: &[&str]) -> String {
    let json = serde_json::json!({
        "id": "governed",
        "name": "Governed example",
        "version": version,
        "publisher": "Ivory (tests)",
        "description": "Asks for scopes and hosts.",
        "listing": {"conflictPolicy": "Inbound only (source_wins)."},
        "hosts": hosts,
        "settings": [
            {"key": "baseId", "description": "The base to sync", "required": true},
            {"key": "tables", "description": "Tables (default: all)", "default": "all"}
        ],
        "connection": {
            "type": "oauth2",
            "authorizationUrl": "https://auth.example.com/authorize",
            "tokenUrl": "https://auth.example.com/token",
            "scopes": scopes,
            "sync": {"cursor": "none", "direction": "inbound", "conflictPolicy": "source_wins", "rateLimitPerMinute": 60}
        }
    });
    let path = dir.join(format!("manifest-{version}.json"));
    std::fs::write(&path, json.to_string()).expect("write");
    path.to_string_lossy().into_owned()
}

fn list(db: &Path) -> Vec<Value> {
    let output = ivory(db, &["installations", "list", "--tenant", "acme", "--json"]);
    assert!(output.status.success(), "{}", err(&output));
    serde_json::from_str::<Value>(&out(&output))
        .expect("json")
        .as_array()
        .cloned()
        .expect("array")
}

#[test]
fn consent_settings_upgrades_and_uninstall() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let v1 = manifest(dir.path(), "1.0.0", &["api.example.com"], &["records:read"]);

    // No consent (no terminal, no --approve): nothing is installed.
    let refused = ivory(
        &db,
        &[
            "install",
            "--manifest",
            &v1,
            "--tenant",
            "acme",
            "--setting",
            "baseId=app1",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        err(&refused).contains("scopes: records:read"),
        "{}",
        err(&refused)
    );
    assert!(
        err(&refused).contains("hosts:  api.example.com"),
        "{}",
        err(&refused)
    );
    assert!(err(&refused).contains("--approve"));
    assert!(list(&db).is_empty());

    // Settings are checked against the listing.
    let missing = ivory(
        &db,
        &[
            "install",
            "--manifest",
            &v1,
            "--tenant",
            "acme",
            "--approve",
        ],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        err(&missing).contains("setting \"baseId\" is required"),
        "{}",
        err(&missing)
    );
    let unknown = ivory(
        &db,
        &[
            "install",
            "--manifest",
            &v1,
            "--tenant",
            "acme",
            "--approve",
            "--setting",
            "baseId=a",
            "--setting",
            "colour=red",
        ],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        err(&unknown).contains("unknown setting \"colour\""),
        "{}",
        err(&unknown)
    );

    let ok = ivory(
        &db,
        &[
            "install",
            "--manifest",
            &v1,
            "--tenant",
            "acme",
            "--approve",
            "--setting",
            "baseId=app1",
            "--json",
        ],
    );
    assert!(ok.status.success(), "{}", err(&ok));
    let installed: Value = serde_json::from_str(&out(&ok)).expect("json");
    assert_eq!(installed["result"], "installed");
    let items = list(&db);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["connector"], "governed");
    assert_eq!(items[0]["status"], "active");
    assert_eq!(items[0]["settings"]["baseId"], "app1");
    assert_eq!(items[0]["settings"]["tables"], "all", "defaults applied");
    let id = items[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(items[0]["webhook_path"], format!("/webhooks/{id}"));

    // An upgrade asking for a new host and scope needs fresh consent; the diff is shown.
    let v2 = manifest(
        dir.path(),
        "2.0.0",
        &["api.example.com", "files.example.com"],
        &["records:read", "records:write"],
    );
    let needs = ivory(&db, &["install", "--manifest", &v2, "--tenant", "acme"]);
    assert_eq!(needs.status.code(), Some(1));
    assert!(
        err(&needs).contains("new scopes: records:write"),
        "{}",
        err(&needs)
    );
    assert!(
        err(&needs).contains("new hosts:  files.example.com"),
        "{}",
        err(&needs)
    );
    assert_eq!(
        list(&db)[0]["version"],
        "1.0.0",
        "nothing changed without consent"
    );
    let upgraded = ivory(
        &db,
        &[
            "install",
            "--manifest",
            &v2,
            "--tenant",
            "acme",
            "--approve",
        ],
    );
    assert!(upgraded.status.success(), "{}", err(&upgraded));
    assert_eq!(list(&db)[0]["version"], "2.0.0");
    assert_eq!(list(&db)[0]["settings"]["baseId"], "app1", "settings kept");

    // Fewer scopes and hosts: proceeds without asking.
    let v3 = manifest(dir.path(), "3.0.0", &["api.example.com"], &["records:read"]);
    let smaller = ivory(&db, &["install", "--manifest", &v3, "--tenant", "acme"]);
    assert!(smaller.status.success(), "{}", err(&smaller));
    assert_eq!(list(&db)[0]["version"], "3.0.0");

    // Uninstall: status, credentials gone, and a second uninstall is an error.
    let connect = ivory(
        &db,
        &[
            "connect",
            "--manifest",
            &v3,
            "--tenant",
            "acme",
            "--access-token",
            "fake-token-for-test",
        ],
    );
    assert!(connect.status.success(), "{}", err(&connect));
    let gone = ivory(&db, &["uninstall", "governed", "--tenant", "acme"]);
    assert!(gone.status.success(), "{}", err(&gone));
    assert_eq!(list(&db)[0]["status"], "uninstalled");
    let again = ivory(&db, &["uninstall", "governed", "--tenant", "acme"]);
    assert_eq!(again.status.code(), Some(1));
    // Connecting needs an installation again.
    let connect = ivory(
        &db,
        &[
            "connect",
            "--manifest",
            &v3,
            "--tenant",
            "acme",
            "--access-token",
            "fake-token-for-test",
        ],
    );
    assert_eq!(connect.status.code(), Some(1));
}

#[test]
fn unknown_listings_and_bad_settings_are_usage_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let unknown = ivory(
        &db,
        &[
            "install",
            "no-such-listing",
            "--tenant",
            "acme",
            "--approve",
        ],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(err(&unknown).contains("unknown listing"));
    let bad = ivory(
        &db,
        &[
            "install",
            "example-items",
            "--tenant",
            "acme",
            "--approve",
            "--setting",
            "novalue",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(err(&bad).contains("expected KEY=VALUE"));
    let empty = ivory(&db, &["installations", "list", "--tenant", "nobody"]);
    assert!(empty.status.success());
    assert!(out(&empty).contains("no installations"));
}

#[test]
fn publishing_needs_a_matching_certification() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let connector = dir.path().join("acme");
    std::fs::create_dir_all(&connector).expect("mkdir");
    let path = manifest(&connector, "1.0.0", &["api.example.com"], &["records:read"]);
    let created = ivory(&db, &["publisher", "create", "Acme Inc."]);
    assert!(created.status.success(), "{}", err(&created));
    let token = out(&created)
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN (shown once): "))
        .expect("token line")
        .to_owned();
    let refused = Command::cargo_bin("ivory")
        .expect("binary")
        .arg("--db")
        .arg(&db)
        .args(["publish", &path])
        .env("TOKEN", &token)
        .output()
        .expect("runs");
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        err(&refused).contains("no passing certification report"),
        "{}",
        err(&refused)
    );
    assert!(
        !err(&refused).contains(&token),
        "the token is never printed back"
    );
    let unknown = Command::cargo_bin("ivory")
        .expect("binary")
        .arg("--db")
        .arg(&db)
        .args(["publish", &path, "--token", "ivp_unknown_fake"])
        .output()
        .expect("runs");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(err(&unknown).contains("not known"), "{}", err(&unknown));
    let duplicate = ivory(&db, &["publisher", "create", "Acme Inc."]);
    assert_eq!(duplicate.status.code(), Some(2));
}
