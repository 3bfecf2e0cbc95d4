//! The Stripe connector against the testkit's faithful fake Stripe: backfill, events,
//! deletions and voids, 429 storms, a crash mid-backfill, the 30-day retention fallback.

use std::time::Duration;

use futures::TryStreamExt;
use ivory_connector_stripe::{INVOICE_KIND, StripeConnector, manifest};
use ivory_runtime::store::Tombstones;
use ivory_runtime::{RunError, Runner, Store, SyncOptions, SyncSummary};
use ivory_sdk::fetch::RetryPolicy;
use ivory_sdk::{Clock, Credentials, Secret};
use ivory_testkit::items::Fault;
use ivory_testkit::stripe::{FakeStripe, START, TEST_API_KEY};
use jiff::Timestamp;

struct World {
    _dir: tempfile::TempDir,
    store: Store,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path().join("ivory.db").to_str().expect("path"))
        .await
        .expect("store");
    store
        .ensure_installation(
            "acme",
            manifest(),
            &Default::default(),
            Timestamp::from_second(START).expect("t"),
        )
        .await
        .expect("installed");
    World { _dir: dir, store }
}

/// A runner whose clock is the fake's clock plus `offset` seconds.
fn runner(store: &Store, fake: &FakeStripe, offset: i64) -> Runner {
    Runner::new(
        store.clone(),
        Clock::starting_at(Timestamp::from_second(fake.now() + offset).expect("t")),
    )
}

fn options(fake: &FakeStripe) -> SyncOptions {
    SyncOptions {
        base_url: Some(fake.base_url()),
        retry: RetryPolicy {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..SyncOptions::default()
    }
}

async fn sync(store: &Store, fake: &FakeStripe, offset: i64) -> Result<SyncSummary, RunError> {
    runner(store, fake, offset)
        .sync(
            "acme",
            manifest(),
            &StripeConnector::default(),
            Credentials::ApiKey(Secret::new(TEST_API_KEY)),
            options(fake),
        )
        .await
}

async fn mirror(store: &Store) -> Vec<(String, serde_json::Value, bool)> {
    store
        .export_records("acme", INVOICE_KIND, Tombstones::Include)
        .map_ok(|r| (r.id, r.data, r.deleted_at.is_some()))
        .try_collect()
        .await
        .expect("export")
}

#[tokio::test]
async fn backfill_then_events() {
    let w = world().await;
    let fake = FakeStripe::start(2_500).await.expect("fake");
    let first = sync(&w.store, &fake, 0).await.expect("backfill");
    assert_eq!(first.totals.records_created, 2_500);
    assert_eq!(
        first.totals.pages,
        25 + 1,
        "25 invoice pages, one (empty) events page"
    );
    assert_eq!(first.totals.responses_429, 0);
    let records = mirror(&w.store).await;
    assert_eq!(records.len(), 2_500);
    assert_eq!(
        records
            .iter()
            .filter(|(_, data, _)| data["status"] == "open")
            .count(),
        2_500
    );

    // Upstream changes: new invoices, a payment, a void, a deletion.
    let new: Vec<String> = (0..3)
        .map(|_| fake.create_invoice()["id"].as_str().expect("id").to_owned())
        .collect();
    fake.pay("in_00000010").expect("paid");
    fake.void("in_00000011").expect("voided");
    fake.delete("in_00000012").expect("deleted");
    let second = sync(&w.store, &fake, 0).await.expect("incremental");
    assert_eq!(second.totals.records_created, 3);
    assert_eq!(second.totals.records_deleted, 1);
    assert!(
        second.totals.requests <= 2,
        "only the events feed was read: {}",
        second.totals.requests
    );
    let records = mirror(&w.store).await;
    let find = |id: &str| {
        records
            .iter()
            .find(|(rid, ..)| rid == id)
            .cloned()
            .expect(id)
    };
    assert_eq!(find("in_00000010").1["status"], "paid");
    assert_eq!(
        find("in_00000011").1["status"],
        "void",
        "voided invoices stay, marked void"
    );
    assert!(find("in_00000012").2, "deleted invoices are tombstoned");
    for id in &new {
        assert_eq!(find(id).1["status"], "open");
    }
    let cursor = second.cursor.expect("cursor");
    assert!(cursor.contains("\"phase\":\"events\""), "{cursor}");

    // Nothing new: one request, nothing written.
    let third = sync(&w.store, &fake, 0).await.expect("quiet");
    assert_eq!(third.records_upserted, 0);
    assert_eq!(third.totals.requests, 1);
}

#[tokio::test]
async fn a_429_storm_is_ridden_out() {
    let w = world().await;
    let fake = FakeStripe::start(300).await.expect("fake");
    fake.push_faults((0..4).map(|_| Fault::TooManyRequests(Some("1".into()))));
    let started = std::time::Instant::now();
    let summary = sync(&w.store, &fake, 0).await.expect("succeeds");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "Retry-After honoured"
    );
    assert_eq!(summary.totals.responses_429, 4);
    assert_eq!(summary.totals.retries, 4);
    assert_eq!(summary.totals.records_created, 300);
}

