//! Conflicts under each policy. The policy is a parameter: the same scenario proves
//! `newest_wins` (with its tie rule), `source_wins` and `platform_wins`.

use ivory_connector_hubspot::CONTACT_KIND;
use ivory_sdk::conflict::ConflictCounts;
use ivory_sdk::context::ChangeQuery;
use ivory_sdk::manifest::ConflictPolicy;
use ivory_testkit::hubspot::{FakeHubSpot, Limits, START_MS};

use crate::support::{
    TENANT, assert_mirrors, at, edit_on_platform, manifest_with, platform, sync, upstream, world,
};

/// Which side each contact should end up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Upstream,
    Platform,
}

async fn check(policy: ConflictPolicy) {
    let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
    let ids = fake.create_contacts(6, START_MS);
    let w = world(manifest_with(60_000, policy)).await;
    sync(&w, &fake).await.expect("first sync");
    let (a, b, c, d, e, f) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4], &ids[5]);

    // a: edited on the platform only; b: in HubSpot only; c: both, HubSpot later;
    // d: both, the platform later; e: both, at the same millisecond; f: untouched.
    let base = 1_000_000;
    edit_on_platform(&w.store, a, &[("firstname", "P-a")], at(base + 100)).await;
    assert!(fake.edit(b, &[("firstname", "U-b")], START_MS + base + 200));
    edit_on_platform(&w.store, c, &[("firstname", "P-c")], at(base + 300)).await;
    assert!(fake.edit(c, &[("firstname", "U-c")], START_MS + base + 400));
    assert!(fake.edit(d, &[("firstname", "U-d")], START_MS + base + 500));
    edit_on_platform(&w.store, d, &[("firstname", "P-d")], at(base + 600)).await;
    assert!(fake.edit(e, &[("firstname", "U-e")], START_MS + base + 700));
    edit_on_platform(&w.store, e, &[("firstname", "P-e")], at(base + 700)).await;
    fake.set_now_ms(START_MS + base + 10_000);

    let (winners, counts) = match policy {
        ConflictPolicy::NewestWins => (
            [Side::Upstream, Side::Platform, Side::Upstream],
            ConflictCounts {
                source_wins: 2,
                platform_wins: 1,
                ties: 1,
            },
        ),
        ConflictPolicy::SourceWins => (
            [Side::Upstream; 3],
            ConflictCounts {
                source_wins: 3,
                platform_wins: 0,
                ties: 0,
            },
        ),
        ConflictPolicy::PlatformWins => (
            [Side::Platform; 3],
            ConflictCounts {
                source_wins: 0,
                platform_wins: 3,
                ties: 0,
            },
        ),
    };
    let summary = sync(&w, &fake).await.expect("conflicting sync");
    assert_eq!(summary.conflicts, counts, "{policy:?}");
    let recorded = w
        .store
        .run_outbound(&summary.run_id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(recorded.conflicts, counts, "recorded on the sync run");
    let platform_winners = winners.iter().filter(|s| **s == Side::Platform).count() as u64;
    assert_eq!(
        summary.outbound.pushed,
        1 + platform_winners,
        "a + the platform's wins"
    );
    assert_eq!(summary.outbound.superseded, 3 - platform_winners);
    assert_eq!(recorded.outbound, summary.outbound);

    // Both sides agree, on the winner's value.
    let (ups, ours) = (upstream(&fake), platform(&w.store).await);
    let first = |id: &str| {
        let theirs = ups[id]["firstname"].as_str().unwrap_or_default().to_owned();
        assert_eq!(
            ours[id]["firstname"],
            theirs.as_str(),
            "{policy:?}: contact {id}"
        );
        theirs
    };
    assert_eq!(first(a), "P-a", "a platform-only edit is pushed");
    assert_eq!(first(b), "U-b", "an upstream-only edit is pulled");
    for ((id, letter), side) in [(c, "c"), (d, "d"), (e, "e")].into_iter().zip(winners) {
        let expected = match side {
            Side::Upstream => format!("U-{letter}"),
            Side::Platform => format!("P-{letter}"),
        };
        assert_eq!(first(id), expected, "{policy:?}: contact {letter}");
    }
    assert_eq!(first(f), format!("F{f}"));

    // Nothing is pending any more; the next sync decides nothing and pushes nothing.
    let pending = w
        .store
        .pending_changes(
            TENANT,
            &ChangeQuery::Page {
                kind: CONTACT_KIND,
                after: None,
                limit: 100,
            },
        )
        .await
        .expect("pending");
    assert!(pending.is_empty(), "{pending:?}");
    let next = sync(&w, &fake).await.expect("next sync");
    assert_eq!(next.conflicts, ConflictCounts::default());
    assert_eq!(next.outbound.pushed, 0);
    // The pushed contacts came back with HubSpot's new lastmodifieddate: an exact mirror.
    assert_mirrors(&w.store, &fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_wins_and_ties_go_to_hubspot() {
    check(ConflictPolicy::NewestWins).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_wins_keeps_hubspots_version() {
    check(ConflictPolicy::SourceWins).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_wins_pushes_the_platforms_version() {
    check(ConflictPolicy::PlatformWins).await;
}
