//! The store as the webhook [`ReplayGuard`]: accepted deliveries are remembered in the
//! database, so a replay is caught across restarts and across every process sharing the store.
//!
//! Check-and-remember is one statement: an insert that, on conflict, only takes the row over
//! when the remembered entry has expired. Exactly one of several concurrent deliveries of the
//! same key sees one affected row (fresh); the others see none (replayed).

use ivory_sdk::webhook::{Freshness, ReplayError, ReplayFuture, ReplayGuard, ReplayKey};
use jiff::Timestamp;

use super::{Store, StoreError, query_error, to_ms};

impl ReplayGuard for Store {
    fn check_and_remember<'a>(
        &'a self,
        installation: &'a str,
        key: ReplayKey,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> ReplayFuture<'a> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO webhook_replays (installation_id, replay_key, expires_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (installation_id, replay_key) DO UPDATE SET \
                 expires_at = excluded.expires_at WHERE webhook_replays.expires_at <= $4",
            )
            .bind(installation)
            .bind(key.to_string())
            .bind(to_ms(expires_at))
            .bind(to_ms(now))
            .execute(self.pool())
            .await
            .map_err(|e| ReplayError::with_source("the replay cache could not be read", e))?;
            Ok(if done.rows_affected() == 1 {
                Freshness::Fresh
            } else {
                Freshness::Replayed
            })
        })
    }
}

impl Store {
    /// Forgets replay entries whose window closed before `now`; returns how many. The server
    /// calls it periodically so the table stays bounded by the deliveries of one window.
    pub async fn prune_replays(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM webhook_replays WHERE expires_at <= $1")
            .bind(to_ms(now))
            .execute(self.pool())
            .await
            .map_err(query_error("prune replay cache"))?;
        Ok(done.rows_affected())
    }
}
