//! Install governance in the store: consent, upgrades, uninstall, webhook secrets, the audit
//! events written with each change, and tenants kept apart.

use std::collections::BTreeMap;
use std::sync::Arc;

use ivory_runtime::store::{
    Actor, Approval, InstallOutcome, InstallRequest, StoredGrant, WebhookSecretSource,
};
use ivory_runtime::{MasterKeys, RunError, Runner, Store, Vault};
use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::{Clock, Credentials, Secret};
use ivory_testkit::connectors::ItemsConnector;

use crate::support::{env, t0};

fn vault() -> Arc<Vault> {
    let key = MasterKeys::generate_key().expect("key");
    Arc::new(Vault::new(
        MasterKeys::from_env_value(key.expose()).expect("keys"),
    ))
}

fn manifest(version: &str, hosts: &[&str], scheme: Option<&str>) -> Manifest {
    let mut json = serde_json::json!({
        "id": "governed",
        "name": "Governed",
        "version": version,
        "publisher": "Ivory (tests)",
        "description": "A listing with scopes, hosts and webhooks.",
        "listing": {"conflictPolicy": "Inbound only (source_wins)."},
        "hosts": hosts,
        "connection": {
            "type": "api_key",
            "sync": {"cursor": "opaque_token", "direction": "inbound", "conflictPolicy": "source_wins", "rateLimitPerMinute": 600}
        }
    });
    if let Some(scheme) = scheme {
        json["webhooks"] = serde_json::json!({"scheme": scheme});
    }
    Manifest::parse(&json.to_string(), ValidationMode::Production).expect("valid")
}

fn admin() -> Actor {
    Actor::User("admin@acme.test".into())
}

async fn install(
    store: &Store,
    vault: &Vault,
    tenant: &str,
    manifest: &Manifest,
    approval: Approval,
) -> InstallOutcome {
    store
        .install(
            &InstallRequest {
                tenant,
                manifest,
                settings: BTreeMap::new(),
                actor: &admin(),
                approval,
                now: t0(),
            },
            vault,
        )
        .await
        .expect("install")
}

#[tokio::test]
async fn consent_is_required_and_recorded_with_its_audit_events() {
    let env = env().await;
    let vault = vault();
    let v1 = manifest("1.0.0", &["api.example.com"], None);
    let refused = install(&env.store, &vault, "acme", &v1, Approval::NotGiven).await;
    let InstallOutcome::ConsentRequired { diff } = refused else {
        panic!("consent required, got {refused:?}")
    };
    assert_eq!(diff.added_hosts, vec!["api.example.com"]);
    assert!(
        env.store
            .installations("acme")
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        env.store
            .audit_events("acme")
            .await
            .expect("events")
            .is_empty(),
        "nothing written"
    );

    let InstallOutcome::Installed { installation, .. } =
        install(&env.store, &vault, "acme", &v1, Approval::Approved).await
    else {
        panic!("installed")
    };
    let events = env.store.audit_events("acme").await.expect("events");
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "audit.installation.create",
            "audit.installation_consent.permission_change"
        ]
    );
    let envelope = &events[0].payload;
    assert_eq!(envelope["tenant_id"], "acme");
    assert_eq!(envelope["user_id"], "admin@acme.test");
    assert_eq!(envelope["action"], "create");
    assert_eq!(envelope["object_type"], "installation");
    assert_eq!(envelope["object_id"], installation.id.as_str());
    assert_eq!(envelope["service"], "ivory-connector-runtime");
    assert!(
        envelope["event_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(
        events[1].payload["diff_json"]["granted"]["hosts"][0],
        "api.example.com"
    );

    // A new host needs consent again; fewer hosts do not.
    let v2 = manifest("2.0.0", &["api.example.com", "files.example.com"], None);
    let again = install(&env.store, &vault, "acme", &v2, Approval::NotGiven).await;
    assert!(
        matches!(&again, InstallOutcome::ConsentRequired { diff } if diff.added_hosts == vec!["files.example.com"]),
        "{again:?}"
    );
    assert!(matches!(
        install(&env.store, &vault, "acme", &v2, Approval::Approved).await,
        InstallOutcome::Upgraded { .. }
    ));
    let v3 = manifest("3.0.0", &["api.example.com"], None);
    assert!(matches!(
        install(&env.store, &vault, "acme", &v3, Approval::NotGiven).await,
        InstallOutcome::Upgraded { .. }
    ));
}

