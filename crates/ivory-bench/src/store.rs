//! Batched upserts straight into the store (`Store::commit`), no HTTP: new records, the same
//! records again (unchanged: the idempotent re-pull), and the same ids with changed data, for
//! an installed connector (no lease fence: that is one more indexed UPDATE per commit, which
//! the sync throughput includes).

use std::time::{Duration, Instant};

use anyhow::bail;
use ivory_runtime::Store;
use ivory_runtime::store::CommitScope;
use ivory_sdk::manifest::CursorKind;
use ivory_sdk::{Record, RecordOp};
use ivory_testkit::connectors::items_manifest;
use ivory_testkit::items::{BASE_UPDATED, item_json};
use jiff::Timestamp;
use serde::Serialize;

/// `ivory-bench store`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// Commits per phase.
    #[arg(long, default_value_t = 1000)]
    pub(crate) batches: u64,
    /// Records per commit.
    #[arg(long, default_value_t = 100)]
    pub(crate) batch_size: u64,
    /// Padding bytes per record (924 ≈ 1 KiB of JSON).
    #[arg(long, default_value_t = crate::ITEM_PAD)]
    pub(crate) pad: usize,
    /// Where the store is created.
    #[arg(long)]
    pub(crate) dir: Option<std::path::PathBuf>,
    /// Run on a fresh database of this PostgreSQL server instead of a SQLite file (e.g.
    /// `postgres://postgres@127.0.0.1`).
    #[arg(long)]
    pub(crate) pg: Option<String>,
}

/// One phase's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StorePhase {
    pub(crate) phase: &'static str,
    pub(crate) commits: u64,
    pub(crate) records: u64,
    /// Time inside `Store::commit`, summed.
    pub(crate) total_ms: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl StorePhase {
    pub(crate) fn records_per_second(&self) -> f64 {
        self.records as f64 / (self.total_ms / 1e3)
    }

    pub(crate) fn commits_per_second(&self) -> f64 {
        self.commits as f64 / (self.total_ms / 1e3)
    }
}

fn batch(first: u64, size: u64, pad: usize, bump: u64) -> Vec<RecordOp> {
    (first..first + size)
        .map(|n| {
            let updated = BASE_UPDATED + (n / 10) as i64;
            let mut data = item_json(n, updated, pad);
            data["amount"] = (n * 100 + bump).into();
            let record = Record::new(format!("it_{n:07}"), data)
                .updated_at(Timestamp::from_second(updated).unwrap_or(Timestamp::UNIX_EPOCH));
            RecordOp::Upsert {
                kind: "item".into(),
                record,
            }
        })
        .collect()
}

/// Runs the three phases on a fresh store.
pub(crate) fn run(args: &StoreArgs) -> anyhow::Result<Vec<StorePhase>> {
    eprintln!(
        "store: {} commits of {} records per phase …",
        args.batches, args.batch_size
    );
    let dir = crate::throughput::temp_dir(args.dir.as_deref())?;
    let db = dir.path().join("ivory.db");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let location = match &args.pg {
            Some(server) => ivory_testkit::pg::fresh_database_on(server).await,
            None => db.to_string_lossy().into_owned(),
        };
        let store = Store::open(&location).await?;
        let manifest = items_manifest("bench-items", CursorKind::OpaqueToken, 100_000);
        let installation = store
            .ensure_installation(
                "tenant-bench",
                &manifest,
                &Default::default(),
                Timestamp::now(),
            )
            .await?;
        let mut phases = Vec::new();
        for (phase, bump, expect) in [
            ("new", 0, "created"),
            ("unchanged", 0, "unchanged"),
            ("changed", 1, "updated"),
        ] {
            let mut times = Vec::with_capacity(usize::try_from(args.batches).unwrap_or(0));
            let mut counted = 0;
            for b in 0..args.batches {
                let ops = batch(b * args.batch_size + 1, args.batch_size, args.pad, bump);
                let scope = CommitScope {
                    tenant: "tenant-bench",
                    installation: &installation.id,
                    now: Timestamp::now(),
                    fence: None,
                };
                let started = Instant::now();
                let receipt = store.commit(&scope, &ops, None).await?;
                times.push(started.elapsed());
                counted += match expect {
                    "created" => receipt.created,
                    "unchanged" => receipt.unchanged,
                    _ => receipt.updated,
                };
            }
            let records = args.batches * args.batch_size;
            if counted != records {
                bail!("phase {phase}: {counted} records {expect}, expected {records}");
            }
            let result = summarize(phase, records, &mut times);
            eprintln!(
                "  {phase}: {:.0} records/s, {:.0} commits/s, p99 {:.2} ms",
                result.records_per_second(),
                result.commits_per_second(),
                result.p99_ms
            );
            phases.push(result);
        }
        store.close().await;
        Ok(phases)
    })
}

fn summarize(phase: &'static str, records: u64, times: &mut [Duration]) -> StorePhase {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times.get(i).copied().map(ms).unwrap_or(0.0)
    };
    StorePhase {
        phase,
        commits: times.len() as u64,
        records,
        total_ms: times.iter().copied().map(ms).sum(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}
