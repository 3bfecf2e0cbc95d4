//! Object kinds a connector provisions at run time (`Context::provision_object` in the SDK),
//! one kind at a time: the schema of an Airtable base is only known when the sync reads it.
//!
//! Built on the objects module ([`crate::objects`]): the same definitions table, version
//! history, compilation of formulas ([`CompiledObject`]), breaking-change diff, catalog stamp
//! and eager recomputation as manifest provisioning, with the rules a *discovered* schema
//! needs:
//!
//! - **One kind per call.** Other kinds of the installation are left alone (manifest
//!   provisioning treats the manifest as the whole list and removes what it lacks).
//! - **Fields are never removed.** A field of the stored definition that the new spec lacks is
//!   kept declared (an upstream field that disappears, or is renamed, must not fail every
//!   later sync, nor break the formulas and workflows that read it); records hold whatever the
//!   connector writes for it from then on.
//! - **Synced ⇄ computed of the same value type migrates.** A field that becomes a formula, or
//!   stops being one, with the same value type (a formula the connector could translate and
//!   no longer can, say) is not a breaking change for existing records: they hold a value of
//!   that type either way, and formulas are recomputed when they change.
//! - **Anything else breaking is refused** ([`ObjectError::Breaking`], naming each field): a
//!   field retyped upstream (number → text), and nothing is written. The sync reports it.
//! - A kind owned by another installation of the tenant, or a platform kind, is refused.
//!
//! Everything but the recomputation is one transaction, which also renews and checks the
//! run's lease, with an audit event (`object_definition` create/update, by the agent
//! `installation:<id>`) when something changed.

use ivory_sdk::context::{ProvisionOutcome, ProvisionedObject};
use ivory_sdk::manifest::{ObjectSpec, PLATFORM_KINDS};
use jiff::Timestamp;
use serde_json::json;
use sqlx::Row;

use super::audit::{Actor, AuditAction, AuditEvent, emit};
use super::full_pass::renew_fence;
use super::{Fence, Store, StoreError, query_error, to_ms};
use crate::objects::definition::CompiledObject;
use crate::objects::edit::Tx;
use crate::objects::{BreakingChange, ObjectError};

struct StoredKind {
    owner: String,
    version: i64,
    spec: ObjectSpec,
}

/// The value type a field description (`BreakingChange::FieldRetyped::from`/`to`) stands for
/// in formulas, and whether it is a formula: `formula (number)` → (`number`, true),
/// `currency` → (`number`, false), `json` and references → (`string`, false).
fn value_view(description: &str) -> (&str, bool) {
    if let Some(result) = description
        .strip_prefix("formula (")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return (result, true);
    }
    let view = match description {
        "currency" => "number",
        "json" => "string",
        other if other.starts_with("reference") => "string",
        other => other,
    };
    (view, false)
}

/// Whether a retyping only switches a field between synced and computed, same value type.
fn is_migration(change: &BreakingChange) -> bool {
    match change {
        BreakingChange::FieldRetyped { from, to, .. } => {
            let (from_view, from_formula) = value_view(from);
            let (to_view, to_formula) = value_view(to);
            from_formula != to_formula && from_view == to_view
        }
        _ => false,
    }
}

