//! Stripe webhooks through the platform's ingress: a signed `invoice.payment_failed` marks the
//! mirrored invoice, creates the follow-up task and logs, once; a replayed delivery and a
//! legitimate retry run nothing twice; a tampered or stale delivery is refused and changes
//! nothing.

use std::sync::Arc;

use futures::TryStreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use ivory_connector_stripe::{INVOICE_KIND, StripeConnector, manifest};
use ivory_runtime::store::{Actor, Approval, InstallRequest, Tombstones, WebhookSecretSource};
use ivory_runtime::webhooks::{IngestError, Ingested};
use ivory_runtime::{MasterKeys, Runner, Store, SyncOptions, Vault};
use ivory_sdk::webhook::{Delivery, Rejection, Scheme, Verifier};
use ivory_sdk::{Clock, Credentials, Secret};
use ivory_testkit::stripe::{FakeStripe, TEST_API_KEY};
use jiff::Timestamp;

const WEBHOOK_SECRET: &str = "whsec_test_ivory_fake_secret_0000";

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    vault: Arc<Vault>,
    installation: String,
    fake: FakeStripe,
}

fn at(fake: &FakeStripe, offset: i64) -> Timestamp {
    Timestamp::from_second(fake.now() + offset).expect("time")
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path().join("ivory.db").to_str().expect("path"))
        .await
        .expect("store");
    let key = MasterKeys::generate_key().expect("key");
    let vault = Arc::new(Vault::new(
        MasterKeys::from_env_value(key.expose()).expect("keys"),
    ));
    let fake = FakeStripe::start(40).await.expect("fake");
    let admin = Actor::User("admin@acme.test".into());
    store
        .install(
            &InstallRequest {
                tenant: "acme",
                manifest: manifest(),
                settings: Default::default(),
                actor: &admin,
                approval: Approval::Approved,
                now: at(&fake, 0),
            },
            &vault,
        )
        .await
        .expect("install provisions the invoice object and the workflow");
    let installation = store
        .installation("acme", "stripe")
        .await
        .expect("read")
        .expect("installed");
    store
        .set_webhook_secret(
            &installation,
            &Secret::new(WEBHOOK_SECRET),
            WebhookSecretSource::Tenant,
            &vault,
            &admin,
            at(&fake, 0),
        )
        .await
        .expect("secret");
    // The mirror exists before the webhook arrives.
    Runner::new(store.clone(), Clock::starting_at(at(&fake, 0)))
        .sync(
            "acme",
            manifest(),
            &StripeConnector::default(),
            Credentials::ApiKey(Secret::new(TEST_API_KEY)),
            SyncOptions {
                base_url: Some(fake.base_url()),
                ..SyncOptions::default()
            },
        )
        .await
        .expect("backfill");
    World {
        _dir: dir,
        store,
        vault,
        installation: installation.id,
        fake,
    }
}

fn signed(event: &serde_json::Value, at: Timestamp) -> Delivery {
    let verifier = Verifier::new(Scheme::Stripe, WEBHOOK_SECRET).expect("verifier");
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("content-type"),
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(event).expect("json");
    verifier
        .sign(Delivery::new(headers, body), at)
        .expect("signed")
}

async fn ingest(w: &World, delivery: &Delivery, offset: i64) -> Result<Ingested, IngestError> {
    Runner::new(w.store.clone(), Clock::starting_at(at(&w.fake, offset)))
        .ingest_webhook(
            &w.installation,
            manifest(),
            &StripeConnector::default(),
            delivery,
            &w.vault,
            None,
        )
        .await
}

async fn records(store: &Store, kind: &str) -> Vec<(String, serde_json::Value)> {
    store
        .export_records("acme", kind, Tombstones::Exclude)
        .map_ok(|r| (r.id, r.data))
        .try_collect()
        .await
        .expect("export")
}

