//! DSAR end to end on loopback (PLATFORM.md §2): a real listener and HTTP, a real SQLite file,
//! real HS256 tokens, a real HubSpot sync against the testkit's fake before and after an
//! erasure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::TryStreamExt;
use ivory_connector_hubspot::{CONTACT_KIND, HubSpotConnector};
use ivory_runtime::store::{Actor, Approval, CommitScope, InstallRequest, Tombstones};
use ivory_runtime::{MasterKeys, Runner, Store, SyncOptions, Vault};
use ivory_sdk::fetch::RetryPolicy;
use ivory_sdk::{Clock, Credentials, Record, RecordOp, Secret};
use ivory_server::{Connectors, DsarVerifier, Server, ServerConfig};
use ivory_testkit::hubspot::{ACCESS_TOKEN, FakeHubSpot, Limits, START_MS};
use jiff::Timestamp;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use url::Url;

const TENANT: &str = "acme";
const SECRET: &str = "dsar-test-secret-not-real";
const EMAIL: &str = "Fake.Person@example.test";
const OTHER_EMAIL: &str = "other.fake@example.test";

struct World {
    _dir: TempDir,
    store: Store,
    vault: Arc<Vault>,
    installation: String,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("ivory.db").to_str().expect("utf-8"))
        .await
        .expect("store");
    let key = MasterKeys::generate_key().expect("key");
    let vault = Arc::new(Vault::new(
        MasterKeys::from_env_value(key.expose()).expect("keys"),
    ));
    store
        .install(
            &InstallRequest {
                tenant: TENANT,
                manifest: ivory_connector_hubspot::manifest(),
                settings: BTreeMap::new(),
                actor: &Actor::User("admin".into()),
                approval: Approval::Approved,
                now: at(0),
            },
            &vault,
        )
        .await
        .expect("install");
    let installation = store
        .installation(TENANT, &ivory_connector_hubspot::manifest().id)
        .await
        .expect("read")
        .expect("installed")
        .id;
    World {
        _dir: dir,
        store,
        vault,
        installation,
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(START_MS + ms).expect("timestamp")
}

/// A HubSpot sync whose clock is the fake's start plus `offset_seconds`.
async fn sync(w: &World, fake: &FakeHubSpot, offset_seconds: i64, full_refresh: bool) {
    Runner::new(
        w.store.clone(),
        Clock::starting_at(at(offset_seconds * 1000)),
    )
    .sync(
        TENANT,
        ivory_connector_hubspot::manifest(),
        &HubSpotConnector::default(),
        Credentials::OAuth2 {
            access_token: Secret::new(ACCESS_TOKEN),
            expires_at: None,
        },
        SyncOptions {
            base_url: Some(fake.base_url()),
            full_refresh,
            retry: RetryPolicy {
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                ..RetryPolicy::default()
            },
            ..SyncOptions::default()
        },
    )
    .await
    .expect("sync");
}

/// Stores records as a connector's sync would (same commit path).
async fn commit(w: &World, kind: &str, records: Vec<Record>) {
    let ops: Vec<RecordOp> = records
        .into_iter()
        .map(|record| RecordOp::Upsert {
            kind: kind.into(),
            record,
        })
        .collect();
    w.store
        .commit(
            &CommitScope {
                tenant: TENANT,
                installation: &w.installation,
                now: Clock::system().now(),
                fence: None,
            },
            &ops,
            None,
        )
        .await
        .expect("commit");
}

fn invoice(id: &str, email: &str, total: i64) -> Record {
    Record::new(
        id,
        json!({"id": id, "customer": "cus_test_1", "customer_email": email,
               "customer_name": "Fake Person", "total": total, "amount_paid": total,
               "currency": "eur"}),
    )
}

async fn records(store: &Store, kind: &str) -> BTreeMap<String, Value> {
    store
        .export_records(TENANT, kind, Tombstones::Include)
        .map_ok(|r| (r.id, r.data))
        .try_collect()
        .await
        .expect("export")
}