impl Store {
    /// Provisions one object kind for `installation` (see the module doc for the rules):
    /// creates it, migrates it additively (new fields, changed formulas, fields kept), or
    /// refuses a breaking change. Idempotent: the same spec again writes nothing. With
    /// `fence`, the run's lease is renewed and checked in the same transaction.
    pub async fn provision_connector_object(
        &self,
        installation: &str,
        spec: &ObjectSpec,
        fence: Option<&Fence<'_>>,
        now: Timestamp,
    ) -> Result<ProvisionedObject, ObjectError> {
        let kind = spec.kind.as_str();
        let invalid = |message: &str| ObjectError::InvalidObject {
            kind: kind.to_owned(),
            message: message.to_owned(),
        };
        if !ivory_sdk::record::is_kind_slug(kind) {
            return Err(invalid(
                "the kind must be a slug of a-z, 0-9 and _ starting with a letter (1–64 characters)",
            ));
        }
        if PLATFORM_KINDS.contains(&kind) {
            return Err(invalid("is a platform kind and cannot be redefined"));
        }

        let mut tx = self.begin_write().await?;
        renew_fence(&mut tx, installation, fence).await?;
        let tenant = live_installation_tenant(&mut tx, installation).await?;
        let stored = stored_kind(&mut tx, &tenant, kind).await?;
        if let Some(stored) = &stored
            && stored.owner != installation
        {
            return Err(ObjectError::KindOwned {
                kind: kind.to_owned(),
                owner: stored.owner.clone(),
            });
        }

        // The next definition: the spec, then the stored fields it lacks (kept).
        let mut next = spec.clone();
        let mut kept = Vec::new();
        if let Some(stored) = &stored {
            for field in &stored.spec.fields {
                if !next.fields.iter().any(|f| f.name == field.name) {
                    kept.push(field.name.clone());
                    next.fields.push(field.clone());
                }
            }
        }
        let compiled = CompiledObject::compile(&next)?;

        let (outcome, added, migrated, formulas_changed) = match &stored {
            None => (
                ProvisionOutcome::Created,
                next.fields.iter().map(|f| f.name.clone()).collect(),
                Vec::new(),
                compiled.has_formulas(),
            ),
            Some(stored) if stored.spec == next => {
                tx.rollback()
                    .await
                    .map_err(query_error("release write transaction"))?;
                return Ok(ProvisionedObject {
                    kind: kind.to_owned(),
                    outcome: ProvisionOutcome::Unchanged,
                    version: stored.version,
                    added_fields: Vec::new(),
                    kept_fields: kept,
                    migrated_fields: Vec::new(),
                    recomputed: 0,
                });
            }
            Some(stored) => match CompiledObject::compile(&stored.spec) {
                Ok(previous) => {
                    let (migrations, breaking): (Vec<_>, Vec<_>) = previous
                        .breaking_changes(&compiled)
                        .into_iter()
                        .partition(is_migration);
                    if !breaking.is_empty() {
                        return Err(ObjectError::Breaking { changes: breaking });
                    }
                    let migrated = migrations
                        .into_iter()
                        .filter_map(|change| match change {
                            BreakingChange::FieldRetyped { field, .. } => Some(field),
                            _ => None,
                        })
                        .collect();
                    (
                        ProvisionOutcome::Updated,
                        previous.added_fields(&compiled),
                        migrated,
                        previous.formula_sources() != compiled.formula_sources(),
                    )
                }
                // The stored version no longer compiles: the new one replaces it.
                Err(_) => (ProvisionOutcome::Updated, Vec::new(), Vec::new(), true),
            },
        };

        let version = next_version(&mut tx, &tenant, kind).await?;
        let text = serde_json::to_string(&next).map_err(|e| StoreError::Invalid {
            what: "object definition",
            message: e.to_string(),
        })?;
        let at = to_ms(now);
        sqlx::query(
            "INSERT INTO object_definitions (tenant_id, kind, installation_id, version, spec, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (tenant_id, kind) DO UPDATE SET \
             installation_id = excluded.installation_id, version = excluded.version, \
             spec = excluded.spec, updated_at = excluded.updated_at",
        )
        .bind(&tenant)
        .bind(kind)
        .bind(installation)
        .bind(version)
        .bind(&text)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(query_error("write object definition"))?;
        sqlx::query(
            "INSERT INTO object_definition_versions (tenant_id, kind, version, installation_id, spec, breaking, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6)",
        )
        .bind(&tenant)
        .bind(kind)
        .bind(version)
        .bind(installation)
        .bind(&text)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(query_error("write object definition version"))?;
        let action = match outcome {
            ProvisionOutcome::Created => AuditAction::Create,
            _ => AuditAction::Update,
        };
        emit(
            &mut tx,
            &AuditEvent::new(
                &tenant,
                &Actor::Agent(format!("installation:{installation}")),
                action,
                "object_definition",
                Some(kind),
                now,
            )
            .with_diff(json!({
                "installation": installation,
                "version": version,
                "source": "connector",
                "added_fields": added,
                "kept_fields": kept,
                "migrated_fields": migrated,
            })),
        )
        .await?;
        // Every cached catalog of the tenant is now stale (as in manifest provisioning).
        sqlx::query(
            "INSERT INTO object_catalog_stamps (tenant_id, stamp, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET stamp = excluded.stamp, updated_at = excluded.updated_at",
        )
        .bind(&tenant)
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(query_error("bump object catalog stamp"))?;
        tx.commit()
            .await
            .map_err(query_error("commit object provisioning"))?;

        let recomputed = if formulas_changed && compiled.has_formulas() {
            self.recompute_formulas(&tenant, kind, now).await?
        } else {
            0
        };
        Ok(ProvisionedObject {
            kind: kind.to_owned(),
            outcome,
            version,
            added_fields: added,
            kept_fields: kept,
            migrated_fields: migrated,
            recomputed,
        })
    }
}

