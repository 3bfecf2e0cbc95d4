//! `ivory-bench`: the benchmarks of BENCHMARKS.md (issue 11), run with one command:
//!
//! ```text
//! cargo run --release -p ivory-bench -- all
//! ```
//!
//! - `throughput`: a full sync into SQLite of 10k / 100k / 1M records of ≈ 1 KiB, 100 per
//!   page, no rate limit; records/s, CPU time, peak RSS, time to the first request. Each size
//!   runs in a child process (`sync-child`, this binary again) and the fake upstream in another
//!   (`serve`), so the numbers are the syncing process's own.
//! - `peer`: the same pull by a Singer SDK tap and an Airbyte declarative source
//!   (`scripts/bench_peer/`).
//! - `pacing`: a fake enforcing R requests/minute with 429s, a connector declaring R, real time.
//! - `store`: batched upserts straight into the store.
//! - `workers`: scheduled syncs per minute with 1, 2 and 4 `ivory worker` processes on one
//!   PostgreSQL (needs `cargo build --release -p ivory-cli` first; not part of `all`).
//!
//! Not part of `cargo test` (one fast smoke test runs a tiny `throughput` and `store`).

mod child;
mod fake;
mod pacing;
mod peer;
mod prefetch;
mod proc_stats;
mod report;
mod store;
mod throughput;
mod workers;

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

/// Padding bytes that make an item's JSON ≈ 1 KiB (1,020 to 1,026 bytes).
pub(crate) const ITEM_PAD: usize = 924;

#[derive(Debug, Parser)]
#[command(
    name = "ivory-bench",
    about = "Benchmarks of the Ivory Connector SDK (BENCHMARKS.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Every benchmark, printed as the Markdown of BENCHMARKS.md.
    All(AllArgs),
    /// Sync throughput and memory against dataset size.
    Throughput(throughput::ThroughputArgs),
    /// The peers (Singer SDK, Airbyte CDK) on the same pull.
    Peer(peer::PeerArgs),
    /// Pacing accuracy against a rate-enforcing fake (real time).
    Pacing(pacing::PacingArgs),
    /// Batched upserts per second into the store.
    Store(store::StoreArgs),
    /// Scheduled syncs per minute with 1, 2, 4 `ivory worker` processes on PostgreSQL.
    Workers(workers::WorkersArgs),
    /// (internal) The fake upstream process.
    #[command(hide = true)]
    Serve(fake::ServeArgs),
    /// (internal) One measured sync process.
    #[command(hide = true)]
    SyncChild(child::ChildArgs),
}

#[derive(Debug, clap::Args)]
struct AllArgs {
    /// Dataset sizes of the throughput run.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000u64, 100_000, 1_000_000])]
    sizes: Vec<u64>,
    /// Records the peers pull (also a size of the throughput run, for the ratio).
    #[arg(long, default_value_t = 100_000)]
    peer_records: u64,
    /// The peers' Python (see `peer --help`).
    #[arg(long)]
    python: Option<std::path::PathBuf>,
    /// Skip the peers.
    #[arg(long)]
    no_peer: bool,
    /// R of the pacing run.
    #[arg(long, default_value_t = 600)]
    pacing_rpm: u32,
    /// Length of the pacing run, seconds.
    #[arg(long, default_value_t = 120.0)]
    pacing_seconds: f64,
    /// Commits per phase of the store run.
    #[arg(long, default_value_t = 1000)]
    store_batches: u64,
    /// Where the stores are created (default: the system's temp directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::All(args) => all(&args),
        Cmd::Throughput(args) => {
            throughput::run(&args).map(|rows| print!("{}", report::throughput(&rows)))
        }
        Cmd::Peer(args) => peer::run(&args).map(|rows| print!("{}", report::peers(&rows, None))),
        Cmd::Pacing(args) => pacing::run(&args).map(|r| print!("{}", report::pacing(&r))),
        Cmd::Store(args) => store::run(&args).map(|phases| print!("{}", report::store(&phases))),
        Cmd::Workers(args) => workers::run(&args).map(|rows| print!("{}", report::workers(&rows))),
        Cmd::Serve(args) => fake::serve(&args),
        Cmd::SyncChild(args) => child::run(&args, started),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn all(args: &AllArgs) -> anyhow::Result<()> {
    let mut sizes = args.sizes.clone();
    if !args.no_peer && !sizes.contains(&args.peer_records) {
        sizes.push(args.peer_records);
        sizes.sort_unstable();
    }
    let rows = throughput::run(&throughput::ThroughputArgs {
        sizes,
        pad: ITEM_PAD,
        page_size: 100,
        rate: 100_000,
        dir: args.dir.clone(),
        prefetch: false,
    })?;
    let peers = if args.no_peer {
        None
    } else {
        Some(peer::run(&peer::PeerArgs {
            records: args.peer_records,
            pad: ITEM_PAD,
            python: args.python.clone(),
            peers: vec!["singer".into(), "airbyte".into()],
        }))
    };
    let pacing = pacing::run(&pacing::PacingArgs {
        rpm: args.pacing_rpm,
        declared: None,
        seconds: args.pacing_seconds,
        page_size: 100,
        dir: args.dir.clone(),
    })?;
    let store = store::run(&store::StoreArgs {
        batches: args.store_batches,
        batch_size: 100,
        pad: ITEM_PAD,
        dir: args.dir.clone(),
        pg: None,
    })?;

    println!("{}", report::environment());
    println!("### Sync throughput\n\n{}", report::throughput(&rows));
    match peers {
        Some(Ok(peers)) => {
            let ours = rows.iter().find(|r| r.records == args.peer_records);
            println!("### Peers\n\n{}", report::peers(&peers, ours));
        }
        Some(Err(error)) => println!("### Peers\n\nNot measured: {error:#}\n"),
        None => {}
    }
    println!("### Pacing\n\n{}", report::pacing(&pacing));
    println!("### Store\n\n{}", report::store(&store));
    Ok(())
}
