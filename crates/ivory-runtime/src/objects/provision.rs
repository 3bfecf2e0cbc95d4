//! Provisioning a manifest's `objects` and `workflows` blocks for an installation: compile,
//! diff against the stored versions, refuse breaking changes unless allowed, write, recompute.

use std::collections::{HashMap, HashSet};

use ivory_sdk::manifest::{Manifest, ObjectSpec, PLATFORM_KINDS, Trigger, WorkflowSpec};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;
use sqlx::Row;

use super::catalog::ObjectCatalog;
use super::definition::CompiledObject;
use super::edit::Tx;
use super::error::{BreakingChange, ObjectError};
use crate::store::audit::{Actor, AuditAction, AuditEvent, emit};
use crate::store::{Store, StoreError, from_ms, query_error, to_ms};
use crate::workflows::model::{CompiledWorkflow, record_locator};

/// Records recomputed per transaction when formulas change.
const RECOMPUTE_BATCH: i64 = 200;

/// Whether provisioning may remove or retype fields and objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChangePolicy {
    /// Only additive changes (new objects, new fields, changed formulas with the same result
    /// type, labels, workflows); anything breaking is refused and nothing is written.
    #[default]
    AdditiveOnly,
    /// Breaking changes too: the author marked the release as breaking. Values existing
    /// records hold for a removed or retyped field are left in their data, unvalidated.
    AllowBreaking,
}

/// What provisioning did to one object kind or workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// New.
    Created,
    /// Changed: a new version.
    Updated,
    /// Identical to the stored version: nothing written.
    Unchanged,
    /// No longer in the manifest: an object definition is deleted (its records stay), a
    /// workflow disabled (its runs stay).
    Removed,
}

/// One object kind's provisioning outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectChange {
    /// The kind.
    pub kind: String,
    /// What happened.
    pub outcome: ChangeOutcome,
    /// The definition's version now (the last version for a removed kind).
    pub version: i64,
    /// Fields added by this version.
    pub added_fields: Vec<String>,
    /// Breaking changes applied (only with [`ChangePolicy::AllowBreaking`]).
    pub breaking: Vec<BreakingChange>,
}

/// One workflow's provisioning outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowChange {
    /// The workflow's name.
    pub name: String,
    /// Its id (`wf_…`), stable across versions.
    pub id: String,
    /// What happened.
    pub outcome: ChangeOutcome,
    /// Its version now.
    pub version: i64,
}

/// What [`Store::provision`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvisionReport {
    /// The installation's tenant.
    pub tenant: String,
    /// The installation.
    pub installation: String,
    /// Per object kind of the manifest, then kinds removed.
    pub objects: Vec<ObjectChange>,
    /// Per workflow of the manifest, then workflows removed.
    pub workflows: Vec<WorkflowChange>,
    /// Existing records whose formula fields were recomputed (and changed).
    pub recomputed: u64,
}

impl ProvisionReport {
    /// Whether anything was written.
    pub fn changed(&self) -> bool {
        self.objects
            .iter()
            .map(|o| o.outcome)
            .chain(self.workflows.iter().map(|w| w.outcome))
            .any(|o| o != ChangeOutcome::Unchanged)
    }
}

/// A stored object definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectDefinition {
    /// The kind.
    pub kind: String,
    /// The installation that provisioned it.
    pub installation_id: String,
    /// Bumped on every change.
    pub version: i64,
    /// The definition.
    pub spec: ObjectSpec,
    /// When version 1 was provisioned.
    pub created_at: Timestamp,
    /// When the current version was provisioned.
    pub updated_at: Timestamp,
}

struct Stored {
    owner: String,
    version: i64,
    spec: ObjectSpec,
    compiled: Option<CompiledObject>,
}

struct StoredWorkflow {
    id: String,
    version: i64,
    spec: WorkflowSpec,
    locator: Option<String>,
    enabled: bool,
}

fn to_json_text(what: &'static str, value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid {
        what,
        message: e.to_string(),
    })
}

