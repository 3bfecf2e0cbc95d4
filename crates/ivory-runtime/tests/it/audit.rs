//! The audit ledger's outbox: every audited write has exactly one event, in the platform's
//! envelope, written in the write's transaction (a write that fails after its event was
//! inserted leaves neither), and no event carries a secret.

use std::collections::BTreeMap;
use std::time::Duration;

use ivory_runtime::store::{
    Actor, Approval, AuditAction, AuditEvent, InstallOutcome, InstallRequest, NewRun, OAuth2Grant,
    OutboxRow, RunStatus, RunTotals, StoredGrant, Swap, WebhookSecretSource,
};
use ivory_runtime::{MasterKeys, StoreError, Vault};
use ivory_sdk::manifest::{CursorKind, Manifest, ValidationMode};
use ivory_sdk::{Credentials, Secret};
use ivory_testkit::connectors::{ItemsConnector, items_manifest};
use ivory_testkit::items::ItemsUpstream;
use jiff::Timestamp;

use crate::support::{Env, env, install, options, runner_at, t0};

const ACCESS: &str = "ya29.audit-canary-access-token-0001";
const REFRESH: &str = "1//audit-canary-refresh-token-0002";
const ROTATED: &str = "ya29.audit-canary-rotated-token-0003";
const API_KEY: &str = "sk_test_audit_canary_key_0004";
const WEBHOOK_SECRET: &str = "whsec_audit_canary_fake_webhook_secret_0005";

fn vault() -> Vault {
    let key = MasterKeys::generate_key().expect("key");
    Vault::new(MasterKeys::from_env_value(key.expose()).expect("keys"))
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(t0().as_millisecond() + ms).expect("time")
}

fn oauth2(access: &str) -> StoredGrant {
    StoredGrant::OAuth2(OAuth2Grant {
        access_token: Secret::new(access),
        refresh_token: Some(Secret::new(REFRESH)),
        expires_at: Some(t0()),
        scopes: vec!["contacts.read".into()],
        token_type: "Bearer".into(),
    })
}

/// A second connection to the store's file, behind its back (fault injection by trigger).
async fn raw(env: &Env) -> sqlx::AnyPool {
    env.raw().await
}

