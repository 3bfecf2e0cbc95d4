//! `ivory worker [--concurrency N] [--upstream CONNECTOR=URL]… [--lease-seconds S]`.
//!
//! The scheduler of `ivory serve` without the HTTP face: claims due sync jobs from the store
//! (shared by every worker: run several, on several machines, on one PostgreSQL), heart-beats
//! while a sync runs, takes over the job of a worker that died once its lease lapsed. SIGTERM
//! or ctrl-c: nothing new is claimed, running syncs stop at a page boundary; exit 0. Exit 2
//! for bad flags, 1 when the store cannot be opened.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ivory_runtime::Store;
use ivory_sdk::Clock;
use ivory_server::{Server, ServerConfig};
use tokio_util::sync::CancellationToken;

use super::serve::{builtin_connectors, parse_upstreams, stop_on_signal};
use super::{runtime, usage_error, vault_for};
use crate::cli::WorkerArgs;

pub(crate) fn run(db: &str, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let upstreams = match parse_upstreams(&args.upstreams) {
        Ok(upstreams) => upstreams,
        Err(message) => return Ok(usage_error(message)),
    };
    if args.concurrency == 0 {
        return Ok(usage_error("--concurrency must be at least 1"));
    }
    if args.tick_ms == 0 {
        return Ok(usage_error("--tick-ms must be at least 1"));
    }
    let config = ServerConfig {
        max_concurrent_syncs: args.concurrency,
        upstreams,
        tick: Duration::from_millis(args.tick_ms),
        lease: Duration::from_secs(args.lease_seconds),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        ..ServerConfig::default()
    };
    let vault = Arc::new(vault_for(db)?);
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let server = match Server::new(
            store.clone(),
            vault,
            builtin_connectors(),
            config,
            Clock::system(),
        ) {
            Ok(server) => server,
            Err(error) => return Ok(usage_error(error)),
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        eprintln!("worker {} started", ivory_server::default_worker_id());
        server.run_worker(shutdown).await;
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