#[tokio::test]
async fn a_crash_mid_backfill_then_rerun_is_exact() {
    let clean = world().await;
    let fake = FakeStripe::start(1_050).await.expect("fake");
    sync(&clean.store, &fake, 0).await.expect("clean");
    let expected = mirror(&clean.store).await;

    let w = world().await;
    let fake = FakeStripe::start(1_050).await.expect("fake");
    fake.hang_at_request(6);
    let run = runner(&w.store, &fake, 0);
    let connector = StripeConnector::default();
    let credentials = Credentials::ApiKey(Secret::new(TEST_API_KEY));
    let crashing = run.sync("acme", manifest(), &connector, credentials, options(&fake));
    tokio::select! {
        _ = fake.hung() => {}
        done = crashing => panic!("expected a hang, the sync ended: {done:?}"),
    }
    let partial = mirror(&w.store).await.len();
    assert!(
        partial > 0 && partial < 1_050,
        "{partial} invoices before the crash"
    );
    // The process is gone; an hour later the lease has expired and a new run resumes.
    let rerun = sync(&w.store, &fake, 3_600).await.expect("re-run");
    assert!(
        rerun.totals.records_created < 1_050,
        "resumed, not restarted"
    );
    assert_eq!(mirror(&w.store).await, expected);
}

#[tokio::test]
async fn a_cursor_older_than_the_event_retention_falls_back_to_a_full_repull() {
    let w = world().await;
    let fake = FakeStripe::start(120).await.expect("fake");
    fake.create_invoice();
    sync(&w.store, &fake, 0).await.expect("first");
    fake.advance(31 * 24 * 3600);
    fake.pay("in_00000005").expect("paid");
    let later = sync(&w.store, &fake, 0).await.expect("fallback");
    assert!(
        later.notes.iter().any(|n| n.contains("30-day")),
        "{:?}",
        later.notes
    );
    let records = mirror(&w.store).await;
    assert_eq!(records.len(), 121);
    let paid = records
        .iter()
        .find(|(id, ..)| id == "in_00000005")
        .expect("in 5");
    assert_eq!(paid.1["status"], "paid");
}

#[tokio::test]
async fn a_wrong_key_fails_clearly_and_changes_nothing() {
    let w = world().await;
    let fake = FakeStripe::start(10).await.expect("fake");
    let result = runner(&w.store, &fake, 0)
        .sync(
            "acme",
            manifest(),
            &StripeConnector::default(),
            Credentials::ApiKey(Secret::new("sk_test_wrong_fake")),
            options(&fake),
        )
        .await;
    match result {
        Err(RunError::Failed { error, .. }) => {
            assert!(error.to_string().contains("401"), "{error}");
            assert!(!error.to_string().contains("sk_test_wrong_fake"));
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(mirror(&w.store).await.is_empty());
}