/// Makes `table`'s `timing` `event` fail with `message` when `condition` holds: a SQLite
/// trigger, or a PostgreSQL trigger function (`IVORY_TEST_PG`).
async fn inject_failure(
    env: &Env,
    db: &sqlx::AnyPool,
    name: &'static str,
    (timing, table): (&'static str, &'static str),
    condition: Option<(&'static str, &'static str)>,
) {
    let sql = if env.is_pg() {
        let (pg_when, _) = condition.map_or(("", ""), |c| c);
        format!(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$; \
             CREATE TRIGGER {name} {timing} ON {table} FOR EACH ROW {pg_when} EXECUTE FUNCTION {name}()"
        )
    } else {
        let (_, sqlite_when) = condition.map_or(("", ""), |c| c);
        format!(
            "CREATE TRIGGER {name} {timing} ON {table} {sqlite_when} \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(db)
        .await
        .expect("create the failure trigger");
}

async fn remove_failure(env: &Env, db: &sqlx::AnyPool, name: &'static str, table: &'static str) {
    let sql = if env.is_pg() {
        format!("DROP TRIGGER {name} ON {table}; DROP FUNCTION {name}()")
    } else {
        format!("DROP TRIGGER {name}")
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(db)
        .await
        .expect("drop the failure trigger");
}

fn types(events: &[OutboxRow]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

/// The platform's envelope (PLATFORM.md §1), checked field by field.
fn assert_envelope(row: &OutboxRow) {
    let e = &row.payload;
    let object = e.as_object().expect("an object");
    for required in [
        "id",
        "tenant_id",
        "action",
        "object_type",
        "service",
        "event_time",
    ] {
        let value = object.get(required).and_then(|v| v.as_str());
        assert!(
            value.is_some_and(|v| !v.is_empty()),
            "{required} missing in {e}"
        );
    }
    assert!(
        object.keys().all(|k| [
            "id",
            "tenant_id",
            "user_id",
            "agent_id",
            "action",
            "object_type",
            "object_id",
            "diff_json",
            "source_ip",
            "trace_id",
            "service",
            "jti",
            "event_time"
        ]
        .contains(&k.as_str())),
        "only envelope fields: {e}"
    );
    assert!(
        object.contains_key("user_id") || object.contains_key("agent_id"),
        "attributed to someone: {e}"
    );
    assert_eq!(e["id"], row.id.as_str(), "the row id is the event id");
    assert!(uuid::Uuid::parse_str(&row.id).is_ok(), "a UUID: {}", row.id);
    assert_eq!(e["tenant_id"], row.tenant_id.as_str());
    assert_eq!(e["service"], "ivory-connector-runtime");
    let action = e["action"].as_str().expect("action");
    assert!(
        AuditAction::ALL.iter().any(|a| a.as_str() == action),
        "canonical action: {action}"
    );
    assert_eq!(
        row.event_type,
        format!(
            "audit.{}.{action}",
            e["object_type"].as_str().expect("object_type")
        )
    );
    let time: Timestamp = e["event_time"]
        .as_str()
        .expect("time")
        .parse()
        .expect("RFC 3339");
    assert!(
        e["event_time"].as_str().expect("time").ends_with('Z'),
        "UTC"
    );
    assert_eq!(time.as_millisecond(), row.created_at.as_millisecond());
}

fn assert_no_secret(events: &[OutboxRow], secrets: &[&str]) {
    for event in events {
        let text = event.payload.to_string();
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{} carries a secret: {text}",
                event.event_type
            );
        }
    }
}

#[tokio::test]
async fn credential_changes_each_write_one_event_and_never_a_secret() {
    let env = env().await;
    let vault = vault();
    let manifest = items_manifest("items", CursorKind::None, 600);
    let inst = env
        .store
        .ensure_installation("acme", &manifest, &BTreeMap::new(), t0())
        .await
        .expect("installation")
        .id;
    let before = env.store.audit_events("acme").await.expect("events").len();

    let v1 = env
        .store
        .put_credentials(
            &inst,
            &StoredGrant::ApiKey(Secret::new(API_KEY)),
            &vault,
            at(1),
        )
        .await
        .expect("put");
    let v2 = env
        .store
        .put_credentials(&inst, &oauth2(ACCESS), &vault, at(2))
        .await
        .expect("put again");
    let swapped = env
        .store
        .replace_credentials_if(&inst, v2, &oauth2(ROTATED), &vault, at(3))
        .await
        .expect("refresh");
    assert!(matches!(swapped, Swap::Swapped { .. }));
    // A refresh that lost the compare-and-swap wrote nothing: no event either.
    let stale = env
        .store
        .replace_credentials_if(&inst, v1, &oauth2("ya29.never-stored"), &vault, at(4))
        .await
        .expect("stale refresh");
    assert!(matches!(stale, Swap::Conflict { .. }));
    assert!(env.store.delete_credentials(&inst).await.expect("delete"));
    assert!(!env.store.delete_credentials(&inst).await.expect("again"));

    let events = env.store.audit_events("acme").await.expect("events");
    let events = &events[before..];
    assert_eq!(
        types(events),
        vec![
            "audit.credentials.create",
            "audit.credentials.update",
            "audit.credentials.update",
            "audit.credentials.delete",
        ]
    );
    for event in events {
        assert_envelope(event);
        assert_eq!(event.payload["object_id"], inst.as_str());
    }
    assert_eq!(events[0].payload["diff_json"]["after"]["kind"], "api_key");
    assert_eq!(
        events[1].payload["diff_json"]["before"]["kind"], "api_key",
        "the diff says what the grant was"
    );
    assert_eq!(events[1].payload["diff_json"]["after"]["kind"], "oauth2");
    assert_eq!(
        events[2].payload["agent_id"],
        "ivory-connector-runtime:token-refresh"
    );
    assert_eq!(
        events[2].payload["diff_json"]["before"]["version"],
        v2.get()
    );
    assert_no_secret(events, &[ACCESS, REFRESH, ROTATED, API_KEY, "ya29."]);
}

#[tokio::test]
async fn a_sync_run_writes_exactly_one_sync_event() {
    let env = env().await;
    let fake = ItemsUpstream::start(60, 1, 16).await.expect("fake");
    let manifest = items_manifest("items", CursorKind::OpaqueToken, 100_000);
    install(&env.store, "acme", &manifest).await;
    let runner = runner_at(&env.store, Duration::ZERO);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let summary = runner
            .sync(
                "acme",
                &manifest,
                &ItemsConnector::new(25),
                Credentials::None,
                options(fake.base_url()),
            )
            .await
            .expect("sync");
        runs.push(summary);
    }
    let events = env.store.audit_events("acme").await.expect("events");
    let syncs: Vec<&OutboxRow> = events
        .iter()
        .filter(|e| e.event_type == "audit.sync_run.sync")
        .collect();
    assert_eq!(syncs.len(), 2, "{:?}", types(&events));
    for (event, run) in syncs.iter().zip(&runs) {
        assert_envelope(event);
        assert_eq!(event.payload["object_id"], run.run_id.as_str());
        assert_eq!(event.payload["agent_id"], "connector:items");
        let diff = &event.payload["diff_json"];
        assert_eq!(diff["status"], "succeeded");
        assert_eq!(diff["connector"], "items");
        assert_eq!(
            diff["totals"]["records_created"],
            run.totals.records_created
        );
    }
    assert_eq!(
        syncs[0].payload["diff_json"]["totals"]["records_created"],
        60
    );
}

#[tokio::test]
async fn a_write_that_fails_after_its_event_was_inserted_leaves_no_event() {
    let env = env().await;
    let manifest = items_manifest("items", CursorKind::OpaqueToken, 600);
    let inst = env
        .store
        .ensure_installation("acme", &manifest, &BTreeMap::new(), t0())
        .await
        .expect("installation");
    let begun = env
        .store
        .begin_run(&NewRun {
            installation_id: &inst.id,
            tenant: "acme",
            run_id: "run_1",
            holder: "test:1",
            full_refresh: false,
            now: t0(),
            lease_until: at(60_000),
        })
        .await
        .expect("begin");
    assert!(begun.is_ok());
    let db = raw(&env).await;
    // `finish_run` updates the run, inserts its event, then releases the lease: make the last
    // statement fail, after the event's insert, inside the same transaction.
    inject_failure(
        &env,
        &db,
        "fail_release",
        ("BEFORE DELETE", "sync_locks"),
        None,
    )
    .await;
    let failed = env
        .store
        .finish_run(
            &inst.id,
            "run_1",
            RunStatus::Succeeded,
            &RunTotals::default(),
            None,
            None,
            at(10),
        )
        .await
        .expect_err("the release fails");
    assert!(failed.to_string().contains("injected"), "{failed}");
    assert!(
        env.store
            .audit_events("acme")
            .await
            .expect("events")
            .is_empty(),
        "the event rolled back with the write"
    );
    let run = env
        .store
        .run_record("run_1")
        .await
        .expect("run")
        .expect("some");
    assert_eq!(run.status, RunStatus::Running, "the write rolled back too");

    remove_failure(&env, &db, "fail_release", "sync_locks").await;
    env.store
        .finish_run(
            &inst.id,
            "run_1",
            RunStatus::Succeeded,
            &RunTotals::default(),
            None,
            None,
            at(20),
        )
        .await
        .expect("finish");
    let events = env.store.audit_events("acme").await.expect("events");
    assert_eq!(types(&events), vec!["audit.sync_run.sync"]);
    assert_envelope(&events[0]);
}

#[tokio::test]
async fn a_refused_event_insert_rolls_back_the_credential_write() {
    let env = env().await;
    let vault = vault();
    let manifest = items_manifest("items", CursorKind::None, 600);
    let inst = env
        .store
        .ensure_installation("acme", &manifest, &BTreeMap::new(), t0())
        .await
        .expect("installation")
        .id;
    let db = raw(&env).await;
    inject_failure(
        &env,
        &db,
        "fail_audit",
        ("AFTER INSERT", "outbox"),
        Some((
            "WHEN (NEW.event_type LIKE 'audit.credentials.%')",
            "WHEN NEW.event_type LIKE 'audit.credentials.%'",
        )),
    )
    .await;
    let failed = env
        .store
        .put_credentials(
            &inst,
            &StoredGrant::ApiKey(Secret::new(API_KEY)),
            &vault,
            at(1),
        )
        .await
        .expect_err("the event cannot be written");
    assert!(!failed.to_string().contains(API_KEY));
    assert!(
        env.store
            .credentials(&inst, &vault)
            .await
            .expect("read")
            .is_none(),
        "no change without its event"
    );
    assert!(
        env.store
            .audit_events("acme")
            .await
            .expect("events")
            .is_empty()
    );

    remove_failure(&env, &db, "fail_audit", "outbox").await;
    env.store
        .put_credentials(
            &inst,
            &StoredGrant::ApiKey(Secret::new(API_KEY)),
            &vault,
            at(2),
        )
        .await
        .expect("put");
    assert_eq!(
        types(&env.store.audit_events("acme").await.expect("events")),
        vec!["audit.credentials.create"]
    );
}

fn governed_manifest() -> Manifest {
    let json = serde_json::json!({
        "id": "governed",
        "name": "Governed",
        "version": "1.0.0",
        "publisher": "Ivory (tests)",
        "description": "A listing with scopes, hosts and webhooks.",
        "listing": {"conflictPolicy": "Inbound only (source_wins)."},
        "hosts": ["api.example.com"],
        "webhooks": {"scheme": "standard-webhooks"},
        "connection": {
            "type": "api_key",
            "sync": {"cursor": "opaque_token", "direction": "inbound", "conflictPolicy": "source_wins", "rateLimitPerMinute": 600}
        }
    });
    Manifest::parse(&json.to_string(), ValidationMode::Production).expect("valid")
}

#[tokio::test]
async fn the_governance_lifecycle_writes_enveloped_events_without_secrets() {
    let env = env().await;
    let vault = vault();
    let admin = Actor::User("admin@acme.test".into());
    let manifest = governed_manifest();
    let outcome = env
        .store
        .install(
            &InstallRequest {
                tenant: "acme",
                manifest: &manifest,
                settings: BTreeMap::new(),
                actor: &admin,
                approval: Approval::Approved,
                now: t0(),
            },
            &vault,
        )
        .await
        .expect("install");
    let InstallOutcome::Installed {
        installation,
        generated_webhook_secret,
    } = outcome
    else {
        panic!("installed: {outcome:?}")
    };
    let generated = generated_webhook_secret.expect("a generated secret");
    env.store
        .put_credentials(
            &installation.id,
            &StoredGrant::ApiKey(Secret::new(API_KEY)),
            &vault,
            at(1),
        )
        .await
        .expect("credentials");
    env.store
        .set_webhook_secret(
            &installation,
            &Secret::new(WEBHOOK_SECRET),
            WebhookSecretSource::Tenant,
            &vault,
            &admin,
            at(2),
        )
        .await
        .expect("webhook secret");
    env.store
        .uninstall("acme", "governed", &admin, at(3))
        .await
        .expect("uninstall")
        .expect("was installed");

    let events = env.store.audit_events("acme").await.expect("events");
    assert_eq!(
        types(&events),
        vec![
            "audit.installation.create",
            "audit.installation_consent.permission_change",
            "audit.credentials.create",
            "audit.webhook_secret.update",
            "audit.installation.delete",
            "audit.credentials.delete",
        ]
    );
    events.iter().for_each(assert_envelope);
    assert_no_secret(
        &events,
        &[
            API_KEY,
            WEBHOOK_SECRET,
            generated.expose(),
            generated.expose().trim_start_matches("whsec_"),
        ],
    );
}

#[tokio::test]
async fn an_event_that_cannot_be_attributed_is_refused() {
    let env = env().await;
    let agent = Actor::Agent("dsar".into());
    let no_tenant = AuditEvent::new("", &agent, AuditAction::Export, "contact", None, t0());
    let bad_type = AuditEvent::new("acme", &agent, AuditAction::Export, "a.b", None, t0());
    let mut no_service =
        AuditEvent::new("acme", &agent, AuditAction::Export, "contact", None, t0());
    no_service.service.clear();
    for event in [no_tenant, bad_type, no_service] {
        let refused = env
            .store
            .record_audit_event(&event)
            .await
            .expect_err("refused");
        assert!(matches!(refused, StoreError::Invalid { .. }), "{refused:?}");
    }
    assert_eq!(env.store.pending_audit_count().await.expect("count"), 0);

    // The helper a read-only action (a DSAR export) uses.
    let export = AuditEvent::new(
        "acme",
        &agent,
        AuditAction::Export,
        "contact",
        Some("c_1"),
        t0(),
    )
    .with_request(
        Some("10.0.0.7"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        Some("jti-1"),
    );
    env.store
        .record_audit_event(&export)
        .await
        .expect("recorded");
    let events = env.store.audit_events("acme").await.expect("events");
    assert_eq!(types(&events), vec!["audit.contact.export"]);
    assert_envelope(&events[0]);
    assert_eq!(events[0].payload["jti"], "jti-1");
    assert_eq!(events[0].payload["source_ip"], "10.0.0.7");
}
