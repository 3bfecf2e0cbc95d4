//! Platform-side writes: a tenant user's edit of a record, and the records workflows change or
//! create. Each validates against the object definition (when the kind has one), recomputes
//! the formula fields, writes its audit event and evaluates the record conditions, all in the
//! caller's transaction.

use ivory_formula::FieldType as FType;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};

use super::catalog::ObjectCatalog;
use super::definition::FieldKind;
use super::error::ObjectError;
use crate::store::audit::{Actor, AuditAction, AuditEvent, emit};
use crate::store::{ExportedRecord, Store, StoreError, from_ms, query_error, to_ms};
use crate::workflows::WorkflowRun;
use crate::workflows::execute::Claim;
use crate::workflows::trigger::evaluate_conditions;

/// The write transaction every platform-side write runs in.
pub(crate) type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A value for a platform-side edit.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldInput {
    /// A JSON value, stored as given once it fits the field's type.
    Json(Value),
    /// Text as typed on a command line (`--set amount_due=12.50`), converted by the field's
    /// declared type: `number`/`currency` parse as a number, `boolean` as `true`/`false`
    /// (any case), `json` as JSON, `string`/`reference`/`datetime` stay text (a datetime must
    /// parse). Empty text is `null` for every type but `string`. On a kind without a
    /// definition, text stays text.
    Text(String),
}

/// What [`Store::update_record_fields`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordUpdate {
    /// The kind.
    pub kind: String,
    /// The external id.
    pub id: String,
    /// The record's data after the edit (formulas recomputed).
    pub data: Value,
    /// The record's version after the edit.
    pub version: i64,
    /// Fields whose value changed, formula fields included; empty when the edit changed
    /// nothing (then nothing was written: no version bump, no audit event).
    pub changed: Vec<String>,
    /// Record-condition workflow runs the edit triggered, as they ended.
    pub runs: Vec<WorkflowRun>,
}

/// A platform-side change of fields of one record.
pub(crate) struct Edit<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) id: &'a str,
    pub(crate) sets: Vec<(String, Value)>,
    pub(crate) actor: &'a Actor,
    pub(crate) now: Timestamp,
    /// Depth of the runs the edit's condition transitions start.
    pub(crate) depth: u32,
}

/// What an edit wrote.
pub(crate) struct Edited {
    pub(crate) data: Value,
    pub(crate) version: i64,
    pub(crate) changed: Vec<String>,
    /// Runs recorded (pending) by condition transitions.
    pub(crate) triggered: Vec<String>,
}

/// A record created by the platform (a workflow's `createRecord`).
pub(crate) struct Create<'a> {
    pub(crate) tenant: &'a str,
    pub(crate) installation: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) id: &'a str,
    pub(crate) fields: Map<String, Value>,
    pub(crate) actor: &'a Actor,
    pub(crate) now: Timestamp,
    pub(crate) depth: u32,
}

/// What a create wrote.
pub(crate) struct Created {
    /// False when a record with that id already existed (nothing was written).
    pub(crate) created: bool,
    pub(crate) triggered: Vec<String>,
}

/// A live record's data and version.
pub(crate) async fn read_record(
    conn: &mut AnyConnection,
    tenant: &str,
    kind: &str,
    id: &str,
) -> Result<Option<(Value, i64)>, StoreError> {
    let row = sqlx::query(
        "SELECT data, version FROM records WHERE tenant_id = $1 AND kind = $2 \
         AND external_id = $3 AND deleted_at IS NULL",
    )
    .bind(tenant)
    .bind(kind)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_error("read record"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let read = |e: sqlx::Error| StoreError::Corrupt {
        what: "record",
        message: e.to_string(),
    };
    let data: String = row.try_get("data").map_err(read)?;
    let data = serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
        what: "record data",
        message: e.to_string(),
    })?;
    Ok(Some((data, row.try_get("version").map_err(read)?)))
}

