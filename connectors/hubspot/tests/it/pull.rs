//! Inbound: windows over 25,000 contacts (past the 10,000-result search cap), ties at window
//! boundaries, contacts moving during the read, crashes, the lookback, deletions.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ivory_connector_hubspot::HubSpotConnector;
use ivory_runtime::{RunError, SinkWrapper};
use ivory_sdk::connector::BoxFuture;
use ivory_sdk::context::{ChangeQuery, OutboundCommit, PlatformChange};
use ivory_sdk::fetch::{FetchConfig, Fetcher};
use ivory_sdk::{Clock, CommitReceipt, Cursor, RecordOp, RecordSink, Secret, SinkError};
use ivory_testkit::hubspot::{ACCESS_TOKEN, FakeHubSpot, Limits, START_MS};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::{
    World, assert_mirrors, bodies, fast, mirror, options, platform, sync, sync_with, world,
};

/// The committed watermark of a summary, as epoch milliseconds.
fn watermark_ms(cursor: Option<&String>) -> i64 {
    let text = cursor.expect("a cursor");
    let at: Timestamp = text
        .strip_prefix("updated_at:")
        .expect("an updated_at cursor")
        .parse()
        .expect("a timestamp");
    at.as_millisecond()
}

/// `count` contacts `step_ms` apart from `from_ms`; returns the last timestamp.
fn spread(fake: &FakeHubSpot, count: usize, from_ms: i64, step_ms: i64) -> i64 {
    let mut t = from_ms;
    for _ in 0..count {
        fake.create_contacts(1, t);
        t += step_ms;
    }
    t - step_ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_five_thousand_contacts_cross_the_search_cap() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    // 12,000 contacts a second apart, 10,500 on one millisecond, 2,500 in runs of 7.
    spread(&fake, 12_000, START_MS, 1000);
    let big = START_MS + 12_000_000 + 500;
    fake.create_contacts(10_500, big);
    let mut last = big;
    for run in 0..358 {
        last = big + 1000 * (run + 1);
        fake.create_contacts(if run < 357 { 7 } else { 1 }, last);
    }
    assert_eq!(fake.contacts().len(), 25_000);
    let w = world(fast()).await;

    let first = sync(&w, &fake).await.expect("sync");
    assert_eq!(first.totals.records_created, 25_000);
    assert_eq!(
        first.totals.records_unchanged, 0,
        "contacts re-read at a window boundary are recognised, not stored twice"
    );
    assert_mirrors(&w.store, &fake).await;
    assert_eq!(watermark_ms(first.cursor.as_ref()), last);
    let searches = bodies(&fake, "/search");
    assert!(
        fake.requests().iter().all(|r| r.status < 400),
        "no search went past the 10,000-result cap"
    );
    assert!(
        searches.iter().all(|b| b.get("after").is_none()),
        "every page is a fresh search keyed on the last timestamp reached"
    );
    assert!(
        searches
            .iter()
            .any(|b| b["sorts"][0]["propertyName"] == "hs_object_id"),
        "the 10,500 contacts on one millisecond were split by hs_object_id"
    );
    // About 12,000 / 199 pages, two at the tie, its split in 53 pages, 2,500 / 193 more.
    assert!(
        (120..=140).contains(&searches.len()),
        "{} searches",
        searches.len()
    );

    // Nothing changed: only the lookback (300 s before the watermark) is re-read.
    let quiet = sync(&w, &fake).await.expect("quiet sync");
    assert_eq!(
        quiet.totals.records_created + quiet.totals.records_updated,
        0
    );
    assert!(quiet.totals.records_unchanged <= 301 * 7, "{quiet:?}");
    assert!(quiet.totals.requests <= 15, "{}", quiet.totals.requests);

    // Upstream edits of old contacts move them past the watermark.
    let old = fake.contacts()[..3]
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect::<Vec<_>>();
    for (i, id) in old.iter().enumerate() {
        assert!(fake.edit(id, &[("company", "Acme")], last + 10_000 + i as i64));
    }
    let third = sync(&w, &fake).await.expect("third sync");
    assert_eq!(third.totals.records_updated, 3);
    assert_mirrors(&w.store, &fake).await;
}

