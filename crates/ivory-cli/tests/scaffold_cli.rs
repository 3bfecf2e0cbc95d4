//! `ivory scaffold` end to end: a crate scaffolded outside the workspace builds, passes its
//! own tests and passes `ivory certify` (through its harness entry point) as generated; bad
//! names, an existing directory and unknown option values are usage errors (exit 2).
//!
//! The end-to-end test shares this workspace's target directory (`CARGO_TARGET_DIR`), so the
//! scaffolded crate reuses the SDK's compiled dependencies instead of building the world.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn ivory(args: &[&str]) -> Output {
    let mut command = Command::cargo_bin("ivory").expect("binary");
    command.args(args).env_remove("TOKEN");
    command.output().expect("runs")
}

/// The target directory this test was built in.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir holds tmp/")
        .to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_scaffolded_crate_outside_the_workspace_tests_and_certifies() {
    let outside = tempfile::tempdir().expect("dir");
    let dir = outside.path().join("acme-items");
    let dir_text = dir.to_str().expect("UTF-8");
    let created = ivory(&[
        "scaffold",
        "acme-items",
        "--auth",
        "oauth2",
        "--cursor",
        "updated_at",
        "--dir",
        dir_text,
    ]);
    assert_eq!(created.status.code(), Some(0), "{}", text(&created.stderr));
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "manifest.json",
        "README.md",
        "src/lib.rs",
        "src/mock.rs",
        "src/bin/harness.rs",
        "tests/sync.rs",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
    assert!(readme.contains("Conflict policy"), "{readme}");

    let tested = Command::new(env!("CARGO"))
        .args(["test", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("cargo test runs");
    assert!(
        tested.status.success(),
        "cargo test in the scaffolded crate failed:\n{}\n{}",
        text(&tested.stdout),
        text(&tested.stderr)
    );

    let mut certify = Command::cargo_bin("ivory").expect("binary");
    let certified = certify
        .args(["certify", &format!("{dir_text}/manifest.json"), "--json"])
        .env_remove("TOKEN")
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("certify runs");
    let stdout = text(&certified.stdout);
    assert_eq!(
        certified.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&certified.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("report JSON");
    assert_eq!(report["connector_id"], "acme-items");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for expected in [
        "oauth2 scopes",
        "pages all read",
        "Retry-After honoured",
        "requests per minute",
        "crash and re-run",
        "canary secrets",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
}

#[test]
fn invalid_names_are_usage_errors() {
    let outside = tempfile::tempdir().expect("dir");
    for name in ["Acme", "acme_items", "1acme", "a", "test", "ivory-sdk"] {
        let dir = outside.path().join("x");
        let output = ivory(&["scaffold", name, "--dir", dir.to_str().expect("UTF-8")]);
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(&format!("{name:?}")), "{stderr}");
        assert!(!dir.exists(), "nothing is created for {name}");
    }
}

#[test]
fn an_existing_directory_is_a_usage_error_and_left_untouched() {
    let outside = tempfile::tempdir().expect("dir");
    let dir = outside.path().join("acme-items");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("keep.txt"), "mine").expect("write");
    let output = ivory(&[
        "scaffold",
        "acme-items",
        "--dir",
        dir.to_str().expect("UTF-8"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("already exists"));
    let entries: Vec<_> = std::fs::read_dir(&dir).expect("read").collect();
    assert_eq!(entries.len(), 1, "the directory is left as it was");
}

#[test]
fn unknown_option_values_are_usage_errors() {
    let outside = tempfile::tempdir().expect("dir");
    let dir = outside.path().join("acme-items");
    let dir = dir.to_str().expect("UTF-8");
    for (flag, value) in [("--auth", "basic"), ("--cursor", "page_number")] {
        let output = ivory(&["scaffold", "acme-items", "--dir", dir, flag, value]);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(value), "{stderr}");
        assert!(stderr.contains("possible values"), "{stderr}");
    }
    assert!(!Path::new(dir).exists());
}
