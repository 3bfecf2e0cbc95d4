//! Records: idempotent batched upserts, tombstones, the cursor in the same transaction, and a
//! streaming export.

use std::collections::HashMap;
use std::fmt::Write as _;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use ivory_sdk::clock::Clock;
use ivory_sdk::connector::BoxFuture;
use ivory_sdk::{CommitReceipt, Cursor, Record, RecordOp, RecordSink, SinkError};
use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use super::{Backend, Store, StoreError, from_ms, query_error, to_ms};

/// Rows per multi-row INSERT (7 parameters each; well under both backends' limits).
const UPSERT_CHUNK: usize = 100;

/// A record as `ivory records export` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportedRecord {
    /// The upstream id.
    pub id: String,
    /// The kind.
    pub kind: String,
    /// The record's data.
    pub data: serde_json::Value,
    /// Incremented on every change.
    pub version: i64,
    /// The upstream's last-modified time.
    pub source_updated_at: Option<Timestamp>,
    /// The last platform-side edit.
    pub platform_updated_at: Option<Timestamp>,
    /// When a sync last wrote it.
    pub synced_at: Timestamp,
    /// When the upstream deleted it (tombstone).
    pub deleted_at: Option<Timestamp>,
}

impl Store {
    /// The tenant's record counts per kind: `(kind, live, deleted)`, sorted by kind.
    pub async fn record_counts(&self, tenant: &str) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT kind, SUM(CASE WHEN deleted_at IS NULL THEN 1 ELSE 0 END), \
             SUM(CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END) \
             FROM records WHERE tenant_id = $1 GROUP BY kind ORDER BY kind",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("count records"))?;
        Ok(rows
            .into_iter()
            .map(|(kind, live, deleted)| {
                (
                    kind,
                    u64::try_from(live).unwrap_or(0),
                    u64::try_from(deleted).unwrap_or(0),
                )
            })
            .collect())
    }

    /// Applies `ops` for the tenant's installation and, when given, sets its cursor, in one
    /// transaction. When `fence` names a run, the commit first renews that run's lease and is
    /// refused with [`StoreError::LeaseLost`] if another run holds it.
    pub async fn commit(
        &self,
        scope: &CommitScope<'_>,
        ops: &[RecordOp],
        cursor: Option<&Cursor>,
    ) -> Result<CommitReceipt, StoreError> {
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

        // The last op per (kind, id) wins; one statement may not touch a row twice.
        let mut last: HashMap<(&str, &str), usize> = HashMap::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let key = match op {
                RecordOp::Upsert { kind, record } => (kind.as_str(), record.id.as_str()),
                RecordOp::Delete { kind, id } => (kind.as_str(), id.as_str()),
            };
            last.insert(key, i);
        }
        let mut upserts: Vec<(&str, &Record)> = Vec::with_capacity(ops.len());
        let mut deletes: Vec<(&str, &str)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let key = match op {
                RecordOp::Upsert { kind, record } => (kind.as_str(), record.id.as_str()),
                RecordOp::Delete { kind, id } => (kind.as_str(), id.as_str()),
            };
            if last.get(&key) != Some(&i) {
                continue;
            }
            match op {
                RecordOp::Upsert { kind, record } => upserts.push((kind, record)),
                RecordOp::Delete { kind, id } => deletes.push((kind, id)),
            }
        }

        // One query reads what the commit needs to know before it writes: the tenant's object
        // catalog stamp, whether it has DSAR suppressions, and (when the first upsert chunk is
        // of one kind) how many of that chunk's records exist already. Each statement is a
        // round trip to sqlx's SQLite worker thread; three in one took 14 % of a sync's
        // context switches away (BENCHMARKS.md, "Sync throughput").
        let first_chunk = &upserts[..upserts.len().min(UPSERT_CHUNK)];
        let first_kind = first_chunk
            .first()
            .map(|(kind, _)| *kind)
            .filter(|kind| first_chunk.iter().all(|(k, _)| k == kind));
        let probe = {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(probe_sql(
                self.backend(),
                first_kind.map(|_| first_chunk.len()),
            )))
            .bind(scope.tenant)
            .bind(scope.tenant);
            if let Some(kind) = first_kind {
                query = query.bind(scope.tenant).bind(kind);
                for (_, record) in first_chunk {
                    query = query.bind(record.id.as_str());
                }
            }
            query
                .fetch_one(&mut *tx)
                .await
                .map_err(query_error("probe before commit"))?
        };
        let read = query_error("probe before commit");
        let stamp: Option<String> = probe.try_get(0).map_err(read)?;
        let suppressions = match probe.try_get::<i64, _>(1).map_err(read)? {
            0 => crate::dsar::Suppressions::None,
            _ => crate::dsar::Suppressions::Some,
        };
        let first_existing: Option<i64> = match first_kind {
            Some(_) => Some(probe.try_get(2).map_err(read)?),
            None => None,
        };

        // Custom objects: formula fields are computed here, on every write (never trusted from
        // the upstream), and writes of kinds watched by record-condition workflows are reported.
        let catalog =
            crate::objects::ObjectCatalog::load_stamped(&mut tx, scope.tenant, stamp).await?;
        let mut fired: Vec<String> = Vec::new();

        // DSAR erasures: a suppressed record is skipped or stored anonymized (`crate::dsar`).
        // With none, the upserts (and so the first chunk counted above) are unchanged.
        let upserts = crate::dsar::apply_suppressions(
            &mut tx,
            self.backend(),
            scope.tenant,
            suppressions,
            upserts,
        )
        .await?;
        let mut first_existing =
            first_existing.filter(|_| suppressions == crate::dsar::Suppressions::None);

        let mut receipt = CommitReceipt::default();
        let mut size_hint = 0;
        for chunk in upserts.chunks(UPSERT_CHUNK) {
            // How many of the chunk's rows exist already: with the rows the upsert writes, that
            // splits the chunk into created / updated / unchanged. (`RETURNING version` gave
            // the split too, but sqlx streams returned rows one message at a time from its
            // SQLite worker thread, which cost more than this indexed count: BENCHMARKS.md.)
            let mut existing = 0u64;
            let mut by_kind: Vec<(&str, Vec<&str>)> = Vec::new();
            if let Some(count) = first_existing.take() {
                existing = u64::try_from(count).unwrap_or(0);
            } else {
                for (kind, record) in chunk {
                    match by_kind.iter_mut().find(|(k, _)| k == kind) {
                        Some((_, ids)) => ids.push(record.id.as_str()),
                        None => by_kind.push((kind, vec![record.id.as_str()])),
                    }
                }
            }
            for (kind, ids) in &by_kind {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(count_existing_sql(
                    self.backend(),
                    ids.len(),
                )))
                .bind(scope.tenant)
                .bind(*kind);
                for id in ids {
                    query = query.bind(*id);
                }
                let count: i64 = query
                    .fetch_one(&mut *tx)
                    .await
                    .and_then(|row| row.try_get(0))
                    .map_err(query_error("count existing records"))?;
                existing += u64::try_from(count).unwrap_or(0);
            }

            let mut computed: Vec<Option<serde_json::Value>> = Vec::with_capacity(chunk.len());
            for (kind, record) in chunk {
                computed.push(catalog.computed(kind, &record.data, scope.now)?);
            }
            let mut query =
                sqlx::query(sqlx::AssertSqlSafe(upsert_sql(self.backend(), chunk.len())));
            for ((kind, record), computed) in chunk.iter().zip(&computed) {
                let stored = computed.as_ref().unwrap_or(&record.data);
                let data = json_text(stored, &mut size_hint)?;
                query = query
                    .bind(scope.tenant)
                    .bind(*kind)
                    .bind(record.id.as_str())
                    .bind(scope.installation)
                    .bind(data)
                    .bind(record.updated_at.map(to_ms))
                    .bind(now);
            }
            let written = query
                .execute(&mut *tx)
                .await
                .map_err(query_error("upsert records"))?
                .rows_affected();
            for ((kind, record), computed) in chunk.iter().zip(&computed) {
                if catalog.watches(kind) {
                    let stored = computed.as_ref().unwrap_or(&record.data);
                    fired.extend(
                        catalog
                            .record_written(&mut tx, kind, &record.id, stored, scope.now)
                            .await?,
                    );
                }
            }
            let rows = chunk.len() as u64;
            let created = rows.saturating_sub(existing);
            receipt.created += created;
            receipt.updated += written.saturating_sub(created);
            receipt.unchanged += rows.saturating_sub(written);
        }
        for (kind, id) in deletes {
            let done = sqlx::query(
                "UPDATE records SET deleted_at = $1, synced_at = $1, version = version + 1 \
                 WHERE tenant_id = $2 AND kind = $3 AND external_id = $4 AND deleted_at IS NULL",
            )
            .bind(now)
            .bind(scope.tenant)
            .bind(kind)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("delete record"))?;
            receipt.deleted += done.rows_affected();
        }
        if let Some(cursor) = cursor {
            let text = serde_json::to_string(cursor).map_err(|e| StoreError::Invalid {
                what: "cursor",
                message: e.to_string(),
            })?;
            sqlx::query(
                "INSERT INTO cursors (installation_id, cursor, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (installation_id) DO UPDATE SET cursor = excluded.cursor, \
                 updated_at = excluded.updated_at",
            )
            .bind(scope.installation)
            .bind(text)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(query_error("commit cursor"))?;
        }
        tx.commit().await.map_err(query_error("commit"))?;
        if !fired.is_empty()
            && let Err(error) = self.run_pending_workflows(scope.tenant, scope.now).await
        {
            // The runs stay pending (recorded with the commit) and can be retried.
            tracing::warn!(%error, tenant = %scope.tenant, "Record-condition workflows did not run.");
        }
        Ok(receipt)
    }

    /// Streams the tenant's records of `kind`, ordered by id; memory stays flat whatever the
    /// count. Tombstones are included only when `include_deleted`.
    pub fn export_records<'a>(
        &'a self,
        tenant: &'a str,
        kind: &'a str,
        deleted: Tombstones,
    ) -> BoxStream<'a, Result<ExportedRecord, StoreError>> {
        let sql = match deleted {
            Tombstones::Include => {
                "SELECT external_id, kind, data, version, source_updated_at, platform_updated_at, \
                 synced_at, deleted_at FROM records WHERE tenant_id = $1 AND kind = $2 \
                 ORDER BY external_id"
            }
            Tombstones::Exclude => {
                "SELECT external_id, kind, data, version, source_updated_at, platform_updated_at, \
                 synced_at, deleted_at FROM records WHERE tenant_id = $1 AND kind = $2 \
                 AND deleted_at IS NULL ORDER BY external_id"
            }
        };
        sqlx::query(sql)
            .bind(tenant)
            .bind(kind)
            .fetch(self.pool())
            .map_err(query_error("export records"))
            .and_then(|row| async move { decode_record(&row) })
            .boxed()
    }
}