/// A small deterministic generator for group sizes.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_timestamps_at_window_boundaries_are_never_skipped() {
    for (seed, page) in [(1u64, 50u32), (2, 37), (3, 10), (4, 200)] {
        let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
        let mut state = seed;
        let mut t = START_MS;
        let mut total = 0;
        // Runs of equal timestamps around the page size: shorter, equal, longer, much longer.
        let sizes = [page - 1, 1, page, page + 1, 3 * page, page / 2 + 1];
        while total < 20 * page as usize {
            let size = sizes[(lcg(&mut state) % sizes.len() as u64) as usize].max(1) as usize;
            fake.create_contacts(size, t);
            total += size;
            t += 1 + (lcg(&mut state) % 3) as i64;
        }
        let w = world(fast()).await;
        let connector = HubSpotConnector {
            search_page_size: page,
            ..HubSpotConnector::default()
        };
        let first = sync_with(&w, &fake, &connector, options(&fake), 0)
            .await
            .expect("sync");
        assert_eq!(
            first.totals.records_created, total as u64,
            "page {page}, seed {seed}"
        );
        assert_eq!(
            first.totals.records_unchanged, 0,
            "page {page}, seed {seed}"
        );
        assert_mirrors(&w.store, &fake).await;
        let again = sync_with(&w, &fake, &connector, options(&fake), 0)
            .await
            .expect("again");
        assert_eq!(
            again.totals.records_created + again.totals.records_updated,
            0
        );
    }
}

/// A raw offset-paged read (what the cap's usual workaround does within a window).
async fn offset_read(fake: &FakeHubSpot, pages: usize, edit_after_first: &str) -> Vec<String> {
    let mut config = FetchConfig::new(NonZeroU32::new(60_000).expect("rate"), vec![]);
    config.base_url_override = Some(fake.base_url());
    let fetcher = Fetcher::new(
        config.with_bearer(Secret::new(ACCESS_TOKEN)),
        Clock::system(),
    )
    .expect("fetcher");
    let mut ids = Vec::new();
    for page in 0..pages {
        let body = json!({
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
            "limit": 100,
            "after": (page * 100).to_string(),
        });
        let response: Value = fetcher
            .post("/crm/v3/objects/contacts/search")
            .json(&body)
            .send()
            .await
            .expect("search")
            .json()
            .expect("json");
        for contact in response["results"].as_array().expect("results") {
            ids.push(contact["id"].as_str().expect("id").to_owned());
        }
        if page == 0 {
            let at = fake.now_ms();
            assert!(fake.edit(edit_after_first, &[("firstname", "Moved")], at));
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_edited_mid_read_hides_no_other() {
    // The hazard: offset paging over HubSpot's live index loses a contact when one already
    // read moves to the end.
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    spread(&fake, 300, START_MS, 1000);
    fake.set_now_ms(START_MS + 5_000_000);
    let ids: Vec<String> = fake
        .contacts()
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    let read = offset_read(&fake, 3, &ids[10]).await;
    let seen: std::collections::HashSet<&String> = read.iter().collect();
    assert!(
        !seen.contains(&ids[100]),
        "offset paging skipped the contact that moved into the page already read"
    );

    // The connector: every page a fresh search on the last timestamp reached.
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    spread(&fake, 1000, START_MS, 1000);
    fake.set_now_ms(START_MS + 5_000_000);
    let ids: Vec<String> = fake
        .contacts()
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    // Before the 4th search is answered, a HubSpot user edits a contact of the first page.
    fake.edit_at_request(4, &ids[10], &[("firstname", "Moved")]);
    let w = world(fast()).await;
    let connector = HubSpotConnector {
        search_page_size: 100,
        ..HubSpotConnector::default()
    };
    let summary = sync_with(&w, &fake, &connector, options(&fake), 0)
        .await
        .expect("sync");
    assert_eq!(summary.totals.records_created, 1000);
    assert_mirrors(&w.store, &fake).await;
    assert_eq!(platform(&w.store).await[&ids[10]]["firstname"], "Moved");
}

/// The contacts of the crash tests: 1,000 a second apart, 600 on one millisecond, 400 more.
fn crash_data(fake: &FakeHubSpot) {
    let end = spread(fake, 1000, START_MS, 1000);
    fake.create_contacts(600, end + 500);
    spread(fake, 400, end + 1000, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_inside_a_window_then_rerun_is_exact() {
    let clean = world(fast()).await;
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    crash_data(&fake);
    sync(&clean, &fake).await.expect("clean");
    let expected = mirror(&clean.store).await;
    assert_eq!(expected.len(), 2000);

    // Requests 1–7 read the 1,000 and reach the tie; 8–10 split it: die inside the split.
    for k in [3, 9] {
        let w = world(fast()).await;
        let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
        crash_data(&fake);
        fake.hang_at_request(k);
        let run = crate::support::runner(&w.store, 0);
        let connector = HubSpotConnector::default();
        let crashing = run.sync(
            crate::support::TENANT,
            &w.manifest,
            &connector,
            crate::support::bearer(),
            options(&fake),
        );
        tokio::select! {
            _ = fake.hung() => {}
            done = crashing => panic!("expected a hang, the sync ended: {done:?}"),
        }
        let partial = mirror(&w.store).await.len();
        assert!(
            partial > 0 && partial < 2000,
            "{partial} contacts before the crash"
        );
        // The process is gone; an hour later its lease has expired and a new run resumes.
        let rerun = sync_with(&w, &fake, &connector, options(&fake), 3600)
            .await
            .expect("re-run");
        assert!(
            rerun.totals.records_created < 2000,
            "resumed, not restarted"
        );
        assert_eq!(mirror(&w.store).await, expected, "crash at request {k}");
    }
}

/// Fails the `fail_at`-th commit (1-based) before it reaches the store.
struct FailingCommit {
    inner: Arc<dyn RecordSink>,
    fail_at: usize,
    commits: AtomicUsize,
}

impl RecordSink for FailingCommit {
    fn commit<'a>(
        &'a self,
        ops: &'a [RecordOp],
        cursor: Option<&'a Cursor>,
    ) -> BoxFuture<'a, Result<CommitReceipt, SinkError>> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at {
            return Box::pin(async { Err(SinkError::new("injected: the store went away")) });
        }
        self.inner.commit(ops, cursor)
    }

    fn pending_changes<'a>(
        &'a self,
        query: &'a ChangeQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<PlatformChange>, SinkError>> {
        self.inner.pending_changes(query)
    }

    fn commit_outbound<'a>(
        &'a self,
        commit: &'a OutboundCommit,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        self.inner.commit_outbound(commit)
    }
}

