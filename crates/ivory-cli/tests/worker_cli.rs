//! `ivory worker` processes sharing one PostgreSQL store: each due installation synced exactly
//! once however many workers claim, and a worker killed with SIGKILL mid-sync is taken over
//! with an exact result. Needs the PostgreSQL server of this machine (`.ci/run` starts it);
//! `IVORY_TEST_PG` overrides its URL (default `postgres://postgres@127.0.0.1`).

use std::collections::BTreeMap;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use futures::TryStreamExt;
use ivory_runtime::store::{Actor, Approval, InstallRequest, RunStatus, Tombstones};
use ivory_runtime::{MasterKeys, Store, Vault};
use ivory_sdk::Clock;
use ivory_sdk::manifest::CursorKind;
use ivory_testkit::connectors::items_manifest;
use ivory_testkit::items::ItemsUpstream;

struct World {
    url: String,
    store: Store,
    key: String,
}

async fn world() -> World {
    let url = ivory_testkit::pg::fresh_database().await;
    let store = Store::open(&url).await.expect("store");
    let key = MasterKeys::generate_key().expect("key").expose().to_owned();
    World { url, store, key }
}

impl World {
    async fn install(&self, tenants: impl IntoIterator<Item = String>, schedule: &str) {
        let vault = Vault::new(MasterKeys::from_env_value(&self.key).expect("keys"));
        let manifest = items_manifest("example-items", CursorKind::OpaqueToken, 6000);
        for tenant in tenants {
            self.store
                .install(
                    &InstallRequest {
                        tenant: &tenant,
                        manifest: &manifest,
                        settings: BTreeMap::from([("schedule".to_owned(), schedule.to_owned())]),
                        actor: &Actor::User("admin".into()),
                        approval: Approval::Approved,
                        now: Clock::system().now(),
                    },
                    &vault,
                )
                .await
                .expect("install");
        }
    }

    fn worker(&self, upstream: &ItemsUpstream, extra: &[&str]) -> Child {
        StdCommand::cargo_bin("ivory")
            .expect("binary")
            .args([
                "--db",
                &self.url,
                "worker",
                "--tick-ms",
                "100",
                "--upstream",
            ])
            .arg(format!("example-items={}", upstream.base_url()))
            .args(extra)
            .env("IVORY_MASTER_KEY", &self.key)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker starts")
    }

    async fn items(&self, tenant: &str) -> Vec<ivory_runtime::store::ExportedRecord> {
        self.store
            .export_records(tenant, "item", Tombstones::Exclude)
            .try_collect()
            .await
            .expect("records")
    }
}

