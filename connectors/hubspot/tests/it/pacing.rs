//! 429 pacing: at the declared 240 requests per minute the fake HubSpot, enforcing both of its
//! limits, never answers 429; above the search limit it does, and the sync waits and retries
//! without losing anything; an injected 429's `Retry-After` is honoured.

use std::time::{Duration, Instant};

use ivory_connector_hubspot::manifest;
use ivory_sdk::fetch::RetryPolicy;
use ivory_sdk::manifest::ConflictPolicy;
use ivory_testkit::hubspot::{FakeHubSpot, Limits, START_MS};
use ivory_testkit::items::Fault;

use crate::support::{
    assert_mirrors, at, edit_on_platform, fast, manifest_with, options, sync, sync_with, world,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_declared_rate_provokes_no_429() {
    assert_eq!(manifest().connection.sync.rate_limit_per_minute, 240);
    let fake = FakeHubSpot::start(Limits::HUBSPOT).await.expect("fake");
    let ids = fake.create_contacts(1000, START_MS);
    let w = world(manifest().clone()).await;
    let first = sync(&w, &fake).await.expect("first");
    assert_eq!(first.totals.responses_429, 0);
    let first_sync_requests = fake.requests().len();
    for (i, id) in ids[..150].iter().enumerate() {
        edit_on_platform(&w.store, id, &[("company", "Ivory")], at(60_000 + i as i64)).await;
    }
    let second = sync(&w, &fake).await.expect("second");
    assert_eq!(second.totals.responses_429, 0);
    assert_eq!(second.outbound.pushed, 150);
    let log = fake.requests();
    assert!(log.iter().all(|r| r.status != 429), "the fake saw no 429");
    // Evenly spaced: no second holds more than HubSpot's 5 searches, and consecutive requests
    // are a quarter of a second apart (give or take the network).
    let times: Vec<Duration> = log.iter().map(|r| r.at).collect();
    for (i, t) in times.iter().enumerate() {
        let in_second = times[i..]
            .iter()
            .take_while(|u| **u <= *t + Duration::from_secs(1))
            .count();
        assert!(
            in_second <= 5,
            "{in_second} requests within a second of {t:?}"
        );
    }
    // Spacing is the pacer's within a run: the first request of each sync also opens the
    // connection (its arrival can lag), and the second sync's pacer starts fresh — two runs
    // back to back share no pacing unless the installation's limit is shared through the
    // store (`SyncOptions::shared_rate_limit`, which `ivory serve` and `ivory worker` use).
    let gaps: Vec<Duration> = [&times[..first_sync_requests], &times[first_sync_requests..]]
        .into_iter()
        .flat_map(|run| {
            run.get(1..)
                .unwrap_or_default()
                .windows(2)
                .map(|w| w[1] - w[0])
        })
        .collect();
    let mean = gaps.iter().sum::<Duration>() / u32::try_from(gaps.len()).expect("count");
    assert!(mean >= Duration::from_millis(245), "mean gap {mean:?}");
    assert!(log.len() >= 12, "{} requests", log.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_search_limit_429s_are_waited_out_and_nothing_is_lost() {
    let fake = FakeHubSpot::start(Limits::HUBSPOT).await.expect("fake");
    fake.create_contacts(2000, START_MS);
    // 1,200 per minute: 20 per second, four times HubSpot's search limit.
    let w = world(manifest_with(1200, ConflictPolicy::NewestWins)).await;
    let mut patient = options(&fake);
    patient.retry = RetryPolicy {
        max_retries: 12,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(800),
        ..RetryPolicy::default()
    };
    let summary = sync_with(
        &w,
        &fake,
        &ivory_connector_hubspot::HubSpotConnector {
            search_page_size: 100,
            ..Default::default()
        },
        patient,
        0,
    )
    .await
    .expect("sync");
    assert!(
        summary.totals.responses_429 > 0,
        "the fake enforces 5 searches per second"
    );
    assert_eq!(summary.totals.records_created, 2000);
    assert_mirrors(&w.store, &fake).await;
    let refused = fake.requests().into_iter().find(|r| r.status == 429);
    assert!(refused.is_some_and(|r| r.is_search()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_429_retry_after_is_honoured() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    fake.create_contacts(600, START_MS);
    fake.push_faults([
        Fault::TooManyRequests(Some("1".into())),
        Fault::TooManyRequests(Some("1".into())),
    ]);
    let w = world(fast()).await;
    let started = Instant::now();
    let summary = sync(&w, &fake).await.expect("sync");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured"
    );
    assert_eq!(summary.totals.responses_429, 2);
    assert_eq!(summary.totals.retries, 2);
    assert_eq!(summary.totals.records_created, 600);
    assert_mirrors(&w.store, &fake).await;
}