/// Applies `edit` to a live record: validates the values, recomputes formulas, and (when the
/// data changed) writes it with `version + 1` and `platform_updated_at = now`, emits
/// `record.update` with a before/after diff of the changed fields, and evaluates the record
/// conditions.
pub(crate) async fn edit_record(
    tx: &mut Tx,
    catalog: &ObjectCatalog,
    edit: &Edit<'_>,
) -> Result<Edited, ObjectError> {
    let object = catalog.object(edit.kind);
    if let Some(object) = object {
        for (field, value) in &edit.sets {
            object.validate(field, value)?;
        }
    }
    let Some((before, version)) = read_record(tx, edit.tenant, edit.kind, edit.id).await? else {
        return Err(ObjectError::RecordNotFound {
            kind: edit.kind.to_owned(),
            id: edit.id.to_owned(),
        });
    };
    let mut after = before.clone();
    let map = after
        .as_object_mut()
        .ok_or_else(|| ObjectError::NotAnObject {
            kind: edit.kind.to_owned(),
        })?;
    for (field, value) in &edit.sets {
        map.insert(field.clone(), value.clone());
    }
    catalog.apply(edit.kind, &mut after, edit.now)?;
    let changed = changed_fields(&before, &after);
    if changed.is_empty() {
        return Ok(Edited {
            data: after,
            version,
            changed,
            triggered: Vec::new(),
        });
    }
    let text = serde_json::to_string(&after).map_err(|e| StoreError::Invalid {
        what: "record data",
        message: e.to_string(),
    })?;
    let done = sqlx::query(
        "UPDATE records SET data = $1, version = version + 1, platform_updated_at = $2 \
         WHERE tenant_id = $3 AND kind = $4 AND external_id = $5 AND version = $6 \
         AND deleted_at IS NULL",
    )
    .bind(text)
    .bind(to_ms(edit.now))
    .bind(edit.tenant)
    .bind(edit.kind)
    .bind(edit.id)
    .bind(version)
    .execute(&mut **tx)
    .await
    .map_err(query_error("update record"))?;
    if done.rows_affected() != 1 {
        return Err(ObjectError::Conflict {
            kind: edit.kind.to_owned(),
            id: edit.id.to_owned(),
        });
    }
    let diff = diff_of(&before, &after, &changed);
    let object_id = format!("{}/{}", edit.kind, edit.id);
    emit(
        tx,
        &AuditEvent::new(
            edit.tenant,
            edit.actor,
            AuditAction::Update,
            "record",
            Some(&object_id),
            edit.now,
        )
        .with_diff(diff),
    )
    .await?;
    let triggered = evaluate_conditions(
        tx, catalog, edit.kind, edit.id, &after, edit.depth, edit.now,
    )
    .await?;
    Ok(Edited {
        data: after,
        version: version + 1,
        changed,
        triggered,
    })
}

