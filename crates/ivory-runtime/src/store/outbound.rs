//! Outbound sync: pending platform-side changes, their acknowledgements, upstream ids written
//! back, and the outbound counts of a sync run.
//!
//! - **Pending.** A platform-side edit stamps the record's `platform_updated_at`
//!   ([`Store::update_record_fields`], workflows). The record is *pending* until an
//!   acknowledgement (`outbound_acks`) covers that edit: `platform_updated_at >
//!   acked_platform_at`, or no acknowledgement at all. Tombstones are never pending.
//! - **Acknowledged** per record, by the connector, once the upstream accepted the push
//!   (`pushed`) or once the upstream's version won a conflict (`superseded`). An
//!   acknowledgement only ever moves forward (the later of the stored and the given edit time),
//!   so acknowledging an old edit cannot hide a newer one.
//! - **Why per record, not a per-installation "last push" watermark.** An edit takes its time
//!   stamp before it waits for the store's write lock. A push that read the store in between and
//!   then committed a watermark past that stamp would never see the edit. A per-record
//!   acknowledgement names the exact edit it covers, so no interleaving loses one. The cost is
//!   one row per record ever edited on the platform, and an index on `platform_updated_at`
//!   (`records_platform_edits`, partial: synced-only records are not in it).
//! - **Links.** A record created on the platform (no `source_updated_at`) is created upstream by
//!   the connector, which then links it: the record's external id becomes the upstream's id (so
//!   the next pull updates it rather than adding a duplicate), its `source_updated_at` is set,
//!   and, when the upstream's version won, its data is replaced (formula fields recomputed).
//!   A record already stored under the upstream id (pulled before the link) is replaced by the
//!   linked one. Links and acknowledgements of one push batch commit in one transaction, which
//!   renews and checks the run's lease like every commit of a sync.
//!
//! Limits: a link renames the record only; workflow runs that named it by its platform id
//! keep that id. Two edits of one record within the same millisecond count as one.

use ivory_sdk::conflict::ConflictCounts;
use ivory_sdk::context::{ChangeQuery, OutboundCommit, OutboundTotals, PlatformChange};
use jiff::Timestamp;
use sqlx::Row;

use super::records::CommitScope;
use super::{Store, StoreError, from_ms, query_error, to_ms};

/// Ids per `IN (…)` lookup of pending changes.
const IDS_PER_QUERY: usize = 200;

const PENDING_COLUMNS: &str = "SELECT r.external_id, r.data, r.version, r.source_updated_at, \
     r.platform_updated_at FROM records r LEFT JOIN outbound_acks a \
     ON a.tenant_id = r.tenant_id AND a.kind = r.kind AND a.external_id = r.external_id \
     WHERE r.tenant_id = $1 AND r.kind = $2 AND r.platform_updated_at IS NOT NULL \
     AND r.deleted_at IS NULL \
     AND (a.acked_platform_at IS NULL OR r.platform_updated_at > a.acked_platform_at)";

