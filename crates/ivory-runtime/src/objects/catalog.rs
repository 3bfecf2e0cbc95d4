//! A tenant's compiled object definitions and workflows, cached in memory under the tenant's
//! catalog stamp.
//!
//! Every provisioning change writes a fresh random stamp for the tenant
//! (`object_catalog_stamps`) in the same transaction as the definitions. Loading a catalog
//! reads that one row: no row means the tenant has nothing to compute or watch (the common
//! case for plain synced kinds, answered without compiling or caching anything); a stamp
//! already in the process-wide cache reuses the compiled catalog; any other stamp compiles the
//! definitions once. Stamps are random, so one cache serves every store a process opens, and
//! a change made by another process is seen by the next write.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use ivory_sdk::manifest::{ObjectSpec, WorkflowSpec};
use jiff::Timestamp;
use sqlx::{AnyConnection, Row};

use super::definition::CompiledObject;
use super::error::ObjectError;
use crate::store::{Store, StoreError, query_error};
use crate::workflows::model::{CompiledTrigger, CompiledWorkflow};

/// Compiled catalogs by stamp. Bounded: cleared when it grows past [`CACHE_LIMIT`] entries
/// (stale stamps are never looked up again, so clearing only costs recompilation).
static CACHE: LazyLock<Mutex<HashMap<String, Arc<ObjectCatalog>>>> =
    LazyLock::new(Default::default);
const CACHE_LIMIT: usize = 4096;

/// A tenant's object definitions (formulas compiled) and enabled workflows, as of one
/// provisioning state. Obtained with [`Store::object_catalog`]; cheap to share (`Arc`).
#[derive(Debug)]
pub struct ObjectCatalog {
    tenant: String,
    objects: HashMap<String, CompiledObject>,
    workflows: Vec<CompiledWorkflow>,
    by_id: HashMap<String, usize>,
    conditions: HashMap<String, Vec<usize>>,
    webhooks: HashMap<(String, String), Vec<usize>>,
}

impl ObjectCatalog {
    pub(crate) fn new(
        tenant: &str,
        objects: HashMap<String, CompiledObject>,
        workflows: Vec<CompiledWorkflow>,
    ) -> ObjectCatalog {
        let mut by_id = HashMap::new();
        let mut conditions: HashMap<String, Vec<usize>> = HashMap::new();
        let mut webhooks: HashMap<(String, String), Vec<usize>> = HashMap::new();
        for (i, workflow) in workflows.iter().enumerate() {
            by_id.insert(workflow.id.clone(), i);
            match &workflow.trigger {
                CompiledTrigger::Condition { kind, .. } => {
                    conditions.entry(kind.clone()).or_default().push(i);
                }
                CompiledTrigger::Webhook { event_type, .. } => webhooks
                    .entry((workflow.installation_id.clone(), event_type.clone()))
                    .or_default()
                    .push(i),
            }
        }
        ObjectCatalog {
            tenant: tenant.to_owned(),
            objects,
            workflows,
            by_id,
            conditions,
            webhooks,
        }
    }

    /// Loads the tenant's catalog inside the caller's connection or transaction: one
    /// single-row read when the cached catalog is current or the tenant has none.
    pub(crate) async fn load(
        conn: &mut AnyConnection,
        tenant: &str,
    ) -> Result<Arc<ObjectCatalog>, StoreError> {
        let stamp: Option<String> =
            sqlx::query_scalar("SELECT stamp FROM object_catalog_stamps WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_optional(&mut *conn)
                .await
                .map_err(query_error("read object catalog stamp"))?;
        Self::load_stamped(conn, tenant, stamp).await
    }

    /// [`load`](Self::load) with the tenant's catalog stamp already read (by the caller, in the
    /// same transaction): the record commit reads it together with other probes in one query.
    pub(crate) async fn load_stamped(
        conn: &mut AnyConnection,
        tenant: &str,
        stamp: Option<String>,
    ) -> Result<Arc<ObjectCatalog>, StoreError> {
        let Some(stamp) = stamp else {
            return Ok(Arc::new(ObjectCatalog::new(
                tenant,
                HashMap::new(),
                Vec::new(),
            )));
        };
        let cached = CACHE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&stamp)
            .cloned();
        if let Some(catalog) = cached.filter(|c| c.tenant == tenant) {
            return Ok(catalog);
        }
        let catalog = Arc::new(Self::read(conn, tenant).await?);
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(stamp, Arc::clone(&catalog));
        Ok(catalog)
    }

