//! Syncs end to end: cursors of both kinds, incremental runs, ties, one run at a time, leases,
//! failures, tenant isolation.

use std::time::Duration;

use ivory_runtime::store::{CommitScope, Fence, NewRun, RunStatus};
use ivory_runtime::{RunError, StoreError};
use ivory_sdk::manifest::CursorKind;
use ivory_sdk::{Credentials, Cursor};
use ivory_testkit::connectors::{ChangesConnector, ItemsConnector, items_manifest};
use ivory_testkit::items::{BASE_UPDATED, Fault, ItemsUpstream};

use crate::support::{env, install, options, runner_at, snapshot};

#[tokio::test]
async fn opaque_cursor_full_then_incremental() {
    let env = env().await;
    let fake = ItemsUpstream::start(250, 1, 16).await.expect("fake");
    let manifest = items_manifest("items", CursorKind::OpaqueToken, 100_000);
    install(&env.store, "acme", &manifest).await;
    let connector = ItemsConnector::new(40);
    let runner = runner_at(&env.store, Duration::ZERO);

    let first = runner
        .sync(
            "acme",
            &manifest,
            &connector,
            Credentials::None,
            options(fake.base_url()),
        )
        .await
        .expect("first sync");
    assert_eq!(first.status, RunStatus::Succeeded);
    assert_eq!(first.records_upserted, 250);
    assert_eq!(first.totals.records_created, 250);
    assert_eq!(first.totals.pages, 7);
    assert_eq!(first.totals.requests, 7);
    assert_eq!(first.cursor.as_deref(), Some("opaque_token:it_0000240"));
    assert_eq!(snapshot(&env.store, "acme").await.len(), 250);

    fake.append(30, BASE_UPDATED + 5000, 16);
    let second = runner
        .sync(
            "acme",
            &manifest,
            &connector,
            Credentials::None,
            options(fake.base_url()),
        )
        .await
        .expect("incremental sync");
    // Resumes after it_0000240: re-reads 10 unchanged items, creates 30.
    assert_eq!(second.totals.records_created, 30);
    assert_eq!(second.totals.records_unchanged, 10);
    assert_eq!(second.totals.requests, 1);
    assert_eq!(second.cursor.as_deref(), Some("opaque_token:it_0000240"));
    let requests = fake.requests();
    assert!(
        requests
            .last()
            .is_some_and(|r| r.query.contains("starting_after=it_0000240"))
    );
    let records = snapshot(&env.store, "acme").await;
    assert_eq!(records.len(), 280);
    assert!(
        records
            .iter()
            .all(|(_, _, version, deleted)| *version == 1 && !deleted)
    );

    let full = runner
        .sync(
            "acme",
            &manifest,
            &connector,
            Credentials::None,
            ivory_runtime::SyncOptions {
                full_refresh: true,
                ..options(fake.base_url())
            },
        )
        .await
        .expect("full refresh");
    assert_eq!(full.totals.records_unchanged, 280);
    assert_eq!(full.totals.records_created + full.totals.records_updated, 0);
}

#[tokio::test]
async fn updated_at_watermark_rereads_its_boundary_and_sees_changes() {
    let env = env().await;
    // 7 items per second: every page boundary of 25 falls inside a tie group.
    let fake = ItemsUpstream::start(200, 7, 8).await.expect("fake");
    let manifest = items_manifest("changes", CursorKind::UpdatedAt, 100_000);
    install(&env.store, "acme", &manifest).await;
    let connector = ChangesConnector::new(25);
    let runner = runner_at(&env.store, Duration::ZERO);
    let first = runner
        .sync(
            "acme",
            &manifest,
            &connector,
            Credentials::None,
            options(fake.base_url()),
        )
        .await
        .expect("first");
    assert_eq!(first.totals.records_created, 200);
    let last_second = BASE_UPDATED + (200 - 1) / 7;
    let watermark = jiff::Timestamp::from_second(last_second).expect("ts");
    assert_eq!(first.cursor, Some(format!("updated_at:{watermark}")));

    // A late item lands exactly on the watermark second (a tie), one item changes, and
    // three arrive later.
    fake.append(1, last_second, 8);
    fake.touch(5, BASE_UPDATED + 1000);
    fake.append(3, BASE_UPDATED + 1001, 8);
    let second = runner
        .sync(
            "acme",
            &manifest,
            &connector,
            Credentials::None,
            options(fake.base_url()),
        )
        .await
        .expect("second");
    assert_eq!(
        second.totals.records_created, 4,
        "the tie at the boundary was not skipped"
    );
    assert_eq!(second.totals.records_updated, 1);
    let records = snapshot(&env.store, "acme").await;
    assert_eq!(records.len(), 204);
    let touched = records
        .iter()
        .find(|(id, ..)| id == "it_0000005")
        .expect("item 5");
    assert_eq!(touched.1["updated"], BASE_UPDATED + 1000);
    assert_eq!(touched.2, 2, "a change bumps the version");
    // The second window starts AT the watermark (inclusive), not after it.
    let query = fake
        .requests()
        .last()
        .map(|r| r.query.clone())
        .unwrap_or_default();
    assert!(query.contains(&format!("since={last_second}")), "{query}");
    let newest = jiff::Timestamp::from_second(BASE_UPDATED + 1001).expect("ts");
    assert_eq!(second.cursor, Some(format!("updated_at:{newest}")));
}

