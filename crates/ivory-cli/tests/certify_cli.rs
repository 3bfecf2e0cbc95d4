//! `ivory certify` end to end: the Stripe reference connector passes every check, its report
//! is submitted with a publisher token and lets `ivory publish` list it; the HubSpot and
//! Airtable reference connectors pass too (HubSpot's conflict policy exercised on records
//! edited on both sides, Airtable installed with its base); a connector tree with a
//! live-looking key fails the secret scan; a connector without a harness target fails its
//! dynamic checks, saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn ivory(db: &Path, args: &[&str], token: Option<&str>) -> Output {
    let mut command = Command::cargo_bin("ivory").expect("binary");
    command.arg("--db").arg(db).args(args).env_remove("TOKEN");
    if let Some(token) = token {
        command.env("TOKEN", token);
    }
    command.output().expect("runs")
}

fn stripe_manifest() -> PathBuf {
    reference_manifest("stripe")
}

fn reference_manifest(connector: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../connectors/{connector}/manifest.json"))
}

/// Certifies a reference connector with `--json`: every check passes; returns the checks.
fn certified(connector: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("dir");
    let manifest = reference_manifest(connector);
    let output = ivory(
        &dir.path().join("ivory.db"),
        &["certify", manifest.to_str().expect("utf-8"), "--json"],
        None,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_str(&stdout).expect("report JSON");
    assert_eq!(json["connector_id"], connector);
    json["checks"].as_array().expect("checks").clone()
}

fn evidence<'a>(checks: &'a [Value], name: &str) -> &'a str {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["evidence"].as_str())
        .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
}

#[test]
fn the_hubspot_connector_is_certified_with_its_conflict_policy_exercised() {
    let checks = certified("hubspot");
    let conflicts = evidence(&checks, "conflict policy outcome");
    for expected in [
        "newest_wins",
        "upstream edited later: upstream kept on both sides",
        "platform edited later: platform kept on both sides",
        "same millisecond: upstream kept on both sides (tie rule)",
    ] {
        assert!(conflicts.contains(expected), "{conflicts}");
    }
    assert!(evidence(&checks, "pages all read").contains("4500 records stored"));
}

#[test]
fn the_airtable_connector_is_certified_on_its_base() {
    let checks = certified("airtable");
    assert!(evidence(&checks, "pages all read").contains("2200 records stored = 2200 upstream"));
    assert!(evidence(&checks, "conflict policy outcome").contains("inbound"));
}

#[test]
fn the_stripe_connector_is_certified_then_published() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let manifest = stripe_manifest();
    let manifest = manifest.to_str().expect("utf-8");

    let report = ivory(&db, &["certify", manifest, "--json"], None);
    let stdout = String::from_utf8_lossy(&report.stdout);
    assert_eq!(
        report.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let json: Value = serde_json::from_str(&stdout).expect("report JSON");
    assert_eq!(json["passed"], true);
    let names: Vec<&str> = json["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for expected in [
        "secret scan",
        "pages all read",
        "Retry-After honoured",
        "requests per minute",
        "crash and re-run",
        "webhook verification",
        "canary secrets",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        json["manifest_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert!(
        json["source_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );

    // Not certified yet: publishing is refused; with TOKEN, certify submits its report.
    let created = ivory(&db, &["publisher", "create", "Ivorycom"], None);
    let token = String::from_utf8_lossy(&created.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN (shown once): ").map(str::to_owned))
        .expect("token");
    assert_eq!(
        ivory(&db, &["publish", manifest], Some(&token))
            .status
            .code(),
        Some(1)
    );
    let submitted = ivory(&db, &["certify", manifest], Some(&token));
    assert_eq!(submitted.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&submitted.stderr).contains("submitted"));
    let published = ivory(&db, &["publish", manifest], Some(&token));
    assert_eq!(
        published.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    assert!(String::from_utf8_lossy(&published.stdout).contains("published: stripe 1.0.0"));
}

#[test]
fn a_hard_coded_live_key_and_a_missing_harness_fail() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let connector = dir.path().join("leaky");
    std::fs::create_dir_all(connector.join("src")).expect("mkdir");
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(stripe_manifest()).expect("read"))
            .expect("json");
    manifest["id"] = Value::from("leaky-stripe");
    std::fs::write(connector.join("manifest.json"), manifest.to_string()).expect("write");
    // Assembled at run time: no live-looking key is ever in the repository.
    let alphabet = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let body: String = (0..32)
        .map(|i| char::from(alphabet[(i * 17 + 5) % alphabet.len()]))
        .collect();
    let key = format!("sk_{}_{body}", "live");
    std::fs::write(
        connector.join("src/lib.rs"),
        format!("pub const KEY: &str = \"{key}\";\n"),
    )
    .expect("write");
    let output = ivory(
        &db,
        &[
            "certify",
            connector.join("manifest.json").to_str().expect("utf-8"),
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("secret scan") && l.contains("FAIL")),
        "{stdout}"
    );
    assert!(stdout.contains("stripe-live-secret-key"), "{stdout}");
    assert!(!stdout.contains(&key), "the key is never printed");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("dynamic checks") && l.contains("no harness target")),
        "{stdout}"
    );

    let missing = ivory(&db, &["certify", "/nonexistent/manifest.json"], None);
    assert_eq!(missing.status.code(), Some(2));
}
