//! The manifest: fixtures, every validation rule with its exact message, the committed JSON
//! Schema, loading and error reporting.
//!
//! Refresh the committed schema with `IVORY_BLESS=1 cargo test -p ivory-sdk --test manifest`.

use std::path::{Path, PathBuf};

use ivory_sdk::manifest::{
    Action, AuthType, ConflictPolicy, CursorKind, Direction, FieldType, Manifest, ManifestError,
    Trigger, ValidationError, ValidationMode, WebhookScheme,
};
use serde_json::{Value, json};

const FIXTURES: [&str; 3] = ["hubspot", "stripe", "airtable"];

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests")
}

fn fixture_text(name: &str) -> String {
    let path = fixtures_dir().join(format!("{name}.json"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&fixture_text(name)).expect("fixture is JSON")
}

/// The error lines of a document, or an empty list when it is valid.
fn lines(doc: &str, mode: ValidationMode) -> Vec<String> {
    match Manifest::parse(doc, mode) {
        Ok(_) => Vec::new(),
        Err(ManifestError::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
        Err(other) => vec![format!("unexpected error: {other}")],
    }
}

/// Sets (`Some`) or removes (`None`) the value at a JSON pointer; `-` appends to an array.
fn edit(doc: &mut Value, pointer: &str, value: Option<Value>) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let target = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("no parent for {pointer}"));
    match (target, value) {
        (Value::Object(map), Some(value)) => {
            map.insert(key.to_owned(), value);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Array(items), Some(value)) if key == "-" => items.push(value),
        (Value::Array(items), Some(value)) => items[key.parse::<usize>().expect("index")] = value,
        (Value::Array(items), None) => {
            items.remove(key.parse::<usize>().expect("index"));
        }
        (other, _) => panic!("cannot edit {pointer} in {other}"),
    }
}

