//! Scheduled syncs.
//!
//! Every [`tick`](crate::ServerConfig::tick) the scheduler reads the active installations and
//! when each last started a run (the store is the truth, so a restarted server neither
//! stampedes nor forgets), computes each one's due time
//! ([`ivory_runtime::schedule::next_due`]: interval + deterministic jitter), and starts the due
//! ones — at most [`max_concurrent_syncs`](crate::ServerConfig::max_concurrent_syncs) at once,
//! never a second run of an installation this process is already syncing (and the store's
//! lease refuses one another process is running).
//!
//! On shutdown it starts nothing more; the runs in flight see their stop token cancelled, stop
//! at their next page boundary (their fetcher sends no further request) and are recorded
//! `interrupted` with everything they committed.

use std::sync::Arc;

use ivory_runtime::connection::{ConnectionError, load_sync_credentials};
use ivory_runtime::schedule::{SCHEDULE_SETTING, next_due};
use ivory_runtime::{Installation, RunError, SyncOptions};
use jiff::Timestamp;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{ConnectorEntry, Shared};

pub(crate) async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let started = shared.clock().now();
    let mut syncs = JoinSet::new();
    loop {
        while syncs.try_join_next().is_some() {}
        if let Err(error) = tick(&shared, started, &mut syncs, &shutdown).await {
            tracing::warn!(%error, "The scheduler could not read the installations; trying again next tick.");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(shared.config.tick) => {}
        }
    }
    if !syncs.is_empty() {
        tracing::info!(
            running = syncs.len(),
            "Waiting for syncs to stop at a page boundary."
        );
    }
    let drained = tokio::time::timeout(shared.config.shutdown_grace, async {
        while syncs.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = syncs.len(),
            "Syncs did not stop within the grace period; their leases lapse and the next run resumes from the committed cursor."
        );
        syncs.abort_all();
    }
}

async fn tick(
    shared: &Arc<Shared>,
    started: Timestamp,
    syncs: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<(), ivory_runtime::StoreError> {
    let installations = shared.store().active_installations().await?;
    let last_starts = shared.store().last_run_starts().await?;
    let now = shared.clock().now();
    for installation in installations {
        if shutdown.is_cancelled() {
            break;
        }
        let Some(entry) = shared.connectors.get(&installation.connector_id) else {
            continue;
        };
        let previous = {
            let attempted = lock(&shared.attempted);
            match (
                last_starts.get(&installation.id),
                attempted.get(&installation.id),
            ) {
                (Some(a), Some(b)) => Some((*a).max(*b)),
                (a, b) => a.or(b).copied(),
            }
        };
        let schedule = installation
            .settings
            .get(SCHEDULE_SETTING)
            .map(String::as_str);
        let Some(due) = next_due(&installation.id, schedule, previous, started) else {
            continue;
        };
        if due > now {
            continue;
        }
        {
            let mut running = lock(&shared.running);
            if running.contains(&installation.id) {
                continue;
            }
            if running.len() >= shared.config.max_concurrent_syncs {
                break;
            }
            running.insert(installation.id.clone());
        }
        lock(&shared.attempted).insert(installation.id.clone(), now);
        let shared = shared.clone();
        let entry = entry.clone();
        let stop = shutdown.child_token();
        syncs.spawn(async move {
            let id = installation.id.clone();
            sync_one(&shared, &entry, &installation, stop).await;
            lock(&shared.running).remove(&id);
        });
    }
    Ok(())
}

/// One scheduled sync, logged and counted; never panics the scheduler.
async fn sync_one(
    shared: &Shared,
    entry: &ConnectorEntry,
    installation: &Installation,
    stop: CancellationToken,
) {
    let connector = entry.manifest.id.as_str();
    shared.metrics.sync_started();
    let app = shared.oauth_app(connector);
    let token_url = shared
        .config
        .oauth
        .get(connector)
        .and_then(|setup| setup.token_url.clone());
    let loaded = load_sync_credentials(
        shared.store(),
        shared.vault.clone(),
        &entry.manifest,
        installation,
        app,
        token_url,
        shared.clock(),
    )
    .await;
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            match &error {
                ConnectionError::NotConnected { .. } => tracing::info!(
                    tenant = %installation.tenant_id, installation = %installation.id, %error,
                    "Scheduled sync skipped."
                ),
                _ => tracing::warn!(
                    tenant = %installation.tenant_id, installation = %installation.id, %error,
                    "Scheduled sync skipped."
                ),
            }
            shared.metrics.sync_finished(connector, "refused", None);
            return;
        }
    };
    let options = SyncOptions {
        base_url: shared.config.upstreams.get(connector).cloned(),
        token_source: loaded.token_source,
        stop: Some(stop),
        ..SyncOptions::default()
    };
    let result = shared
        .runner
        .sync(
            &installation.tenant_id,
            &entry.manifest,
            entry.connector.as_ref(),
            loaded.credentials,
            options,
        )
        .await;
    match result {
        Ok(summary) => {
            tracing::info!(
                tenant = %summary.tenant, installation = %summary.installation, run_id = %summary.run_id,
                records = summary.records_upserted, requests = summary.totals.requests,
                "Scheduled sync succeeded."
            );
            shared
                .metrics
                .sync_finished(connector, "succeeded", Some(&summary));
        }
        Err(RunError::Interrupted { summary }) => {
            tracing::info!(
                tenant = %summary.tenant, installation = %summary.installation, run_id = %summary.run_id,
                records = summary.records_upserted,
                "Scheduled sync stopped at a page boundary for the shutdown."
            );
            shared
                .metrics
                .sync_finished(connector, "interrupted", Some(&summary));
        }
        Err(RunError::Failed { summary, error }) => {
            tracing::warn!(
                tenant = %summary.tenant, installation = %summary.installation, run_id = %summary.run_id,
                %error, "Scheduled sync failed; the next one resumes from the committed cursor."
            );
            shared
                .metrics
                .sync_finished(connector, "failed", Some(&summary));
        }
        Err(error @ RunError::AlreadyRunning { .. }) => {
            tracing::debug!(%error, "Scheduled sync skipped: another process is running it.");
            shared.metrics.sync_finished(connector, "refused", None);
        }
        Err(error) => {
            tracing::warn!(tenant = %installation.tenant_id, installation = %installation.id, %error, "Scheduled sync refused.");
            shared.metrics.sync_finished(connector, "refused", None);
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
