//! Executing a recorded run: every action in one transaction with the run's outcome and audit
//! event, so a run's effects are all kept or none are.

use futures::future::BoxFuture;
use ivory_sdk::manifest::Action;
use jiff::Timestamp;
use serde_json::{Value, json};
use sqlx::Row;
use tracing::Instrument;

use super::WorkflowError;
use super::model::{
    CompiledTrigger, CompiledWorkflow, RecordRef, RunTrigger, WorkflowDefinition, WorkflowRun,
    WorkflowRunStatus,
};
use super::template::{render_text, render_value};
use crate::objects::ObjectCatalog;
use crate::objects::edit::{Create, Edit, Tx, create_record, edit_record, read_record};
use crate::store::audit::{Actor, AuditAction, AuditEvent, emit};
use crate::store::{Store, StoreError, from_ms, query_error, to_ms};

/// Which runs an execution may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Only a pending run (first execution).
    Pending,
    /// A pending or failed run (an explicit retry).
    Retry,
}

/// Why an attempt failed: recorded on the run.
struct Failure(String);

/// What a successful attempt did.
struct Effects {
    log: Vec<String>,
    created: Vec<RecordRef>,
    updated: Vec<RecordRef>,
    /// Runs recorded by condition transitions of the run's writes.
    children: Vec<String>,
}

const RUN_COLUMNS: &str = "id, workflow_id, workflow_name, tenant_id, installation_id, trigger_type, \
     trigger_key, delivery_id, subject_kind, subject_id, payload, depth, status, error, attempts, \
     log, created_at, updated_at, finished_at";

fn decode_run(row: &sqlx::any::AnyRow) -> Result<WorkflowRun, StoreError> {
    let read = |e: sqlx::Error| StoreError::Corrupt {
        what: "workflow run",
        message: e.to_string(),
    };
    let corrupt = |message: String| StoreError::Corrupt {
        what: "workflow run",
        message,
    };
    let trigger_type: String = row.try_get("trigger_type").map_err(read)?;
    let trigger_key: String = row.try_get("trigger_key").map_err(read)?;
    let trigger = match trigger_type.as_str() {
        "webhook_event" => RunTrigger::WebhookEvent {
            event_type: trigger_key,
        },
        "record_condition" => RunTrigger::RecordCondition { kind: trigger_key },
        other => return Err(corrupt(format!("unknown trigger type {other:?}"))),
    };
    let status: String = row.try_get("status").map_err(read)?;
    let status = WorkflowRunStatus::parse(&status)
        .ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
    let payload: String = row.try_get("payload").map_err(read)?;
    let log: String = row.try_get("log").map_err(read)?;
    let subject_kind: Option<String> = row.try_get("subject_kind").map_err(read)?;
    let subject_id: Option<String> = row.try_get("subject_id").map_err(read)?;
    let depth: i64 = row.try_get("depth").map_err(read)?;
    let attempts: i64 = row.try_get("attempts").map_err(read)?;
    let finished_at: Option<i64> = row.try_get("finished_at").map_err(read)?;
    Ok(WorkflowRun {
        id: row.try_get("id").map_err(read)?,
        workflow_id: row.try_get("workflow_id").map_err(read)?,
        workflow: row.try_get("workflow_name").map_err(read)?,
        tenant_id: row.try_get("tenant_id").map_err(read)?,
        installation_id: row.try_get("installation_id").map_err(read)?,
        trigger,
        delivery_id: row.try_get("delivery_id").map_err(read)?,
        subject: subject_kind
            .zip(subject_id)
            .map(|(kind, id)| RecordRef { kind, id }),
        payload: serde_json::from_str(&payload).map_err(|e| corrupt(e.to_string()))?,
        depth: u32::try_from(depth).unwrap_or(u32::MAX),
        status,
        error: row.try_get("error").map_err(read)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        log: serde_json::from_str(&log).map_err(|e| corrupt(e.to_string()))?,
        created_at: from_ms(row.try_get("created_at").map_err(read)?)?,
        updated_at: from_ms(row.try_get("updated_at").map_err(read)?)?,
        finished_at: finished_at.map(from_ms).transpose()?,
    })
}

