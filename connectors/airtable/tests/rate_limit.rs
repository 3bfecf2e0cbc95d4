//! Airtable's 429 and its 30-second penalty, on tokio's paused clock: the connector runs with
//! an in-memory record sink (the store's own timers would make paused time jump, see
//! ARCHITECTURE.md "Testing"), the SDK's default retry policy, and a fetcher built for virtual
//! time. The fake refuses every request to the base for 30 virtual seconds after the 429.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ivory_connector_airtable::{AirtableConnector, manifest};
use ivory_sdk::connector::BoxFuture;
use ivory_sdk::context::{ProvisionOutcome, ProvisionedObject};
use ivory_sdk::manifest::{CursorKind, ObjectSpec};
use ivory_sdk::{
    Clock, CommitReceipt, Connector, Context, ContextParts, Credentials, Cursor, FetchConfig,
    Fetcher, HttpConfig, RecordOp, RecordSink, Secret, SinkError,
};
use ivory_testkit::airtable::{BASE_ID, FakeAirtable, PENALTY, TEST_ACCESS_TOKEN};

/// Records and definitions in memory, with full passes.
#[derive(Default)]
struct MemorySink {
    records: Mutex<BTreeMap<(String, String), (serde_json::Value, bool)>>,
    objects: Mutex<HashMap<String, ObjectSpec>>,
    passes: Mutex<HashMap<String, (String, HashSet<String>)>>,
}

impl RecordSink for MemorySink {
    fn commit<'a>(
        &'a self,
        ops: &'a [RecordOp],
        _cursor: Option<&'a Cursor>,
    ) -> BoxFuture<'a, Result<CommitReceipt, SinkError>> {
        Box::pin(async move {
            let mut records = self.records.lock().expect("lock");
            let mut receipt = CommitReceipt::default();
            for op in ops {
                match op {
                    RecordOp::Upsert { kind, record } => {
                        let key = (kind.clone(), record.id.clone());
                        match records.insert(key, (record.data.clone(), false)) {
                            None => receipt.created += 1,
                            Some((old, _)) if old == record.data => receipt.unchanged += 1,
                            Some(_) => receipt.updated += 1,
                        }
                    }
                    RecordOp::Delete { kind, id } => {
                        if let Some(entry) = records.get_mut(&(kind.clone(), id.clone())) {
                            entry.1 = true;
                            receipt.deleted += 1;
                        }
                    }
                }
            }
            Ok(receipt)
        })
    }

    fn provision_object<'a>(
        &'a self,
        spec: &'a ObjectSpec,
    ) -> BoxFuture<'a, Result<ProvisionedObject, SinkError>> {
        Box::pin(async move {
            let previous = self
                .objects
                .lock()
                .expect("lock")
                .insert(spec.kind.clone(), spec.clone());
            Ok(ProvisionedObject {
                kind: spec.kind.clone(),
                outcome: if previous.is_some() {
                    ProvisionOutcome::Updated
                } else {
                    ProvisionOutcome::Created
                },
                version: 1,
                added_fields: spec.fields.iter().map(|f| f.name.clone()).collect(),
                kept_fields: Vec::new(),
                migrated_fields: Vec::new(),
                recomputed: 0,
            })
        })
    }

    fn begin_full_pass<'a>(&'a self, kind: &'a str) -> BoxFuture<'a, Result<String, SinkError>> {
        Box::pin(async move {
            let mut passes = self.passes.lock().expect("lock");
            passes.retain(|_, (k, _)| k != kind);
            let id = format!("pass_{}", passes.len() + 1);
            passes.insert(id.clone(), (kind.to_owned(), HashSet::new()));
            Ok(id)
        })
    }

    fn full_pass_seen<'a>(
        &'a self,
        pass: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut passes = self.passes.lock().expect("lock");
            let (_, seen) = passes
                .get_mut(pass)
                .ok_or_else(|| SinkError::new("unknown pass"))?;
            seen.extend(ids.iter().cloned());
            Ok(())
        })
    }

    fn end_full_pass<'a>(
        &'a self,
        pass: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<u64, SinkError>> {
        Box::pin(async move {
            let (_, seen) = self
                .passes
                .lock()
                .expect("lock")
                .remove(pass)
                .ok_or_else(|| SinkError::new("unknown pass"))?;
            let mut deleted = 0;
            for ((k, id), entry) in self.records.lock().expect("lock").iter_mut() {
                if k == kind && !entry.1 && !seen.contains(id) {
                    entry.1 = true;
                    deleted += 1;
                }
            }
            Ok(deleted)
        })
    }
}