fn stop(mut child: Child) -> std::process::Output {
    let _ = StdCommand::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the worker stops on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_sync_two_hundred_installations_exactly_once_per_tick() {
    const INSTALLATIONS: usize = 200;
    let w = world().await;
    let upstream = ItemsUpstream::start(30, 1, 16).await.expect("upstream");
    let tenants: Vec<String> = (0..INSTALLATIONS)
        .map(|i| format!("tenant-{i:03}"))
        .collect();
    // Due within the first 6 s (a tenth of the interval), then not for a minute.
    w.install(tenants.clone(), "1m").await;
    let workers: Vec<Child> = (0..4)
        .map(|_| w.worker(&upstream, &["--concurrency", "4"]))
        .collect();

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut installations = Vec::new();
    for tenant in &tenants {
        let installation = w
            .store
            .installation(tenant, "example-items")
            .await
            .expect("read")
            .expect("installed");
        installations.push(installation.id);
    }
    loop {
        let mut done = 0;
        for id in &installations {
            let runs = w.store.runs_of(id).await.expect("runs");
            done += usize::from(runs.iter().any(|r| r.status == RunStatus::Succeeded));
        }
        if done == INSTALLATIONS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {INSTALLATIONS} synced within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A little longer: nobody syncs any of them a second time within the tick.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for output in workers.into_iter().map(stop) {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for (tenant, id) in tenants.iter().zip(&installations) {
        let runs = w.store.runs_of(id).await.expect("runs");
        assert_eq!(runs.len(), 1, "{tenant}: {runs:?}");
        assert_eq!(runs[0].status, RunStatus::Succeeded);
        assert_eq!(w.items(tenant).await.len(), 30, "{tenant}");
    }
    // Each installation pulled its one page once: 200 requests in all.
    assert_eq!(upstream.requests().len(), INSTALLATIONS);
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_sync_is_taken_over_and_the_result_is_exact() {
    const ITEMS: u64 = 30_000;
    let w = world().await;
    let upstream = ItemsUpstream::start_generated(ITEMS, 3, 16)
        .await
        .expect("upstream");
    w.install(["acme".to_owned()], "1m").await;
    let lease = ["--lease-seconds", "3", "--concurrency", "1"];
    let first = w.worker(&upstream, &lease);
    let deadline = Instant::now() + Duration::from_secs(30);
    while upstream.requests().len() < 20 {
        assert!(
            Instant::now() < deadline,
            "the first worker started the sync"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = w.worker(&upstream, &lease);
    // SIGKILL: no shutdown, no release of the claim or the lease.
    let mut first = first;
    first.kill().expect("kill -9");
    first.wait().expect("reaped");
    let killed_at = upstream.requests().len();

    let installation = w
        .store
        .installation("acme", "example-items")
        .await
        .expect("read")
        .expect("installed");
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let runs = w.store.runs_of(&installation.id).await.expect("runs");
        if runs.iter().any(|r| r.status == RunStatus::Succeeded) {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "taken over within 60 s: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = stop(second);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Abandoned, "{runs:?}");
    assert_eq!(runs[1].status, RunStatus::Succeeded, "{runs:?}");
    assert!(
        runs[1].totals.records_created < ITEMS,
        "the second run resumed from the committed cursor: {runs:?}"
    );
    assert!(killed_at > 0);
    let items = w.items("acme").await;
    assert_eq!(items.len() as u64, ITEMS, "nothing lost");
    assert!(
        items.iter().all(|r| r.version == 1),
        "nothing written twice"
    );
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_sync_export_and_serve_work_unchanged_on_postgres() {
    let url = ivory_testkit::pg::fresh_database().await;
    let key = MasterKeys::generate_key().expect("key").expose().to_owned();
    let upstream = ItemsUpstream::start(250, 3, 16).await.expect("upstream");
    let run = |args: Vec<String>| {
        let url = url.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            StdCommand::cargo_bin("ivory")
                .expect("binary")
                .args(["--db", &url])
                .args(&args)
                .env("IVORY_MASTER_KEY", &key)
                .output()
                .expect("runs")
        })
    };
    let args = |s: &[&str]| s.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let installed = run(args(&[
        "install",
        "example-items",
        "--tenant",
        "acme",
        "--approve",
    ]))
    .await
    .expect("join");
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let base = upstream.base_url().to_string();
    let synced = run(args(&[
        "sync",
        "example-items",
        "--tenant",
        "acme",
        "--json",
        "--base-url",
        &base,
    ]))
    .await
    .expect("join");
    assert!(
        synced.status.success(),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&synced.stdout).expect("json");
    assert_eq!(summary["records_created"], 250, "{summary}");
    let exported = run(args(&[
        "records", "export", "--tenant", "acme", "--kind", "item",
    ]))
    .await
    .expect("join");
    assert_eq!(
        String::from_utf8_lossy(&exported.stdout).lines().count(),
        250
    );
    let listed = run(args(&[
        "installations",
        "list",
        "--tenant",
        "acme",
        "--json",
    ]))
    .await
    .expect("join");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed[0]["status"], "active", "{listed}");

    // Without the master key, a PostgreSQL store is refused with a clear message.
    let url2 = url.clone();
    let refused = tokio::task::spawn_blocking(move || {
        StdCommand::cargo_bin("ivory")
            .expect("binary")
            .args([
                "--db",
                &url2,
                "install",
                "example-items",
                "--tenant",
                "other",
                "--approve",
            ])
            .env_remove("IVORY_MASTER_KEY")
            .output()
            .expect("runs")
    })
    .await
    .expect("join");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("IVORY_MASTER_KEY must be set"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
