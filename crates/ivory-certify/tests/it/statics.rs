//! The static checks on the clean connector, then on mutants of it that each break one rule:
//! the broken rule's check must fail and name the problem; the others keep their verdicts.

use ivory_certify::check_names::{
    ALL, CONFLICT_POLICY, DECLARED_HOSTS, MANIFEST_VALID, OAUTH2_SCOPES, SECRET_SCAN,
    WEBHOOKS_DECLARED,
};
use ivory_certify::{CertifyError, Check, StaticOptions, Verdict, all_pass, static_checks};
use ivory_sdk::manifest::ValidationMode;

use crate::support::{Planted, Tree, clean_fixture};

fn check<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check named {name:?} in {checks:#?}"))
}

/// Asserts that exactly the checks in `failing` fail.
fn assert_failing(checks: &[Check], failing: &[&str]) {
    let actual: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(actual, failing, "{checks:#?}");
}

#[test]
fn the_clean_fixture_passes_every_check() {
    let checks = static_checks(&clean_fixture().join("manifest.json")).expect("checks");
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ALL);
    assert!(all_pass(&checks), "{checks:#?}");

    assert_eq!(
        check(&checks, MANIFEST_VALID).evidence,
        "acme-contacts 0.3.0 is valid (production rules)"
    );
    assert!(
        check(&checks, SECRET_SCAN)
            .evidence
            .starts_with("no live-looking secret in 5 files")
    );
    let hosts = &check(&checks, DECLARED_HOSTS).evidence;
    assert!(
        hosts.starts_with("2 URL literal(s) in 2 Rust file(s), all on declared hosts [api.acme.test, auth.acme.test]"),
        "{hosts}"
    );
    assert!(
        hosts.contains("5 in test code on loopback or reserved hosts"),
        "{hosts}"
    );
    assert_eq!(
        check(&checks, OAUTH2_SCOPES).evidence,
        "2 scope(s): contacts.read, contacts.write"
    );
    assert!(
        check(&checks, CONFLICT_POLICY)
            .evidence
            .starts_with("bidirectional, newest_wins")
    );
    assert!(
        check(&checks, WEBHOOKS_DECLARED)
            .evidence
            .starts_with("webhooks declared (scheme standard-webhooks) for the code's verifier (Verifier at src/lib.rs:6:65"),
        "{}",
        check(&checks, WEBHOOKS_DECLARED).evidence
    );
    // A directory works as well as the file.
    assert_eq!(static_checks(&clean_fixture()).expect("checks"), checks);
}

#[test]
fn a_hard_coded_live_key_fails_the_secret_scan_with_the_rule_named() {
    let tree = Tree::clean_connector();
    let key = Planted::stripe_secret_key();
    let source = tree.read("src/lib.rs").replace(
        "pub struct AcmeContacts;",
        &format!("pub struct AcmeContacts;\n\nconst PUBLISHER_KEY: &str = \"{key}\";"),
    );
    tree.write("src/lib.rs", source);

    let checks = static_checks(&tree.manifest()).expect("checks");
    assert_failing(&checks, &[SECRET_SCAN]);
    let evidence = &check(&checks, SECRET_SCAN).evidence;
    assert!(
        evidence.contains("src/lib.rs:18:30: stripe-live-secret-key: sk_live_… (32 chars)"),
        "{evidence}"
    );
    assert!(
        !evidence.contains(&key[8..]),
        "the key leaked into the evidence"
    );
    let report = serde_json::to_string(&checks).expect("serialize");
    assert!(!report.contains(&key[8..]), "the key leaked into the JSON");
}

#[test]
fn calling_an_undeclared_host_fails_the_hosts_check() {
    let tree = Tree::clean_connector();
    let source = tree.read("src/lib.rs").replace(
        "pub struct AcmeContacts;",
        "pub struct AcmeContacts;\n\nconst ANALYTICS: &str = \"https://collect.tracker.io/v2/events\";\nconst AGAIN: &str = \"//collect.tracker.io/v2\";",
    );
    tree.write("src/lib.rs", source);
    // Loopback is fine in tests, not in the connector's own code.
    tree.write(
        "src/local.rs",
        "const DEV: &str = \"http://127.0.0.1:8080\";\n",
    );

    let checks = static_checks(&tree.manifest()).expect("checks");
    assert_failing(&checks, &[DECLARED_HOSTS]);
    let evidence = &check(&checks, DECLARED_HOSTS).evidence;
    assert_eq!(
        evidence,
        "2 undeclared host(s) called (declared: [api.acme.test, auth.acme.test]); 5 in test code on loopback or reserved hosts\n\
         127.0.0.1 at src/local.rs:1:19\n\
         collect.tracker.io at src/lib.rs:18:25, src/lib.rs:19:21"
    );

    // Declaring the host (and using a test-only host only in tests) fixes it.
    tree.edit_manifest(|m| {
        m["hosts"] = serde_json::json!(["api.acme.test", "collect.tracker.io"]);
    });
    std::fs::remove_file(tree.path().join("src/local.rs")).expect("remove");
    tree.write(
        "tests/local.rs",
        "const DEV: &str = \"http://127.0.0.1:8080\";\n",
    );
    assert!(all_pass(&static_checks(&tree.manifest()).expect("checks")));
}