/// The outbound side of one sync run, as recorded in `sync_runs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOutbound {
    /// Conflicts per outcome.
    pub conflicts: ConflictCounts,
    /// Pushed, created, superseded.
    pub outbound: OutboundTotals,
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// The tenant's pending platform-side changes selected by `query` (see the module doc).
    pub async fn pending_changes(
        &self,
        tenant: &str,
        query: &ChangeQuery<'_>,
    ) -> Result<Vec<PlatformChange>, StoreError> {
        match *query {
            ChangeQuery::Page { kind, after, limit } => {
                let sql = format!(
                    "{PENDING_COLUMNS} AND (r.platform_updated_at > $3 OR \
                     (r.platform_updated_at = $3 AND r.external_id > $4)) \
                     ORDER BY r.platform_updated_at, r.external_id LIMIT $5"
                );
                let (at, id) = match after {
                    Some(key) => (to_ms(key.platform_updated_at), key.id.as_str()),
                    None => (i64::MIN, ""),
                };
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant)
                    .bind(kind)
                    .bind(at)
                    .bind(id)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(self.pool())
                    .await
                    .map_err(query_error("read pending changes"))?;
                rows.iter().map(|row| decode_change(kind, row)).collect()
            }
            ChangeQuery::Ids { kind, ids } => {
                let mut changes = Vec::new();
                for chunk in ids.chunks(IDS_PER_QUERY) {
                    let mut sql = format!("{PENDING_COLUMNS} AND r.external_id IN (");
                    for i in 0..chunk.len() {
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!("${}", i + 3));
                    }
                    sql.push(')');
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(tenant)
                        .bind(kind);
                    for id in chunk {
                        q = q.bind(id.as_str());
                    }
                    let rows = q
                        .fetch_all(self.pool())
                        .await
                        .map_err(query_error("read pending changes by id"))?;
                    for row in &rows {
                        changes.push(decode_change(kind, row)?);
                    }
                }
                Ok(changes)
            }
        }
    }

    /// Applies `commit`'s links and then its acknowledgements for the scope's tenant, in one
    /// transaction (see the module doc). With a fence, the run's lease is renewed and checked
    /// first ([`StoreError::LeaseLost`]).
    pub async fn commit_outbound(
        &self,
        scope: &CommitScope<'_>,
        commit: &OutboundCommit,
    ) -> Result<(), StoreError> {
        let now = to_ms(scope.now);
        let mut tx = self.begin_write().await?;
        if let Some(fence) = &scope.fence {
            let renewed = sqlx::query(
                "UPDATE sync_locks SET expires_at = $1 WHERE installation_id = $2 AND run_id = $3",
            )
            .bind(to_ms(fence.lease_until))
            .bind(scope.installation)
            .bind(fence.run_id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("renew sync lease"))?;
            if renewed.rows_affected() != 1 {
                return Err(StoreError::LeaseLost {
                    installation: scope.installation.to_owned(),
                    run_id: fence.run_id.to_owned(),
                });
            }
        }
        let catalog = crate::objects::ObjectCatalog::load(&mut tx, scope.tenant).await?;
        let mut fired = Vec::new();
        for link in &commit.links {
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM records WHERE tenant_id = $1 AND kind = $2 \
                 AND external_id = $3",
            )
            .bind(scope.tenant)
            .bind(&link.kind)
            .bind(&link.platform_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error("read linked record"))?;
            if exists.is_none() {
                return Err(StoreError::Invalid {
                    what: "upstream link",
                    message: format!(
                        "no {} record {:?} to link to upstream id {:?}",
                        link.kind, link.platform_id, link.upstream_id
                    ),
                });
            }
            if link.platform_id != link.upstream_id {
                for (table, context) in [
                    ("records", "replace record under upstream id"),
                    ("outbound_acks", "replace acknowledgement under upstream id"),
                ] {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE tenant_id = $1 AND kind = $2 AND external_id = $3"
                    )))
                    .bind(scope.tenant)
                    .bind(&link.kind)
                    .bind(&link.upstream_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error(context))?;
                }
                sqlx::query(
                    "UPDATE outbound_acks SET external_id = $1 WHERE tenant_id = $2 AND kind = $3 \
                     AND external_id = $4",
                )
                .bind(&link.upstream_id)
                .bind(scope.tenant)
                .bind(&link.kind)
                .bind(&link.platform_id)
                .execute(&mut *tx)
                .await
                .map_err(query_error("move acknowledgement to upstream id"))?;
            }
            let data = match &link.data {
                None => None,
                Some(data) => {
                    let stored = catalog
                        .computed(&link.kind, data, scope.now)?
                        .unwrap_or_else(|| data.clone());
                    if catalog.watches(&link.kind) {
                        fired.extend(
                            catalog
                                .record_written(
                                    &mut tx,
                                    &link.kind,
                                    &link.upstream_id,
                                    &stored,
                                    scope.now,
                                )
                                .await?,
                        );
                    }
                    Some(
                        serde_json::to_string(&stored).map_err(|e| StoreError::Invalid {
                            what: "record data",
                            message: e.to_string(),
                        })?,
                    )
                }
            };
            sqlx::query(
                "UPDATE records SET external_id = $1, source_updated_at = $2, \
                 data = COALESCE($3, data), installation_id = $4, synced_at = $5, \
                 version = version + 1 \
                 WHERE tenant_id = $6 AND kind = $7 AND external_id = $8",
            )
            .bind(&link.upstream_id)
            .bind(to_ms(link.source_updated_at))
            .bind(data)
            .bind(scope.installation)
            .bind(now)
            .bind(scope.tenant)
            .bind(&link.kind)
            .bind(&link.platform_id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("link record to upstream id"))?;
        }
        for ack in &commit.acks {
            sqlx::query(
                "INSERT INTO outbound_acks (tenant_id, kind, external_id, installation_id, \
                 acked_platform_at, disposition, acked_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (tenant_id, kind, external_id) DO UPDATE SET \
                 acked_platform_at = CASE WHEN excluded.acked_platform_at > \
                 outbound_acks.acked_platform_at THEN excluded.acked_platform_at \
                 ELSE outbound_acks.acked_platform_at END, \
                 disposition = excluded.disposition, installation_id = excluded.installation_id, \
                 acked_at = excluded.acked_at",
            )
            .bind(scope.tenant)
            .bind(&ack.kind)
            .bind(&ack.id)
            .bind(scope.installation)
            .bind(to_ms(ack.platform_updated_at))
            .bind(ack.disposition.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(query_error("acknowledge platform change"))?;
        }
        tx.commit().await.map_err(query_error("commit outbound"))?;
        if !fired.is_empty()
            && let Err(error) = self.run_pending_workflows(scope.tenant, scope.now).await
        {
            tracing::warn!(%error, tenant = %scope.tenant, "Record-condition workflows did not run.");
        }
        Ok(())
    }

    /// Records a finished run's conflicts and outbound counts (columns of `sync_runs`).
    pub async fn record_run_outbound(
        &self,
        run_id: &str,
        conflicts: &ConflictCounts,
        outbound: &OutboundTotals,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sync_runs SET conflicts_source_wins = $1, conflicts_platform_wins = $2, \
             conflicts_ties = $3, outbound_pushed = $4, outbound_created = $5, \
             outbound_superseded = $6 WHERE id = $7",
        )
        .bind(as_i64(conflicts.source_wins))
        .bind(as_i64(conflicts.platform_wins))
        .bind(as_i64(conflicts.ties))
        .bind(as_i64(outbound.pushed))
        .bind(as_i64(outbound.created))
        .bind(as_i64(outbound.superseded))
        .bind(run_id)
        .execute(self.pool())
        .await
        .map_err(query_error("record run outbound counts"))?;
        Ok(())
    }

    /// A run's conflicts and outbound counts, if the run exists.
    pub async fn run_outbound(&self, run_id: &str) -> Result<Option<RunOutbound>, StoreError> {
        let row = sqlx::query(
            "SELECT conflicts_source_wins, conflicts_platform_wins, conflicts_ties, \
             outbound_pushed, outbound_created, outbound_superseded FROM sync_runs WHERE id = $1",
        )
        .bind(run_id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read run outbound counts"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let get = |column: &str| -> Result<u64, StoreError> {
            row.try_get::<i64, _>(column)
                .map(as_u64)
                .map_err(|e| StoreError::Corrupt {
                    what: "sync run",
                    message: e.to_string(),
                })
        };
        Ok(Some(RunOutbound {
            conflicts: ConflictCounts {
                source_wins: get("conflicts_source_wins")?,
                platform_wins: get("conflicts_platform_wins")?,
                ties: get("conflicts_ties")?,
            },
            outbound: OutboundTotals {
                pushed: get("outbound_pushed")?,
                created: get("outbound_created")?,
                superseded: get("outbound_superseded")?,
            },
        }))
    }
}