impl Store {
    /// Provisions `manifest`'s `objects` and `workflows` for an installation (at install and
    /// on every upgrade), idempotently: an identical manifest writes nothing.
    ///
    /// - **Objects** belong to the installation's tenant (one definition per kind and tenant;
    ///   a kind another installation provisioned is refused). Every formula is compiled against
    ///   the object's fields (formula fields referencing formula fields are compiled in
    ///   dependency order; a cycle is refused with its path); a formula that does not parse or
    ///   type-check is refused naming the object, the field and the line/column.
    /// - **Versions**: a changed definition gets `version + 1` (history in
    ///   `object_definition_versions`). Additive changes apply; a removed or retyped field, or
    ///   a removed object, is refused ([`ObjectError::Breaking`], listing every one) unless
    ///   `policy` is [`ChangePolicy::AllowBreaking`].
    /// - **Migration** is eager: after the definitions commit, records of every kind whose
    ///   formulas changed (or that are new with formulas) are recomputed in batches of 200
    ///   per transaction (see [`Store::recompute_formulas`]).
    /// - **Workflows** are compiled against the resulting definitions (conditions typed against
    ///   the watched kind; actions may not write formula or undeclared fields) and upserted by
    ///   name (the id stays, the version is bumped); a changed trigger forgets the condition's
    ///   last values; workflows missing from the manifest are disabled.
    ///
    /// Everything but the recomputation is one transaction, with an audit event per changed
    /// definition and workflow.
    pub async fn provision(
        &self,
        installation: &str,
        manifest: &Manifest,
        policy: ChangePolicy,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<ProvisionReport, ObjectError> {
        let mut compiled = Vec::with_capacity(manifest.objects.len());
        let mut kinds = HashSet::new();
        for spec in &manifest.objects {
            let invalid = |message: &str| ObjectError::InvalidObject {
                kind: spec.kind.clone(),
                message: message.to_owned(),
            };
            if !ivory_sdk::record::is_kind_slug(&spec.kind) {
                return Err(invalid(
                    "the kind must be a slug of a-z, 0-9 and _ starting with a letter (1–64 characters)",
                ));
            }
            if PLATFORM_KINDS.contains(&spec.kind.as_str()) {
                return Err(invalid("is a platform kind and cannot be redefined"));
            }
            if !kinds.insert(spec.kind.as_str()) {
                return Err(invalid("is declared twice in the manifest"));
            }
            compiled.push(CompiledObject::compile(spec)?);
        }
        let mut names = HashSet::new();
        for workflow in &manifest.workflows {
            if !names.insert(workflow.name.as_str()) {
                return Err(ObjectError::InvalidWorkflow {
                    workflow: workflow.name.clone(),
                    message: "is declared twice in the manifest".into(),
                });
            }
        }
        let locator = manifest
            .webhooks
            .as_ref()
            .map(|w| record_locator(w.scheme).to_owned());

        let mut tx = self.begin_write().await?;
        let tenant = installation_tenant(&mut tx, installation).await?;
        let mut stored = stored_objects(&mut tx, &tenant).await?;
        let history = history_versions(&mut tx, &tenant).await?;

        // Objects: diff against the stored versions.
        let mut objects = Vec::new();
        let mut breaking = Vec::new();
        let mut recompute = Vec::new();
        for object in &compiled {
            let kind = &object.spec().kind;
            let change = match stored.get(kind) {
                Some(old) if old.owner != installation => {
                    return Err(ObjectError::KindOwned {
                        kind: kind.clone(),
                        owner: old.owner.clone(),
                    });
                }
                None => {
                    if object.has_formulas() {
                        recompute.push(kind.clone());
                    }
                    ObjectChange {
                        kind: kind.clone(),
                        outcome: ChangeOutcome::Created,
                        // A kind removed earlier continues its history.
                        version: history.get(kind).map_or(1, |v| v + 1),
                        added_fields: object
                            .spec()
                            .fields
                            .iter()
                            .map(|f| f.name.clone())
                            .collect(),
                        breaking: Vec::new(),
                    }
                }
                Some(old) if old.spec == *object.spec() => ObjectChange {
                    kind: kind.clone(),
                    outcome: ChangeOutcome::Unchanged,
                    version: old.version,
                    added_fields: Vec::new(),
                    breaking: Vec::new(),
                },
                Some(old) => {
                    let (changes, added, formulas_changed) = match &old.compiled {
                        Some(previous) => (
                            previous.breaking_changes(object),
                            previous.added_fields(object),
                            previous.formula_sources() != object.formula_sources(),
                        ),
                        // The stored version no longer compiles: compare by spec only.
                        None => (Vec::new(), Vec::new(), true),
                    };
                    if formulas_changed && object.has_formulas() {
                        recompute.push(kind.clone());
                    }
                    breaking.extend(changes.iter().cloned());
                    ObjectChange {
                        kind: kind.clone(),
                        outcome: ChangeOutcome::Updated,
                        version: old.version + 1,
                        added_fields: added,
                        breaking: changes,
                    }
                }
            };
            objects.push(change);
        }
        let mut removed_kinds: Vec<&String> = stored
            .iter()
            .filter(|(kind, old)| old.owner == installation && !kinds.contains(kind.as_str()))
            .map(|(kind, _)| kind)
            .collect();
        removed_kinds.sort();
        for kind in removed_kinds {
            let change = BreakingChange::ObjectRemoved { kind: kind.clone() };
            breaking.push(change.clone());
            objects.push(ObjectChange {
                kind: kind.clone(),
                outcome: ChangeOutcome::Removed,
                version: stored.get(kind).map_or(0, |old| old.version),
                added_fields: Vec::new(),
                breaking: vec![change],
            });
        }
        if policy == ChangePolicy::AdditiveOnly && !breaking.is_empty() {
            return Err(ObjectError::Breaking { changes: breaking });
        }

        // Workflows, compiled against the definitions as they will be.
        let mut view: HashMap<&str, &CompiledObject> = HashMap::new();
        for (kind, old) in &stored {
            if old.owner != installation
                && let Some(object) = &old.compiled
            {
                view.insert(kind, object);
            }
        }
        for object in &compiled {
            view.insert(&object.spec().kind, object);
        }
        let stored_workflows = stored_workflows(&mut tx, installation).await?;
        let mut workflows = Vec::new();
        let mut workflow_writes = Vec::new();
        let mut reset_conditions = Vec::new();
        for spec in &manifest.workflows {
            let previous = stored_workflows.get(&spec.name);
            let id = previous.map_or_else(
                || format!("wf_{}", uuid::Uuid::now_v7().simple()),
                |p| p.id.clone(),
            );
            let wf_locator = match spec.trigger {
                Trigger::WebhookEvent(_) => locator.clone(),
                Trigger::RecordCondition(_) => None,
            };
            let unchanged =
                previous.is_some_and(|p| p.enabled && p.spec == *spec && p.locator == wf_locator);
            let version = match previous {
                None => 1,
                Some(p) if unchanged => p.version,
                Some(p) => p.version + 1,
            };
            let workflow = CompiledWorkflow::compile(
                id.clone(),
                installation.to_owned(),
                version,
                spec.clone(),
                wf_locator,
                &|kind| view.get(kind).copied(),
            )?;
            let outcome = match previous {
                None => ChangeOutcome::Created,
                Some(_) if unchanged => ChangeOutcome::Unchanged,
                Some(_) => ChangeOutcome::Updated,
            };
            if outcome != ChangeOutcome::Unchanged {
                // A changed condition starts from "never evaluated" on every record.
                if previous.is_some_and(|p| p.spec.trigger != spec.trigger) {
                    reset_conditions.push(workflow.id.clone());
                }
                workflow_writes.push(workflow);
            }
            workflows.push(WorkflowChange {
                name: spec.name.clone(),
                id,
                outcome,
                version,
            });
        }
        let mut disabled: Vec<&StoredWorkflow> = stored_workflows
            .values()
            .filter(|p| p.enabled && !names.contains(p.spec.name.as_str()))
            .collect();
        disabled.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        for previous in &disabled {
            workflows.push(WorkflowChange {
                name: previous.spec.name.clone(),
                id: previous.id.clone(),
                outcome: ChangeOutcome::Removed,
                version: previous.version,
            });
        }

        let mut report = ProvisionReport {
            tenant: tenant.clone(),
            installation: installation.to_owned(),
            objects,
            workflows,
            recomputed: 0,
        };
        if !report.changed() {
            tx.rollback()
                .await
                .map_err(query_error("release write transaction"))?;
            return Ok(report);
        }

        // Writes.
        let at = to_ms(now);
        for (change, object) in report
            .objects
            .iter()
            .zip(compiled.iter().map(Some).chain(std::iter::repeat(None)))
        {
            match (change.outcome, object) {
                (ChangeOutcome::Created | ChangeOutcome::Updated, Some(object)) => {
                    let spec = to_json_text("object definition", object.spec())?;
                    sqlx::query(
                        "INSERT INTO object_definitions (tenant_id, kind, installation_id, version, spec, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (tenant_id, kind) DO UPDATE SET \
                         installation_id = excluded.installation_id, version = excluded.version, \
                         spec = excluded.spec, updated_at = excluded.updated_at",
                    )
                    .bind(&tenant)
                    .bind(&change.kind)
                    .bind(installation)
                    .bind(change.version)
                    .bind(&spec)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error("write object definition"))?;
                    write_version(&mut tx, &tenant, change, installation, Some(&spec), at).await?;
                }
                (ChangeOutcome::Removed, _) => {
                    sqlx::query(
                        "DELETE FROM object_definitions WHERE tenant_id = $1 AND kind = $2",
                    )
                    .bind(&tenant)
                    .bind(&change.kind)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error("remove object definition"))?;
                    // The removal is the next version in the history.
                    let removal = ObjectChange {
                        version: change.version + 1,
                        ..change.clone()
                    };
                    write_version(&mut tx, &tenant, &removal, installation, None, at).await?;
                    stored.remove(&change.kind);
                }
                _ => continue,
            }
            let action = match change.outcome {
                ChangeOutcome::Created => AuditAction::Create,
                ChangeOutcome::Removed => AuditAction::Delete,
                _ => AuditAction::Update,
            };
            let diff = json!({
                "installation": installation,
                "version": change.version,
                "added_fields": change.added_fields,
                "breaking": change.breaking,
            });
            emit(
                &mut tx,
                &AuditEvent::new(
                    &tenant,
                    actor,
                    action,
                    "object_definition",
                    Some(&change.kind),
                    now,
                )
                .with_diff(diff),
            )
            .await?;
        }
        for workflow in &workflow_writes {
            let (trigger_type, trigger_key, locator) = match &workflow.trigger {
                crate::workflows::model::CompiledTrigger::Webhook {
                    event_type,
                    locator,
                } => ("webhook_event", event_type.as_str(), Some(locator.as_str())),
                crate::workflows::model::CompiledTrigger::Condition { kind, .. } => {
                    ("record_condition", kind.as_str(), None)
                }
            };
            let spec = to_json_text("workflow", &workflow.spec)?;
            sqlx::query(
                "INSERT INTO workflows (id, tenant_id, installation_id, name, version, spec, trigger_type, \
                 trigger_key, locator, enabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10) \
                 ON CONFLICT (installation_id, name) DO UPDATE SET version = excluded.version, \
                 spec = excluded.spec, trigger_type = excluded.trigger_type, \
                 trigger_key = excluded.trigger_key, locator = excluded.locator, enabled = 1, \
                 updated_at = excluded.updated_at",
            )
            .bind(&workflow.id)
            .bind(&tenant)
            .bind(installation)
            .bind(&workflow.spec.name)
            .bind(workflow.version)
            .bind(spec)
            .bind(trigger_type)
            .bind(trigger_key)
            .bind(locator)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(query_error("write workflow"))?;
            let action = if workflow.version == 1 {
                AuditAction::Create
            } else {
                AuditAction::Update
            };
            emit(
                &mut tx,
                &AuditEvent::new(&tenant, actor, action, "workflow", Some(&workflow.id), now)
                    .with_diff(json!({"name": workflow.spec.name, "version": workflow.version})),
            )
            .await?;
        }
        for id in &reset_conditions {
            sqlx::query("DELETE FROM workflow_condition_states WHERE workflow_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(query_error("reset condition states"))?;
        }
        for previous in disabled {
            sqlx::query("UPDATE workflows SET enabled = 0, updated_at = $1 WHERE id = $2")
                .bind(at)
                .bind(&previous.id)
                .execute(&mut *tx)
                .await
                .map_err(query_error("disable workflow"))?;
            emit(
                &mut tx,
                &AuditEvent::new(
                    &tenant,
                    actor,
                    AuditAction::Delete,
                    "workflow",
                    Some(&previous.id),
                    now,
                )
                .with_diff(json!({"name": previous.spec.name, "version": previous.version})),
            )
            .await?;
        }
        bump_stamp(&mut tx, &tenant, now).await?;
        tx.commit()
            .await
            .map_err(query_error("commit provisioning"))?;

        for kind in recompute {
            report.recomputed += self.recompute_formulas(&tenant, &kind, now).await?;
        }
        Ok(report)
    }