#[test]
fn a_bidirectional_manifest_without_a_conflict_policy_text_fails() {
    let tree = Tree::clean_connector();
    tree.edit_manifest(|m| {
        m["listing"]
            .as_object_mut()
            .expect("listing")
            .remove("conflictPolicy");
    });
    let checks = static_checks(&tree.manifest()).expect("checks");
    // The SDK's validation knows the rule too.
    assert_failing(&checks, &[MANIFEST_VALID, CONFLICT_POLICY]);
    assert_eq!(
        check(&checks, MANIFEST_VALID).evidence,
        "listing.conflictPolicy: a bidirectional connector must document its conflict policy for tenants"
    );
    assert!(
        check(&checks, CONFLICT_POLICY)
            .evidence
            .starts_with("bidirectional connector (newest_wins) without listing.conflictPolicy")
    );
}

#[test]
fn an_inbound_listing_must_explain_its_policy_too() {
    let tree = Tree::clean_connector();
    tree.edit_manifest(|m| {
        m["connection"]["sync"]["direction"] = "inbound".into();
        m["connection"]["sync"]["conflictPolicy"] = "source_wins".into();
        m["listing"]["conflictPolicy"] = "   ".into();
    });
    let checks = static_checks(&tree.manifest()).expect("checks");
    assert_eq!(check(&checks, CONFLICT_POLICY).verdict, Verdict::Fail);
    assert_eq!(
        check(&checks, CONFLICT_POLICY).evidence,
        "listing.conflictPolicy is missing: every listing explains its conflict policy (inbound, source_wins) to tenants"
    );
}

#[test]
fn an_oauth2_connector_without_scopes_fails() {
    let tree = Tree::clean_connector();
    tree.edit_manifest(|m| m["connection"]["scopes"] = serde_json::json!([]));
    let checks = static_checks(&tree.manifest()).expect("checks");
    assert_failing(&checks, &[MANIFEST_VALID, OAUTH2_SCOPES]);
    assert!(
        check(&checks, OAUTH2_SCOPES)
            .evidence
            .starts_with("connection.scopes is empty")
    );
}

#[test]
fn an_api_key_connector_needs_no_scopes() {
    let tree = Tree::clean_connector();
    tree.edit_manifest(|m| {
        let connection = m["connection"].as_object_mut().expect("connection");
        connection.insert("type".into(), "api_key".into());
        for key in ["authorizationUrl", "tokenUrl", "scopes"] {
            connection.remove(key);
        }
    });
    // The consent URL constant is now on an undeclared host: only that check fails.
    let checks = static_checks(&tree.manifest()).expect("checks");
    assert_failing(&checks, &[DECLARED_HOSTS]);
    assert_eq!(
        check(&checks, OAUTH2_SCOPES).evidence,
        "not applicable: api_key connectors have no OAuth scopes"
    );
}

#[test]
fn verifying_webhooks_without_declaring_them_fails() {
    let tree = Tree::clean_connector();
    tree.edit_manifest(|m| {
        m.as_object_mut().expect("manifest").remove("webhooks");
    });
    let checks = static_checks(&tree.manifest()).expect("checks");
    assert_failing(&checks, &[WEBHOOKS_DECLARED]);
    let evidence = &check(&checks, WEBHOOKS_DECLARED).evidence;
    assert!(
        evidence.contains("verify_webhook at src/lib.rs:"),
        "{evidence}"
    );
    assert!(evidence.ends_with("but the manifest has no `webhooks` block declaring the scheme"));
}

#[test]
fn an_unparsable_manifest_fails_every_manifest_check_but_still_scans() {
    let tree = Tree::clean_connector();
    tree.write("manifest.json", "{ \"id\": ");
    tree.write(
        "src/extra.rs",
        format!("const K: &str = \"{}\";\n", Planted::github_token()),
    );
    let checks = static_checks(&tree.manifest()).expect("checks");
    assert_failing(
        &checks,
        &[
            MANIFEST_VALID,
            SECRET_SCAN,
            DECLARED_HOSTS,
            OAUTH2_SCOPES,
            CONFLICT_POLICY,
            WEBHOOKS_DECLARED,
        ],
    );
    assert!(
        check(&checks, MANIFEST_VALID)
            .evidence
            .starts_with("not valid JSON at line 1")
    );
    assert!(
        check(&checks, SECRET_SCAN)
            .evidence
            .contains("github-token")
    );
    assert!(
        check(&checks, DECLARED_HOSTS)
            .evidence
            .starts_with("not checked")
    );
}

#[test]
fn test_mode_admits_loopback_hosts() {
    let tree = Tree::clean_connector();
    tree.edit_manifest(|m| m["hosts"] = serde_json::json!(["api.acme.test", "127.0.0.1"]));
    let checks = static_checks(&tree.manifest()).expect("checks");
    assert_failing(&checks, &[MANIFEST_VALID]);
    let options = StaticOptions {
        mode: ValidationMode::Test,
        ..StaticOptions::default()
    };
    let checks = ivory_certify::static_checks_with(&tree.manifest(), &options).expect("checks");
    assert!(all_pass(&checks), "{checks:#?}");
}

#[test]
fn a_missing_manifest_is_an_error() {
    let tree = Tree::empty();
    match static_checks(&tree.manifest()) {
        Err(error @ CertifyError::Manifest { .. }) => {
            assert!(error.to_string().contains("manifest.json"), "{error}");
        }
        other => panic!("expected a manifest error, got {other:?}"),
    }
}