/// `value` as compact JSON text, byte for byte what `serde_json::to_string` writes (the upsert
/// compares it with the stored text: equal text is an unchanged record).
///
/// Strings that need no escape (no `"`, `\` or control character: nearly all of them) are
/// copied whole after a branch-free scan; `serde_json` checks them byte by byte, which was 14 %
/// of a sync's instructions (BENCHMARKS.md). Everything else is written by `serde_json`.
/// `size_hint` carries the previous text's length, to allocate once.
fn json_text(value: &serde_json::Value, size_hint: &mut usize) -> Result<String, StoreError> {
    let mut out = Vec::with_capacity(*size_hint + *size_hint / 8 + 16);
    write_json(&mut out, value)?;
    *size_hint = out.len();
    String::from_utf8(out).map_err(|e| StoreError::Invalid {
        what: "record data",
        message: e.to_string(),
    })
}

fn write_json(out: &mut Vec<u8>, value: &serde_json::Value) -> Result<(), StoreError> {
    use serde_json::Value;
    match value {
        Value::String(s) => write_json_str(out, s)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(out, key)?;
                out.push(b':');
                write_json(out, item)?;
            }
            out.push(b'}');
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {
            serde_json::to_writer(&mut *out, value).map_err(invalid_data)?;
        }
    }
    Ok(())
}

