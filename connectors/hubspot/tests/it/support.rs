//! Shared helpers: an installed tenant on a real store, syncs against the fake HubSpot,
//! platform-side edits, mirrors of both sides.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use ivory_connector_hubspot::{CONTACT_KIND, HubSpotConnector, manifest};
use ivory_runtime::objects::FieldInput;
use ivory_runtime::store::{
    Actor, Approval, CommitScope, InstallOutcome, InstallRequest, OAuth2Grant, StoredGrant,
    Tombstones,
};
use ivory_runtime::{
    Installation, MasterKeys, RunError, Runner, Store, SyncOptions, SyncSummary, Vault,
};
use ivory_sdk::fetch::RetryPolicy;
use ivory_sdk::manifest::{ConflictPolicy, Manifest};
use ivory_sdk::{Clock, Credentials, Record, RecordOp, Secret};
use ivory_testkit::hubspot::{ACCESS_TOKEN, FakeHubSpot, REFRESH_TOKEN, START_MS};
use jiff::Timestamp;
use serde_json::Value;

pub(crate) const TENANT: &str = "acme";

pub(crate) struct World {
    _dir: tempfile::TempDir,
    pub(crate) store: Store,
    pub(crate) vault: Arc<Vault>,
    pub(crate) installation: Installation,
    pub(crate) manifest: Manifest,
}

/// A timestamp `ms` milliseconds after the fake's start.
pub(crate) fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(START_MS + ms).expect("timestamp")
}

/// The shipped manifest with another rate and conflict policy.
pub(crate) fn manifest_with(rate_per_minute: u32, policy: ConflictPolicy) -> Manifest {
    let mut manifest = manifest().clone();
    manifest.connection.sync.rate_limit_per_minute = rate_per_minute;
    manifest.connection.sync.conflict_policy = policy;
    manifest
}

/// A fast manifest for large datasets against a fake whose limits are off.
pub(crate) fn fast() -> Manifest {
    manifest_with(60_000, ConflictPolicy::NewestWins)
}

/// Tenant `acme` installs `manifest` (scopes and hosts approved, the `contact` object
/// provisioned) and connects with the fake's grant.
pub(crate) async fn world(manifest: Manifest) -> World {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path().join("ivory.db").to_str().expect("path"))
        .await
        .expect("store");
    let key = MasterKeys::generate_key().expect("key");
    let vault = Arc::new(Vault::new(
        MasterKeys::from_env_value(key.expose()).expect("keys"),
    ));
    let outcome = store
        .install(
            &InstallRequest {
                tenant: TENANT,
                manifest: &manifest,
                settings: BTreeMap::new(),
                actor: &Actor::User("admin".into()),
                approval: Approval::Approved,
                now: at(0),
            },
            &vault,
        )
        .await
        .expect("install");
    let InstallOutcome::Installed { installation, .. } = outcome else {
        panic!("expected a new installation, got {outcome:?}");
    };
    store
        .put_credentials(
            &installation.id,
            &StoredGrant::OAuth2(OAuth2Grant {
                access_token: Secret::new(ACCESS_TOKEN),
                refresh_token: Some(Secret::new(REFRESH_TOKEN)),
                expires_at: None,
                scopes: manifest.connection.scopes.clone(),
                token_type: "bearer".into(),
            }),
            &vault,
            at(0),
        )
        .await
        .expect("credentials");
    World {
        _dir: dir,
        store,
        vault,
        installation,
        manifest,
    }
}

/// A runner whose clock is the fake's start plus `offset` seconds (an hour more expires a
/// crashed run's lease).
pub(crate) fn runner(store: &Store, offset_seconds: i64) -> Runner {
    Runner::new(store.clone(), Clock::starting_at(at(offset_seconds * 1000)))
}

