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
}

pub(crate) async fn env() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ivory.db");
    let store = Store::open(path.to_str().expect("utf-8 path"))
        .await
        .expect("open store");
    Env { _dir: dir, store }
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