struct Running {
    base: Url,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(w: &World, dsar: Option<DsarVerifier>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base =
        Url::parse(&format!("http://{}", listener.local_addr().expect("addr"))).expect("url");
    let config = ServerConfig {
        scheduler: false,
        oauth_from_env: false,
        dsar: dsar.map(Arc::new),
        ..ServerConfig::default()
    };
    let server = Server::new(
        w.store.clone(),
        w.vault.clone(),
        Connectors::default(),
        config,
        Clock::system(),
    )
    .expect("server");
    let stop = CancellationToken::new();
    tokio::spawn(server.run(listener, stop.clone()));
    Running { base, stop }
}

fn now_s() -> i64 {
    Timestamp::now().as_second()
}

fn token(tenant: &str, exp: i64, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"tenant_id": tenant, "sub": "compliance-test", "jti": "jti-test-1", "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn valid(tenant: &str) -> String {
    token(tenant, now_s() + 60, SECRET)
}

async fn call(running: &Running, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(running.base.join(path).expect("url"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn kinds(export: &Value) -> BTreeMap<String, usize> {
    export["slices"]
        .as_array()
        .expect("slices is an array")
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().expect("kind").to_owned(),
                s["rows"].as_array().expect("rows").len(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_erase_and_a_later_sync_does_not_bring_the_contact_back() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    let erased = fake.create_contact(
        &[
            ("email", EMAIL),
            ("firstname", "Fake"),
            ("lastname", "Person"),
        ],
        1_000,
    );
    let kept = fake.create_contact(
        &[
            ("email", OTHER_EMAIL),
            ("firstname", "Other"),
            ("lastname", "Fake"),
        ],
        1_000,
    );
    let w = world().await;
    sync(&w, &fake, 10, false).await;
    assert_eq!(records(&w.store, CONTACT_KIND).await.len(), 2);
    commit(
        &w,
        "stripe_invoice",
        vec![
            invoice("in_test_1", EMAIL, 4200),
            invoice("in_test_2", OTHER_EMAIL, 99),
        ],
    )
    .await;
    commit(
        &w,
        "airtable_people",
        vec![
            Record::new(
                "rec_test_1",
                json!({"email": "fake.person@example.test", "notes": "n"}),
            ),
            Record::new("rec_test_2", json!({"email": OTHER_EMAIL, "notes": "n"})),
        ],
    )
    .await;

    let running = serve(
        &w,
        Some(DsarVerifier::hs256(SECRET.as_bytes()).expect("verifier")),
    )
    .await;
    let body = json!({"contact_id": erased, "tenant_id": "someone-else"}).to_string();

    // Export: the contact, its invoice (by email, case-insensitively) and its Airtable row.
    let (status, export) = call(&running, "/dsar/export", Some(&valid(TENANT)), &body).await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["contact_id"], erased);
    assert_eq!(export["service"], "ivory-connector-runtime");
    assert!(export["generated_at"].is_string(), "{export}");
    assert_eq!(
        kinds(&export),
        BTreeMap::from([
            ("airtable_people".to_owned(), 1),
            ("contact".to_owned(), 1),
            ("stripe_invoice".to_owned(), 1),
        ]),
        "{export}"
    );
    let invoice_row = &export["slices"][2]["rows"][0];
    assert_eq!(invoice_row["id"], "in_test_1");
    assert_eq!(export["slices"][1]["rows"][0]["data"]["email"], EMAIL);

    // The token's tenant wins: another tenant's token sees nothing of acme's, whatever the body.
    let (status, other) = call(
        &running,
        "/dsar/export",
        Some(&valid("globex")),
        &json!({"contact_id": erased, "tenant_id": TENANT}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{other}");
    assert_eq!(other["slices"], json!([]));

    // A legal hold: nothing happens.
    let held = json!({"contact_id": erased, "held": true}).to_string();
    let (status, answer) = call(&running, "/dsar/delete", Some(&valid(TENANT)), &held).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            &answer["blocked"],
            &answer["deleted"],
            &answer["anonymized"]
        ),
        (&json!(true), &json!(0), &json!(0))
    );
    assert_eq!(records(&w.store, CONTACT_KIND).await.len(), 2);

    // The erasure: contact and row deleted, the invoice anonymized with its amounts kept.
    let (status, answer) = call(&running, "/dsar/delete", Some(&valid(TENANT)), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"service": "ivory-connector-runtime", "contact_id": erased, "deleted": 2,
               "anonymized": 1, "blocked": false})
    );
    let contacts = records(&w.store, CONTACT_KIND).await;
    assert!(!contacts.contains_key(&erased) && contacts.contains_key(&kept));
    let invoices = records(&w.store, "stripe_invoice").await;
    assert_eq!(invoices["in_test_1"]["customer_email"], Value::Null);
    assert_eq!(invoices["in_test_1"]["customer_name"], Value::Null);
    assert_eq!(invoices["in_test_1"]["total"], 4200);
    assert_eq!(invoices["in_test_1"]["amount_paid"], 4200);
    assert_eq!(invoices["in_test_2"]["customer_email"], OTHER_EMAIL);
    let rows = records(&w.store, "airtable_people").await;
    assert!(!rows.contains_key("rec_test_1") && rows.contains_key("rec_test_2"));

    // Idempotent: the orchestrator's retry changes nothing and succeeds.
    let (status, again) = call(&running, "/dsar/delete", Some(&valid(TENANT)), &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (&again["deleted"], &again["anonymized"]),
        (&json!(0), &json!(0))
    );

    // Both calls are audited; no personal value is in any payload.
    let events = w.store.audit_events(TENANT).await.expect("audit");
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert!(types.contains(&"audit.contact.export"), "{types:?}");
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "audit.contact.delete")
            .count(),
        2
    );
    for event in &events {
        let text = event.payload.to_string().to_lowercase();
        assert!(!text.contains("fake.person"), "{text}");
    }
    let delete = events
        .iter()
        .find(|e| e.event_type == "audit.contact.delete")
        .expect("delete event");
    assert_eq!(delete.payload["jti"], "jti-test-1");
    assert_eq!(delete.payload["agent_id"], "dsar:compliance-test");
    assert_eq!(delete.payload["source_ip"], "127.0.0.1");