/// Creates a record unless one with that id exists: validates the fields (declared, not
/// formula, typed, required present) when the kind has a definition, computes formulas,
/// emits `record.create`, evaluates the record conditions.
pub(crate) async fn create_record(
    tx: &mut Tx,
    catalog: &ObjectCatalog,
    create: Create<'_>,
) -> Result<Created, ObjectError> {
    if let Some(object) = catalog.object(create.kind) {
        for (field, value) in &create.fields {
            object.validate(field, value)?;
        }
        for field in object.required_fields() {
            if create.fields.get(field).is_none_or(Value::is_null) {
                return Err(ObjectError::RequiredField {
                    kind: create.kind.to_owned(),
                    field: field.to_owned(),
                });
            }
        }
    }
    let mut data = Value::Object(create.fields);
    catalog.apply(create.kind, &mut data, create.now)?;
    let text = serde_json::to_string(&data).map_err(|e| StoreError::Invalid {
        what: "record data",
        message: e.to_string(),
    })?;
    let now = to_ms(create.now);
    let done = sqlx::query(
        "INSERT INTO records (tenant_id, kind, external_id, installation_id, data, \
         source_updated_at, platform_updated_at, synced_at, version, deleted_at) \
         VALUES ($1, $2, $3, $4, $5, NULL, $6, $6, 1, NULL) \
         ON CONFLICT (tenant_id, kind, external_id) DO NOTHING",
    )
    .bind(create.tenant)
    .bind(create.kind)
    .bind(create.id)
    .bind(create.installation)
    .bind(text)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(query_error("create record"))?;
    if done.rows_affected() != 1 {
        return Ok(Created {
            created: false,
            triggered: Vec::new(),
        });
    }
    let object_id = format!("{}/{}", create.kind, create.id);
    emit(
        tx,
        &AuditEvent::new(
            create.tenant,
            create.actor,
            AuditAction::Create,
            "record",
            Some(&object_id),
            create.now,
        )
        .with_diff(serde_json::json!({"before": null, "after": &data})),
    )
    .await?;
    let triggered = evaluate_conditions(
        tx,
        catalog,
        create.kind,
        create.id,
        &data,
        create.depth,
        create.now,
    )
    .await?;
    Ok(Created {
        created: true,
        triggered,
    })
}

/// Fields (top-level keys) whose values differ, sorted.
fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let empty = Map::new();
    let before = before.as_object().unwrap_or(&empty);
    let after = after.as_object().unwrap_or(&empty);
    let mut changed: Vec<String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(before.keys().filter(|k| !after.contains_key(*k)).cloned())
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

fn diff_of(before: &Value, after: &Value, changed: &[String]) -> Value {
    let pick = |data: &Value| -> Value {
        Value::Object(
            changed
                .iter()
                .map(|k| (k.clone(), data.get(k).cloned().unwrap_or(Value::Null)))
                .collect(),
        )
    };
    serde_json::json!({"before": pick(before), "after": pick(after)})
}