#[tokio::test]
async fn uninstall_stops_syncs_and_deletes_credentials() {
    let env = env().await;
    let vault = vault();
    let v1 = manifest("1.0.0", &["api.example.com"], Some("stripe"));
    let InstallOutcome::Installed {
        installation,
        generated_webhook_secret,
    } = install(&env.store, &vault, "acme", &v1, Approval::Approved).await
    else {
        panic!("installed")
    };
    assert!(
        generated_webhook_secret.is_none(),
        "Stripe's secret comes from the tenant"
    );
    env.store
        .put_credentials(
            &installation.id,
            &StoredGrant::ApiKey(Secret::new("sk_test_fake_for_tests")),
            &vault,
            t0(),
        )
        .await
        .expect("key");
    env.store
        .set_webhook_secret(
            &installation,
            &Secret::new("whsec_test_fake_for_tests"),
            WebhookSecretSource::Tenant,
            &vault,
            &admin(),
            t0(),
        )
        .await
        .expect("secret");
    let (secret, source) = env
        .store
        .webhook_secret(&installation.id, &vault)
        .await
        .expect("read")
        .expect("set");
    assert_eq!(source, WebhookSecretSource::Tenant);
    assert_eq!(
        secret.as_ref().map(Secret::expose),
        Some("whsec_test_fake_for_tests")
    );

    env.store
        .uninstall("acme", "governed", &admin(), t0())
        .await
        .expect("uninstall")
        .expect("was installed");
    assert!(
        env.store
            .credentials(&installation.id, &vault)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        env.store
            .webhook_secret(&installation.id, &vault)
            .await
            .expect("read")
            .is_none_or(|(s, _)| s.is_none())
    );
    let runner = Runner::new(env.store.clone(), Clock::starting_at(t0()));
    let refused = runner
        .sync(
            "acme",
            &v1,
            &ItemsConnector::new(10),
            Credentials::None,
            Default::default(),
        )
        .await;
    assert!(
        matches!(refused, Err(RunError::NotInstalled { .. })),
        "{refused:?}"
    );
    let types: Vec<String> = env
        .store
        .audit_events("acme")
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(
        types.contains(&"audit.webhook_secret.update".to_owned()),
        "{types:?}"
    );
    assert!(
        types.contains(&"audit.installation.delete".to_owned()),
        "{types:?}"
    );
    assert!(
        types.contains(&"audit.credentials.delete".to_owned()),
        "{types:?}"
    );
}

#[tokio::test]
async fn standard_webhooks_secrets_are_generated_once() {
    let env = env().await;
    let vault = vault();
    let v1 = manifest("1.0.0", &["api.example.com"], Some("standard-webhooks"));
    let InstallOutcome::Installed {
        installation,
        generated_webhook_secret,
    } = install(&env.store, &vault, "acme", &v1, Approval::Approved).await
    else {
        panic!("installed")
    };
    let shown = generated_webhook_secret.expect("generated");
    assert!(shown.expose().starts_with("whsec_"));
    let (stored, source) = env
        .store
        .webhook_secret(&installation.id, &vault)
        .await
        .expect("read")
        .expect("set");
    assert_eq!(source, WebhookSecretSource::Generated);
    assert_eq!(stored.as_ref().map(Secret::expose), Some(shown.expose()));
    // The generated secret verifies deliveries signed with it.
    let verifier = ivory_sdk::webhook::Verifier::new(
        ivory_sdk::webhook::Scheme::StandardWebhooks,
        shown.expose(),
    )
    .expect("usable secret");
    let signed = verifier
        .sign(
            ivory_sdk::webhook::Delivery::new(Default::default(), &b"{}"[..]).with_header(
                http::HeaderName::from_static("webhook-id"),
                http::HeaderValue::from_static("msg_1"),
            ),
            t0(),
        )
        .expect("signed");
    verifier
        .verify_at(&signed, t0())
        .expect("verifies with the generated secret");
    // Re-installing does not rotate it behind the sender's back.
    install(&env.store, &vault, "acme", &v1, Approval::Approved).await;
    let (again, _) = env
        .store
        .webhook_secret(&installation.id, &vault)
        .await
        .expect("read")
        .expect("set");
    assert_eq!(again.as_ref().map(Secret::expose), Some(shown.expose()));
}

#[tokio::test]
async fn two_tenants_with_the_same_connector_share_nothing() {
    let env = env().await;
    let vault = vault();
    let v1 = manifest("1.0.0", &["api.example.com"], Some("stripe"));
    let InstallOutcome::Installed {
        installation: a, ..
    } = install(&env.store, &vault, "tenant-a", &v1, Approval::Approved).await
    else {
        panic!()
    };
    let InstallOutcome::Installed {
        installation: b, ..
    } = install(&env.store, &vault, "tenant-b", &v1, Approval::Approved).await
    else {
        panic!()
    };
    assert_ne!(a.id, b.id);
    for (installation, key, secret) in [
        (&a, "sk_test_fake_a", "whsec_test_fake_a"),
        (&b, "sk_test_fake_b", "whsec_test_fake_b"),
    ] {
        env.store
            .put_credentials(
                &installation.id,
                &StoredGrant::ApiKey(Secret::new(key)),
                &vault,
                t0(),
            )
            .await
            .expect("key");
        env.store
            .set_webhook_secret(
                installation,
                &Secret::new(secret),
                WebhookSecretSource::Tenant,
                &vault,
                &admin(),
                t0(),
            )
            .await
            .expect("secret");
    }
    let (grant_a, _) = env
        .store
        .credentials(&a.id, &vault)
        .await
        .expect("read")
        .expect("a");
    let StoredGrant::ApiKey(key_a) = grant_a else {
        panic!()
    };
    assert_eq!(key_a.expose(), "sk_test_fake_a");
    let (secret_b, _) = env
        .store
        .webhook_secret(&b.id, &vault)
        .await
        .expect("read")
        .expect("b");
    assert_eq!(
        secret_b.as_ref().map(Secret::expose),
        Some("whsec_test_fake_b")
    );
    // Audit trails are per tenant.
    let events_a = env.store.audit_events("tenant-a").await.expect("a");
    assert!(
        events_a
            .iter()
            .all(|e| e.tenant_id == "tenant-a" && e.payload["tenant_id"] == "tenant-a")
    );
    assert!(!events_a.is_empty());
    // Uninstalling one leaves the other untouched.
    env.store
        .uninstall("tenant-a", "governed", &admin(), t0())
        .await
        .expect("uninstall");
    assert!(
        env.store
            .credentials(&b.id, &vault)
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(
        env.store
            .installation("tenant-b", "governed")
            .await
            .expect("read")
            .expect("b")
            .status,
        "active"
    );
}