/// The run's subject id as stored (also present when no kind could be derived).
async fn subject_id(tx: &mut Tx, run_id: &str) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT subject_id FROM workflow_runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(query_error("read workflow run"))
}

impl Store {
    /// A workflow run.
    pub async fn workflow_run(&self, run_id: &str) -> Result<Option<WorkflowRun>, StoreError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(run_id)
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("read workflow run"))?
            .as_ref()
            .map(decode_run)
            .transpose()
    }

    /// The tenant's workflow runs, oldest first.
    pub async fn workflow_runs(&self, tenant: &str) -> Result<Vec<WorkflowRun>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM workflow_runs WHERE tenant_id = $1 ORDER BY created_at, id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .fetch_all(self.pool())
            .await
            .map_err(query_error("list workflow runs"))?
            .iter()
            .map(decode_run)
            .collect()
    }

    /// The tenant's workflows (disabled ones included), by installation and name.
    pub async fn workflow_definitions(
        &self,
        tenant: &str,
    ) -> Result<Vec<WorkflowDefinition>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, installation_id, name, version, enabled, spec FROM workflows \
             WHERE tenant_id = $1 ORDER BY installation_id, name",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list workflows"))?;
        rows.iter()
            .map(|row| {
                let read = |e: sqlx::Error| StoreError::Corrupt {
                    what: "workflow",
                    message: e.to_string(),
                };
                let spec: String = row.try_get("spec").map_err(read)?;
                let enabled: i64 = row.try_get("enabled").map_err(read)?;
                Ok(WorkflowDefinition {
                    id: row.try_get("id").map_err(read)?,
                    installation_id: row.try_get("installation_id").map_err(read)?,
                    name: row.try_get("name").map_err(read)?,
                    version: row.try_get("version").map_err(read)?,
                    enabled: enabled == 1,
                    spec: serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt {
                        what: "workflow",
                        message: e.to_string(),
                    })?,
                })
            })
            .collect()
    }

    /// Retries a run (`ivory workflows retry RUN`): a failed (or still pending) run executes
    /// again with the workflow's **current** definition and the stored triggering event. A
    /// run that already succeeded is returned unchanged (retrying is idempotent). Returns the
    /// run as it ended; an action failing again is a run with status `failed`, not an `Err`.
    ///
    /// # Errors
    ///
    /// [`WorkflowError::UnknownRun`], or a store error.
    pub async fn retry_workflow_run(
        &self,
        run_id: &str,
        now: Timestamp,
    ) -> Result<WorkflowRun, WorkflowError> {
        let run = self
            .workflow_run(run_id)
            .await?
            .ok_or_else(|| WorkflowError::UnknownRun {
                run_id: run_id.to_owned(),
            })?;
        if run.status == WorkflowRunStatus::Succeeded {
            return Ok(run);
        }
        Ok(self.execute_run(run_id, Claim::Retry, now).await?)
    }

    /// Executes the tenant's pending runs, oldest first: runs recorded by synced writes
    /// (record conditions evaluated inside `Store::commit`) and runs whose executor died
    /// before running them. Returns them as they ended.
    pub async fn run_pending_workflows(
        &self,
        tenant: &str,
        now: Timestamp,
    ) -> Result<Vec<WorkflowRun>, WorkflowError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM workflow_runs WHERE tenant_id = $1 AND status = 'pending' \
             ORDER BY created_at, id",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list pending workflow runs"))?;
        let mut runs = Vec::with_capacity(ids.len());
        for id in ids {
            runs.push(self.execute_run(&id, Claim::Pending, now).await?);
        }
        Ok(runs)
    }

    /// Executes one run if `claim` allows its current status, and returns it as it ended.
    ///
    /// The claim (`attempts + 1` guarded by the status), every action, the `succeeded` status
    /// and the `workflow_run` audit event commit in one transaction: a concurrent executor
    /// waits on the write lock (SQLite) or the row lock (PostgreSQL) and then finds nothing to
    /// claim. On an action failure that transaction rolls back (no effect of the run is kept)
    /// and a second one records `failed`, the error and its audit event. Runs triggered by
    /// the run's own writes are executed after its commit.
    pub(crate) fn execute_run<'a>(
        &'a self,
        run_id: &'a str,
        claim: Claim,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<WorkflowRun, StoreError>> {
        // One span per run (traces and the workflow RED metrics, see ivory-telemetry).
        let span = tracing::info_span!(
            "workflow",
            run_id = %run_id,
            tenant_id = tracing::field::Empty,
            workflow = tracing::field::Empty,
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let current = span.clone();
        Box::pin(async move {
            let claim_sql = match claim {
                Claim::Pending => {
                    "UPDATE workflow_runs SET attempts = attempts + 1, updated_at = $2 \
                     WHERE id = $1 AND status = 'pending' RETURNING attempts"
                }
                Claim::Retry => {
                    "UPDATE workflow_runs SET attempts = attempts + 1, updated_at = $2 \
                     WHERE id = $1 AND status IN ('pending', 'failed') RETURNING attempts"
                }
            };
            let mut tx = self.begin_write().await?;
            let attempt: Option<i64> = sqlx::query_scalar(claim_sql)
                .bind(run_id)
                .bind(to_ms(now))
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_error("claim workflow run"))?;
            // Never hold the write transaction while waiting for another pooled connection:
            // the other connections may all be queued on the write lock (a deadlock until the
            // busy timeout).
            let Some(attempt) = attempt else {
                current.record("outcome", "skipped");
                tx.rollback()
                    .await
                    .map_err(query_error("release workflow run"))?;
                return self.workflow_run(run_id).await?.ok_or(StoreError::Corrupt {
                    what: "workflow run",
                    message: format!("run {run_id} vanished"),
                });
            };
            {
                let sql = format!("SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(run_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(query_error("read workflow run"))?;
                let run = decode_run(&row)?;
                current
                    .record("tenant_id", run.tenant_id.as_str())
                    .record("workflow", run.workflow.as_str());
                let catalog = ObjectCatalog::load(&mut tx, &run.tenant_id).await?;
                match perform(&mut tx, &catalog, &run, attempt, now).await {
                    Ok(effects) => {
                        self.finish_success(tx, &catalog, &run, attempt, &effects, now)
                            .await?;
                        current.record("outcome", "succeeded");
                        for child in &effects.children {
                            if let Err(error) = self.execute_run(child, Claim::Pending, now).await {
                                tracing::warn!(run = %child, %error, "Triggered workflow run could not execute; it stays pending.");
                            }
                        }
                    }
                    Err(Failure(message)) => {
                        current
                            .record("outcome", "failed")
                            .record("otel.status_code", "error");
                        // Every effect of the attempt goes.
                        tx.rollback()
                            .await
                            .map_err(query_error("roll back workflow run"))?;
                        self.finish_failure(&run, &catalog, claim, &message, now)
                            .await?;
                    }
                }
            }
            self.workflow_run(run_id).await?.ok_or(StoreError::Corrupt {
                what: "workflow run",
                message: format!("run {run_id} vanished"),
            })
        }
        .instrument(span))
    }

    async fn finish_success(
        &self,
        mut tx: Tx,
        catalog: &ObjectCatalog,
        run: &WorkflowRun,
        attempt: i64,
        effects: &Effects,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let log = serde_json::to_string(&effects.log).map_err(|e| StoreError::Invalid {
            what: "workflow log",
            message: e.to_string(),
        })?;
        sqlx::query(
            "UPDATE workflow_runs SET status = 'succeeded', error = NULL, log = $1, \
             finished_at = $2, updated_at = $2 WHERE id = $3",
        )
        .bind(log)
        .bind(to_ms(now))
        .bind(&run.id)
        .execute(&mut *tx)
        .await
        .map_err(query_error("finish workflow run"))?;
        let version = catalog.workflow(&run.workflow_id).map(|w| w.version);
        let diff = json!({
            "run_id": run.id,
            "workflow": run.workflow,
            "workflow_version": version,
            "trigger": run.trigger,
            "delivery_id": run.delivery_id,
            "attempt": attempt,
            "status": "succeeded",
            "log": effects.log,
            "created": effects.created,
            "updated": effects.updated,
        });
        emit(&mut tx, &run_event(run, now).with_diff(diff)).await?;
        tx.commit()
            .await
            .map_err(query_error("commit workflow run"))
    }

    async fn finish_failure(
        &self,
        run: &WorkflowRun,
        catalog: &ObjectCatalog,
        claim: Claim,
        message: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let sql = match claim {
            Claim::Pending => {
                "UPDATE workflow_runs SET status = 'failed', error = $1, attempts = attempts + 1, \
                 log = '[]', finished_at = $2, updated_at = $2 \
                 WHERE id = $3 AND status = 'pending' RETURNING attempts"
            }
            Claim::Retry => {
                "UPDATE workflow_runs SET status = 'failed', error = $1, attempts = attempts + 1, \
                 log = '[]', finished_at = $2, updated_at = $2 \
                 WHERE id = $3 AND status IN ('pending', 'failed') RETURNING attempts"
            }
        };
        let mut tx = self.begin_write().await?;
        let attempt: Option<i64> = sqlx::query_scalar(sql)
            .bind(message)
            .bind(to_ms(now))
            .bind(&run.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_error("record workflow run failure"))?;
        let Some(attempt) = attempt else {
            // Another executor finished it meanwhile.
            return tx
                .rollback()
                .await
                .map_err(query_error("release workflow run"));
        };
        tracing::warn!(
            tenant = %run.tenant_id,
            workflow = %run.workflow,
            run = %run.id,
            attempt,
            error = %message,
            "Workflow run failed; it can be retried."
        );
        let version = catalog.workflow(&run.workflow_id).map(|w| w.version);
        let diff = json!({
            "run_id": run.id,
            "workflow": run.workflow,
            "workflow_version": version,
            "trigger": run.trigger,
            "delivery_id": run.delivery_id,
            "attempt": attempt,
            "status": "failed",
            "error": message,
        });
        emit(&mut tx, &run_event(run, now).with_diff(diff)).await?;
        tx.commit()
            .await
            .map_err(query_error("commit workflow run failure"))
    }
}