    /// Recomputes the formula fields of the tenant's live `kind` records, in batches of 200
    /// records per transaction (ordered by id). A record whose data changes is written with
    /// `version + 1` (its `synced_at` and `platform_updated_at` are left alone, and no audit
    /// event or record condition is triggered: this is a migration, not an edit). A record
    /// written concurrently is skipped (its writer computed its formulas). Returns how many
    /// records changed.
    pub async fn recompute_formulas(
        &self,
        tenant: &str,
        kind: &str,
        now: Timestamp,
    ) -> Result<u64, ObjectError> {
        let mut changed = 0;
        let mut after = String::new();
        loop {
            let mut tx = self.begin_write().await?;
            let catalog = ObjectCatalog::load(&mut tx, tenant).await?;
            if !catalog.computes(kind) {
                tx.rollback()
                    .await
                    .map_err(query_error("release write transaction"))?;
                return Ok(changed);
            }
            let rows = sqlx::query(
                "SELECT external_id, data, version FROM records WHERE tenant_id = $1 AND kind = $2 \
                 AND deleted_at IS NULL AND external_id > $3 ORDER BY external_id LIMIT 200",
            )
            .bind(tenant)
            .bind(kind)
            .bind(&after)
            .fetch_all(&mut *tx)
            .await
            .map_err(query_error("read records to recompute"))?;
            let count = rows.len();
            for row in rows {
                let read = |e: sqlx::Error| StoreError::Corrupt {
                    what: "record",
                    message: e.to_string(),
                };
                let id: String = row.try_get("external_id").map_err(read)?;
                let text: String = row.try_get("data").map_err(read)?;
                let version: i64 = row.try_get("version").map_err(read)?;
                after = id.clone();
                let Ok(data) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                let Ok(Some(computed)) = catalog.computed(kind, &data, now) else {
                    continue; // not an object: nothing to compute into
                };
                if computed == data {
                    continue;
                }
                let done = sqlx::query(
                    "UPDATE records SET data = $1, version = version + 1 WHERE tenant_id = $2 \
                     AND kind = $3 AND external_id = $4 AND version = $5",
                )
                .bind(to_json_text("record data", &computed)?)
                .bind(tenant)
                .bind(kind)
                .bind(&id)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(query_error("write recomputed record"))?;
                changed += done.rows_affected();
            }
            tx.commit()
                .await
                .map_err(query_error("commit recomputation"))?;
            if i64::try_from(count).unwrap_or(i64::MAX) < RECOMPUTE_BATCH {
                return Ok(changed);
            }
        }
    }