fn write_json_str(out: &mut Vec<u8>, s: &str) -> Result<(), StoreError> {
    // `serde_json` escapes exactly these bytes; a fold (no early exit) vectorizes.
    let escape = s.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escape {
        serde_json::to_writer(&mut *out, s).map_err(invalid_data)?;
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
    Ok(())
}

fn invalid_data(e: serde_json::Error) -> StoreError {
    StoreError::Invalid {
        what: "record data",
        message: e.to_string(),
    }
}

/// Appends `n` bind placeholders for one row, numbered from `first` on PostgreSQL.
///
/// SQLite gets anonymous `?` parameters: sqlx binds `$N` parameters there by looking each name
/// up (`sqlite3_bind_parameter_name`, a linear scan of the statement's parameter list), which
/// is quadratic in the 700 parameters of a full upsert chunk and cost a quarter of a sync's
/// CPU time (BENCHMARKS.md, "Sync throughput"). Values are bound in the same order either way.
fn push_placeholders(sql: &mut String, backend: Backend, first: usize, n: usize) {
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        match backend {
            Backend::Sqlite => sql.push('?'),
            Backend::Postgres => {
                let _ = write!(sql, "${}", first + i);
            }
        }
    }
}

/// `INSERT … ON CONFLICT DO UPDATE` of `rows` records (7 parameters each); a row whose data,
/// tombstone and installation are unchanged is left alone (not counted as affected).
fn upsert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::with_capacity(512 + rows * 40);
    sql.push_str(
        "INSERT INTO records (tenant_id, kind, external_id, installation_id, data, \
         source_updated_at, synced_at, version) VALUES ",
    );
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        push_placeholders(&mut sql, backend, row * 7 + 1, 7);
        sql.push_str(", 1)");
    }
    sql.push_str(
        " ON CONFLICT (tenant_id, kind, external_id) DO UPDATE SET \
         data = excluded.data, source_updated_at = excluded.source_updated_at, \
         synced_at = excluded.synced_at, installation_id = excluded.installation_id, \
         version = records.version + 1, deleted_at = NULL \
         WHERE records.data <> excluded.data OR records.deleted_at IS NOT NULL \
         OR records.installation_id <> excluded.installation_id",
    );
    sql
}

