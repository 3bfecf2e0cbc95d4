//! The secret scanner: every planted secret found at its place, fakes let through, nothing
//! printed, and the tree-walking rules (allow-list, .gitignore, exclusions, binaries, size).

use std::collections::BTreeSet;

use ivory_certify::secrets::{SkipReason, scan_text};
use ivory_certify::{ScanError, ScanOptions, scan_secrets};

use crate::support::{ALNUM, Planted, Tree, random};

/// One planted secret: the rule that must report it, the file, and the line holding it; the
/// column is where `needle` starts on that line.
struct Plant {
    rule: &'static str,
    path: &'static str,
    line: usize,
    needle: String,
}

fn column_of(tree: &Tree, plant: &Plant) -> usize {
    let text = tree.read(plant.path);
    let line = text.lines().nth(plant.line - 1).expect("planted line");
    let byte = line.find(&plant.needle).expect("needle on its line");
    line[..byte].chars().count() + 1
}

/// A tree with one planted secret (or more) per rule, and the secrets' values.
fn planted_tree() -> (Tree, Vec<Plant>, Vec<String>) {
    let tree = Tree::empty();
    let sk = Planted::stripe_secret_key();
    let rk = Planted::stripe_restricted_key();
    let whsec = Planted::webhook_secret();
    let hubspot = Planted::hubspot_token();
    let airtable = Planted::airtable_token();
    let aws = Planted::aws_key_id();
    let github = Planted::github_token();
    let pem = Planted::pem_key();
    let embedded_body = random(30, 64, ALNUM);
    let generic: Vec<String> = (1..=5).map(Planted::generic).collect();

    tree.write(
        "src/keys.rs",
        format!(
            "//! Planted secrets.\nconst STRIPE: &str = \"{sk}\";\nfn f() {{ let restricted = \"{rk}\"; }}\nconst API_TOKEN: &str = \"{}\";\nfn g() {{ std::env::set_var(\"ACME_API_KEY\", \"{}\"); }}\n",
            generic[1], generic[4]
        ),
    );
    tree.write(
        "config/app.toml",
        format!(
            "webhook_secret = \"{whsec}\"\nclient_secret = \"{}\"\n",
            generic[0]
        ),
    );
    tree.write(
        "tests/fixtures/hubspot.json",
        format!("{{\n  \"token\": \"{hubspot}\"\n}}\n"),
    );
    tree.write(
        "README.md",
        format!("# Notes\n\nUse the token {airtable} to call the API.\n"),
    );
    tree.write(
        "deploy/aws.sh",
        format!("#!/bin/sh\nexport AWS_ACCESS_KEY_ID={aws}\n"),
    );
    tree.write(
        ".github/workflows/ci.yml",
        format!("env:\n  GH_TOKEN: {github}\n"),
    );
    tree.write("keys/signing.pem", &pem);
    tree.write(
        "src/embedded.rs",
        format!(
            "const KEY: &str =\n    \"-----BEGIN PRIVATE KEY-----\\n{embedded_body}\\n-----END PRIVATE KEY-----\\n\";\n"
        ),
    );
    tree.write(
        "fixtures/settings.json",
        format!("{{\"apiKey\": \"{}\"}}\n", generic[2]),
    );
    tree.write(".env", format!("ACME_PASSWORD={}\n", generic[3]));

    let plants = vec![
        plant("stripe-live-secret-key", "src/keys.rs", 2, &sk),
        plant("stripe-live-restricted-key", "src/keys.rs", 3, &rk),
        plant("generic-secret-assignment", "src/keys.rs", 4, "API_TOKEN"),
        plant(
            "generic-secret-assignment",
            "src/keys.rs",
            5,
            "ACME_API_KEY",
        ),
        plant("stripe-webhook-secret", "config/app.toml", 1, &whsec),
        plant(
            "generic-secret-assignment",
            "config/app.toml",
            2,
            "client_secret",
        ),
        plant(
            "hubspot-private-app-token",
            "tests/fixtures/hubspot.json",
            2,
            &hubspot,
        ),
        plant("airtable-personal-access-token", "README.md", 3, &airtable),
        plant("aws-access-key-id", "deploy/aws.sh", 2, &aws),
        plant("github-token", ".github/workflows/ci.yml", 2, &github),
        plant("private-key", "keys/signing.pem", 1, "-----BEGIN"),
        plant("private-key", "src/embedded.rs", 2, "-----BEGIN"),
        plant(
            "generic-secret-assignment",
            "fixtures/settings.json",
            1,
            "apiKey",
        ),
        plant("generic-secret-env", ".env", 1, "ACME_PASSWORD"),
    ];
    let mut values = vec![sk, rk, whsec, hubspot, airtable, aws, github, embedded_body];
    values.extend(generic);
    values.extend(
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_owned),
    );
    (tree, plants, values)
}

fn plant(rule: &'static str, path: &'static str, line: usize, needle: &str) -> Plant {
    Plant {
        rule,
        path,
        line,
        needle: needle.to_owned(),
    }
}

