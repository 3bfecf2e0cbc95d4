//! Sync runs and the per-installation lease that keeps one run at a time.

use ivory_sdk::Cursor;
use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use super::audit::{Actor, AuditAction, AuditEvent, emit};
use super::{Store, StoreError, from_ms, query_error, to_ms};

/// The state of a sync run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// In progress (or its process died and its lease has not expired yet).
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with an error; what was committed before the error stays.
    Failed,
    /// Asked to stop (a shutdown), it stopped at a page boundary; what it committed stays.
    Interrupted,
    /// Its lease expired without it finishing (the process died); a later run took over.
    Abandoned,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Abandoned => "abandoned",
            RunStatus::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "abandoned" => RunStatus::Abandoned,
            "interrupted" => RunStatus::Interrupted,
            other => {
                return Err(StoreError::Corrupt {
                    what: "run status",
                    message: format!("unknown status {other:?}"),
                });
            }
        })
    }
}

/// Who holds an installation's sync lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The running sync.
    pub run_id: String,
    /// The process (`host:pid`).
    pub holder: String,
    /// When the lease lapses unless renewed.
    pub expires_at: Timestamp,
}

/// A run about to start (see [`Store::begin_run`]).
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    /// The installation.
    pub installation_id: &'a str,
    /// Its tenant.
    pub tenant: &'a str,
    /// The new run's id.
    pub run_id: &'a str,
    /// The process running it (`host:pid`).
    pub holder: &'a str,
    /// Whether the committed cursor is ignored.
    pub full_refresh: bool,
    /// Now.
    pub now: Timestamp,
    /// The lease's expiry.
    pub lease_until: Timestamp,
}

/// The counts a run records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunTotals {
    /// Records created.
    pub records_created: u64,
    /// Records changed.
    pub records_updated: u64,
    /// Records re-pulled unchanged.
    pub records_unchanged: u64,
    /// Records tombstoned.
    pub records_deleted: u64,
    /// Pages read.
    pub pages: u64,
    /// Requests sent.
    pub requests: u64,
    /// Retries.
    pub retries: u64,
    /// 429 responses seen.
    pub responses_429: u64,
    /// Time slept (pacing, Retry-After, backoff).
    pub slept_ms: u64,
}

/// A stored sync run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The run id.
    pub id: String,
    /// The installation.
    pub installation_id: String,
    /// Its status.
    pub status: RunStatus,
    /// The counts.
    pub totals: RunTotals,
    /// The cursor at the end (JSON).
    pub cursor: Option<String>,
    /// The error, for a failed run.
    pub error: Option<String>,
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Starts a run: takes the installation's lease (until `lease_until`) and records the run
    /// as running, in one transaction. Returns the current holder instead when another run's
    /// lease has not expired. A lease that expired (its process died) is taken over and its
    /// run marked abandoned.
    pub async fn begin_run(&self, run: &NewRun<'_>) -> Result<Result<(), LockHolder>, StoreError> {
        let NewRun {
            installation_id,
            tenant,
            run_id,
            holder,
            full_refresh,
            now,
            lease_until,
        } = *run;
        let mut tx = self.begin_write().await?;
        let previous = sqlx::query(
            "SELECT run_id, holder, expires_at FROM sync_locks WHERE installation_id = $1",
        )
        .bind(installation_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("read sync lock"))?;
        let previous = match previous {
            Some(row) => {
                let read = |e: sqlx::Error| StoreError::Corrupt {
                    what: "sync lock",
                    message: e.to_string(),
                };
                Some(LockHolder {
                    run_id: row.try_get("run_id").map_err(read)?,
                    holder: row.try_get("holder").map_err(read)?,
                    expires_at: from_ms(row.try_get("expires_at").map_err(read)?)?,
                })
            }
            None => None,
        };
        let taken = sqlx::query(
            "INSERT INTO sync_locks (installation_id, run_id, holder, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (installation_id) DO UPDATE SET \
             run_id = excluded.run_id, holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE sync_locks.expires_at <= $5",
        )
        .bind(installation_id)
        .bind(run_id)
        .bind(holder)
        .bind(to_ms(lease_until))
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(query_error("take sync lock"))?;
        if taken.rows_affected() != 1 {
            tx.rollback().await.map_err(query_error("rollback"))?;
            return Ok(Err(previous.unwrap_or(LockHolder {
                run_id: "unknown".into(),
                holder: "unknown".into(),
                expires_at: lease_until,
            })));
        }
        if let Some(previous) = &previous {
            sqlx::query(
                "UPDATE sync_runs SET status = 'abandoned', finished_at = $1, \
                 error = 'its lease expired before it finished (the process stopped?); taken over' \
                 WHERE id = $2 AND status = 'running'",
            )
            .bind(to_ms(now))
            .bind(&previous.run_id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("abandon stale run"))?;
        }
        sqlx::query(
            "INSERT INTO sync_runs (id, installation_id, tenant_id, status, full_refresh, started_at) \
             VALUES ($1, $2, $3, 'running', $4, $5)",
        )
        .bind(run_id)
        .bind(installation_id)
        .bind(tenant)
        .bind(i64::from(full_refresh))
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(query_error("record run"))?;
        tx.commit().await.map_err(query_error("commit"))?;
        Ok(Ok(()))
    }

    /// Ends `run_id`'s lease at once (its process is known to be gone) and marks the run
    /// abandoned, so a new run can start.
    pub async fn expire_lease(
        &self,
        installation_id: &str,
        run_id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sync_locks WHERE installation_id = $1 AND run_id = $2")
            .bind(installation_id)
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("expire sync lock"))?;
        sqlx::query(
            "UPDATE sync_runs SET status = 'abandoned',              error = 'its process stopped before it finished; taken over'              WHERE id = $1 AND status = 'running'",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(query_error("abandon run"))?;
        tx.commit().await.map_err(query_error("commit"))?;
        Ok(())
    }

    /// Records a run's end and releases its lease (if it still holds it).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_run(
        &self,
        installation_id: &str,
        run_id: &str,
        status: RunStatus,
        totals: &RunTotals,
        cursor: Option<&Cursor>,
        error: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let cursor =
            cursor
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Invalid {
                    what: "cursor",
                    message: e.to_string(),
                })?;
        let mut tx = self.begin_write().await?;
        let finished = sqlx::query(
            "UPDATE sync_runs SET status = $1, finished_at = $2, records_created = $3, \
             records_updated = $4, records_unchanged = $5, records_deleted = $6, pages = $7, \
             requests = $8, retries = $9, responses_429 = $10, slept_ms = $11, cursor = $12, \
             error = $13 WHERE id = $14",
        )
        .bind(status.as_str())
        .bind(to_ms(now))
        .bind(as_i64(totals.records_created))
        .bind(as_i64(totals.records_updated))
        .bind(as_i64(totals.records_unchanged))
        .bind(as_i64(totals.records_deleted))
        .bind(as_i64(totals.pages))
        .bind(as_i64(totals.requests))
        .bind(as_i64(totals.retries))
        .bind(as_i64(totals.responses_429))
        .bind(as_i64(totals.slept_ms))
        .bind(cursor)
        .bind(error)
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(query_error("finish run"))?;
        if finished.rows_affected() == 1 {
            let event = sync_event(&mut tx, run_id, status, totals, error, now).await?;
            emit(&mut tx, &event).await?;
        }
        sqlx::query("DELETE FROM sync_locks WHERE installation_id = $1 AND run_id = $2")
            .bind(installation_id)
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("release sync lock"))?;
        tx.commit().await.map_err(query_error("commit"))?;
        Ok(())
    }

    /// A run by id.
    pub async fn run_record(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM sync_runs WHERE id = $1"
        )))
        .bind(run_id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read run"))?;
        row.map(|row| run_from_row(&row)).transpose()
    }

    /// An installation's runs, oldest first.
    pub async fn runs_of(&self, installation_id: &str) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM sync_runs WHERE installation_id = $1 ORDER BY started_at, id"
        )))
        .bind(installation_id)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list runs"))?;
        rows.iter().map(run_from_row).collect()
    }
}