#[tokio::test]
async fn a_second_concurrent_run_is_refused_and_a_dead_one_is_taken_over() {
    let env = env().await;
    let fake = ItemsUpstream::start(100, 1, 8).await.expect("fake");
    fake.hang_at_request(2);
    let manifest = items_manifest("items", CursorKind::OpaqueToken, 100_000);
    install(&env.store, "acme", &manifest).await;
    let connector = ItemsConnector::new(10);

    let stuck_runner = runner_at(&env.store, Duration::ZERO);
    let stuck = {
        let manifest = manifest.clone();
        let connector = connector.clone();
        let base = fake.base_url();
        tokio::spawn(async move {
            stuck_runner
                .sync(
                    "acme",
                    &manifest,
                    &connector,
                    Credentials::None,
                    options(base),
                )
                .await
        })
    };
    fake.hung().await;

    let second = runner_at(&env.store, Duration::from_secs(10))
        .sync(
            "acme",
            &manifest,
            &connector,
            Credentials::None,
            options(fake.base_url()),
        )
        .await;
    let holder = match second {
        Err(RunError::AlreadyRunning { holder, .. }) => holder,
        other => panic!("expected AlreadyRunning, got {other:?}"),
    };
    let message = RunError::AlreadyRunning {
        installation: "x".into(),
        holder: holder.clone(),
    }
    .to_string();
    assert!(
        message.contains("already running") && message.contains(&holder.run_id),
        "{message}"
    );

    // The stuck process "dies"; once its lease has expired a new run takes over and resumes
    // from the page it had committed.
    stuck.abort();
    let _ = stuck.await;
    let after = runner_at(&env.store, Duration::from_secs(3600))
        .sync(
            "acme",
            &manifest,
            &connector,
            Credentials::None,
            options(fake.base_url()),
        )
        .await
        .expect("takes over");
    assert_eq!(after.status, RunStatus::Succeeded);
    assert_eq!(after.totals.records_created, 90);
    assert_eq!(snapshot(&env.store, "acme").await.len(), 100);
    let dead = env
        .store
        .run_record(&holder.run_id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(dead.status, RunStatus::Abandoned);
}

#[tokio::test]
async fn a_run_that_lost_its_lease_cannot_commit() {
    let env = env().await;
    let manifest = items_manifest("items", CursorKind::OpaqueToken, 600);
    let t = crate::support::t0();
    let installation = env
        .store
        .ensure_installation("acme", &manifest, &Default::default(), t)
        .await
        .expect("installation");
    let later = |s: i64| {
        t.checked_add(jiff::SignedDuration::from_secs(s))
            .expect("t")
    };
    env.store
        .begin_run(&NewRun {
            installation_id: &installation.id,
            tenant: "acme",
            run_id: "run_a",
            holder: "host:1",
            full_refresh: false,
            now: t,
            lease_until: later(60),
        })
        .await
        .expect("store")
        .expect("run a starts");
    env.store
        .begin_run(&NewRun {
            installation_id: &installation.id,
            tenant: "acme",
            run_id: "run_b",
            holder: "host:2",
            full_refresh: false,
            now: later(120),
            lease_until: later(400),
        })
        .await
        .expect("store")
        .expect("run b takes over the expired lease");
    let scope = CommitScope {
        tenant: "acme",
        installation: &installation.id,
        now: later(130),
        fence: Some(Fence {
            run_id: "run_a",
            lease_until: later(430),
        }),
    };
    let ops = vec![ivory_sdk::RecordOp::Upsert {
        kind: "item".into(),
        record: ivory_sdk::Record::new("it_1", serde_json::json!({"a": 1})),
    }];
    let refused = env
        .store
        .commit(&scope, &ops, Some(&Cursor::OpaqueToken("it_1".into())))
        .await;
    assert!(
        matches!(refused, Err(StoreError::LeaseLost { .. })),
        "{refused:?}"
    );
    assert!(snapshot(&env.store, "acme").await.is_empty());
    assert_eq!(
        env.store.cursor(&installation.id).await.expect("read"),
        None
    );
}

#[tokio::test]
async fn a_failed_sync_keeps_what_it_committed_and_the_next_run_resumes() {
    let env = env().await;
    let fake = ItemsUpstream::start(100, 1, 8).await.expect("fake");
    fake.fault_at_request(3, Fault::Status(400));
    let manifest = items_manifest("items", CursorKind::OpaqueToken, 100_000);
    install(&env.store, "acme", &manifest).await;
    let connector = ItemsConnector::new(20);
    let runner = runner_at(&env.store, Duration::ZERO);
    let failed = runner
        .sync(
            "acme",
            &manifest,
            &connector,
            Credentials::None,
            options(fake.base_url()),
        )
        .await;
    let run_id = match &failed {
        Err(RunError::Failed { summary, error }) => {
            assert_eq!(summary.status, RunStatus::Failed);
            assert_eq!(summary.records_upserted, 40, "two pages were committed");
            assert_eq!(summary.cursor.as_deref(), Some("opaque_token:it_0000040"));
            assert!(error.to_string().contains("400"), "{error}");
            summary.run_id.clone()
        }
        other => panic!("expected a failed run, got {other:?}"),
    };
    let run = env
        .store
        .run_record(&run_id)
        .await
        .expect("read")
        .expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.is_some_and(|e| e.contains("400")));
    assert_eq!(run.totals.records_created, 40);

    let ok = runner
        .sync(
            "acme",
            &manifest,
            &connector,
            Credentials::None,
            options(fake.base_url()),
        )
        .await
        .expect("resumes");
    assert_eq!(ok.totals.records_created, 60);
    let resumed = &fake.requests()[3];
    assert!(
        resumed.query.contains("starting_after=it_0000040"),
        "{resumed:?}"
    );
    assert_eq!(snapshot(&env.store, "acme").await.len(), 100);
}

