//! Scheduled sync jobs: one row per active installation saying when its next sync is due, and
//! who has claimed it. `ivory serve`'s scheduler and every `ivory worker` claim from the same
//! table, so an installation is synced once per due time however many processes run:
//!
//! - **claim** ([`Store::claim_due_jobs`]): in one write transaction, the due rows (oldest
//!   first) are selected — `FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent claimers
//!   never wait for or take each other's rows; SQLite serializes writers anyway — and moved to
//!   `due_at = now + claim`, `claimed_by = worker`;
//! - **heartbeat** ([`Store::extend_claim`]) while the sync runs pushes `due_at` on;
//! - **finish** ([`Store::finish_job`]) sets the next due time from the schedule.
//!
//! A worker that dies stops heart-beating: its row becomes due when the claim lapses and another
//! worker claims it; the run's own lease (`sync_locks`) has lapsed by then too, so the new run
//! takes it over, marks the old run abandoned and resumes from the committed cursor.

use std::time::Duration;

use jiff::Timestamp;
use sqlx::Row;

use super::installations::Installation;
use super::{Backend, Store, StoreError, from_ms, query_error, to_ms};
use crate::schedule::{SCHEDULE_SETTING, after, next_due};

impl Store {
    /// Adds a job row for every active installation that has none, due per its schedule
    /// (first syncs spread by the jitter from `now`; an installation synced before keeps its
    /// rhythm). Returns how many were added.
    pub async fn seed_jobs(&self, now: Timestamp) -> Result<u64, StoreError> {
        let rows = sqlx::query(
            "SELECT i.id, i.settings, (SELECT MAX(r.started_at) FROM sync_runs r \
             WHERE r.installation_id = i.id) AS last_start \
             FROM installations i LEFT JOIN sync_jobs j ON j.installation_id = i.id \
             WHERE i.status = 'active' AND j.installation_id IS NULL",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_error("find installations without a job"))?;
        let mut added = 0;
        for row in rows {
            let read = |e: sqlx::Error| StoreError::Corrupt {
                what: "installation",
                message: e.to_string(),
            };
            let id: String = row.try_get("id").map_err(read)?;
            let settings: String = row.try_get("settings").map_err(read)?;
            let settings: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&settings).map_err(|e| StoreError::Corrupt {
                    what: "installation settings",
                    message: e.to_string(),
                })?;
            let last: Option<i64> = row.try_get("last_start").map_err(read)?;
            let last = last.map(from_ms).transpose()?;
            let due = next_due(
                &id,
                settings.get(SCHEDULE_SETTING).map(String::as_str),
                last,
                now,
            );
            let inserted = sqlx::query(
                "INSERT INTO sync_jobs (installation_id, due_at) VALUES ($1, $2) \
                 ON CONFLICT (installation_id) DO NOTHING",
            )
            .bind(&id)
            .bind(due.map(to_ms))
            .execute(self.pool())
            .await
            .map_err(query_error("add a sync job"))?;
            added += inserted.rows_affected();
        }
        Ok(added)
    }

    /// Claims up to `limit` due jobs of active installations for `worker` until `now + claim`
    /// (see the module docs); returns their installations, oldest due first.
    pub async fn claim_due_jobs(
        &self,
        worker: &str,
        now: Timestamp,
        limit: usize,
        claim: Duration,
    ) -> Result<Vec<Installation>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE OF j SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT j.installation_id FROM sync_jobs j \
             JOIN installations i ON i.id = j.installation_id \
             WHERE i.status = 'active' AND j.due_at IS NOT NULL AND j.due_at <= $1 \
             ORDER BY j.due_at, j.installation_id LIMIT $2{lock}"
        )))
        .bind(to_ms(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(query_error("find due sync jobs"))?;
        let until = to_ms(after(now, claim));
        for id in &ids {
            sqlx::query(
                "UPDATE sync_jobs SET due_at = $1, claimed_by = $2, claimed_until = $1 \
                 WHERE installation_id = $3",
            )
            .bind(until)
            .bind(worker)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("claim a sync job"))?;
        }
        tx.commit()
            .await
            .map_err(query_error("commit the claims"))?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(installation) = self.installation_by_id(&id).await? {
                claimed.push(installation);
            }
        }
        Ok(claimed)
    }

    /// Extends `worker`'s claim on an installation's job until `until` (a heartbeat). False
    /// when the claim is no longer this worker's.
    pub async fn extend_claim(
        &self,
        installation_id: &str,
        worker: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE sync_jobs SET due_at = $1, claimed_until = $1 \
             WHERE installation_id = $2 AND claimed_by = $3",
        )
        .bind(to_ms(until))
        .bind(installation_id)
        .bind(worker)
        .execute(self.pool())
        .await
        .map_err(query_error("extend a sync job claim"))?;
        Ok(updated.rows_affected() == 1)
    }

    /// Releases `worker`'s claim and sets the next due time (`None`: not scheduled).
    pub async fn finish_job(
        &self,
        installation_id: &str,
        worker: &str,
        next: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sync_jobs SET due_at = $1, claimed_by = NULL, claimed_until = NULL \
             WHERE installation_id = $2 AND claimed_by = $3",
        )
        .bind(next.map(to_ms))
        .bind(installation_id)
        .bind(worker)
        .execute(self.pool())
        .await
        .map_err(query_error("finish a sync job"))?;
        Ok(())
    }

    /// Renews a running sync's lease until `until` (a heartbeat between commits). False when
    /// the lease is no longer that run's.
    pub async fn renew_lease(
        &self,
        installation_id: &str,
        run_id: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE sync_locks SET expires_at = $1 WHERE installation_id = $2 AND run_id = $3",
        )
        .bind(to_ms(until))
        .bind(installation_id)
        .bind(run_id)
        .execute(self.pool())
        .await
        .map_err(query_error("renew a sync lease"))?;
        Ok(updated.rows_affected() == 1)
    }
}
