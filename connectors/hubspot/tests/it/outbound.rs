//! Outbound: batches of at most 100, contacts created on the platform created in HubSpot and
//! linked to their HubSpot ids, and a create whose write-back a crash lost is linked, not
//! created twice.

use std::sync::Arc;

use ivory_connector_hubspot::HubSpotConnector;
use ivory_runtime::{RunError, SinkWrapper};
use ivory_sdk::connector::BoxFuture;
use ivory_sdk::context::{ChangeQuery, OutboundCommit, PlatformChange};
use ivory_sdk::{CommitReceipt, Cursor, RecordOp, RecordSink, SinkError};
use ivory_testkit::hubspot::{FakeHubSpot, Limits, START_MS};
use serde_json::json;

use crate::support::{
    assert_mirrors, at, bodies, create_on_platform, edit_on_platform, fast, options, platform,
    sync, sync_with, upstream, world,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_go_out_in_batches_of_at_most_100() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    let ids = fake.create_contacts(400, START_MS);
    let w = world(fast()).await;
    sync(&w, &fake).await.expect("first");
    for (i, id) in ids[..250].iter().enumerate() {
        let title = format!("Engineer {i}");
        edit_on_platform(&w.store, id, &[("jobtitle", &title)], at(60_000 + i as i64)).await;
    }
    fake.set_now_ms(START_MS + 3_600_000);
    let summary = sync(&w, &fake).await.expect("push");
    assert_eq!(summary.outbound.pushed, 250);
    let batches = bodies(&fake, "/batch/update");
    let sizes: Vec<usize> = batches
        .iter()
        .map(|b| b["inputs"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let ups = upstream(&fake);
    for (i, id) in ids[..250].iter().enumerate() {
        assert_eq!(ups[id]["jobtitle"], json!(format!("Engineer {i}")));
    }
    assert!(
        batches.iter().all(|b| b["inputs"][0]["properties"]
            .get("lastmodifieddate")
            .is_none()),
        "HubSpot's read-only properties are never sent"
    );
    let again = sync(&w, &fake).await.expect("again");
    assert_eq!(
        again.outbound.pushed, 0,
        "acknowledged edits are not pushed twice"
    );
    assert_mirrors(&w.store, &fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_hubspot_refuses_stays_pending_and_is_reported() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    let ids = fake.create_contacts(3, START_MS);
    let w = world(fast()).await;
    sync(&w, &fake).await.expect("first");
    edit_on_platform(&w.store, &ids[0], &[("company", "Kept")], at(60_000)).await;
    edit_on_platform(&w.store, &ids[1], &[("company", "Lost")], at(60_001)).await;
    // One search, the archived list, then the batch update: the contact is archived in
    // HubSpot just before the update lands (a 207 with an OBJECT_NOT_FOUND error).
    fake.archive_at_request(fake.requests().len() + 3, &ids[1]);
    let summary = sync(&w, &fake).await.expect("sync");
    assert_eq!(summary.outbound.pushed, 1);
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains(&ids[1]) && n.contains("stay pending")),
        "{:?}",
        summary.notes
    );
    assert_eq!(upstream(&fake)[&ids[0]]["company"], "Kept");
    // The next sync sees the archive: the contact is tombstoned, nothing is retried.
    let next = sync(&w, &fake).await.expect("next");
    assert_eq!(next.totals.records_deleted, 1);
    assert_eq!(next.outbound.pushed, 0);
    assert!(next.notes.is_empty(), "{:?}", next.notes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_created_on_the_platform_are_created_in_hubspot_and_linked() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    fake.create_contacts(5, START_MS);
    let w = world(fast()).await;
    sync(&w, &fake).await.expect("first");
    create_on_platform(
        &w,
        "new-ada",
        json!({"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace"}),
        at(60_000),
    )
    .await;
    create_on_platform(
        &w,
        "new-alan",
        json!({"email": "Alan@Example.com", "firstname": "Alan", "lastname": "Turing"}),
        at(60_001),
    )
    .await;
    create_on_platform(
        &w,
        "new-anon",
        json!({"firstname": "Anonymous", "lastname": "Contact"}),
        at(60_002),
    )
    .await;
    fake.set_now_ms(START_MS + 3_600_000);
    let summary = sync(&w, &fake).await.expect("create");
    assert_eq!(summary.outbound.created, 3);
    assert_eq!(summary.outbound.pushed, 3);
    assert_eq!(upstream(&fake).len(), 8);
    let ours = platform(&w.store).await;
    assert!(
        ours.keys().all(|id| id.parse::<u64>().is_ok()),
        "every record now carries its HubSpot id: {:?}",
        ours.keys().collect::<Vec<_>>()
    );
    let ada = upstream(&fake)
        .into_iter()
        .find(|(_, p)| p["email"] == "ada@example.com")
        .expect("Ada in HubSpot");
    assert_eq!(ours[&ada.0]["firstname"], "Ada");
    // Two contacts with an email went in one batch; the one without, alone.
    let creates = bodies(&fake, "/batch/create");
    let sizes: Vec<usize> = creates
        .iter()
        .map(|b| b["inputs"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, vec![2, 1]);

    let again = sync(&w, &fake).await.expect("again");
    assert_eq!(again.outbound.created + again.outbound.pushed, 0);
    assert_eq!(upstream(&fake).len(), 8, "nothing created twice");
    assert_mirrors(&w.store, &fake).await;
}

/// Fails the first outbound commit that links records (the create went through upstream, the
/// write-back is lost).
struct LoseFirstLink {
    inner: Arc<dyn RecordSink>,
    failed: std::sync::atomic::AtomicBool,
}

impl RecordSink for LoseFirstLink {
    fn commit<'a>(
        &'a self,
        ops: &'a [RecordOp],
        cursor: Option<&'a Cursor>,
    ) -> BoxFuture<'a, Result<CommitReceipt, SinkError>> {
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
        if !commit.links.is_empty() && !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Box::pin(async {
                Err(SinkError::new("injected: crash before the write-back"))
            });
        }
        self.inner.commit_outbound(commit)
    }
}