    /// The tenant's object definitions, by kind.
    pub async fn object_definitions(
        &self,
        tenant: &str,
    ) -> Result<Vec<ObjectDefinition>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, installation_id, version, spec, created_at, updated_at \
             FROM object_definitions WHERE tenant_id = $1 ORDER BY kind",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list object definitions"))?;
        rows.iter()
            .map(|row| {
                let read = |e: sqlx::Error| StoreError::Corrupt {
                    what: "object definition",
                    message: e.to_string(),
                };
                let spec: String = row.try_get("spec").map_err(read)?;
                Ok(ObjectDefinition {
                    kind: row.try_get("kind").map_err(read)?,
                    installation_id: row.try_get("installation_id").map_err(read)?,
                    version: row.try_get("version").map_err(read)?,
                    spec: serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
                        what: "object definition",
                        message: e.to_string(),
                    })?,
                    created_at: from_ms(row.try_get("created_at").map_err(read)?)?,
                    updated_at: from_ms(row.try_get("updated_at").map_err(read)?)?,
                })
            })
            .collect()
    }

    /// Disables every workflow of an installation (for uninstall): they stop triggering,
    /// their runs stay. Object definitions stay too (the records are the tenant's). Returns
    /// how many were disabled.
    pub async fn disable_workflows(
        &self,
        installation: &str,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let tenant: Option<String> =
            sqlx::query_scalar("SELECT tenant_id FROM installations WHERE id = $1")
                .bind(installation)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_error("read installation"))?;
        let Some(tenant) = tenant else {
            return Ok(0);
        };
        let done = sqlx::query(
            "UPDATE workflows SET enabled = 0, updated_at = $1 WHERE installation_id = $2 AND enabled = 1",
        )
        .bind(to_ms(now))
        .bind(installation)
        .execute(&mut *tx)
        .await
        .map_err(query_error("disable workflows"))?;
        if done.rows_affected() > 0 {
            bump_stamp(&mut tx, &tenant, now).await?;
        }
        tx.commit()
            .await
            .map_err(query_error("commit disable workflows"))?;
        Ok(done.rows_affected())
    }
}