/// Counts the stored records (tombstones included) of one tenant and kind among `ids` ids.
fn count_existing_sql(backend: Backend, ids: usize) -> String {
    let mut sql = String::with_capacity(128 + ids * 6);
    push_count_existing(&mut sql, backend, 1, ids);
    sql
}

/// The query of [`count_existing_sql`], its parameters (tenant, kind, ids) numbered from
/// `first`.
fn push_count_existing(sql: &mut String, backend: Backend, first: usize, ids: usize) {
    sql.push_str("SELECT COUNT(*) FROM records WHERE tenant_id = ");
    push_placeholders(sql, backend, first, 1);
    sql.push_str(" AND kind = ");
    push_placeholders(sql, backend, first + 1, 1);
    sql.push_str(" AND external_id IN (");
    push_placeholders(sql, backend, first + 2, ids);
    sql.push(')');
}

/// The commit's probe: the tenant's object catalog stamp (parameter 1: tenant), 1 when it has
/// DSAR suppressions else 0 (parameter 2: tenant), and, with `count_ids`, the
/// [`count_existing_sql`] of that many ids (parameters from 3: tenant, kind, ids).
fn probe_sql(backend: Backend, count_ids: Option<usize>) -> String {
    let mut sql = String::with_capacity(256 + count_ids.unwrap_or(0) * 6);
    sql.push_str("SELECT (SELECT stamp FROM object_catalog_stamps WHERE tenant_id = ");
    push_placeholders(&mut sql, backend, 1, 1);
    sql.push_str("), ");
    let mut tenant = String::new();
    push_placeholders(&mut tenant, backend, 2, 1);
    sql.push_str(&crate::dsar::any_suppression_sql(&tenant));
    if let Some(ids) = count_ids {
        sql.push_str(", (");
        push_count_existing(&mut sql, backend, 3, ids);
        sql.push(')');
    }
    sql
}