    // HubSpot still has the person (we erase our copy only); it changes there, and we sync
    // again, incrementally and then from scratch: the contact does not come back.
    assert!(fake.edit(&erased, &[("firstname", "Still")], 60_000));
    assert!(fake.edit(&kept, &[("firstname", "Changed")], 60_000));
    sync(&w, &fake, 120, false).await;
    sync(&w, &fake, 180, true).await;
    let contacts = records(&w.store, CONTACT_KIND).await;
    assert!(!contacts.contains_key(&erased), "{contacts:?}");
    assert_eq!(contacts[&kept]["firstname"], "Changed");

    // Stripe sends the invoice again (and a new one): stored only anonymized.
    commit(
        &w,
        "stripe_invoice",
        vec![
            invoice("in_test_1", EMAIL, 4200),
            invoice("in_test_3", "FAKE.person@example.test ", 7),
        ],
    )
    .await;
    let invoices = records(&w.store, "stripe_invoice").await;
    for id in ["in_test_1", "in_test_3"] {
        assert_eq!(invoices[id]["customer_email"], Value::Null, "{id}");
        assert_eq!(invoices[id]["customer_name"], Value::Null, "{id}");
    }
    assert_eq!(invoices["in_test_3"]["total"], 7);

    // Nothing of the person is left to export.
    let (status, export) = call(&running, "/dsar/export", Some(&valid(TENANT)), &body).await;
    assert_eq!(status, 200, "{export}");
    assert_eq!(export["slices"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymize_mode_keeps_the_contact_without_personal_fields_across_syncs() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    let id = fake.create_contact(
        &[
            ("email", EMAIL),
            ("firstname", "Fake"),
            ("phone", "+00 000 test"),
        ],
        1_000,
    );
    let w = world().await;
    sync(&w, &fake, 10, false).await;
    let running = serve(
        &w,
        Some(DsarVerifier::hs256(SECRET.as_bytes()).expect("verifier")),
    )
    .await;
    let body = json!({"contact_id": id, "mode": "anonymize"}).to_string();
    let (status, answer) = call(&running, "/dsar/delete", Some(&valid(TENANT)), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["deleted"], &answer["anonymized"]),
        (&json!(0), &json!(1))
    );
    let check = |contacts: &BTreeMap<String, Value>| {
        let data = &contacts[&id];
        assert_eq!(data["email"], Value::Null, "{data}");
        assert_eq!(data["firstname"], Value::Null, "{data}");
        assert_eq!(data["phone"], Value::Null, "{data}");
        assert_eq!(data["hs_object_id"], id.as_str(), "{data}");
    };
    check(&records(&w.store, CONTACT_KIND).await);
    assert!(fake.edit(&id, &[("lastname", "Person")], 60_000));
    sync(&w, &fake, 120, false).await;
    sync(&w, &fake, 180, true).await;
    let contacts = records(&w.store, CONTACT_KIND).await;
    check(&contacts);
    assert_eq!(contacts[&id]["lastname"], Value::Null);
    let (_, again) = call(&running, "/dsar/delete", Some(&valid(TENANT)), &body).await;
    assert_eq!(
        (&again["deleted"], &again["anonymized"]),
        (&json!(0), &json!(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_bodies_are_checked() {
    let w = world().await;
    let body = json!({"contact_id": "101"}).to_string();

    // Not configured: never open.
    let closed = serve(&w, None).await;
    let (status, answer) = call(&closed, "/dsar/export", Some(&valid(TENANT)), &body).await;
    assert_eq!(
        (status, &answer["error"]),
        (503, &json!("DSAR not configured"))
    );
    let (status, _) = call(&closed, "/dsar/delete", Some(&valid(TENANT)), &body).await;
    assert_eq!(status, 503);

    let running = serve(
        &w,
        Some(DsarVerifier::hs256(SECRET.as_bytes()).expect("verifier")),
    )
    .await;
    let claims =
        URL_SAFE_NO_PAD.encode(json!({"tenant_id": TENANT, "exp": now_s() + 60}).to_string());
    let unsigned = format!(
        "{}.{claims}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
    );
    let no_exp = jsonwebtoken::encode(
        &Header::default(),
        &json!({"tenant_id": TENANT}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    let refused = [
        ("no token", None),
        ("expired", Some(token(TENANT, now_s() - 3600, SECRET))),
        ("alg none", Some(unsigned)),
        (
            "wrong key",
            Some(token(TENANT, now_s() + 60, "another-fake-secret")),
        ),
        ("no exp", Some(no_exp)),
        ("garbage", Some("not.a.jwt".to_owned())),
    ];
    for path in ["/dsar/export", "/dsar/delete"] {
        for (what, token) in &refused {
            let (status, answer) = call(&running, path, token.as_deref(), &body).await;
            assert_eq!(status, 401, "{path} {what}: {answer}");
        }
        for bad in [
            "{",
            "[]",
            r#"{"tenant_id": "acme"}"#,
            r#"{"contact_id": "  "}"#,
        ] {
            let (status, answer) = call(&running, path, Some(&valid(TENANT)), bad).await;
            assert_eq!(status, 400, "{path} {bad}: {answer}");
        }
    }
    let (status, answer) = call(
        &running,
        "/dsar/delete",
        Some(&valid(TENANT)),
        r#"{"contact_id": "101", "mode": "shred"}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    // An unknown contact: an empty export, an erasure with nothing to do.
    let (status, answer) = call(&running, "/dsar/export", Some(&valid(TENANT)), &body).await;
    assert_eq!((status, &answer["slices"]), (200, &json!([])));

    // The store failing is a 500 (the orchestrator retries).
    w.store.close().await;
    let (status, answer) = call(&running, "/dsar/delete", Some(&valid(TENANT)), &body).await;
    assert_eq!(status, 500, "{answer}");
}

#[test]
fn verifier_configuration() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    assert!(DsarVerifier::from_env(env(&[])).expect("none").is_none());
    assert!(
        DsarVerifier::from_env(env(&[("IVORY_DSAR_JWT_SECRET", SECRET)]))
            .expect("hs256")
            .is_some()
    );
    assert!(
        DsarVerifier::from_env(env(&[
            ("IVORY_DSAR_JWT_SECRET", SECRET),
            ("IVORY_DSAR_JWT_PUBLIC_KEY", "x")
        ]))
        .is_err()
    );
    assert!(
        DsarVerifier::from_env(env(&[(
            "IVORY_DSAR_JWT_PUBLIC_KEY",
            "-----BEGIN PUBLIC KEY-----\nnot_real\n-----END PUBLIC KEY-----\n"
        )]))
        .is_err()
    );
}