    async fn read(conn: &mut AnyConnection, tenant: &str) -> Result<ObjectCatalog, StoreError> {
        let rows = sqlx::query("SELECT kind, spec FROM object_definitions WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await
            .map_err(query_error("read object definitions"))?;
        let mut objects = HashMap::with_capacity(rows.len());
        for row in rows {
            let read = |e: sqlx::Error| corrupt("object definition", e);
            let kind: String = row.try_get("kind").map_err(read)?;
            let spec: String = row.try_get("spec").map_err(read)?;
            let spec: ObjectSpec =
                serde_json::from_str(&spec).map_err(|e| corrupt("object definition", e))?;
            // A stored definition compiled when it was provisioned; if it no longer does, its
            // kind is treated as undefined rather than failing every write of the tenant.
            match CompiledObject::compile(&spec) {
                Ok(compiled) => {
                    objects.insert(kind, compiled);
                }
                Err(error) => {
                    tracing::error!(tenant, kind = %kind, %error, "Stored object definition no longer compiles; its formulas are not computed.");
                }
            }
        }
        let rows = sqlx::query(
            "SELECT id, installation_id, version, spec, locator FROM workflows \
             WHERE tenant_id = $1 AND enabled = 1 ORDER BY id",
        )
        .bind(tenant)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error("read workflows"))?;
        let mut workflows = Vec::with_capacity(rows.len());
        for row in rows {
            let read = |e: sqlx::Error| corrupt("workflow", e);
            let spec: String = row.try_get("spec").map_err(read)?;
            let spec: WorkflowSpec =
                serde_json::from_str(&spec).map_err(|e| corrupt("workflow", e))?;
            let id: String = row.try_get("id").map_err(read)?;
            // A workflow can watch or write a kind another installation owns; if that kind was
            // changed (a breaking change) so that the workflow no longer compiles, the workflow
            // is skipped (until its connector re-provisions) rather than failing every write.
            match CompiledWorkflow::compile(
                id.clone(),
                row.try_get("installation_id").map_err(read)?,
                row.try_get("version").map_err(read)?,
                spec,
                row.try_get("locator").map_err(read)?,
                &|kind| objects.get(kind),
            ) {
                Ok(workflow) => workflows.push(workflow),
                Err(error) => {
                    tracing::error!(tenant, workflow = %id, %error, "Stored workflow no longer compiles against the current definitions; it is skipped.");
                }
            }
        }
        Ok(ObjectCatalog::new(tenant, objects, workflows))
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The definition of `kind`, if one was provisioned.
    pub fn definition(&self, kind: &str) -> Option<&ObjectSpec> {
        self.objects.get(kind).map(CompiledObject::spec)
    }

    /// Whether `kind` has formula fields (writes of it must go through [`apply`](Self::apply)).
    pub fn computes(&self, kind: &str) -> bool {
        self.objects
            .get(kind)
            .is_some_and(CompiledObject::has_formulas)
    }

    /// Whether record-condition workflows watch `kind` (its writes must be reported so their
    /// conditions are evaluated).
    pub fn watches(&self, kind: &str) -> bool {
        self.conditions.contains_key(kind)
    }

    /// Computes every formula field of a `kind` record into `data`, with `now` as the clock of
    /// `TODAY()`/`NOW()`. Whatever `data` held for a formula field (an upstream value) is
    /// overwritten. A kind without formula fields returns at once, untouched.
    ///
    /// # Errors
    ///
    /// [`ObjectError::NotAnObject`] when the kind has formula fields and `data` is not a JSON
    /// object.
    pub fn apply(
        &self,
        kind: &str,
        data: &mut serde_json::Value,
        now: Timestamp,
    ) -> Result<(), ObjectError> {
        let Some(object) = self.objects.get(kind).filter(|o| o.has_formulas()) else {
            return Ok(());
        };
        let map = data
            .as_object_mut()
            .ok_or_else(|| ObjectError::NotAnObject {
                kind: kind.to_owned(),
            })?;
        object.compute(map, now);
        Ok(())
    }

    /// [`apply`](Self::apply) on a copy: `Some(data with formulas computed)` for a kind with
    /// formula fields, `None` (no copy made) for any other kind.
    ///
    /// # Errors
    ///
    /// As [`apply`](Self::apply).
    pub fn computed(
        &self,
        kind: &str,
        data: &serde_json::Value,
        now: Timestamp,
    ) -> Result<Option<serde_json::Value>, ObjectError> {
        if !self.computes(kind) {
            return Ok(None);
        }
        let mut data = data.clone();
        self.apply(kind, &mut data, now)?;
        Ok(Some(data))
    }

    /// Reports a synced write of a `kind` record (its data as stored, formulas computed) inside
    /// the writing transaction: evaluates the record-condition workflows watching `kind` and,
    /// for each condition that went from false to true, records a pending run in the same
    /// transaction. Returns the new runs' ids; execute them after the commit with
    /// [`Store::run_pending_workflows`]. Does nothing for a kind nobody watches.
    pub(crate) async fn record_written(
        &self,
        tx: &mut crate::objects::edit::Tx,
        kind: &str,
        external_id: &str,
        data: &serde_json::Value,
        now: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        if !self.watches(kind) {
            return Ok(Vec::new());
        }
        crate::workflows::trigger::evaluate_conditions(tx, self, kind, external_id, data, 0, now)
            .await
    }

    pub(crate) fn object(&self, kind: &str) -> Option<&CompiledObject> {
        self.objects.get(kind)
    }

    pub(crate) fn workflow(&self, id: &str) -> Option<&CompiledWorkflow> {
        self.by_id.get(id).map(|i| &self.workflows[*i])
    }

    pub(crate) fn condition_workflows(
        &self,
        kind: &str,
    ) -> impl Iterator<Item = &CompiledWorkflow> {
        self.conditions
            .get(kind)
            .into_iter()
            .flatten()
            .map(|i| &self.workflows[*i])
    }

    pub(crate) fn webhook_workflows(
        &self,
        installation: &str,
        event_type: &str,
    ) -> impl Iterator<Item = &CompiledWorkflow> {
        self.webhooks
            .get(&(installation.to_owned(), event_type.to_owned()))
            .into_iter()
            .flatten()
            .map(|i| &self.workflows[*i])
    }
}

fn corrupt(what: &'static str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        message: error.to_string(),
    }
}