/// Whether an export includes tombstones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tombstones {
    /// Include records deleted upstream.
    Include,
    /// Only live records.
    Exclude,
}

fn decode_record(row: &sqlx::any::AnyRow) -> Result<ExportedRecord, StoreError> {
    let read = |e: sqlx::Error| StoreError::Corrupt {
        what: "record",
        message: e.to_string(),
    };
    let data: String = row.try_get("data").map_err(read)?;
    let opt_ts = |v: Option<i64>| v.map(from_ms).transpose();
    Ok(ExportedRecord {
        id: row.try_get("external_id").map_err(read)?,
        kind: row.try_get("kind").map_err(read)?,
        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
            what: "record data",
            message: e.to_string(),
        })?,
        version: row.try_get("version").map_err(read)?,
        source_updated_at: opt_ts(row.try_get("source_updated_at").map_err(read)?)?,
        platform_updated_at: opt_ts(row.try_get("platform_updated_at").map_err(read)?)?,
        synced_at: from_ms(row.try_get("synced_at").map_err(read)?)?,
        deleted_at: opt_ts(row.try_get("deleted_at").map_err(read)?)?,
    })
}

/// Whose records a commit touches, at what time, under which lease.
#[derive(Debug, Clone)]
pub struct CommitScope<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The installation.
    pub installation: &'a str,
    /// Now.
    pub now: Timestamp,
    /// The run's lease, checked and renewed by the commit.
    pub fence: Option<Fence<'a>>,
}

/// A run's lease on its installation.
#[derive(Debug, Clone)]
pub struct Fence<'a> {
    /// The run holding the lease.
    pub run_id: &'a str,
    /// The new expiry.
    pub lease_until: Timestamp,
}

/// The store as the [`RecordSink`] of one run of one installation.
#[derive(Debug, Clone)]
pub struct InstallationSink {
    store: Store,
    tenant: String,
    installation: String,
    run_id: Option<String>,
    clock: Clock,
    lease: std::time::Duration,
}

impl InstallationSink {
    /// A sink for `installation` of `tenant`; with `run_id`, every commit renews (and checks)
    /// that run's lease for `lease` more.
    pub fn new(
        store: Store,
        tenant: &str,
        installation: &str,
        run_id: Option<&str>,
        clock: Clock,
        lease: std::time::Duration,
    ) -> Self {
        Self {
            store,
            tenant: tenant.to_owned(),
            installation: installation.to_owned(),
            run_id: run_id.map(str::to_owned),
            clock,
            lease,
        }
    }
}

