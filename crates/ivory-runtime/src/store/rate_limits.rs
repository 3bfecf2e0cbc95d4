//! An installation's rate limit shared by every process on the store: the GCRA's theoretical
//! arrival time lives in the `rate_limits` row, and each request reserves its slot with one
//! atomic statement (insert or `tat = max(tat, now) + interval`, returning the new value), so
//! two workers — or a worker and `ivory serve` processing webhooks — together stay within the
//! declared `rateLimitPerMinute`. Each fetcher keeps pacing itself too; this adds the others.
//!
//! Time is the runner's clock in microseconds since the Unix epoch: processes on different
//! machines must keep their clocks in sync (NTP); a skew of `s` can let one early request
//! through per `s`.

use std::sync::Arc;
use std::time::Duration;

use ivory_sdk::Clock;
use ivory_sdk::connector::BoxFuture;
use ivory_sdk::fetch::SharedRateLimit;

use super::{Backend, Store, StoreError, query_error};

/// The store-backed [`SharedRateLimit`] of one installation.
#[derive(Debug, Clone)]
pub struct StoreRateLimit {
    store: Store,
    installation: String,
    clock: Clock,
}

impl StoreRateLimit {
    /// The shared limit of `installation`, timed on `clock`.
    pub fn new(store: Store, installation: &str, clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            store,
            installation: installation.to_owned(),
            clock,
        })
    }

    fn now_us(&self) -> i64 {
        self.clock.now().as_microsecond()
    }

    fn max_sql(&self) -> &'static str {
        match self.store.backend() {
            Backend::Postgres => "GREATEST",
            Backend::Sqlite => "MAX",
        }
    }

    async fn reserve_slot(
        &self,
        interval: Duration,
        tolerance: Duration,
    ) -> Result<Duration, StoreError> {
        let now = self.now_us();
        let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
        let tolerance_us = i64::try_from(tolerance.as_micros()).unwrap_or(i64::MAX);
        let max = self.max_sql();
        let tat: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "INSERT INTO rate_limits (installation_id, tat_us) VALUES ($1, $2 + $3) \
             ON CONFLICT (installation_id) DO UPDATE SET \
             tat_us = {max}(rate_limits.tat_us, $2) + $3 RETURNING tat_us"
        )))
        .bind(&self.installation)
        .bind(now)
        .bind(interval_us)
        .fetch_one(self.store.pool())
        .await
        .map_err(query_error("reserve a shared rate-limit slot"))?;
        // This request's slot is the previous theoretical time (tat − interval), allowed
        // `tolerance` early.
        let send_at = tat.saturating_sub(interval_us).saturating_sub(tolerance_us);
        let wait = u64::try_from(send_at.saturating_sub(now)).unwrap_or(0);
        Ok(Duration::from_micros(wait))
    }

    async fn block(&self, wait: Duration) -> Result<(), StoreError> {
        let until = self
            .now_us()
            .saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX));
        let max = self.max_sql();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO rate_limits (installation_id, tat_us) VALUES ($1, $2) \
             ON CONFLICT (installation_id) DO UPDATE SET tat_us = {max}(rate_limits.tat_us, $2)"
        )))
        .bind(&self.installation)
        .bind(until)
        .execute(self.store.pool())
        .await
        .map_err(query_error("block the shared rate limit"))?;
        Ok(())
    }
}

impl SharedRateLimit for StoreRateLimit {
    fn reserve(
        &self,
        interval: Duration,
        tolerance: Duration,
    ) -> BoxFuture<'_, Result<Duration, String>> {
        Box::pin(async move {
            self.reserve_slot(interval, tolerance)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn block_for(&self, wait: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(error) = self.block(wait).await {
                tracing::warn!(%error, "Could not share a Retry-After with the other processes.");
            }
        })
    }
}