impl Store {
    /// The tenant's compiled object definitions and workflows (see [`ObjectCatalog`]).
    pub async fn object_catalog(&self, tenant: &str) -> Result<Arc<ObjectCatalog>, StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(query_error("acquire connection"))?;
        ObjectCatalog::load(&mut conn, tenant).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use crate::objects::ChangePolicy;
    use crate::store::{Actor, Store};
    use crate::workflows::WorkflowRunStatus;

    /// The hook `Store::commit` runs for synced writes: formulas computed, conditions
    /// evaluated inside the writing transaction, runs executed after the commit; a second
    /// write while the condition holds fires nothing.
    #[tokio::test]
    async fn synced_writes_compute_formulas_and_record_condition_runs_in_their_transaction() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path().join("ivory.db").to_str().expect("path"))
            .await
            .expect("store");
        let now: jiff::Timestamp = "2026-02-01T00:00:00Z".parse().expect("time");
        let manifest: ivory_sdk::manifest::Manifest = serde_json::from_value(json!({
            "id": "crm", "name": "CRM", "version": "1.0.0", "publisher": "Ivorycom",
            "description": "Deals.",
            "connection": {"type": "none", "sync": {"cursor": "none", "direction": "inbound",
                "conflictPolicy": "source_wins", "rateLimitPerMinute": 60}},
            "objects": [{"kind": "deal", "fields": [
                {"name": "amount", "type": "number"},
                {"name": "big", "type": "formula", "formula": "{amount} >= 1000"}
            ]}],
            "workflows": [{"name": "big-deal",
                "trigger": {"recordCondition": {"kind": "deal", "condition": "{big}"}},
                "actions": [{"log": {"message": "{{record.amount}}"}}]}]
        }))
        .expect("manifest");
        let installation = store
            .ensure_installation("acme", &manifest, &BTreeMap::new(), now)
            .await
            .expect("installation");
        store
            .provision(
                &installation.id,
                &manifest,
                ChangePolicy::AdditiveOnly,
                &Actor::User("admin".into()),
                now,
            )
            .await
            .expect("provision");

        for amount in [5000, 6000] {
            let mut tx = store.begin_write().await.expect("begin");
            let catalog = super::ObjectCatalog::load(&mut tx, "acme")
                .await
                .expect("catalog");
            let upstream = json!({"amount": amount, "big": "upstream says no"});
            let data = catalog
                .computed("deal", &upstream, now)
                .expect("computed")
                .expect("deal has formulas");
            assert_eq!(data["big"], json!(true));
            sqlx::query(
                "INSERT INTO records (tenant_id, kind, external_id, installation_id, data, synced_at, version) \
                 VALUES ('acme', 'deal', 'd1', $1, $2, 0, 1) ON CONFLICT (tenant_id, kind, external_id) \
                 DO UPDATE SET data = excluded.data",
            )
            .bind(&installation.id)
            .bind(data.to_string())
            .execute(&mut *tx)
            .await
            .expect("upsert");
            assert!(catalog.watches("deal"));
            let fired = catalog
                .record_written(&mut tx, "deal", "d1", &data, now)
                .await
                .expect("hook");
            assert_eq!(fired.len(), usize::from(amount == 5000), "transition only");
            tx.commit().await.expect("commit");
            store.run_pending_workflows("acme", now).await.expect("run");
        }
        let runs = store.workflow_runs("acme").await.expect("runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, WorkflowRunStatus::Succeeded);
        assert_eq!(runs[0].log, ["5000"]);
        assert_eq!(runs[0].delivery_id, "record:d1:1");
    }
}