fn decode_change(kind: &str, row: &sqlx::any::AnyRow) -> Result<PlatformChange, StoreError> {
    let read = |e: sqlx::Error| StoreError::Corrupt {
        what: "record",
        message: e.to_string(),
    };
    let data: String = row.try_get("data").map_err(read)?;
    let source: Option<i64> = row.try_get("source_updated_at").map_err(read)?;
    let platform: i64 = row.try_get("platform_updated_at").map_err(read)?;
    Ok(PlatformChange {
        kind: kind.to_owned(),
        id: row.try_get("external_id").map_err(read)?,
        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
            what: "record data",
            message: e.to_string(),
        })?,
        version: row.try_get("version").map_err(read)?,
        source_updated_at: source.map(from_ms).transpose()?,
        platform_updated_at: from_ms(platform)?,
    })
}

/// The acknowledged edit time of a record, if any (tests and diagnostics).
impl Store {
    /// When the last acknowledged platform-side edit of a record was made, and what became of
    /// it (`pushed` / `superseded`).
    pub async fn outbound_ack(
        &self,
        tenant: &str,
        kind: &str,
        external_id: &str,
    ) -> Result<Option<(Timestamp, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT acked_platform_at, disposition FROM outbound_acks WHERE tenant_id = $1 \
             AND kind = $2 AND external_id = $3",
        )
        .bind(tenant)
        .bind(kind)
        .bind(external_id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read acknowledgement"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = |e: sqlx::Error| StoreError::Corrupt {
            what: "acknowledgement",
            message: e.to_string(),
        };
        Ok(Some((
            from_ms(row.try_get("acked_platform_at").map_err(read)?)?,
            row.try_get("disposition").map_err(read)?,
        )))
    }
}