/// Converts a `--set` value to JSON by the field's declared type.
fn coerce(
    catalog: &ObjectCatalog,
    kind: &str,
    field: &str,
    input: &FieldInput,
) -> Result<Value, ObjectError> {
    let text = match input {
        FieldInput::Json(value) => return Ok(value.clone()),
        FieldInput::Text(text) => text,
    };
    let Some(object) = catalog.object(kind) else {
        return Ok(Value::String(text.clone()));
    };
    let field_type = match object.field(field) {
        None => {
            return Err(ObjectError::UnknownField {
                kind: kind.to_owned(),
                field: field.to_owned(),
            });
        }
        Some(FieldKind::Formula(_)) => {
            return Err(ObjectError::FormulaField {
                kind: kind.to_owned(),
                field: field.to_owned(),
            });
        }
        Some(FieldKind::Plain(field_type)) => field_type,
    };
    let bad = |expected: &str| ObjectError::FieldType {
        kind: kind.to_owned(),
        field: field.to_owned(),
        message: format!("expected {expected}, found {text:?}"),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() && field_type != FType::String {
        return Ok(Value::Null);
    }
    Ok(match field_type {
        FType::String | FType::Reference | FType::Datetime => Value::String(text.clone()),
        FType::Number | FType::Currency => {
            let number: serde_json::Number =
                serde_json::from_str(trimmed).map_err(|_| bad("a number"))?;
            Value::Number(number)
        }
        FType::Boolean if trimmed.eq_ignore_ascii_case("true") => Value::Bool(true),
        FType::Boolean if trimmed.eq_ignore_ascii_case("false") => Value::Bool(false),
        FType::Boolean => return Err(bad("true or false")),
        FType::Json => serde_json::from_str(trimmed).map_err(|_| bad("JSON"))?,
    })
}

impl Store {
    /// A platform-side edit of a record, as a tenant user makes it (`ivory records update`).
    ///
    /// In one transaction: the values are validated against the kind's object definition if
    /// it has one (declared field, not a formula field, fits the type, a required field is not
    /// set to null; see [`FieldInput`] for text conversion), formula fields are recomputed
    /// with `now`, the record is written with `version + 1` and `platform_updated_at = now`,
    /// an audit event `record.update` records the before/after values of every changed field
    /// (formula fields included), and the record conditions of the kind's workflows are
    /// evaluated. After the commit, the runs those conditions triggered (false to true) are
    /// executed and returned (a run the store cannot execute right now stays pending for
    /// [`Store::run_pending_workflows`]). An edit that changes nothing writes nothing.
    ///
    /// # Errors
    ///
    /// [`ObjectError::RecordNotFound`] (also for a tombstoned record),
    /// [`ObjectError::UnknownField`], [`ObjectError::FormulaField`],
    /// [`ObjectError::FieldType`], [`ObjectError::RequiredField`],
    /// [`ObjectError::Conflict`] (PostgreSQL: another writer won; retry), or a store error.
    pub async fn update_record_fields(
        &self,
        tenant: &str,
        kind: &str,
        external_id: &str,
        sets: &[(String, FieldInput)],
        actor: &Actor,
        now: Timestamp,
    ) -> Result<RecordUpdate, ObjectError> {
        let mut tx = self.begin_write().await?;
        let catalog = ObjectCatalog::load(&mut tx, tenant).await?;
        let sets = sets
            .iter()
            .map(|(field, input)| Ok((field.clone(), coerce(&catalog, kind, field, input)?)))
            .collect::<Result<Vec<_>, ObjectError>>()?;
        let edit = Edit {
            tenant,
            kind,
            id: external_id,
            sets,
            actor,
            now,
            depth: 0,
        };
        let edited = edit_record(&mut tx, &catalog, &edit).await?;
        tx.commit()
            .await
            .map_err(query_error("commit record edit"))?;
        let mut runs = Vec::with_capacity(edited.triggered.len());
        for run_id in &edited.triggered {
            // The edit is committed; a run that cannot execute now stays pending for
            // `run_pending_workflows` instead of failing the edit.
            match self.execute_run(run_id, Claim::Pending, now).await {
                Ok(run) => runs.push(run),
                Err(error) => {
                    tracing::warn!(run = %run_id, %error, "Triggered workflow run could not execute; it stays pending.");
                }
            }
        }
        Ok(RecordUpdate {
            kind: kind.to_owned(),
            id: external_id.to_owned(),
            data: edited.data,
            version: edited.version,
            changed: edited.changed,
            runs,
        })
    }

    /// One record of the tenant (tombstones included), if it exists.
    pub async fn find_record(
        &self,
        tenant: &str,
        kind: &str,
        external_id: &str,
    ) -> Result<Option<ExportedRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT data, version, source_updated_at, platform_updated_at, synced_at, deleted_at \
             FROM records WHERE tenant_id = $1 AND kind = $2 AND external_id = $3",
        )
        .bind(tenant)
        .bind(kind)
        .bind(external_id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read record"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = |e: sqlx::Error| StoreError::Corrupt {
            what: "record",
            message: e.to_string(),
        };
        let data: String = row.try_get("data").map_err(read)?;
        let opt = |v: Option<i64>| v.map(from_ms).transpose();
        Ok(Some(ExportedRecord {
            id: external_id.to_owned(),
            kind: kind.to_owned(),
            data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
                what: "record data",
                message: e.to_string(),
            })?,
            version: row.try_get("version").map_err(read)?,
            source_updated_at: opt(row.try_get("source_updated_at").map_err(read)?)?,
            platform_updated_at: opt(row.try_get("platform_updated_at").map_err(read)?)?,
            synced_at: from_ms(row.try_get("synced_at").map_err(read)?)?,
            deleted_at: opt(row.try_get("deleted_at").map_err(read)?)?,
        }))
    }
}