struct Case {
    base: &'static str,
    edits: Vec<(&'static str, Option<Value>)>,
    mode: ValidationMode,
    expect: Vec<&'static str>,
}

fn case(
    base: &'static str,
    edits: Vec<(&'static str, Option<Value>)>,
    expect: &[&'static str],
) -> Case {
    Case {
        base,
        edits,
        mode: ValidationMode::Production,
        expect: expect.to_vec(),
    }
}

fn set(pointer: &'static str, value: Value) -> (&'static str, Option<Value>) {
    (pointer, Some(value))
}

fn del(pointer: &'static str) -> (&'static str, Option<Value>) {
    (pointer, None)
}

/// Runs every case and reports all mismatches at once.
fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for (number, case) in cases.into_iter().enumerate() {
        let mut doc = fixture(case.base);
        for (pointer, value) in &case.edits {
            edit(&mut doc, pointer, value.clone());
        }
        let got = lines(&doc.to_string(), case.mode);
        if got != case.expect {
            failures.push(format!(
                "case #{number} ({} with {:?}):\n  expected {:#?}\n  got      {:#?}",
                case.base, case.edits, case.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

// -------------------------------------------------------------------------------------------
// Fixtures

#[test]
fn reference_fixtures_are_valid_in_production_mode() {
    for name in FIXTURES {
        let manifest = Manifest::parse(&fixture_text(name), ValidationMode::Production)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!manifest.id.is_empty());
    }
}

#[test]
fn hubspot_fixture_reads_as_declared() {
    let m = Manifest::parse(&fixture_text("hubspot"), ValidationMode::Production).expect("valid");
    assert_eq!(m.id, "hubspot-contacts");
    assert_eq!(m.connection.auth, AuthType::Oauth2);
    assert_eq!(
        m.connection.token_url.as_deref(),
        Some("https://api.hubapi.com/oauth/v3/token")
    );
    assert!(m.connection.pkce, "pkce defaults to true");
    assert_eq!(m.connection.sync.cursor, CursorKind::UpdatedAt);
    assert_eq!(m.connection.sync.direction, Direction::Bidirectional);
    assert_eq!(
        m.connection.sync.conflict_policy,
        ConflictPolicy::NewestWins
    );
    assert_eq!(m.connection.sync.rate_limit_per_minute, 110);
    let webhooks = m.webhooks.expect("webhooks");
    assert_eq!(webhooks.scheme, WebhookScheme::HubspotV3);
    assert_eq!(
        webhooks.tolerance_seconds, 300,
        "toleranceSeconds defaults to 300"
    );
}

#[test]
fn stripe_and_airtable_fixtures_read_as_declared() {
    let stripe =
        Manifest::parse(&fixture_text("stripe"), ValidationMode::Production).expect("valid");
    assert_eq!(stripe.connection.auth, AuthType::ApiKey);
    assert_eq!(stripe.objects[0].fields[6].r#type, FieldType::Formula);
    assert_eq!(
        stripe.workflows[0].trigger,
        Trigger::WebhookEvent("invoice.payment_failed".to_owned())
    );
    assert!(matches!(
        stripe.workflows[0].actions[1],
        Action::CreateRecord(_)
    ));

    let airtable =
        Manifest::parse(&fixture_text("airtable"), ValidationMode::Production).expect("valid");
    assert_eq!(airtable.settings[0].key, "baseId");
    assert!(airtable.settings[0].required);
    assert_eq!(airtable.settings[1].default.as_deref(), Some("Deals"));
    let weighted = &airtable.objects[0].fields[5];
    assert_eq!(weighted.name, "Weighted Amount");
    assert_eq!(
        weighted.formula.as_deref(),
        Some("ROUND({Amount} * {Probability}, 2)")
    );
}

#[test]
fn a_manifest_round_trips_through_serialization() {
    for name in FIXTURES {
        let first =
            Manifest::parse(&fixture_text(name), ValidationMode::Production).expect("valid");
        let text = serde_json::to_string_pretty(&first).expect("serializes");
        let second = Manifest::parse(&text, ValidationMode::Production).expect("still valid");
        assert_eq!(first, second, "{name}");
    }
}

#[test]
fn a_minimal_manifest_needs_only_identity_and_connection() {
    let doc = json!({
        "id": "public-data", "name": "Public data", "version": "0.1.0-beta.1",
        "publisher": "Example", "description": "Reads a public feed.",
        "connection": { "type": "none", "sync": {
            "cursor": "none", "direction": "inbound", "conflictPolicy": "source_wins",
            "rateLimitPerMinute": 60 } }
    });
    let m = Manifest::parse(&doc.to_string(), ValidationMode::Production).expect("valid");
    assert!(m.hosts.is_empty() && m.objects.is_empty() && m.webhooks.is_none());
}

// -------------------------------------------------------------------------------------------
// Stage one: the schema

#[test]
fn schema_stage_errors_have_exact_messages() {
    run(vec![
        case(
            "hubspot",
            vec![set("/foo", json!(1))],
            &["foo: unknown key"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/rateLimit", json!(5))],
            &["connection.sync.rateLimit: unknown key"],
        ),
        case(
            "stripe",
            vec![set("/objects/0/fields/1/unique", json!(true))],
            &["objects[0].fields[1].unique: unknown key"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/cursor", json!("timestamp"))],
            &["connection.sync.cursor: must be one of updated_at, opaque_token, none"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/cursor", json!(3))],
            &["connection.sync.cursor: must be one of updated_at, opaque_token, none"],
        ),
        case(
            "hubspot",
            vec![set("/connection/type", json!("basic"))],
            &["connection.type: must be one of oauth2, api_key, none"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/direction", json!("both"))],
            &["connection.sync.direction: must be one of inbound, outbound, bidirectional"],
        ),
        case(
            "hubspot",
            vec![set(
                "/connection/sync/conflictPolicy",
                json!("last_write_wins"),
            )],
            &[
                "connection.sync.conflictPolicy: must be one of source_wins, platform_wins, newest_wins",
            ],
        ),
        case(
            "hubspot",
            vec![set("/webhooks/scheme", json!("github"))],
            &[
                "webhooks.scheme: must be one of stripe, hubspot-v3, airtable, standard-webhooks, hmac-sha256",
            ],
        ),
        case(
            "stripe",
            vec![set("/objects/0/fields/2/type", json!("text"))],
            &[
                "objects[0].fields[2].type: must be one of string, number, currency, boolean, datetime, reference, json, formula",
            ],
        ),
        case(
            "hubspot",
            vec![set("/name", json!(5))],
            &["name: must be a string"],
        ),
        case(
            "hubspot",
            vec![set("/hosts", json!("api.hubapi.com"))],
            &["hosts: must be an array"],
        ),
        case(
            "hubspot",
            vec![set("/connection/pkce", json!("yes"))],
            &["connection.pkce: must be a boolean"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync", json!([]))],
            &["connection.sync: must be an object"],
        ),
        case(
            "hubspot",
            vec![set("/connection/revocationUrl", Value::Null)],
            &["connection.revocationUrl: must be a string"],
        ),
        case("hubspot", vec![del("/id")], &["id: required"]),
        case(
            "hubspot",
            vec![del("/connection/sync/cursor")],
            &["connection.sync.cursor: required"],
        ),
        case(
            "stripe",
            vec![del("/objects/0/fields/0/type")],
            &["objects[0].fields[0].type: required"],
        ),
        case(
            "stripe",
            vec![set(
                "/workflows/0/actions/1",
                json!({ "sendEmail": { "to": "x" } }),
            )],
            &[
                "workflows[0].actions[1]: must be an object with exactly one of the keys setField, createRecord, log",
            ],
        ),
        case(
            "stripe",
            vec![set(
                "/workflows/0/actions/2",
                json!({ "log": { "message": "a" }, "setField": {} }),
            )],
            &[
                "workflows[0].actions[2]: must be an object with exactly one of the keys setField, createRecord, log",
            ],
        ),
        case(
            "stripe",
            vec![set("/workflows/0/actions/2", json!({ "log": {} }))],
            &["workflows[0].actions[2].log.message: required"],
        ),
        case(
            "stripe",
            vec![set(
                "/workflows/0/actions/0/setField/fields",
                json!("status"),
            )],
            &["workflows[0].actions[0].setField.fields: unknown key"],
        ),
        case(
            "airtable",
            vec![set(
                "/workflows/0/trigger",
                json!({ "recordCondition": { "kind": "deal" } }),
            )],
            &["workflows[0].trigger.recordCondition.condition: required"],
        ),
        case(
            "airtable",
            vec![set("/workflows/0/trigger", json!({ "schedule": "daily" }))],
            &[
                "workflows[0].trigger: must be an object with exactly one of the keys webhookEvent, recordCondition",
            ],
        ),
        case(
            "stripe",
            vec![set("/workflows/0/trigger/webhookEvent", json!(42))],
            &["workflows[0].trigger.webhookEvent: must be a string"],
        ),
    ]);
}

#[test]
fn numeric_bounds_are_checked_by_the_schema_with_the_rule_messages() {
    run(vec![
        case(
            "hubspot",
            vec![set("/connection/sync/rateLimitPerMinute", json!(0))],
            &["connection.sync.rateLimitPerMinute: must be > 0"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/rateLimitPerMinute", json!(-5))],
            &["connection.sync.rateLimitPerMinute: must be > 0"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/rateLimitPerMinute", json!(100_001))],
            &["connection.sync.rateLimitPerMinute: must be <= 100000"],
        ),
        case(
            "hubspot",
            vec![set(
                "/connection/sync/rateLimitPerMinute",
                json!(5_000_000_000_u64),
            )],
            &["connection.sync.rateLimitPerMinute: must be <= 100000"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/rateLimitPerMinute", json!(1.5))],
            &["connection.sync.rateLimitPerMinute: must be an integer"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/rateLimitPerMinute", json!(110.0))],
            &[
                "connection.sync.rateLimitPerMinute: must be an integer written without a fraction, such as 110",
            ],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/rateLimitPerMinute", json!("110"))],
            &["connection.sync.rateLimitPerMinute: must be an integer"],
        ),
        case(
            "stripe",
            vec![set("/connection/sync/burst", json!(0))],
            &["connection.sync.burst: must be > 0"],
        ),
        case(
            "stripe",
            vec![set("/webhooks/toleranceSeconds", json!(0))],
            &["webhooks.toleranceSeconds: must be > 0"],
        ),
        case(
            "stripe",
            vec![set("/webhooks/toleranceSeconds", json!(3601))],
            &["webhooks.toleranceSeconds: must be <= 3600"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/lookbackSeconds", json!(-1))],
            &["connection.sync.lookbackSeconds: must be >= 0"],
        ),
        case(
            "hubspot",
            vec![set("/connection/sync/lookbackSeconds", json!(604_801))],
            &["connection.sync.lookbackSeconds: must be <= 604800"],
        ),
    ]);
}

#[test]
fn schema_errors_are_all_reported_in_path_order() {
    run(vec![case(
        "stripe",
        vec![
            set("/zeta", json!(1)),
            set(
                "/objects/0/fields/-",
                json!({ "name": "x", "type": "string", "formula": 1 }),
            ),
            set("/connection/sync/cursor", json!("page")),
            set("/alpha", json!(1)),
            set("/objects/0/fields/2/type", json!(1)),
            set("/connection/sync/rateLimitPerMinute", json!(0)),
        ],
        &[
            "alpha: unknown key",
            "connection.sync.cursor: must be one of updated_at, opaque_token, none",
            "connection.sync.rateLimitPerMinute: must be > 0",
            "objects[0].fields[2].type: must be one of string, number, currency, boolean, datetime, reference, json, formula",
            "objects[0].fields[8].formula: must be a string",
            "zeta: unknown key",
        ],
    )]);
}

#[test]
fn array_indices_sort_numerically() {
    let mut doc = fixture("stripe");
    let fields = doc
        .pointer_mut("/objects/0/fields")
        .and_then(Value::as_array_mut)
        .expect("fields");
    while fields.len() < 11 {
        fields.push(json!({ "name": format!("extra{}", fields.len()), "type": "string" }));
    }
    fields[2]["type"] = json!("text");
    fields[10]["type"] = json!("text");
    let got = lines(&doc.to_string(), ValidationMode::Production);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].starts_with("objects[0].fields[2].type:"), "{got:#?}");
    assert!(
        got[1].starts_with("objects[0].fields[10].type:"),
        "{got:#?}"
    );
}

#[test]
fn non_object_documents_are_reported_at_the_root() {
    assert_eq!(
        lines("[]", ValidationMode::Production),
        vec!["(root): must be an object"]
    );
}

#[test]
fn duplicate_keys_are_errors_not_silently_overwritten() {
    let text = fixture_text("hubspot").replacen(
        "\"tokenUrl\": \"https://api.hubapi.com/oauth/v3/token\",",
        "\"tokenUrl\": \"https://api.hubapi.com/oauth/v3/token\", \"tokenUrl\": \"https://evil.example/token\",",
        1,
    );
    assert_eq!(
        lines(&text, ValidationMode::Production),
        vec!["connection.tokenUrl: duplicate key"]
    );
}

#[test]
fn map_keys_that_are_not_identifiers_are_quoted_in_paths() {
    run(vec![case(
        "airtable",
        vec![set(
            "/workflows/0/actions/0/createRecord",
            json!({ "kind": "deal", "fields": { "Name": "x", "Amount Due": 1 } }),
        )],
        &[
            r#"workflows[0].actions[0].createRecord.fields["Amount Due"]: unknown field "Amount Due" of object kind "deal""#,
        ],
    )]);
}

// -------------------------------------------------------------------------------------------
// Stage two: the semantic rules

#[test]
fn identity_rules() {
    run(vec![
        case(
            "hubspot",
            vec![set("/id", json!("HubSpot"))],
            &[
                "id: must be a lowercase slug (a-z, 0-9, -; 2–64 characters; starting with a letter)",
            ],
        ),
        case(
            "hubspot",
            vec![set("/id", json!("h"))],
            &[
                "id: must be a lowercase slug (a-z, 0-9, -; 2–64 characters; starting with a letter)",
            ],
        ),
        case(
            "hubspot",
            vec![set("/id", json!("1hubspot"))],
            &[
                "id: must be a lowercase slug (a-z, 0-9, -; 2–64 characters; starting with a letter)",
            ],
        ),
        case(
            "hubspot",
            vec![set("/version", json!("1.0"))],
            &["version: must be a semantic version such as 1.2.0"],
        ),
        case(
            "hubspot",
            vec![set("/name", json!("  "))],
            &["name: must not be empty"],
        ),
        case(
            "hubspot",
            vec![set("/publisher", json!(""))],
            &["publisher: must not be empty"],
        ),
        case(
            "hubspot",
            vec![set("/description", json!(""))],
            &["description: must not be empty"],
        ),
    ]);
}

#[test]
fn listing_rules() {
    run(vec![
        case(
            "hubspot",
            vec![del("/listing/conflictPolicy")],
            &[
                "listing.conflictPolicy: a bidirectional connector must document its conflict policy for tenants",
            ],
        ),
        case(
            "hubspot",
            vec![set("/listing/conflictPolicy", json!("   "))],
            &[
                "listing.conflictPolicy: a bidirectional connector must document its conflict policy for tenants",
            ],
        ),
        case(
            "hubspot",
            vec![del("/listing")],
            &[
                "listing.conflictPolicy: a bidirectional connector must document its conflict policy for tenants",
            ],
        ),
        case(
            "stripe",
            vec![set("/listing/conflictPolicy", json!(""))],
            &["listing.conflictPolicy: must not be empty"],
        ),
        case(
            "stripe",
            vec![set("/listing/summary", json!(""))],
            &["listing.summary: must not be empty"],
        ),
        case(
            "stripe",
            vec![set("/listing/cursor", json!(" "))],
            &["listing.cursor: must not be empty"],
        ),
        case(
            "stripe",
            vec![set(
                "/listing/categories",
                json!(["billing", "", "billing"]),
            )],
            &[
                "listing.categories[1]: must not be empty",
                r#"listing.categories[2]: duplicate category "billing""#,
            ],
        ),
    ]);
}

#[test]
fn connection_rules() {
    run(vec![
        case(
            "hubspot",
            vec![del("/connection/authorizationUrl")],
            &["connection.authorizationUrl: required when connection.type is oauth2"],
        ),
        case(
            "hubspot",
            vec![del("/connection/tokenUrl")],
            &["connection.tokenUrl: required when connection.type is oauth2"],
        ),
        case(
            "hubspot",
            vec![set("/connection/scopes", json!([]))],
            &["connection.scopes: at least one scope is required for oauth2"],
        ),
        case(
            "hubspot",
            vec![del("/connection/scopes")],
            &["connection.scopes: at least one scope is required for oauth2"],
        ),
        case(
            "stripe",
            vec![set(
                "/connection/authorizationUrl",
                json!("https://connect.stripe.com/oauth/authorize"),
            )],
            &["connection.authorizationUrl: not allowed when connection.type is api_key"],
        ),
        case(
            "stripe",
            vec![set(
                "/connection/tokenUrl",
                json!("https://connect.stripe.com/oauth/token"),
            )],
            &["connection.tokenUrl: not allowed when connection.type is api_key"],
        ),
        case(
            "stripe",
            vec![set(
                "/connection/revocationUrl",
                json!("https://connect.stripe.com/oauth/deauthorize"),
            )],
            &["connection.revocationUrl: not allowed when connection.type is api_key"],
        ),
        case(
            "stripe",
            vec![set("/connection/scopes", json!(["read_only"]))],
            &["connection.scopes: not allowed when connection.type is api_key"],
        ),
        case(
            "stripe",
            vec![
                set("/connection/type", json!("none")),
                set(
                    "/connection/tokenUrl",
                    json!("https://connect.stripe.com/oauth/token"),
                ),
            ],
            &["connection.tokenUrl: not allowed when connection.type is none"],
        ),
        case(
            "hubspot",
            vec![set(
                "/connection/scopes",
                json!(["crm.objects.contacts.read crm.objects.contacts.write"]),
            )],
            &["connection.scopes[0]: must not contain whitespace (list each scope separately)"],
        ),
        case(
            "hubspot",
            vec![set("/connection/scopes", json!(["a", "", "a"]))],
            &[
                "connection.scopes[1]: must not be empty",
                r#"connection.scopes[2]: duplicate scope "a""#,
            ],
        ),
    ]);
}

#[test]
fn url_rules() {
    run(vec![
        case(
            "hubspot",
            vec![set(
                "/connection/tokenUrl",
                json!("http://api.hubapi.com/oauth/v3/token"),
            )],
            &["connection.tokenUrl: must be an https URL"],
        ),
        case(
            "hubspot",
            vec![set(
                "/connection/authorizationUrl",
                json!("ftp://app.hubspot.com/oauth/authorize"),
            )],
            &["connection.authorizationUrl: must be an https URL"],
        ),
        case(
            "hubspot",
            vec![set(
                "/connection/tokenUrl",
                json!("http://127.0.0.1:8080/oauth/v3/token"),
            )],
            &[
                "connection.tokenUrl: must be an https URL (http and loopback URLs are allowed only in test mode)",
            ],
        ),
        case(
            "hubspot",
            vec![set(
                "/connection/tokenUrl",
                json!("http://localhost:8080/token"),
            )],
            &[
                "connection.tokenUrl: must be an https URL (http and loopback URLs are allowed only in test mode)",
            ],
        ),
        case(
            "hubspot",
            vec![set(
                "/connection/revocationUrl",
                json!("http://[::1]:9000/revoke"),
            )],
            &[
                "connection.revocationUrl: must be an https URL (http and loopback URLs are allowed only in test mode)",
            ],
        ),
        case(
            "hubspot",
            vec![set(
                "/connection/tokenUrl",
                json!("api.hubapi.com/oauth/v3/token"),
            )],
            &["connection.tokenUrl: not a valid URL (relative URL without a base)"],
        ),
        case(
            "hubspot",
            vec![set(
                "/connection/tokenUrl",
                json!("https://user:pass@api.hubapi.com/oauth/v3/token"),
            )],
            &["connection.tokenUrl: must not contain credentials"],
        ),
    ]);
}

#[test]
fn test_mode_allows_loopback_urls_and_hosts_only() {
    let mut cases = vec![
        case(
            "hubspot",
            vec![
                set(
                    "/connection/tokenUrl",
                    json!("http://127.0.0.1:8080/oauth/v3/token"),
                ),
                set(
                    "/connection/authorizationUrl",
                    json!("http://localhost:8080/oauth/authorize"),
                ),
                set(
                    "/connection/revocationUrl",
                    json!("http://[::1]:8080/revoke"),
                ),
                set("/hosts", json!(["127.0.0.1", "localhost", "[::1]"])),
            ],
            &[],
        ),
        case(
            "hubspot",
            vec![set(
                "/connection/tokenUrl",
                json!("http://api.hubapi.com/oauth/v3/token"),
            )],
            &["connection.tokenUrl: must be an https URL"],
        ),
    ];
    for case in &mut cases {
        case.mode = ValidationMode::Test;
    }
    run(cases);
}

#[test]
fn sync_rules() {
    run(vec![
        case(
            "stripe",
            vec![set("/connection/sync/burst", json!(1501))],
            &["connection.sync.burst: must be <= rateLimitPerMinute (1500)"],
        ),
        case(
            "stripe",
            vec![set("/connection/sync/conflictPolicy", json!("newest_wins"))],
            &["connection.sync.conflictPolicy: an inbound connector must use source_wins"],
        ),
        case(
            "stripe",
            vec![set("/connection/sync/direction", json!("outbound"))],
            &["connection.sync.conflictPolicy: an outbound connector must use platform_wins"],
        ),
        case(
            "stripe",
            vec![set("/connection/sync/lookbackSeconds", json!(60))],
            &[
                "connection.sync.lookbackSeconds: only allowed when connection.sync.cursor is updated_at",
            ],
        ),
    ]);
}

#[test]
fn host_rules() {
    run(vec![
        case(
            "hubspot",
            vec![set("/hosts", json!([]))],
            &["hosts: at least one upstream host is required"],
        ),
        case(
            "stripe",
            vec![del("/hosts")],
            &["hosts: at least one upstream host is required"],
        ),
        case(
            "hubspot",
            vec![set(
                "/hosts",
                json!(["api.hubapi.com", "https://api.hubapi.com/crm/v3"]),
            )],
            &["hosts[1]: must be a bare host name such as api.stripe.com, not a URL"],
        ),
        case(
            "hubspot",
            vec![set("/hosts", json!(["api.hubapi.com:443"]))],
            &["hosts[0]: must be a bare host name such as api.stripe.com, without a port"],
        ),
        case(
            "hubspot",
            vec![set("/hosts", json!(["API.HubApi.com"]))],
            &["hosts[0]: must be a lowercase host name such as api.stripe.com"],
        ),
        case(
            "hubspot",
            vec![set("/hosts", json!([""]))],
            &["hosts[0]: must not be empty"],
        ),
        case(
            "hubspot",
            vec![set("/hosts", json!(["api..hubapi.com"]))],
            &["hosts[0]: must be a lowercase host name such as api.stripe.com"],
        ),
        case(
            "hubspot",
            vec![set(
                "/hosts",
                json!(["api.hubapi.com", "api.hubspot.com", "api.hubapi.com"]),
            )],
            &[r#"hosts[2]: duplicate host "api.hubapi.com""#],
        ),
        case(
            "hubspot",
            vec![set("/hosts", json!(["localhost", "127.0.0.1"]))],
            &[
                "hosts[0]: a loopback host is allowed only in test mode",
                "hosts[1]: a loopback host is allowed only in test mode",
            ],
        ),
    ]);
}

#[test]
fn setting_and_webhook_rules() {
    run(vec![
        case(
            "airtable",
            vec![set("/settings/0/key", json!("base_id"))],
            &["settings[0].key: must be a camelCase identifier such as baseId"],
        ),
        case(
            "airtable",
            vec![set("/settings/1/key", json!("baseId"))],
            &[r#"settings[1].key: duplicate setting key "baseId""#],
        ),
        case(
            "airtable",
            vec![set("/settings/0/default", json!("appXXXXXXXXXXXXXX"))],
            &["settings[0].default: not allowed on a required setting"],
        ),
        case(
            "airtable",
            vec![set("/settings/0/description", json!(""))],
            &["settings[0].description: must not be empty"],
        ),
        case(
            "stripe",
            vec![set(
                "/webhooks/events",
                json!([
                    "invoice.paid",
                    "",
                    "invoice paid",
                    "invoice.paid",
                    "invoice.payment_failed"
                ]),
            )],
            &[
                "webhooks.events[1]: must not be empty",
                "webhooks.events[2]: must not contain whitespace",
                r#"webhooks.events[3]: duplicate event "invoice.paid""#,
            ],
        ),
    ]);
}

#[test]
fn object_rules() {
    run(vec![
        case(
            "stripe",
            vec![set("/objects/0/kind", json!("Invoice"))],
            &[
                "objects[0].kind: must be a snake_case slug such as invoice (a-z, 0-9, _; 1–64 characters; starting with a letter)",
                r#"workflows[0].actions[0].setField.kind: unknown object kind "invoice" (declare it in objects, or use a platform kind: task)"#,
            ],
        ),
        case(
            "airtable",
            vec![set(
                "/objects/-",
                json!({ "kind": "task", "fields": [{ "name": "title", "type": "string" }] }),
            )],
            &[r#"objects[1].kind: "task" is a platform kind and cannot be declared"#],
        ),
        case(
            "airtable",
            vec![set(
                "/objects/-",
                json!({ "kind": "deal", "fields": [{ "name": "title", "type": "string" }] }),
            )],
            &[r#"objects[1].kind: duplicate object kind "deal""#],
        ),
        case(
            "airtable",
            vec![set("/objects/0/label", json!(""))],
            &["objects[0].label: must not be empty"],
        ),
        case(
            "airtable",
            vec![set("/objects/-", json!({ "kind": "empty", "fields": [] }))],
            &["objects[1].fields: at least one field is required"],
        ),
        case(
            "airtable",
            vec![set(
                "/objects/0/fields/-",
                json!({ "name": "Amount", "type": "number" }),
            )],
            &[r#"objects[0].fields[7].name: duplicate field name "Amount""#],
        ),
        case(
            "airtable",
            vec![set(
                "/objects/0/fields/-",
                json!({ "name": "{Total}", "type": "number" }),
            )],
            &["objects[0].fields[7].name: must not contain { or }"],
        ),
        case(
            "airtable",
            vec![set(
                "/objects/0/fields/-",
                json!({ "name": "", "type": "number" }),
            )],
            &["objects[0].fields[7].name: must not be empty"],
        ),
        case(
            "airtable",
            vec![del("/objects/0/fields/5/formula")],
            &["objects[0].fields[5].formula: required when type is formula"],
        ),
        case(
            "airtable",
            vec![set("/objects/0/fields/5/formula", json!(" "))],
            &["objects[0].fields[5].formula: must not be empty"],
        ),
        case(
            "airtable",
            vec![set(
                "/objects/0/fields/1/formula",
                json!("{Probability} * 2"),
            )],
            &["objects[0].fields[1].formula: only allowed when type is formula"],
        ),
        case(
            "airtable",
            vec![set(
                "/objects/0/fields/5/formula",
                json!("ROUND({Amount} * {Probablity}, 2)"),
            )],
            &[
                r#"objects[0].fields[5].formula: unknown field {Probablity} (object kind "deal" has no such field)"#,
            ],
        ),
        case(
            "airtable",
            vec![set(
                "/objects/0/fields/5/formula",
                json!("{Weighted Amount} + 1"),
            )],
            &["objects[0].fields[5].formula: must not refer to its own field {Weighted Amount}"],
        ),
        case(
            "airtable",
            vec![set(
                "/objects/0/fields/5/formula",
                json!("ROUND({Amount * 2"),
            )],
            &["objects[0].fields[5].formula: has a { without a matching }"],
        ),
        case(
            "airtable",
            vec![set("/objects/0/fields/5/formula", json!("{Amount} + {}"))],
            &["objects[0].fields[5].formula: has an empty field reference {}"],
        ),
        case(
            "airtable",
            vec![set(
                "/objects/0/fields/6/formula",
                json!("CONCATENATE({Name}, \"{not a field}\")"),
            )],
            &[],
        ),
        case(
            "airtable",
            vec![set("/objects/0/fields/5/required", json!(true))],
            &[
                "objects[0].fields[5].required: not allowed on a formula field (the platform computes its value)",
            ],
        ),
        case(
            "stripe",
            vec![del("/objects/0/fields/7/references")],
            &["objects[0].fields[7].references: required when type is reference"],
        ),
        case(
            "stripe",
            vec![set("/objects/0/fields/0/references", json!("task"))],
            &["objects[0].fields[0].references: only allowed when type is reference"],
        ),
        case(
            "stripe",
            vec![set("/objects/0/fields/7/references", json!("customer"))],
            &[
                r#"objects[0].fields[7].references: unknown object kind "customer" (declare it in objects, or use a platform kind: task)"#,
            ],
        ),
    ]);
}

#[test]
fn workflow_rules() {
    let second = json!({
        "name": "payment-failed-follow-up",
        "trigger": { "webhookEvent": "invoice.paid" },
        "actions": [{ "log": { "message": "paid" } }]
    });
    run(vec![
        case(
            "stripe",
            vec![set("/workflows/-", second)],
            &[r#"workflows[1].name: duplicate workflow name "payment-failed-follow-up""#],
        ),
        case(
            "stripe",
            vec![set("/workflows/0/name", json!(""))],
            &["workflows[0].name: must not be empty"],
        ),
        case(
            "stripe",
            vec![del("/webhooks")],
            &["workflows[0].trigger.webhookEvent: requires a webhooks block"],
        ),
        case(
            "stripe",
            vec![set(
                "/workflows/0/trigger/webhookEvent",
                json!("charge.failed"),
            )],
            &[
                r#"workflows[0].trigger.webhookEvent: "charge.failed" is not listed in webhooks.events"#,
            ],
        ),
        case(
            "stripe",
            vec![set("/workflows/0/trigger/webhookEvent", json!(""))],
            &["workflows[0].trigger.webhookEvent: must not be empty"],
        ),
        case(
            "airtable",
            vec![set(
                "/workflows/0/trigger/recordCondition/kind",
                json!("opportunity"),
            )],
            &[
                r#"workflows[0].trigger.recordCondition.kind: unknown object kind "opportunity" (declare it in objects, or use a platform kind: task)"#,
            ],
        ),
        case(
            "airtable",
            vec![set(
                "/workflows/0/trigger/recordCondition/condition",
                json!(""),
            )],
            &["workflows[0].trigger.recordCondition.condition: must not be empty"],
        ),
        case(
            "airtable",
            vec![set(
                "/workflows/0/trigger/recordCondition/condition",
                json!("{Status} = \"won\""),
            )],
            &[
                r#"workflows[0].trigger.recordCondition.condition: unknown field {Status} (object kind "deal" has no such field)"#,
            ],
        ),
        case(
            "airtable",
            vec![set("/workflows/0/actions", json!([]))],
            &["workflows[0].actions: at least one action is required"],
        ),
        case(
            "stripe",
            vec![del("/workflows/0/actions/0/setField/kind")],
            &["workflows[0].actions[0].setField.kind: required when the trigger is a webhookEvent"],
        ),
        case(
            "stripe",
            vec![set("/workflows/0/actions/0/setField/kind", json!("charge"))],
            &[
                r#"workflows[0].actions[0].setField.kind: unknown object kind "charge" (declare it in objects, or use a platform kind: task)"#,
            ],
        ),
        case(
            "stripe",
            vec![set("/workflows/0/actions/0/setField/field", json!("state"))],
            &[
                r#"workflows[0].actions[0].setField.field: unknown field "state" of object kind "invoice""#,
            ],
        ),
        case(
            "stripe",
            vec![set(
                "/workflows/0/actions/0/setField/field",
                json!("outstanding"),
            )],
            &[
                r#"workflows[0].actions[0].setField.field: "outstanding" is a formula field, computed by the platform"#,
            ],
        ),
        case(
            "stripe",
            vec![set("/workflows/0/actions/0/setField/field", json!(""))],
            &["workflows[0].actions[0].setField.field: must not be empty"],
        ),
        case(
            "airtable",
            vec![set(
                "/workflows/0/actions/-",
                json!({ "setField": { "field": "Stage", "value": "closed" } }),
            )],
            &[],
        ),
        case(
            "airtable",
            vec![set(
                "/workflows/0/actions/-",
                json!({ "setField": { "field": "Weighted Amount", "value": 1 } }),
            )],
            &[
                r#"workflows[0].actions[2].setField.field: "Weighted Amount" is a formula field, computed by the platform"#,
            ],
        ),
        case(
            "stripe",
            vec![set(
                "/workflows/0/actions/1/createRecord/kind",
                json!("ticket"),
            )],
            &[
                r#"workflows[0].actions[1].createRecord.kind: unknown object kind "ticket" (declare it in objects, or use a platform kind: task)"#,
            ],
        ),
        case(
            "stripe",
            vec![set(
                "/workflows/0/actions/1/createRecord",
                json!({ "kind": "invoice", "fields": { "customer": "cus_123", "outstanding": 5 } }),
            )],
            &[
                r#"workflows[0].actions[1].createRecord.fields: missing required field "status" of object kind "invoice""#,
                r#"workflows[0].actions[1].createRecord.fields.outstanding: "outstanding" is a formula field, computed by the platform"#,
            ],
        ),
        case(
            "stripe",
            vec![set("/workflows/0/actions/2/log/message", json!(" "))],
            &["workflows[0].actions[2].log.message: must not be empty"],
        ),
    ]);
}

#[test]
fn semantic_errors_are_all_reported_in_path_order() {
    run(vec![case(
        "hubspot",
        vec![
            set("/version", json!("one")),
            set("/id", json!("Hub Spot")),
            del("/connection/tokenUrl"),
            set("/connection/sync/conflictPolicy", json!("source_wins")),
            set("/connection/sync/direction", json!("outbound")),
            set("/hosts", json!(["https://api.hubapi.com"])),
        ],
        &[
            "connection.sync.conflictPolicy: an outbound connector must use platform_wins",
            "connection.tokenUrl: required when connection.type is oauth2",
            "hosts[0]: must be a bare host name such as api.stripe.com, not a URL",
            "id: must be a lowercase slug (a-z, 0-9, -; 2–64 characters; starting with a letter)",
            "version: must be a semantic version such as 1.2.0",
        ],
    )]);
}

#[test]
fn validate_checks_manifests_built_in_code() {
    let mut manifest =
        Manifest::parse(&fixture_text("stripe"), ValidationMode::Production).expect("valid");
    manifest.connection.sync.rate_limit_per_minute = 0;
    manifest.webhooks = None;
    let error = manifest
        .validate(ValidationMode::Production)
        .expect_err("invalid");
    let got: Vec<String> = error
        .validation_errors()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        vec![
            "connection.sync.rateLimitPerMinute: must be > 0",
            "workflows[0].trigger.webhookEvent: requires a webhooks block",
        ]
    );
}

// -------------------------------------------------------------------------------------------
// Errors, loading

#[test]
fn validation_error_displays_as_path_colon_message() {
    let error = ValidationError {
        path: "connection.sync.rateLimitPerMinute".to_owned(),
        message: "must be > 0".to_owned(),
    };
    assert_eq!(
        error.to_string(),
        "connection.sync.rateLimitPerMinute: must be > 0"
    );
    let all = ManifestError::Invalid(vec![error.clone(), error]);
    assert_eq!(
        all.to_string(),
        "invalid manifest: connection.sync.rateLimitPerMinute: must be > 0; connection.sync.rateLimitPerMinute: must be > 0"
    );
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let error = Manifest::parse("{\n  \"id\": \"x\",\n  oops\n}", ValidationMode::Production)
        .expect_err("not JSON");
    match &error {
        ManifestError::Syntax {
            line,
            column,
            message,
        } => {
            assert_eq!((*line, *column), (3, 3));
            assert_eq!(message, "key must be a string");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "not valid JSON at line 3, column 3: key must be a string"
    );
    assert!(matches!(
        Manifest::parse("", ValidationMode::Production),
        Err(ManifestError::Syntax {
            line: 1,
            column: 0,
            ..
        })
    ));
    assert!(matches!(
        Manifest::parse("{} {}", ValidationMode::Production),
        Err(ManifestError::Syntax { .. })
    ));
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let text = format!("\u{feff}{}", fixture_text("stripe"));
    assert!(Manifest::parse(&text, ValidationMode::Production).is_ok());
}

#[test]
fn load_reads_a_file_or_a_directory_holding_manifest_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("manifest.json");
    std::fs::write(&file, fixture_text("airtable")).expect("write");
    let from_dir = Manifest::load(dir.path(), ValidationMode::Production).expect("dir");
    let from_file = Manifest::load(&file, ValidationMode::Production).expect("file");
    assert_eq!(from_dir, from_file);
    assert_eq!(from_dir.id, "airtable-base");
}

#[test]
fn load_names_the_missing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = Manifest::load(dir.path(), ValidationMode::Production).expect_err("missing");
    let expected = dir.path().join("manifest.json");
    match &error {
        ManifestError::Io { path, source } => {
            assert_eq!(path, &expected);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an io error, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read {}: ", expected.display()))
    );
}

// -------------------------------------------------------------------------------------------
// The committed JSON Schema

fn committed_schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/manifest.schema.json")
}

#[test]
fn committed_schema_is_up_to_date() {
    let generated = format!(
        "{}\n",
        serde_json::to_string_pretty(&Manifest::json_schema()).expect("serializes")
    );
    let path = committed_schema_path();
    if std::env::var_os("IVORY_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/manifest.schema.json is stale (the manifest types changed). Refresh it with:\n  \
         IVORY_BLESS=1 cargo test -p ivory-sdk --test manifest\nand commit the result."
    );
}

#[test]
fn committed_schema_is_a_valid_draft_2020_12_schema() {
    let schema = Manifest::json_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(jsonschema::meta::is_valid(&schema));
}

#[test]
fn fixtures_validate_against_the_schema() {
    let schema = Manifest::json_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for name in FIXTURES {
        let doc = fixture(name);
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
    let mut broken = fixture("hubspot");
    broken["connection"]["sync"]["rateLimitPerMinute"] = json!(0);
    assert!(!validator.is_valid(&broken));
}