impl RecordSink for InstallationSink {
    fn commit<'a>(
        &'a self,
        ops: &'a [RecordOp],
        cursor: Option<&'a Cursor>,
    ) -> BoxFuture<'a, Result<CommitReceipt, SinkError>> {
        Box::pin(async move {
            let now = self.clock.now();
            let lease =
                jiff::SignedDuration::try_from(self.lease).unwrap_or(jiff::SignedDuration::MAX);
            let scope = CommitScope {
                tenant: &self.tenant,
                installation: &self.installation,
                now,
                fence: self.run_id.as_deref().map(|run_id| Fence {
                    run_id,
                    lease_until: now.checked_add(lease).unwrap_or(Timestamp::MAX),
                }),
            };
            self.store
                .commit(&scope, ops, cursor)
                .await
                .map_err(|e| SinkError::new(e.to_string()))
        })
    }

    fn pending_changes<'a>(
        &'a self,
        query: &'a ivory_sdk::context::ChangeQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<ivory_sdk::context::PlatformChange>, SinkError>> {
        Box::pin(async move {
            self.store
                .pending_changes(&self.tenant, query)
                .await
                .map_err(|e| SinkError::new(e.to_string()))
        })
    }

    fn commit_outbound<'a>(
        &'a self,
        commit: &'a ivory_sdk::context::OutboundCommit,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let (now, lease_until) = self.fence_times();
            let scope = CommitScope {
                tenant: &self.tenant,
                installation: &self.installation,
                now,
                fence: self.run_id.as_deref().map(|run_id| Fence {
                    run_id,
                    lease_until,
                }),
            };
            self.store
                .commit_outbound(&scope, commit)
                .await
                .map_err(|e| SinkError::new(e.to_string()))
        })
    }

    fn provision_object<'a>(
        &'a self,
        spec: &'a ivory_sdk::manifest::ObjectSpec,
    ) -> BoxFuture<'a, Result<ivory_sdk::context::ProvisionedObject, SinkError>> {
        Box::pin(async move {
            let (now, lease_until) = self.fence_times();
            let fence = self.run_id.as_deref().map(|run_id| Fence {
                run_id,
                lease_until,
            });
            self.store
                .provision_connector_object(&self.installation, spec, fence.as_ref(), now)
                .await
                .map_err(|e| SinkError::new(super::connector_objects::refusal_text(&e)))
        })
    }

    fn begin_full_pass<'a>(&'a self, kind: &'a str) -> BoxFuture<'a, Result<String, SinkError>> {
        Box::pin(async move {
            let (now, lease_until) = self.fence_times();
            let fence = self.run_id.as_deref().map(|run_id| Fence {
                run_id,
                lease_until,
            });
            self.store
                .begin_full_pass(&self.tenant, &self.installation, kind, fence.as_ref(), now)
                .await
                .map_err(|e| SinkError::new(e.to_string()))
        })
    }

    fn full_pass_seen<'a>(
        &'a self,
        pass: &'a str,
        ids: &'a [String],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.store
                .full_pass_seen(&self.installation, pass, ids)
                .await
                .map_err(|e| SinkError::new(e.to_string()))
        })
    }

    fn end_full_pass<'a>(
        &'a self,
        pass: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<u64, SinkError>> {
        Box::pin(async move {
            let (now, lease_until) = self.fence_times();
            let fence = self.run_id.as_deref().map(|run_id| Fence {
                run_id,
                lease_until,
            });
            self.store
                .end_full_pass(
                    &self.tenant,
                    &self.installation,
                    pass,
                    kind,
                    fence.as_ref(),
                    now,
                )
                .await
                .map_err(|e| SinkError::new(e.to_string()))
        })
    }
}

/// Connector-provisioned objects and full passes (`store/connector_objects.rs`,
/// `store/full_pass.rs`) share the commit's fencing.
impl InstallationSink {
    /// Now, and the lease expiry a write made now renews the run's lease to.
    fn fence_times(&self) -> (Timestamp, Timestamp) {
        let now = self.clock.now();
        let lease = jiff::SignedDuration::try_from(self.lease).unwrap_or(jiff::SignedDuration::MAX);
        (now, now.checked_add(lease).unwrap_or(Timestamp::MAX))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn json_text_is_serde_json_text() {
        let values = [
            json!(null),
            json!({}),
            json!([]),
            json!(""),
            json!({"a": 1, "b": [true, false, null, -3, 1.5, 1e300, 0.1, u64::MAX, i64::MIN]}),
            json!({"q": "say \"hi\"", "bs": "a\\b", "nl": "a\nb", "c": "\u{1}\u{1f}\u{7f}", "u": "é 😀 /"}),
            json!({"nested": {"deep": [{"x": "y"}, [], {}], "key \"quoted\"": "v"}}),
        ];
        let mut hint = 0;
        for value in values {
            let ours = super::json_text(&value, &mut hint).unwrap_or_default();
            assert_eq!(
                ours,
                serde_json::to_string(&value).unwrap_or_default(),
                "{value}"
            );
        }
    }
}
