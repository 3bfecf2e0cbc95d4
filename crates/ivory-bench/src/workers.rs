//! `workers`: scheduled syncs per minute with 1, 2 and 4 `ivory worker` processes sharing one
//! PostgreSQL store (issue 12).
//!
//! For each worker count: a fresh database, `installations` tenants with the `example-items`
//! connector on `schedule=1s` (so demand always exceeds what the workers can do: the number
//! measured is their capacity), the fake items API (one page of 30 items per sync) in this
//! process, then the workers (the release `ivory` next to this binary, or `--ivory PATH`) for a
//! warm-up and a measured window. Counted: sync runs that succeeded inside the window.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ivory_runtime::store::{Actor, Approval, InstallRequest};
use ivory_runtime::{MasterKeys, Store, Vault};
use ivory_sdk::Clock;
use ivory_sdk::manifest::CursorKind;
use ivory_testkit::connectors::items_manifest;
use ivory_testkit::items::ItemsUpstream;
use sqlx::Connection;

#[derive(Debug, clap::Args)]
pub(crate) struct WorkersArgs {
    /// Worker counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4])]
    pub(crate) workers: Vec<usize>,
    /// Installations (tenants) in the store.
    #[arg(long, default_value_t = 300)]
    pub(crate) installations: usize,
    /// Concurrent syncs per worker.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Seconds measured (after a 3 s warm-up).
    #[arg(long, default_value_t = 20)]
    pub(crate) seconds: u64,
    /// The PostgreSQL server.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1")]
    pub(crate) pg: String,
    /// The `ivory` binary (default: next to this one; build it with
    /// `cargo build --release -p ivory-cli`).
    #[arg(long)]
    pub(crate) ivory: Option<PathBuf>,
}

/// One measurement.
#[derive(Debug, Clone)]
pub(crate) struct WorkersRow {
    pub(crate) workers: usize,
    pub(crate) concurrency: usize,
    pub(crate) syncs: u64,
    pub(crate) seconds: f64,
}

impl WorkersRow {
    pub(crate) fn per_minute(&self) -> f64 {
        self.syncs as f64 * 60.0 / self.seconds
    }
}

pub(crate) fn run(args: &WorkersArgs) -> anyhow::Result<Vec<WorkersRow>> {
    let ivory = match &args.ivory {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has no directory")?
            .join("ivory"),
    };
    anyhow::ensure!(
        ivory.exists(),
        "{} not found: build it with `cargo build --release -p ivory-cli` (or pass --ivory)",
        ivory.display()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut rows = Vec::new();
        for &workers in &args.workers {
            rows.push(measure(args, &ivory, workers).await?);
        }
        Ok(rows)
    })
}

async fn measure(
    args: &WorkersArgs,
    ivory: &PathBuf,
    workers: usize,
) -> anyhow::Result<WorkersRow> {
    let server = args.pg.trim_end_matches('/');
    let name = format!("ivory_bench_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut admin)
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let url = format!("{server}/{name}");
    let store = Store::open(&url).await?;
    let key = MasterKeys::generate_key()?.expose().to_owned();
    let vault = Vault::new(MasterKeys::from_env_value(&key)?);
    let manifest = items_manifest("example-items", CursorKind::OpaqueToken, 6000);
    for i in 0..args.installations {
        store
            .install(
                &InstallRequest {
                    tenant: &format!("tenant-{i:04}"),
                    manifest: &manifest,
                    settings: BTreeMap::from([("schedule".to_owned(), "1s".to_owned())]),
                    actor: &Actor::User("bench".into()),
                    approval: Approval::Approved,
                    now: Clock::system().now(),
                },
                &vault,
            )
            .await?;
    }
    let upstream = ItemsUpstream::start(30, 1, 64).await?;
    let mut children: Vec<Child> = (0..workers)
        .map(|_| {
            Command::new(ivory)
                .args(["--db", &url, "worker", "--tick-ms", "50", "--concurrency"])
                .arg(args.concurrency.to_string())
                .arg("--upstream")
                .arg(format!("example-items={}", upstream.base_url()))
                .env("IVORY_MASTER_KEY", &key)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut db = sqlx::PgConnection::connect(&url).await?;
    let before = succeeded(&mut db).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let after = succeeded(&mut db).await?;
    let seconds = started.elapsed().as_secs_f64();
    for child in &mut children {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    for child in &mut children {
        let _ = child.wait();
    }
    db.close().await.ok();
    store.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(WorkersRow {
        workers,
        concurrency: args.concurrency,
        syncs: u64::try_from(after - before).unwrap_or(0),
        seconds,
    })
}

async fn succeeded(db: &mut sqlx::PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM sync_runs WHERE status = 'succeeded'")
        .fetch_one(db)
        .await
}
