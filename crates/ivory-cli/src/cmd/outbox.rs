//! `ivory outbox relay --nats URL`: ships pending audit events from the store's outbox to the
//! ledger stream on NATS JetStream (`ivory_runtime::outbox`). `--once` drains and exits;
//! otherwise it polls until SIGTERM or ctrl-c, finishing the batch in progress.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use ivory_runtime::Store;
use ivory_runtime::outbox::{Relay, RelayConfig};

use super::{runtime, usage_error};
use crate::cli::{OutboxCommand, RelayArgs};

pub(crate) fn run(db: &str, cmd: OutboxCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OutboxCommand::Relay(args) => relay(db, &args),
    }
}

fn relay(db: &str, args: &RelayArgs) -> anyhow::Result<ExitCode> {
    if args.poll_ms == 0 {
        return Ok(usage_error("--poll-ms must be at least 1"));
    }
    let config = RelayConfig {
        nats_url: args.nats.clone(),
        stream: args.stream.clone(),
        subject_prefix: args.subject_prefix.clone(),
        batch: args.batch,
        ..RelayConfig::default()
    };
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let relay = match Relay::connect(store.clone(), config).await {
            Ok(relay) => relay,
            Err(error @ ivory_runtime::outbox::RelayError::InvalidConfig { .. }) => {
                return Ok(usage_error(error));
            }
            Err(error) => return Err(error.into()),
        };
        let totals = if args.once {
            relay.drain().await?
        } else {
            relay
                .run_until(Duration::from_millis(args.poll_ms), shutdown_signal())
                .await?
        };
        let pending = store
            .pending_audit_count()
            .await
            .context("count pending events")?;
        println!(
            "relayed {} audit event(s) to stream {} ({} already in the stream); {} pending",
            totals.sent, args.stream, totals.duplicates, pending
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM; only ctrl-c stops the relay.");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("Stopping the relay after the batch in progress.");
}
