//! Shared helpers: a store in a temp dir, runners at chosen times, store snapshots.

use std::time::Duration;

use futures::TryStreamExt;
use ivory_runtime::store::Tombstones;
use ivory_runtime::{Runner, Store, SyncOptions};
use ivory_sdk::Clock;
use ivory_sdk::fetch::RetryPolicy;
use ivory_testkit::connectors::ITEM_KIND;
use jiff::Timestamp;
use tempfile::TempDir;
use url::Url;

pub(crate) struct Env {
    pub(crate) _dir: TempDir,
    pub(crate) store: Store,
    /// What `Store::open` was given (a file path or a `postgres://` URL): another process
    /// opens the same store with it.
    pub(crate) location: String,
}

impl Env {
    /// True when the tests run on PostgreSQL (`IVORY_TEST_PG`).
    pub(crate) fn is_pg(&self) -> bool {
        self.location.starts_with("postgres")
    }

    /// A second connection to the same database, behind the store's back.
    pub(crate) async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = if self.is_pg() {
            self.location.clone()
        } else {
            format!("sqlite://{}", self.location)
        };
        sqlx::AnyPool::connect(&url).await.expect("raw connection")
    }
}

/// A fresh store: a SQLite file in a temp dir, or — with `IVORY_TEST_PG` set to a server URL
/// such as `postgres://postgres@127.0.0.1` — a fresh PostgreSQL database on that server (the
/// same tests, the other backend).
pub(crate) async fn env() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let location = match std::env::var("IVORY_TEST_PG") {
        Ok(server) if !server.is_empty() => ivory_testkit::pg::fresh_database_on(&server).await,
        _ => dir
            .path()
            .join("ivory.db")
            .to_str()
            .expect("utf-8 path")
            .to_owned(),
    };
    let store = Store::open(&location).await.expect("open store");
    Env {
        _dir: dir,
        store,
        location,
    }
}

pub(crate) fn t0() -> Timestamp {
    "2026-02-01T00:00:00Z".parse().expect("timestamp")
}

/// A runner whose clock starts `offset` after [`t0`].
pub(crate) fn runner_at(store: &Store, offset: Duration) -> Runner {
    let origin = t0()
        .checked_add(jiff::SignedDuration::try_from(offset).expect("offset"))
        .expect("time");
    Runner::new(store.clone(), Clock::starting_at(origin))
}

pub(crate) fn options(base: Url) -> SyncOptions {
    SyncOptions {
        base_url: Some(base),
        retry: RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..SyncOptions::default()
    }
}

/// (id, data, version, deleted) of every item record of the tenant, tombstones included.
pub(crate) type Snapshot = Vec<(String, serde_json::Value, i64, bool)>;

pub(crate) async fn snapshot(store: &Store, tenant: &str) -> Snapshot {
    store
        .export_records(tenant, ITEM_KIND, Tombstones::Include)
        .map_ok(|r| (r.id, r.data, r.version, r.deleted_at.is_some()))
        .try_collect()
        .await
        .expect("export")
}

/// Installs `manifest` for `tenant` (no governance: a test fixture).
pub(crate) async fn install(store: &Store, tenant: &str, manifest: &ivory_sdk::manifest::Manifest) {
    store
        .ensure_installation(tenant, manifest, &Default::default(), t0())
        .await
        .expect("installed");
}