/// What a connector's sync reports when provisioning fails: a breaking change says what
/// cannot be applied and how to get out of it (manifest provisioning's hint about allowing
/// breaking changes does not apply to a discovered schema).
pub(crate) fn refusal_text(error: &ObjectError) -> String {
    match error {
        ObjectError::Breaking { changes } => format!(
            "schema change refused, the object keeps its current definition: {}; a field's type \
             cannot change under existing records (restore the type upstream, or add a new field)",
            changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        other => other.to_string(),
    }
}

/// The tenant of an installation that is not uninstalled.
async fn live_installation_tenant(tx: &mut Tx, installation: &str) -> Result<String, ObjectError> {
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

async fn stored_kind(
    tx: &mut Tx,
    tenant: &str,
    kind: &str,
) -> Result<Option<StoredKind>, StoreError> {
    let row = sqlx::query(
        "SELECT installation_id, version, spec FROM object_definitions WHERE tenant_id = $1 AND kind = $2",
    )
    .bind(tenant)
    .bind(kind)
    .fetch_optional(&mut **tx)
    .await
    .map_err(query_error("read object definition"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let read = |e: sqlx::Error| StoreError::Corrupt {
        what: "object definition",
        message: e.to_string(),
    };
    let spec: String = row.try_get("spec").map_err(read)?;
    Ok(Some(StoredKind {
        owner: row.try_get("installation_id").map_err(read)?,
        version: row.try_get("version").map_err(read)?,
        spec: serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
            what: "object definition",
            message: e.to_string(),
        })?,
    }))
}

/// The next version of a kind: one past the last in its history (a kind removed earlier
/// continues its history).
async fn next_version(tx: &mut Tx, tenant: &str, kind: &str) -> Result<i64, StoreError> {
    let last: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(version) FROM object_definition_versions WHERE tenant_id = $1 AND kind = $2",
    )
    .bind(tenant)
    .bind(kind)
    .fetch_one(&mut **tx)
    .await
    .map_err(query_error("read object definition history"))?;
    Ok(last.unwrap_or(0) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_switch_between_synced_and_computed_of_one_value_type_migrates() {
        let retyped = |from: &str, to: &str| BreakingChange::FieldRetyped {
            kind: "k".into(),
            field: "f".into(),
            from: from.into(),
            to: to.into(),
        };
        assert!(is_migration(&retyped("formula (number)", "currency")));
        assert!(is_migration(&retyped("number", "formula (number)")));
        assert!(is_migration(&retyped("formula (string)", "json")));
        assert!(!is_migration(&retyped("formula (number)", "string")));
        assert!(!is_migration(&retyped("number", "string")));
        assert!(!is_migration(&retyped(
            "formula (number)",
            "formula (string)"
        )));
        assert!(!is_migration(&BreakingChange::FieldRemoved {
            kind: "k".into(),
            field: "f".into(),
        }));
    }
}

#[cfg(test)]
mod store_tests {
    use futures::TryStreamExt;
    use ivory_sdk::{Record, RecordOp};
    use serde_json::{Value, json};

    use super::*;
    use crate::store::full_pass::tests::{at, store_with_installation};
    use crate::store::{CommitScope, Tombstones};

    fn spec(fields: Value) -> ObjectSpec {
        serde_json::from_value(json!({"kind": "airtable_orders", "fields": fields})).expect("spec")
    }

    #[tokio::test]
    async fn additive_changes_migrate_fields_are_kept_and_retyping_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, inst) = store_with_installation(&dir, "airtable").await;
        let first = spec(json!([
            {"name": "Qty", "type": "number"},
            {"name": "Price", "type": "currency"},
            {"name": "Total", "type": "formula", "formula": "{Qty} * {Price}"},
            {"name": "Note", "type": "string"},
        ]));
        let created = store
            .provision_connector_object(&inst, &first, None, at(1))
            .await
            .expect("created");
        assert_eq!(
            (created.outcome, created.version),
            (ProvisionOutcome::Created, 1)
        );
        let same = store
            .provision_connector_object(&inst, &first, None, at(2))
            .await
            .expect("same");
        assert_eq!(
            (same.outcome, same.version),
            (ProvisionOutcome::Unchanged, 1)
        );

        let scope = CommitScope {
            tenant: "acme",
            installation: &inst,
            now: at(3),
            fence: None,
        };
        let ops = [RecordOp::Upsert {
            kind: "airtable_orders".into(),
            record: Record::new("rec1", json!({"Qty": 3, "Price": 2.5, "Total": 999})),
        }];
        store.commit(&scope, &ops, None).await.expect("commit");
        let total = || async {
            let records: Vec<_> = store
                .export_records("acme", "airtable_orders", Tombstones::Exclude)
                .try_collect()
                .await
                .expect("export");
            records[0].data["Total"].clone()
        };
        assert_eq!(
            total().await,
            json!(7.5),
            "computed, not the upstream's 999"
        );

        // "Note" disappears upstream, "Tax" is new, "Total" changes: kept, added, recomputed.
        let second = spec(json!([
            {"name": "Qty", "type": "number"},
            {"name": "Price", "type": "currency"},
            {"name": "Total", "type": "formula", "formula": "{Qty} * {Price} * 2"},
            {"name": "Tax", "type": "number"},
        ]));
        let updated = store
            .provision_connector_object(&inst, &second, None, at(4))
            .await
            .expect("updated");
        assert_eq!(updated.outcome, ProvisionOutcome::Updated);
        assert_eq!(updated.version, 2);
        assert_eq!(updated.added_fields, ["Tax"]);
        assert_eq!(updated.kept_fields, ["Note"]);
        assert_eq!(updated.recomputed, 1);
        assert_eq!(total().await, json!(15));

        // A formula that becomes a synced value of the same type migrates.
        let third = spec(json!([
            {"name": "Qty", "type": "number"},
            {"name": "Price", "type": "currency"},
            {"name": "Total", "type": "currency"},
            {"name": "Tax", "type": "number"},
        ]));
        let migrated = store
            .provision_connector_object(&inst, &third, None, at(5))
            .await
            .expect("migrated");
        assert_eq!(migrated.migrated_fields, ["Total"]);
        assert_eq!(migrated.kept_fields, ["Note"]);

        // A retyped field is refused, naming it; nothing is written.
        let retyped = spec(json!([
            {"name": "Qty", "type": "string"},
            {"name": "Price", "type": "currency"},
            {"name": "Total", "type": "currency"},
        ]));
        let error = store
            .provision_connector_object(&inst, &retyped, None, at(6))
            .await
            .expect_err("breaking");
        assert!(
            error
                .to_string()
                .contains("field \"Qty\" retyped from number to string"),
            "{error}"
        );
        let definitions = store.object_definitions("acme").await.expect("defs");
        assert_eq!(definitions[0].version, 3);

        // Another installation of the tenant cannot take the kind over.
        let (_, other) = {
            let manifest: ivory_sdk::manifest::Manifest = serde_json::from_value(json!({
                "id": "other", "name": "Other", "version": "1.0.0", "publisher": "Ivorycom",
                "description": "Other.",
                "connection": {"type": "none", "sync": {"cursor": "none", "direction": "inbound",
                    "conflictPolicy": "source_wins", "rateLimitPerMinute": 60}}
            }))
            .expect("manifest");
            let installation = store
                .ensure_installation("acme", &manifest, &Default::default(), at(7))
                .await
                .expect("installation");
            ((), installation.id)
        };
        let error = store
            .provision_connector_object(&other, &first, None, at(8))
            .await
            .expect_err("owned");
        assert!(matches!(error, ObjectError::KindOwned { .. }), "{error}");
    }
}