#[tokio::test]
async fn a_payment_failed_delivery_runs_the_workflow_once() {
    let w = world().await;
    let event = w.fake.fail_payment("in_00000007").expect("event");
    let delivery = signed(&event, at(&w.fake, 0));

    let first = ingest(&w, &delivery, 1).await.expect("accepted");
    let Ingested::Accepted { workflow_runs, .. } = first else {
        panic!("accepted, got {first:?}")
    };
    assert_eq!(workflow_runs.len(), 1);
    assert_eq!(workflow_runs[0].workflow, "payment-failed-follow-up");
    assert_eq!(format!("{:?}", workflow_runs[0].status), "Succeeded");

    let invoices = records(&w.store, INVOICE_KIND).await;
    let invoice = &invoices
        .iter()
        .find(|(id, _)| id == "in_00000007")
        .expect("mirrored")
        .1;
    assert_eq!(invoice["payment_failed"], true);
    assert_eq!(
        invoice["attempt_count"], 1,
        "the webhook's invoice was upserted"
    );
    assert_eq!(
        invoice["outstanding"], invoice["amount_due"],
        "the formula is computed by the platform"
    );
    let tasks = records(&w.store, "task").await;
    assert_eq!(tasks.len(), 1);
    assert!(
        tasks[0].1.to_string().contains("IVRY-000007"),
        "{}",
        tasks[0].1
    );

    // The very same delivery again: a replay, nothing runs.
    assert!(matches!(
        ingest(&w, &delivery, 2).await,
        Ok(Ingested::Replayed)
    ));
    // Stripe's own retry of the event, re-signed later: stored once, nothing runs again.
    let retry = signed(&event, at(&w.fake, 60));
    assert!(matches!(
        ingest(&w, &retry, 61).await,
        Ok(Ingested::Duplicate { .. })
    ));
    assert_eq!(records(&w.store, "task").await.len(), 1);
    assert_eq!(w.store.workflow_runs("acme").await.expect("runs").len(), 1);
}

#[tokio::test]
async fn tampered_stale_and_unsigned_deliveries_change_nothing() {
    let w = world().await;
    let event = w.fake.fail_payment("in_00000003").expect("event");
    let before = records(&w.store, INVOICE_KIND).await;

    let mut tampered_event = event.clone();
    tampered_event["data"]["object"]["amount_due"] = serde_json::json!(1);
    let good = signed(&event, at(&w.fake, 0));
    let tampered = Delivery::new(
        good.headers().clone(),
        serde_json::to_vec(&tampered_event).expect("json"),
    );
    assert!(matches!(
        ingest(&w, &tampered, 1).await,
        Err(IngestError::Rejected(Rejection::NoSignatureMatched))
    ));

    let stale = signed(&event, at(&w.fake, 0));
    assert!(matches!(
        ingest(&w, &stale, 3_600).await,
        Err(IngestError::Rejected(Rejection::TimestampTooOld { .. }))
    ));

    let unsigned = Delivery::new(HeaderMap::new(), serde_json::to_vec(&event).expect("json"));
    assert!(matches!(
        ingest(&w, &unsigned, 1).await,
        Err(IngestError::Rejected(Rejection::MissingHeader(_)))
    ));

    let wrong = Verifier::new(Scheme::Stripe, "whsec_test_wrong_fake_secret").expect("verifier");
    let forged = wrong
        .sign(
            Delivery::new(HeaderMap::new(), serde_json::to_vec(&event).expect("json")),
            at(&w.fake, 0),
        )
        .expect("signed");
    assert!(matches!(
        ingest(&w, &forged, 1).await,
        Err(IngestError::Rejected(Rejection::NoSignatureMatched))
    ));

    assert_eq!(records(&w.store, INVOICE_KIND).await, before);
    assert!(records(&w.store, "task").await.is_empty());
    assert!(
        w.store
            .workflow_runs("acme")
            .await
            .expect("runs")
            .is_empty()
    );
}