pub(crate) fn options(fake: &FakeHubSpot) -> SyncOptions {
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

pub(crate) fn bearer() -> Credentials {
    Credentials::OAuth2 {
        access_token: Secret::new(ACCESS_TOKEN),
        expires_at: None,
    }
}

/// Syncs with the default connector and a static bearer.
pub(crate) async fn sync(w: &World, fake: &FakeHubSpot) -> Result<SyncSummary, RunError> {
    sync_with(w, fake, &HubSpotConnector::default(), options(fake), 0).await
}

pub(crate) async fn sync_with(
    w: &World,
    fake: &FakeHubSpot,
    connector: &HubSpotConnector,
    options: SyncOptions,
    offset_seconds: i64,
) -> Result<SyncSummary, RunError> {
    let _ = fake;
    runner(&w.store, offset_seconds)
        .sync(TENANT, &w.manifest, connector, bearer(), options)
        .await
}

/// The platform's live contacts: id → data.
pub(crate) async fn platform(store: &Store) -> BTreeMap<String, Value> {
    store
        .export_records(TENANT, CONTACT_KIND, Tombstones::Exclude)
        .map_ok(|r| (r.id, r.data))
        .try_collect()
        .await
        .expect("export")
}

/// Every platform contact (tombstones included): (id, data, deleted).
pub(crate) async fn mirror(store: &Store) -> Vec<(String, Value, bool)> {
    store
        .export_records(TENANT, CONTACT_KIND, Tombstones::Include)
        .map_ok(|r| (r.id, r.data, r.deleted_at.is_some()))
        .try_collect()
        .await
        .expect("export")
}

/// HubSpot's live contacts: id → properties.
pub(crate) fn upstream(fake: &FakeHubSpot) -> BTreeMap<String, Value> {
    fake.contacts()
        .into_iter()
        .map(|c| {
            (
                c["id"].as_str().expect("id").to_owned(),
                c["properties"].clone(),
            )
        })
        .collect()
}

/// Asserts the platform mirrors HubSpot exactly (ids and every synced property).
pub(crate) async fn assert_mirrors(store: &Store, fake: &FakeHubSpot) {
    let (platform, upstream) = (platform(store).await, upstream(fake));
    if platform != upstream {
        let p: BTreeSet<&String> = platform.keys().collect();
        let u: BTreeSet<&String> = upstream.keys().collect();
        let missing: Vec<_> = u.difference(&p).take(10).collect();
        let extra: Vec<_> = p.difference(&u).take(10).collect();
        let differing: Vec<_> = platform
            .iter()
            .filter(|(id, data)| upstream.get(*id).is_some_and(|u| u != *data))
            .take(3)
            .collect();
        panic!(
            "platform ({}) != HubSpot ({}): missing {missing:?}, extra {extra:?}, differing {differing:?}",
            platform.len(),
            upstream.len()
        );
    }
}

/// A tenant user's edit of a contact on the platform at `when`.
pub(crate) async fn edit_on_platform(
    store: &Store,
    id: &str,
    sets: &[(&str, &str)],
    when: Timestamp,
) {
    let sets: Vec<(String, FieldInput)> = sets
        .iter()
        .map(|(k, v)| ((*k).to_owned(), FieldInput::Text((*v).to_owned())))
        .collect();
    store
        .update_record_fields(
            TENANT,
            CONTACT_KIND,
            id,
            &sets,
            &Actor::User("ada".into()),
            when,
        )
        .await
        .expect("platform edit");
}

/// A contact created on the platform (not from HubSpot) with `data`, edited at `when` (as a
/// workflow's createRecord leaves it: no upstream timestamp, a platform edit time).
pub(crate) async fn create_on_platform(w: &World, id: &str, data: Value, when: Timestamp) {
    let mut data = data;
    let touch = data
        .as_object_mut()
        .and_then(|m| m.remove("lastname"))
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "New".into());
    w.store
        .commit(
            &CommitScope {
                tenant: TENANT,
                installation: &w.installation.id,
                now: when,
                fence: None,
            },
            &[RecordOp::Upsert {
                kind: CONTACT_KIND.into(),
                record: Record::new(id, data),
            }],
            None,
        )
        .await
        .expect("platform record");
    edit_on_platform(&w.store, id, &[("lastname", &touch)], when).await;
}

/// The ids of the fake's requests to `path_suffix`, with their JSON bodies.
pub(crate) fn bodies(fake: &FakeHubSpot, path_suffix: &str) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.ends_with(path_suffix))
        .filter_map(|r| r.body)
        .collect()
}
