//! `ivory manifest check PATH`: exit 0 valid, 1 invalid (one `path: message` line per error on
//! stdout), 2 missing, unreadable or not JSON.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ivory-sdk/tests/fixtures/manifests")
        .join(format!("{name}.json"))
}

fn fixture_value(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn ivory() -> Command {
    let mut command = Command::cargo_bin("ivory").expect("the ivory binary");
    command.env_remove("IVORY_LOG");
    command
}

fn check(path: &Path) -> assert_cmd::assert::Assert {
    ivory().args(["manifest", "check"]).arg(path).assert()
}

#[test]
fn valid_manifests_exit_0_with_id_and_version() {
    for (name, id) in [
        ("hubspot", "hubspot-contacts"),
        ("stripe", "stripe-revenue"),
        ("airtable", "airtable-base"),
    ] {
        check(&fixture(name))
            .code(0)
            .stdout(format!("ok: {id} 1.0.0\n"))
            .stderr("");
    }
}

#[test]
fn a_directory_holding_manifest_json_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(fixture("stripe"), dir.path().join("manifest.json")).expect("copy");
    check(dir.path())
        .code(0)
        .stdout("ok: stripe-revenue 1.0.0\n");
}

#[test]
fn invalid_manifests_exit_1_with_every_error_on_its_own_line() {
    let mut doc = fixture_value("hubspot");
    doc["connection"]["sync"]["rateLimitPerMinute"] = json!(0);
    doc["connection"]["sync"]["cursor"] = json!("timestamp");
    doc["connection"]["extra"] = json!(true);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("manifest.json");
    std::fs::write(&file, doc.to_string()).expect("write");

    check(&file)
        .code(1)
        .stdout(
            "connection.extra: unknown key\n\
             connection.sync.cursor: must be one of updated_at, opaque_token, none\n\
             connection.sync.rateLimitPerMinute: must be > 0\n",
        )
        .stderr(format!("{}: 3 errors\n", file.display()));
}

#[test]
fn semantic_errors_exit_1_too() {
    let mut doc = fixture_value("hubspot");
    doc["connection"]["tokenUrl"] = json!("http://127.0.0.1:8080/oauth/v3/token");
    doc["listing"]
        .as_object_mut()
        .expect("listing")
        .remove("conflictPolicy");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("manifest.json");
    std::fs::write(&file, doc.to_string()).expect("write");

    check(&file).code(1).stdout(
        "connection.tokenUrl: must be an https URL (http and loopback URLs are allowed only in test mode)\n\
         listing.conflictPolicy: a bidirectional connector must document its conflict policy for tenants\n",
    );
}

#[test]
fn a_missing_file_exits_2_and_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.json");
    check(&missing)
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "cannot read {}",
            missing.display()
        )));
}

#[test]
fn a_directory_without_manifest_json_exits_2_naming_the_file_looked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = dir.path().join("manifest.json");
    check(dir.path())
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(format!(
            "cannot read {}",
            expected.display()
        )));
}

#[test]
fn non_json_exits_2_with_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("manifest.json");
    std::fs::write(&file, "{\n  \"id\": \"x\",\n  oops\n}\n").expect("write");
    check(&file).code(2).stdout("").stderr(format!(
        "error: {}: not valid JSON at line 3, column 3: key must be a string\n",
        file.display()
    ));
}