#[tokio::test]
async fn a_dead_upstream_fails_in_bounded_time_and_changes_nothing() {
    let env = env().await;
    let manifest = items_manifest("items", CursorKind::OpaqueToken, 100_000);
    install(&env.store, "acme", &manifest).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let base = url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("url");
    let result = runner_at(&env.store, Duration::ZERO)
        .sync(
            "acme",
            &manifest,
            &ItemsConnector::new(10),
            Credentials::None,
            options(base),
        )
        .await;
    match result {
        Err(RunError::Failed { summary, error }) => {
            assert_eq!(summary.totals.requests, 3, "first attempt + 2 retries");
            assert!(
                error.to_string().contains("failed after 2 retries"),
                "{error}"
            );
        }
        other => panic!("expected a failed run, got {other:?}"),
    }
    assert!(snapshot(&env.store, "acme").await.is_empty());
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let env = env().await;
    let small = ItemsUpstream::start(30, 1, 8).await.expect("fake");
    let large = ItemsUpstream::start(70, 1, 8).await.expect("fake");
    large.touch(1, BASE_UPDATED + 99);
    let manifest = items_manifest("items", CursorKind::OpaqueToken, 100_000);
    install(&env.store, "tenant-a", &manifest).await;
    install(&env.store, "tenant-b", &manifest).await;
    let connector = ItemsConnector::new(25);
    let runner = runner_at(&env.store, Duration::ZERO);
    let a = runner
        .sync(
            "tenant-a",
            &manifest,
            &connector,
            Credentials::None,
            options(small.base_url()),
        )
        .await
        .expect("a");
    let b = runner
        .sync(
            "tenant-b",
            &manifest,
            &connector,
            Credentials::None,
            options(large.base_url()),
        )
        .await
        .expect("b");
    assert_ne!(a.installation, b.installation);
    let records_a = snapshot(&env.store, "tenant-a").await;
    let records_b = snapshot(&env.store, "tenant-b").await;
    assert_eq!((records_a.len(), records_b.len()), (30, 70));
    // The same external id holds each tenant's own data.
    assert_eq!(records_a[0].1["updated"], BASE_UPDATED);
    assert_eq!(records_b[0].1["updated"], BASE_UPDATED + 99);
    assert_eq!(a.cursor.as_deref(), Some("opaque_token:it_0000025"));
    assert_eq!(b.cursor.as_deref(), Some("opaque_token:it_0000050"));
    assert!(snapshot(&env.store, "tenant-c").await.is_empty());
}

#[tokio::test]
async fn bad_tenant_ids_are_refused() {
    let env = env().await;
    let manifest = items_manifest("items", CursorKind::OpaqueToken, 600);
    let fake = ItemsUpstream::start(1, 1, 8).await.expect("fake");
    for bad in ["", "a b", "x/../y", &"t".repeat(129)] {
        let result = runner_at(&env.store, Duration::ZERO)
            .sync(
                bad,
                &manifest,
                &ItemsConnector::new(10),
                Credentials::None,
                options(fake.base_url()),
            )
            .await;
        assert!(
            matches!(
                result,
                Err(RunError::Store(StoreError::Invalid {
                    what: "tenant id",
                    ..
                }))
            ),
            "{bad:?}: {result:?}"
        );
    }
}