fn lose_first_link() -> SinkWrapper {
    Arc::new(|inner| {
        Arc::new(LoseFirstLink {
            inner,
            failed: std::sync::atomic::AtomicBool::new(false),
        }) as Arc<dyn RecordSink>
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_write_back_was_lost_is_linked_not_created_twice() {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    fake.create_contacts(2, START_MS);
    let w = world(fast()).await;
    sync(&w, &fake).await.expect("first");
    create_on_platform(
        &w,
        "new-grace",
        json!({"email": "grace@example.com", "firstname": "Grace", "lastname": "Hopper"}),
        at(60_000),
    )
    .await;
    fake.set_now_ms(START_MS + 3_600_000);
    let mut losing = options(&fake);
    losing.wrap_sink = Some(lose_first_link());
    let connector = HubSpotConnector::default();
    let failed = sync_with(&w, &fake, &connector, losing, 0).await;
    assert!(
        matches!(&failed, Err(RunError::Failed { error, .. }) if error.to_string().contains("write-back")),
        "{failed:?}"
    );
    assert_eq!(upstream(&fake).len(), 3, "created upstream");
    assert!(
        platform(&w.store).await.contains_key("new-grace"),
        "not linked"
    );

    let rerun = sync(&w, &fake).await.expect("re-run");
    assert_eq!(upstream(&fake).len(), 3, "not created twice");
    assert_eq!(rerun.outbound.created, 1, "linked to the existing contact");
    assert_eq!(
        rerun.conflicts.total(),
        0,
        "an identical contact is no conflict"
    );
    let ours = platform(&w.store).await;
    assert!(!ours.contains_key("new-grace"));
    assert_eq!(bodies(&fake, "/batch/create").len(), 1);
    sync(&w, &fake).await.expect("settle");
    assert_mirrors(&w.store, &fake).await;
}