fn failing_commit(fail_at: usize) -> SinkWrapper {
    Arc::new(move |inner| {
        Arc::new(FailingCommit {
            inner,
            fail_at,
            commits: AtomicUsize::new(0),
        }) as Arc<dyn RecordSink>
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_inside_the_split_then_rerun_is_exact() {
    let clean = world(fast()).await;
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    crash_data(&fake);
    sync(&clean, &fake).await.expect("clean");
    let expected = mirror(&clean.store).await;

    let w: World = world(fast()).await;
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    crash_data(&fake);
    let mut failing = options(&fake);
    failing.wrap_sink = Some(failing_commit(9));
    let connector = HubSpotConnector::default();
    let failed = sync_with(&w, &fake, &connector, failing, 0).await;
    assert!(
        matches!(&failed, Err(RunError::Failed { error, .. }) if error.to_string().contains("injected")),
        "{failed:?}"
    );
    let rerun = sync_with(&w, &fake, &connector, options(&fake), 0)
        .await
        .expect("re-run");
    assert!(rerun.totals.records_created < 2000);
    assert_eq!(mirror(&w.store).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookback_catches_changes_the_index_showed_late() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    let ids = fake.create_contacts(3, START_MS);
    let w = world(fast()).await;
    sync(&w, &fake).await.expect("first");

    // A is edited first, but the search index shows it only after B's later edit was read.
    let t1 = START_MS + 60_000;
    fake.set_index_lag(true);
    assert!(fake.edit(&ids[0], &[("firstname", "Late")], t1));
    fake.set_index_lag(false);
    assert!(fake.edit(&ids[1], &[("firstname", "Early")], t1 + 10_000));
    let second = sync(&w, &fake).await.expect("second");
    assert_eq!(second.totals.records_updated, 1);
    assert_eq!(watermark_ms(second.cursor.as_ref()), t1 + 10_000);
    assert_ne!(platform(&w.store).await[&ids[0]]["firstname"], "Late");

    fake.catch_up_index();
    let third = sync(&w, &fake).await.expect("third");
    assert_eq!(
        third.totals.records_updated, 1,
        "A came back within the 300 s lookback"
    );
    assert_mirrors(&w.store, &fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_contacts_are_tombstoned() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    let ids = fake.create_contacts(250, START_MS);
    let w = world(fast()).await;
    sync(&w, &fake).await.expect("first");
    for id in &ids[..3] {
        assert!(fake.archive(id, START_MS + 1000));
    }
    let second = sync(&w, &fake).await.expect("second");
    assert_eq!(second.totals.records_deleted, 3);
    assert_mirrors(&w.store, &fake).await;
    let all = mirror(&w.store).await;
    assert_eq!(all.len(), 250, "tombstones are kept");
    assert_eq!(all.iter().filter(|(_, _, deleted)| *deleted).count(), 3);
    let third = sync(&w, &fake).await.expect("third");
    assert_eq!(third.totals.records_deleted, 0);
}
