//! Scheduled syncs — the loop of `ivory serve` and of every `ivory worker`.
//!
//! Each tick: make sure every active installation has a job row (due per its `schedule`
//! setting, with the deterministic jitter of [`ivory_runtime::schedule`]), then claim as many due
//! jobs as there are free slots ([`ServerConfig::max_concurrent_syncs`](crate::ServerConfig))
//! from the store — atomically, so however many processes claim, each installation is synced
//! once per due time (see `ivory_runtime::store` jobs: `FOR UPDATE SKIP LOCKED` on PostgreSQL).
//! While a sync runs its worker heart-beats: the run's lease and the job's claim are extended
//! every third of [`ServerConfig::lease`](crate::ServerConfig). When it ends, the job is due again
//! at claim time + interval + jitter (at once when it was interrupted by a shutdown).
//!
//! A worker killed mid-sync stops heart-beating: after the lease its job is due again and its
//! run's lease has lapsed, so another worker claims the job, takes the lease over (the old run
//! is marked abandoned) and resumes from the committed cursor — no record lost or doubled.
//!
//! On shutdown nothing new is claimed; running syncs stop at their next page boundary.

use std::sync::Arc;
use std::time::Duration;

use ivory_runtime::connection::{ConnectionError, load_sync_credentials};
use ivory_runtime::schedule::{SCHEDULE_SETTING, after, next_due};
use ivory_runtime::{Installation, RunError, SyncOptions};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{ConnectorEntry, Shared};

pub(crate) async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut syncs = JoinSet::new();
    loop {
        while syncs.try_join_next().is_some() {}
        if let Err(error) = tick(&shared, &mut syncs, &shutdown).await {
            tracing::warn!(%error, "The scheduler could not claim jobs; trying again next tick.");
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
    syncs: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<(), ivory_runtime::StoreError> {
    if shutdown.is_cancelled() {
        return Ok(());
    }
    let store = shared.store();
    let now = shared.clock().now();
    store.seed_jobs(now).await?;
    let free = shared
        .config
        .max_concurrent_syncs
        .saturating_sub(syncs.len());
    let claimed = store
        .claim_due_jobs(&shared.config.worker_id, now, free, shared.config.lease)
        .await?;
    for installation in claimed {
        let Some(entry) = shared.connectors.get(&installation.connector_id).cloned() else {
            // Not a connector this process runs: leave it to one that does.
            tracing::warn!(installation = %installation.id, connector = %installation.connector_id, "A due job of a connector this process does not know.");
            store
                .finish_job(
                    &installation.id,
                    &shared.config.worker_id,
                    Some(after(now, Duration::from_secs(60))),
                )
                .await?;
            continue;
        };
        let shared = shared.clone();
        let stop = shutdown.child_token();
        syncs.spawn(async move {
            let claimed_at = now;
            let heartbeat = tokio::spawn(heartbeat(shared.clone(), installation.id.clone()));
            let interrupted = sync_one(&shared, &entry, &installation, stop).await;
            heartbeat.abort();
            let schedule = installation.settings.get(SCHEDULE_SETTING).map(String::as_str);
            let next = if interrupted {
                Some(shared.clock().now())
            } else {
                next_due(&installation.id, schedule, Some(claimed_at), claimed_at)
            };
            if let Err(error) = shared
                .store()
                .finish_job(&installation.id, &shared.config.worker_id, next)
                .await
            {
                tracing::warn!(installation = %installation.id, %error, "Could not release a sync job; it is due again when its claim lapses.");
            }
        });
    }
    Ok(())
}

/// Extends this worker's claim on the job while its sync runs.
async fn heartbeat(shared: Arc<Shared>, installation: String) {
    let every = shared.config.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let until = after(shared.clock().now(), shared.config.lease);
        match shared
            .store()
            .extend_claim(&installation, &shared.config.worker_id, until)
            .await
        {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                tracing::warn!(%installation, %error, "Extending a sync job claim failed.")
            }
        }
    }
}

/// One scheduled sync, logged and counted; never panics the scheduler. True when it was
/// interrupted by a shutdown (its job is due again at once).
async fn sync_one(
    shared: &Shared,
    entry: &ConnectorEntry,
    installation: &Installation,
    stop: CancellationToken,
) -> bool {
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
            return false;
        }
    };
    let options = SyncOptions {
        base_url: shared.config.upstreams.get(connector).cloned(),
        token_source: loaded.token_source,
        stop: Some(stop),
        lease: shared.config.lease,
        heartbeat: Some(shared.config.lease / 3),
        shared_rate_limit: true,
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
            false
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
            true
        }
        Err(RunError::Failed { summary, error }) => {
            tracing::warn!(
                tenant = %summary.tenant, installation = %summary.installation, run_id = %summary.run_id,
                %error, "Scheduled sync failed; the next one resumes from the committed cursor."
            );
            shared
                .metrics
                .sync_finished(connector, "failed", Some(&summary));
            false
        }
        Err(error @ RunError::AlreadyRunning { .. }) => {
            tracing::debug!(%error, "Scheduled sync skipped: another process is running it.");
            shared.metrics.sync_finished(connector, "refused", None);
            false
        }
        Err(error) => {
            tracing::warn!(tenant = %installation.tenant_id, installation = %installation.id, %error, "Scheduled sync refused.");
            shared.metrics.sync_finished(connector, "refused", None);
            false
        }
    }
}