/// The tenant of an installation that can be provisioned.
async fn installation_tenant(tx: &mut Tx, installation: &str) -> Result<String, ObjectError> {
    let row = sqlx::query("SELECT tenant_id, status FROM installations WHERE id = $1")
        .bind(installation)
        .fetch_optional(&mut **tx)
        .await
        .map_err(query_error("read installation"))?;
    let Some(row) = row else {
        return Err(ObjectError::UnknownInstallation {
            installation: installation.to_owned(),
        });
    };
    let read = |e: sqlx::Error| StoreError::Corrupt {
        what: "installation",
        message: e.to_string(),
    };
    let status: String = row.try_get("status").map_err(read)?;
    if status == "uninstalled" {
        return Err(ObjectError::Uninstalled {
            installation: installation.to_owned(),
        });
    }
    Ok(row.try_get("tenant_id").map_err(read)?)
}

async fn stored_objects(tx: &mut Tx, tenant: &str) -> Result<HashMap<String, Stored>, StoreError> {
    let rows = sqlx::query(
        "SELECT kind, installation_id, version, spec FROM object_definitions WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(&mut **tx)
    .await
    .map_err(query_error("read object definitions"))?;
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        let read = |e: sqlx::Error| StoreError::Corrupt {
            what: "object definition",
            message: e.to_string(),
        };
        let spec: String = row.try_get("spec").map_err(read)?;
        let spec: ObjectSpec = serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
            what: "object definition",
            message: e.to_string(),
        })?;
        stored.insert(
            row.try_get("kind").map_err(read)?,
            Stored {
                owner: row.try_get("installation_id").map_err(read)?,
                version: row.try_get("version").map_err(read)?,
                compiled: CompiledObject::compile(&spec).ok(),
                spec,
            },
        );
    }
    Ok(stored)
}