#[test]
fn finds_every_planted_secret_at_its_place() {
    let (tree, plants, _) = planted_tree();
    let report = scan_secrets(tree.path(), &ScanOptions::default()).expect("scan");

    let found: BTreeSet<(String, String, usize, usize)> = report
        .findings
        .iter()
        .map(|f| (f.rule.clone(), f.path.clone(), f.line, f.column))
        .collect();
    let expected: BTreeSet<(String, String, usize, usize)> = plants
        .iter()
        .map(|p| {
            (
                p.rule.to_owned(),
                p.path.to_owned(),
                p.line,
                column_of(&tree, p),
            )
        })
        .collect();
    assert_eq!(found, expected, "{:#?}", report.findings);
    // One finding per secret: the generic rules do not repeat what a provider rule reports.
    assert_eq!(report.findings.len(), plants.len());
    assert_eq!(report.files_scanned, 10);
    assert!(report.allowed.is_empty() && report.skipped.is_empty());
    // Every rule is exercised.
    let rules: BTreeSet<&str> = report.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules.len(), ivory_certify::secrets::rules().len());
}

#[test]
fn never_prints_a_secret() {
    let (tree, _, values) = planted_tree();
    let report = scan_secrets(tree.path(), &ScanOptions::default()).expect("scan");
    let mut printed = serde_json::to_string(&report).expect("serialize");
    for finding in &report.findings {
        printed.push_str(&finding.to_string());
        printed.push_str(&format!("{finding:?}"));
    }
    for value in &values {
        // Not the value, and not even its secret part (the first 8 characters after a prefix).
        let body = &value[value.len().saturating_sub(16)..];
        assert!(!printed.contains(body), "a secret leaked into the output");
    }
    let stripe = report
        .findings
        .iter()
        .find(|f| f.rule == "stripe-live-secret-key")
        .expect("stripe finding");
    assert_eq!(stripe.preview, "sk_live_… (32 chars)");
    let generic = report
        .findings
        .iter()
        .find(|f| f.path == "config/app.toml" && f.line == 2)
        .expect("generic finding");
    assert_eq!(generic.preview, "client_secret = … (32 chars)");
    let pem = report
        .findings
        .iter()
        .find(|f| f.path == "keys/signing.pem")
        .expect("pem finding");
    assert!(
        pem.preview.starts_with("-----BEGIN RSA PRIVATE KEY-----…"),
        "{}",
        pem.preview
    );
}

#[test]
fn lets_obviously_fake_values_through() {
    let tree = Tree::empty();
    let r = random(40, 24, ALNUM);
    let fakes = [
        format!("const A: &str = \"sk_test_{r}\";"),
        format!("const B: &str = \"rk_test_{r}\";"),
        format!("const C: &str = \"sk_{}_{}\";", "live", "x".repeat(24)),
        format!("const D: &str = \"sk_{}_TestKey{r}\";", "live"),
        "const E: &str = \"whsec_ivoryFakeWebhookSecret0000000000\";".to_owned(),
        "const F: &str = \"pat-na1-00000000-0000-0000-0000-000000000000\";".to_owned(),
        "const G: &str = \"AKIAIOSFODNN7EXAMPLE\";".to_owned(),
        format!("client_secret = \"dummy-{r}\""),
        format!("password = \"not_real_{r}\""),
        format!("let token = \"NotReal{r}\";"),
        format!("api_key: \"{}\"", "a".repeat(32)),
        format!("const H: &str = \"ghp_Example{r}{r}\";"),
        "token_url = \"https://auth.acme.test/oauth/token\"".to_owned(),
        format!("next_page_token = \"{r}\""),
        "token = \"abc123\"".to_owned(),
        "PASSWORD = \"${DB_PASSWORD_FROM_ENV_1}\"".to_owned(),
        "let secret = format!(\"{prefix}_{id}\");".to_owned(),
        "-----BEGIN PRIVATE KEY-----".to_owned(), // a header without a key body
    ];
    tree.write("src/fakes.rs", fakes.join("\n"));
    tree.write(
        ".env.example",
        "ACME_CLIENT_SECRET=xxxxxxxxxxxxxxxxxxxxxxxx\nACME_TOKEN=<your token here>\nAPI_KEY=changeme\n",
    );
    let report = scan_secrets(tree.path(), &ScanOptions::default()).expect("scan");
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
}

