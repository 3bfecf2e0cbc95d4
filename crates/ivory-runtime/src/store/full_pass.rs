//! Full passes: deletions for upstreams without a deletion feed.
//!
//! A connector that lists every record of a kind (Airtable: a table has no change feed without
//! webhooks) brackets the listing with [`Store::begin_full_pass`] and
//! [`Store::end_full_pass`] (through `Context::begin_full_pass` / `end_full_pass` in the SDK).
//! The ids the pass sees are written to the scratch table `full_pass_seen` by
//! [`Store::full_pass_seen`] right before the commit that stores those records, so memory stays
//! flat whatever the number of records: the connector and the runtime hold one page at a time.
//!
//! Ending the pass tombstones, in one transaction, the installation's live records of the kind
//! that the pass did not see **and** that no writer touched since the pass began (a webhook
//! that upserted a record mid-pass is newer information than the listing), then forgets the
//! pass. The rules that make it safe:
//!
//! - A pass that does not end (the sync failed, crashed, or its listing was cut short) deletes
//!   nothing. The next pass of the same installation and kind replaces it and starts afresh.
//! - Seen ids are written *before* the commit of their records, in their own transaction. An id
//!   remembered for a commit that then fails can only spare a record, never delete one; and a
//!   pass ends only after every commit of the pass succeeded (`Context::end_full_pass`
//!   flushes first), so at that point every remembered id is stored.
//! - Beginning and ending renew and check the run's lease like a commit does: a run whose
//!   lease was taken over cannot tombstone anything.

use jiff::Timestamp;
use sqlx::Row;

use super::Fence;
use super::{Store, StoreError, query_error, to_ms};
use crate::objects::edit::Tx;

/// Seen ids written per statement (one parameter each, plus the pass id).
const SEEN_CHUNK: usize = 200;

/// Renews the run's lease inside `tx` and fails with [`StoreError::LeaseLost`] when another run
/// holds it (the fencing check of `Store::commit`, for the writes outside a commit).
pub(crate) async fn renew_fence(
    tx: &mut Tx,
    installation: &str,
    fence: Option<&Fence<'_>>,
) -> Result<(), StoreError> {
    let Some(fence) = fence else {
        return Ok(());
    };
    let renewed = sqlx::query(
        "UPDATE sync_locks SET expires_at = $1 WHERE installation_id = $2 AND run_id = $3",
    )
    .bind(to_ms(fence.lease_until))
    .bind(installation)
    .bind(fence.run_id)
    .execute(&mut **tx)
    .await
    .map_err(query_error("renew sync lease"))?;
    if renewed.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::LeaseLost {
            installation: installation.to_owned(),
            run_id: fence.run_id.to_owned(),
        })
    }
}

fn unknown_pass(pass: &str) -> StoreError {
    StoreError::Invalid {
        what: "full pass",
        message: format!(
            "pass {pass} is not in progress (it ended, or a later pass of the same kind replaced it)"
        ),
    }
}