/// The last version in the history of each kind of the tenant (removed kinds included).
async fn history_versions(tx: &mut Tx, tenant: &str) -> Result<HashMap<String, i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT kind, MAX(version) AS version FROM object_definition_versions \
         WHERE tenant_id = $1 GROUP BY kind",
    )
    .bind(tenant)
    .fetch_all(&mut **tx)
    .await
    .map_err(query_error("read object definition history"))?;
    rows.iter()
        .map(|row| {
            let read = |e: sqlx::Error| StoreError::Corrupt {
                what: "object definition history",
                message: e.to_string(),
            };
            Ok((
                row.try_get("kind").map_err(read)?,
                row.try_get("version").map_err(read)?,
            ))
        })
        .collect()
}

async fn stored_workflows(
    tx: &mut Tx,
    installation: &str,
) -> Result<HashMap<String, StoredWorkflow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, name, version, spec, locator, enabled FROM workflows WHERE installation_id = $1",
    )
    .bind(installation)
    .fetch_all(&mut **tx)
    .await
    .map_err(query_error("read workflows"))?;
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        let read = |e: sqlx::Error| StoreError::Corrupt {
            what: "workflow",
            message: e.to_string(),
        };
        let spec: String = row.try_get("spec").map_err(read)?;
        let enabled: i64 = row.try_get("enabled").map_err(read)?;
        stored.insert(
            row.try_get("name").map_err(read)?,
            StoredWorkflow {
                id: row.try_get("id").map_err(read)?,
                version: row.try_get("version").map_err(read)?,
                spec: serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
                    what: "workflow",
                    message: e.to_string(),
                })?,
                locator: row.try_get("locator").map_err(read)?,
                enabled: enabled == 1,
            },
        );
    }
    Ok(stored)
}

async fn write_version(
    tx: &mut Tx,
    tenant: &str,
    change: &ObjectChange,
    installation: &str,
    spec: Option<&str>,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO object_definition_versions (tenant_id, kind, version, installation_id, spec, breaking, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tenant)
    .bind(&change.kind)
    .bind(change.version)
    .bind(installation)
    .bind(spec)
    .bind(i64::from(!change.breaking.is_empty()))
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(query_error("write object definition version"))?;
    Ok(())
}

/// A fresh catalog stamp for the tenant: every cached catalog of it is now stale.
pub(crate) async fn bump_stamp(
    tx: &mut Tx,
    tenant: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO object_catalog_stamps (tenant_id, stamp, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO UPDATE SET stamp = excluded.stamp, updated_at = excluded.updated_at",
    )
    .bind(tenant)
    .bind(uuid::Uuid::new_v4().simple().to_string())
    .bind(to_ms(now))
    .execute(&mut **tx)
    .await
    .map_err(query_error("bump object catalog stamp"))?;
    Ok(())
}