#[test]
fn allow_list_by_location_and_by_fingerprint() {
    let tree = Tree::empty();
    let first = Planted::generic(50);
    let second = Planted::pem_key();
    tree.write(
        "src/a.rs",
        format!("const API_TOKEN: &str = \"{first}\";\n"),
    );
    tree.write("tests/fixtures/key.pem", &second);
    let before = scan_secrets(tree.path(), &ScanOptions::default()).expect("scan");
    assert_eq!(before.findings.len(), 2);
    let pem = before
        .findings
        .iter()
        .find(|f| f.rule == "private-key")
        .expect("pem finding");

    tree.write(
        ".ivory-secrets-allow",
        format!(
            "# a generated test key\nsrc/a.rs:1\n{}:{}  # the fixture key, wherever it is\nsrc/gone.rs:3\n",
            pem.rule, pem.fingerprint
        ),
    );
    let after = scan_secrets(tree.path(), &ScanOptions::default()).expect("scan");
    assert!(after.is_clean(), "{:#?}", after.findings);
    assert_eq!(after.allowed.len(), 2);
    assert_eq!(after.unused_allow_entries, vec!["src/gone.rs:3".to_owned()]);

    // The fingerprint follows the value, not the place.
    tree.write("docs/copy.pem", &second);
    let moved = scan_secrets(tree.path(), &ScanOptions::default()).expect("scan");
    assert!(moved.is_clean(), "{:#?}", moved.findings);
}

#[test]
fn malformed_allow_list_is_an_error_naming_the_line() {
    let tree = Tree::empty();
    tree.write(".ivory-secrets-allow", "src/a.rs:1\nsrc/a.rs\n");
    match scan_secrets(tree.path(), &ScanOptions::default()) {
        Err(error @ ScanError::AllowList { line: 2, .. }) => {
            assert!(
                error.to_string().contains(".ivory-secrets-allow:2:"),
                "{error}"
            );
        }
        other => panic!("expected an allow-list error, got {other:?}"),
    }
}

#[test]
fn respects_gitignore_and_skips_excluded_directories() {
    let tree = Tree::empty();
    let key = Planted::stripe_secret_key();
    tree.write(".gitignore", "local.env\n/build/\n");
    tree.write("local.env", format!("STRIPE={key}\n"));
    tree.write("build/out.txt", &key);
    tree.write("target/debug/x.rs", &key);
    tree.write("crates/inner/target/y.rs", &key);
    tree.write("node_modules/pkg/index.js", &key);
    tree.write(".git/config", &key);
    tree.write("src/lib.rs", "//! clean\n");

    let report = scan_secrets(tree.path(), &ScanOptions::default()).expect("scan");
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.files_scanned, 2); // .gitignore and src/lib.rs

    let all = ScanOptions {
        respect_gitignore: false,
        exclude_dirs: Vec::new(),
        ..ScanOptions::default()
    };
    let report = scan_secrets(tree.path(), &all).expect("scan");
    let paths: BTreeSet<&str> = report.findings.iter().map(|f| f.path.as_str()).collect();
    // `.git/` is never scanned; everything else now is.
    assert_eq!(
        paths,
        BTreeSet::from([
            "build/out.txt",
            "crates/inner/target/y.rs",
            "local.env",
            "node_modules/pkg/index.js",
            "target/debug/x.rs",
        ])
    );
}

#[test]
fn skips_binary_and_oversized_files_and_says_so() {
    let tree = Tree::empty();
    let key = Planted::stripe_secret_key();
    let mut binary = b"\x7fELF\0\0".to_vec();
    binary.extend_from_slice(key.as_bytes());
    tree.write("bin/tool", binary);
    tree.write("data/big.json", format!("{}{key}", " ".repeat(2048)));
    tree.write("src/small.rs", format!("const K: &str = \"{key}\";\n"));

    let options = ScanOptions {
        max_file_bytes: 1024,
        ..ScanOptions::default()
    };
    let report = scan_secrets(tree.path(), &options).expect("scan");
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].path, "src/small.rs");
    assert_eq!(report.skipped.len(), 2);
    assert_eq!(report.skipped[0].path, "bin/tool");
    assert_eq!(report.skipped[0].reason, SkipReason::Binary);
    assert_eq!(report.skipped[1].path, "data/big.json");
    assert!(matches!(report.skipped[1].reason, SkipReason::TooLarge { bytes } if bytes > 1024));

    // The default limit is 2 MiB: the same file is scanned.
    let report = scan_secrets(tree.path(), &ScanOptions::default()).expect("scan");
    assert_eq!(report.findings.len(), 2);
}

#[test]
fn a_missing_root_is_an_error() {
    let tree = Tree::empty();
    let missing = tree.path().join("nope");
    assert!(matches!(
        scan_secrets(&missing, &ScanOptions::default()),
        Err(ScanError::Root { .. })
    ));
    tree.write("file.txt", "x");
    assert!(matches!(
        scan_secrets(&tree.path().join("file.txt"), &ScanOptions::default()),
        Err(ScanError::Root { .. })
    ));
}

#[test]
fn scan_text_uses_the_same_rules() {
    let key = Planted::github_token();
    let findings =
        scan_text("sync.log", &format!("line one\nauth with {key} failed\n")).expect("scan");
    assert_eq!(findings.len(), 1);
    assert_eq!(
        (
            findings[0].rule.as_str(),
            findings[0].line,
            findings[0].column
        ),
        ("github-token", 2, 11)
    );
    assert!(
        scan_text("clean.log", "nothing here")
            .expect("scan")
            .is_empty()
    );
}