fn context(fake: &FakeAirtable, sink: Arc<MemorySink>) -> Context {
    let sync = &manifest().connection.sync;
    let mut config = FetchConfig::new(
        NonZeroU32::new(sync.rate_limit_per_minute).expect("rate"),
        manifest().hosts.clone(),
    )
    .with_bearer(Secret::new(TEST_ACCESS_TOKEN));
    config.base_url_override = Some(fake.base_url());
    config.http = HttpConfig::virtual_time();
    config.jitter_seed = Some(7);
    let origin = "2026-03-01T00:00:00Z".parse().expect("time");
    let fetcher = Fetcher::new(config, Clock::starting_at(origin)).expect("fetcher");
    Context::new(ContextParts {
        tenant: "acme".into(),
        installation: "inst_test".into(),
        connector: "airtable".into(),
        cursor_kind: CursorKind::None,
        cursor: None,
        lookback: Duration::ZERO,
        credentials: Credentials::OAuth2 {
            access_token: Secret::new(TEST_ACCESS_TOKEN),
            expires_at: None,
        },
        settings: BTreeMap::from([("baseId".to_owned(), BASE_ID.to_owned())]),
        fetcher,
        sink,
        progress: None,
        flush_threshold: 1000,
    })
}

#[tokio::test(start_paused = true)]
async fn a_429_mid_listing_is_waited_out_for_airtables_30_second_penalty() {
    let fake = FakeAirtable::start(250, 12).await.expect("fake");
    // Schema, Customers, Orders page 1, then page 2 is refused.
    fake.rate_limit_at_request(4);
    let sink = Arc::new(MemorySink::default());
    let mut ctx = context(&fake, sink.clone());
    let started = tokio::time::Instant::now();
    let result = AirtableConnector::default()
        .sync(&mut ctx)
        .await
        .expect("the sync rides out the penalty");
    ctx.finish().await.expect("finish");
    let elapsed = started.elapsed();

    let requests = fake.requests();
    let first_429 = requests
        .iter()
        .position(|r| r.status == 429)
        .expect("a 429");
    let recovered = first_429
        + requests[first_429..]
            .iter()
            .position(|r| r.status == 200)
            .expect("a success after the 429");
    let waited = requests[recovered].at - requests[first_429].at;
    assert!(
        waited >= PENALTY,
        "no request succeeded during the penalty: {waited:?}"
    );
    assert!(
        waited < PENALTY + Duration::from_secs(40),
        "the penalty was waited out, not much more: {waited:?}"
    );
    let refused = recovered - first_429;
    assert!(
        refused <= 7,
        "the SDK's bounded retries, then the connector's wait: {refused} refused requests"
    );
    assert!(elapsed >= PENALTY, "{elapsed:?}");
    assert_eq!(ctx.fetch_stats().responses_429, refused as u64);
    assert!(
        result.notes.iter().any(|n| n.contains("rate limit")),
        "{:?}",
        result.notes
    );

    let records = sink.records.lock().expect("lock");
    assert_eq!(records.len(), 262, "every record, once");
    assert!(records.values().all(|(_, deleted)| !deleted));
    assert_eq!(ctx.totals().created, 262);
    let objects = sink.objects.lock().expect("lock");
    assert!(objects.contains_key("airtable_orders") && objects.contains_key("airtable_customers"));
}