impl Store {
    /// Begins a full pass over `installation`'s records of `kind` and returns its id. An
    /// unfinished earlier pass of the same installation and kind is discarded (with the ids it
    /// saw). With `fence`, the run's lease is renewed and checked first.
    pub async fn begin_full_pass(
        &self,
        tenant: &str,
        installation: &str,
        kind: &str,
        fence: Option<&Fence<'_>>,
        now: Timestamp,
    ) -> Result<String, StoreError> {
        let pass = format!("pass_{}", uuid::Uuid::now_v7().simple());
        let mut tx = self.begin_write().await?;
        renew_fence(&mut tx, installation, fence).await?;
        sqlx::query(
            "DELETE FROM full_pass_seen WHERE pass_id IN \
             (SELECT pass_id FROM full_passes WHERE installation_id = $1 AND kind = $2)",
        )
        .bind(installation)
        .bind(kind)
        .execute(&mut *tx)
        .await
        .map_err(query_error("forget an earlier full pass"))?;
        sqlx::query("DELETE FROM full_passes WHERE installation_id = $1 AND kind = $2")
            .bind(installation)
            .bind(kind)
            .execute(&mut *tx)
            .await
            .map_err(query_error("forget an earlier full pass"))?;
        sqlx::query(
            "INSERT INTO full_passes (pass_id, tenant_id, installation_id, kind, run_id, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&pass)
        .bind(tenant)
        .bind(installation)
        .bind(kind)
        .bind(fence.map(|f| f.run_id))
        .bind(to_ms(now))
        .execute(&mut *tx)
        .await
        .map_err(query_error("begin full pass"))?;
        tx.commit()
            .await
            .map_err(query_error("commit full pass start"))?;
        Ok(pass)
    }

    /// Remembers that the pass `pass` of `installation` saw the records `ids` (idempotent).
    /// Refused when the pass is not in progress.
    pub async fn full_pass_seen(
        &self,
        installation: &str,
        pass: &str,
        ids: &[String],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        let found: Option<String> = sqlx::query_scalar(
            "SELECT kind FROM full_passes WHERE pass_id = $1 AND installation_id = $2",
        )
        .bind(pass)
        .bind(installation)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("read full pass"))?;
        if found.is_none() {
            return Err(unknown_pass(pass));
        }
        for chunk in ids.chunks(SEEN_CHUNK) {
            let mut sql = String::from("INSERT INTO full_pass_seen (pass_id, external_id) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, ${})", i + 2));
            }
            sql.push_str(" ON CONFLICT (pass_id, external_id) DO NOTHING");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(pass);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(query_error("remember ids seen by a full pass"))?;
        }
        tx.commit()
            .await
            .map_err(query_error("commit ids seen by a full pass"))?;
        Ok(())
    }

    /// Ends the pass `pass` of `kind`: tombstones `installation`'s live records of `kind` that
    /// the pass did not see and that were not written since it began, forgets the pass, and
    /// returns how many records were tombstoned. With `fence`, the run's lease is renewed and
    /// checked first. Refused when the pass is not in progress (nothing is deleted).
    pub async fn end_full_pass(
        &self,
        tenant: &str,
        installation: &str,
        pass: &str,
        kind: &str,
        fence: Option<&Fence<'_>>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        renew_fence(&mut tx, installation, fence).await?;
        let row = sqlx::query(
            "SELECT kind, started_at FROM full_passes WHERE pass_id = $1 AND installation_id = $2",
        )
        .bind(pass)
        .bind(installation)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("read full pass"))?;
        let Some(row) = row else {
            return Err(unknown_pass(pass));
        };
        let read = |e: sqlx::Error| StoreError::Corrupt {
            what: "full pass",
            message: e.to_string(),
        };
        let pass_kind: String = row.try_get("kind").map_err(read)?;
        let started_at: i64 = row.try_get("started_at").map_err(read)?;
        if pass_kind != kind {
            return Err(StoreError::Invalid {
                what: "full pass",
                message: format!("pass {pass} is a pass over {pass_kind:?}, not {kind:?}"),
            });
        }
        let done = sqlx::query(
            "UPDATE records SET deleted_at = $1, synced_at = $1, version = version + 1 \
             WHERE tenant_id = $2 AND kind = $3 AND installation_id = $4 AND deleted_at IS NULL \
             AND synced_at < $5 AND NOT EXISTS (SELECT 1 FROM full_pass_seen s \
             WHERE s.pass_id = $6 AND s.external_id = records.external_id)",
        )
        .bind(to_ms(now))
        .bind(tenant)
        .bind(kind)
        .bind(installation)
        .bind(started_at)
        .bind(pass)
        .execute(&mut *tx)
        .await
        .map_err(query_error("tombstone records a full pass did not see"))?;
        sqlx::query("DELETE FROM full_pass_seen WHERE pass_id = $1")
            .bind(pass)
            .execute(&mut *tx)
            .await
            .map_err(query_error("forget a full pass"))?;
        sqlx::query("DELETE FROM full_passes WHERE pass_id = $1")
            .bind(pass)
            .execute(&mut *tx)
            .await
            .map_err(query_error("forget a full pass"))?;
        tx.commit()
            .await
            .map_err(query_error("commit full pass end"))?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use futures::TryStreamExt;
    use ivory_sdk::{Record, RecordOp};
    use serde_json::json;

    use super::*;
    use crate::store::{CommitScope, Tombstones};

    pub(crate) async fn store_with_installation(
        dir: &tempfile::TempDir,
        connector: &str,
    ) -> (Store, String) {
        let store = Store::open(dir.path().join("ivory.db").to_str().expect("path"))
            .await
            .expect("store");
        let manifest: ivory_sdk::manifest::Manifest = serde_json::from_value(json!({
            "id": connector, "name": "Test", "version": "1.0.0", "publisher": "Ivorycom",
            "description": "Test.",
            "connection": {"type": "none", "sync": {"cursor": "none", "direction": "inbound",
                "conflictPolicy": "source_wins", "rateLimitPerMinute": 60}}
        }))
        .expect("manifest");
        let installation = store
            .ensure_installation("acme", &manifest, &BTreeMap::new(), at(0))
            .await
            .expect("installation");
        (store, installation.id)
    }

    pub(crate) fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_772_323_200 + second).expect("time")
    }

    async fn upsert(store: &Store, installation: &str, ids: &[&str], now: Timestamp) {
        let ops: Vec<RecordOp> = ids
            .iter()
            .map(|id| RecordOp::Upsert {
                kind: "row".into(),
                record: Record::new(*id, json!({"id": id})),
            })
            .collect();
        let scope = CommitScope {
            tenant: "acme",
            installation,
            now,
            fence: None,
        };
        store.commit(&scope, &ops, None).await.expect("commit");
    }

    async fn live(store: &Store) -> Vec<String> {
        store
            .export_records("acme", "row", Tombstones::Exclude)
            .map_ok(|r| r.id)
            .try_collect()
            .await
            .expect("export")
    }

    #[tokio::test]
    async fn a_completed_pass_tombstones_what_it_did_not_see_and_nothing_else() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, inst) = store_with_installation(&dir, "test").await;
        upsert(&store, &inst, &["a", "b", "c"], at(1)).await;

        // An unfinished pass deletes nothing; the next pass replaces it.
        let abandoned = store
            .begin_full_pass("acme", &inst, "row", None, at(2))
            .await
            .expect("begin");
        store
            .full_pass_seen(&inst, &abandoned, &["a".into()])
            .await
            .expect("seen");
        assert_eq!(live(&store).await, ["a", "b", "c"]);

        let pass = store
            .begin_full_pass("acme", &inst, "row", None, at(3))
            .await
            .expect("begin");
        let error = store
            .full_pass_seen(&inst, &abandoned, &["a".into()])
            .await
            .expect_err("replaced");
        assert!(error.to_string().contains("not in progress"), "{error}");
        store
            .full_pass_seen(&inst, &pass, &["a".into(), "c".into(), "c".into()])
            .await
            .expect("seen, idempotent");
        upsert(&store, &inst, &["a", "c"], at(4)).await;
        // Written by someone else while the pass ran: newer than the listing, kept.
        upsert(&store, &inst, &["d"], at(5)).await;
        let deleted = store
            .end_full_pass("acme", &inst, &pass, "row", None, at(6))
            .await
            .expect("end");
        assert_eq!(deleted, 1);
        assert_eq!(live(&store).await, ["a", "c", "d"]);
        let again = store
            .end_full_pass("acme", &inst, &pass, "row", None, at(7))
            .await
            .expect_err("a pass ends once");
        assert!(again.to_string().contains("not in progress"), "{again}");
    }

    #[tokio::test]
    async fn a_run_without_the_lease_cannot_begin_or_end_a_pass() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, inst) = store_with_installation(&dir, "test").await;
        let fence = Fence {
            run_id: "run_not_holding",
            lease_until: at(600),
        };
        let error = store
            .begin_full_pass("acme", &inst, "row", Some(&fence), at(1))
            .await
            .expect_err("fenced");
        assert!(matches!(error, StoreError::LeaseLost { .. }), "{error}");
        let pass = store
            .begin_full_pass("acme", &inst, "row", None, at(1))
            .await
            .expect("begin");
        let error = store
            .end_full_pass("acme", &inst, &pass, "row", Some(&fence), at(2))
            .await
            .expect_err("fenced");
        assert!(matches!(error, StoreError::LeaseLost { .. }), "{error}");
    }
}