fn workflow_actor(name: &str) -> Actor {
    Actor::Agent(format!("workflow:{name}"))
}

fn run_event(run: &WorkflowRun, now: Timestamp) -> AuditEvent {
    AuditEvent::new(
        &run.tenant_id,
        &workflow_actor(&run.workflow),
        AuditAction::WorkflowRun,
        "workflow_run",
        Some(&run.id),
        now,
    )
}

/// Runs the workflow's actions for `run` inside `tx`.
async fn perform(
    tx: &mut Tx,
    catalog: &ObjectCatalog,
    run: &WorkflowRun,
    attempt: i64,
    now: Timestamp,
) -> Result<Effects, Failure> {
    let store_failure = |e: StoreError| Failure(format!("store error: {e}"));
    let Some(workflow) = catalog.workflow(&run.workflow_id) else {
        return Err(Failure(format!(
            "workflow {:?} is no longer provisioned (removed from the manifest or uninstalled)",
            run.workflow
        )));
    };
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM installations WHERE id = $1")
            .bind(&run.installation_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| store_failure(query_error("read installation")(e)))?;
    match status.as_deref() {
        None => {
            return Err(Failure(format!(
                "installation {} no longer exists",
                run.installation_id
            )));
        }
        Some("uninstalled") => {
            return Err(Failure(format!(
                "installation {} is uninstalled",
                run.installation_id
            )));
        }
        Some(_) => {}
    }
    let subject_id = subject_id(tx, &run.id).await.map_err(store_failure)?;
    let subject_kind = run.subject.as_ref().map(|s| s.kind.clone());
    let subject_data = match (&subject_kind, &subject_id) {
        (Some(kind), Some(id)) => read_record(tx, &run.tenant_id, kind, id)
            .await
            .map_err(store_failure)?
            .map(|(data, _)| data),
        _ => None,
    };
    let (trigger_json, condition_kind) = match &workflow.trigger {
        CompiledTrigger::Webhook { event_type, .. } => (
            json!({"type": "webhook_event", "event_type": event_type, "delivery_id": run.delivery_id, "record_id": subject_id}),
            None,
        ),
        CompiledTrigger::Condition { kind, .. } => (
            json!({"type": "record_condition", "kind": kind, "delivery_id": run.delivery_id, "record_id": subject_id}),
            Some(kind.clone()),
        ),
    };
    let mut context = json!({
        "payload": run.payload,
        "record": subject_data,
        "trigger": trigger_json,
        "run": {"id": run.id, "attempt": attempt},
        "workflow": {"name": run.workflow},
        "created": {},
        "now": now.to_string(),
    });
    let actor = workflow_actor(&run.workflow);
    let mut effects = Effects {
        log: Vec::new(),
        created: Vec::new(),
        updated: Vec::new(),
        children: Vec::new(),
    };
    let depth = run.depth.saturating_add(1);
    for (index, action) in workflow.spec.actions.iter().enumerate() {
        match action {
            Action::SetField(set) => {
                let Some(kind) = set.kind.clone().or_else(|| condition_kind.clone()) else {
                    return Err(Failure(format!("action {index} (setField): no kind")));
                };
                let what = format!("action {index} (setField {kind}.{})", set.field);
                let Some(id) = subject_id.as_deref() else {
                    return Err(Failure(format!(
                        "{what}: the event names no record (nothing at {})",
                        locator_of(workflow)
                    )));
                };
                let value = render_value(&set.value, &context);
                let edit = Edit {
                    tenant: &run.tenant_id,
                    kind: &kind,
                    id,
                    sets: vec![(set.field.clone(), value)],
                    actor: &actor,
                    now,
                    depth,
                };
                let edited = edit_record(tx, catalog, &edit)
                    .await
                    .map_err(|e| Failure(format!("{what}: {e}")))?;
                effects.children.extend(edited.triggered);
                if !edited.changed.is_empty() {
                    effects.updated.push(RecordRef {
                        kind: kind.clone(),
                        id: id.to_owned(),
                    });
                }
                if subject_kind.as_deref() == Some(kind.as_str()) {
                    context["record"] = edited.data;
                }
            }
            Action::CreateRecord(create) => {
                let id = format!("{}-{index}", run.id);
                let what = format!("action {index} (createRecord {})", create.kind);
                let fields = create
                    .fields
                    .iter()
                    .map(|(name, value)| (name.clone(), render_value(value, &context)))
                    .collect();
                let created = create_record(
                    tx,
                    catalog,
                    Create {
                        tenant: &run.tenant_id,
                        installation: &run.installation_id,
                        kind: &create.kind,
                        id: &id,
                        fields,
                        actor: &actor,
                        now,
                        depth,
                    },
                )
                .await
                .map_err(|e| Failure(format!("{what}: {e}")))?;
                effects.children.extend(created.triggered);
                if created.created {
                    effects.created.push(RecordRef {
                        kind: create.kind.clone(),
                        id: id.clone(),
                    });
                }
                context["created"][index.to_string()] = Value::String(id);
            }
            Action::Log(log) => effects.log.push(render_text(&log.message, &context)),
        }
    }
    Ok(effects)
}

fn locator_of(workflow: &CompiledWorkflow) -> &str {
    match &workflow.trigger {
        CompiledTrigger::Webhook { locator, .. } => locator,
        CompiledTrigger::Condition { .. } => "the triggering record",
    }
}