const RUN_COLUMNS: &str = "id, installation_id, status, records_created, records_updated, \
     records_unchanged, records_deleted, pages, requests, retries, responses_429, slept_ms, \
     cursor, error";

fn run_from_row(row: &sqlx::any::AnyRow) -> Result<RunRecord, StoreError> {
    let read = |e: sqlx::Error| StoreError::Corrupt {
        what: "sync run",
        message: e.to_string(),
    };
    let count = |name: &str| row.try_get::<i64, _>(name).map(as_u64).map_err(read);
    let status: String = row.try_get("status").map_err(read)?;
    Ok(RunRecord {
        id: row.try_get("id").map_err(read)?,
        installation_id: row.try_get("installation_id").map_err(read)?,
        status: RunStatus::parse(&status)?,
        totals: RunTotals {
            records_created: count("records_created")?,
            records_updated: count("records_updated")?,
            records_unchanged: count("records_unchanged")?,
            records_deleted: count("records_deleted")?,
            pages: count("pages")?,
            requests: count("requests")?,
            retries: count("retries")?,
            responses_429: count("responses_429")?,
            slept_ms: count("slept_ms")?,
        },
        cursor: row.try_get("cursor").map_err(read)?,
        error: row.try_get("error").map_err(read)?,
    })
}

/// The `audit.sync_run.sync` event of a run that just finished: its installation and
/// connector, status, counts and error (errors never quote a secret: the SDK's errors are
/// redacted at the source).
async fn sync_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    run_id: &str,
    status: RunStatus,
    totals: &RunTotals,
    error: Option<&str>,
    now: Timestamp,
) -> Result<AuditEvent, StoreError> {
    let row = sqlx::query(
        "SELECT r.tenant_id, r.installation_id, r.full_refresh, i.connector_id \
         FROM sync_runs r JOIN installations i ON i.id = r.installation_id WHERE r.id = $1",
    )
    .bind(run_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(query_error("read run for its audit event"))?;
    let read = |e: sqlx::Error| StoreError::Corrupt {
        what: "sync run",
        message: e.to_string(),
    };
    let tenant: String = row.try_get("tenant_id").map_err(read)?;
    let installation: String = row.try_get("installation_id").map_err(read)?;
    let connector: String = row.try_get("connector_id").map_err(read)?;
    let full_refresh: i64 = row.try_get("full_refresh").map_err(read)?;
    Ok(AuditEvent::new(
        &tenant,
        &Actor::Agent(format!("connector:{connector}")),
        AuditAction::Sync,
        "sync_run",
        Some(run_id),
        now,
    )
    .with_diff(serde_json::json!({
        "installation_id": installation,
        "connector": connector,
        "full_refresh": full_refresh != 0,
        "status": status.as_str(),
        "totals": totals,
        "error": error,
    })))
}
