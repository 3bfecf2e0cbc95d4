//! Triggers: webhook deliveries and record-condition transitions become recorded runs.

use ivory_sdk::manifest::Action;
use jiff::Timestamp;
use sqlx::{AnyConnection, Row};

use super::WorkflowError;
use super::execute::Claim;
use super::model::{CompiledTrigger, CompiledWorkflow, WorkflowRun, locate};
use crate::objects::ObjectCatalog;
use crate::objects::edit::Tx;
use crate::store::{Store, StoreError, query_error, to_ms};

/// Runs triggered by the writes of a run of this depth are not started (the transition is
/// still recorded): a bound on workflows that trigger each other.
pub(crate) const MAX_DEPTH: u32 = 8;

/// A run about to be recorded.
pub(crate) struct NewRun<'a> {
    pub(crate) workflow: &'a CompiledWorkflow,
    pub(crate) tenant: &'a str,
    pub(crate) delivery_id: &'a str,
    pub(crate) subject_kind: Option<&'a str>,
    pub(crate) subject_id: Option<&'a str>,
    pub(crate) payload: &'a serde_json::Value,
    pub(crate) depth: u32,
    pub(crate) now: Timestamp,
}

/// Records a pending run unless the workflow already has one for this delivery id; returns
/// the new run's id.
pub(crate) async fn insert_run(
    conn: &mut AnyConnection,
    run: &NewRun<'_>,
) -> Result<Option<String>, StoreError> {
    let id = format!("wfr_{}", uuid::Uuid::now_v7().simple());
    let (trigger_type, trigger_key) = match &run.workflow.trigger {
        CompiledTrigger::Webhook { event_type, .. } => ("webhook_event", event_type.as_str()),
        CompiledTrigger::Condition { kind, .. } => ("record_condition", kind.as_str()),
    };
    let payload = serde_json::to_string(run.payload).map_err(|e| StoreError::Invalid {
        what: "workflow payload",
        message: e.to_string(),
    })?;
    let now = to_ms(run.now);
    let done = sqlx::query(
        "INSERT INTO workflow_runs (id, workflow_id, workflow_name, tenant_id, installation_id, \
         trigger_type, trigger_key, delivery_id, subject_kind, subject_id, payload, depth, status, \
         error, attempts, log, created_at, updated_at, finished_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending', NULL, 0, '[]', $13, $13, NULL) \
         ON CONFLICT (workflow_id, delivery_id) DO NOTHING",
    )
    .bind(&id)
    .bind(&run.workflow.id)
    .bind(&run.workflow.spec.name)
    .bind(run.tenant)
    .bind(&run.workflow.installation_id)
    .bind(trigger_type)
    .bind(trigger_key)
    .bind(run.delivery_id)
    .bind(run.subject_kind)
    .bind(run.subject_id)
    .bind(payload)
    .bind(i64::from(run.depth))
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(query_error("record workflow run"))?;
    Ok((done.rows_affected() == 1).then_some(id))
}

/// Evaluates the record-condition workflows watching `kind` on a written record and records a
/// pending run for each condition that went from false to true (a record never evaluated
/// before counts as false). Returns the new runs' ids.
pub(crate) async fn evaluate_conditions(
    tx: &mut Tx,
    catalog: &ObjectCatalog,
    kind: &str,
    external_id: &str,
    data: &serde_json::Value,
    depth: u32,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let object = catalog.object(kind);
    let mut runs = Vec::new();
    for workflow in catalog.condition_workflows(kind) {
        let holds = workflow.condition_holds(object, data, now);
        let state = sqlx::query(
            "SELECT holds, transitions FROM workflow_condition_states \
             WHERE workflow_id = $1 AND external_id = $2",
        )
        .bind(&workflow.id)
        .bind(external_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(query_error("read condition state"))?;
        let (held, transitions) = match &state {
            Some(row) => {
                let read = |e: sqlx::Error| StoreError::Corrupt {
                    what: "condition state",
                    message: e.to_string(),
                };
                let held: i64 = row.try_get("holds").map_err(read)?;
                let transitions: i64 = row.try_get("transitions").map_err(read)?;
                (held == 1, transitions)
            }
            None => (false, 0),
        };
        if holds == held && (state.is_some() || !holds) {
            continue;
        }
        let fires = holds && !held;
        let transitions = transitions + i64::from(fires);
        sqlx::query(
            "INSERT INTO workflow_condition_states (workflow_id, external_id, holds, transitions, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workflow_id, external_id) DO UPDATE SET \
             holds = excluded.holds, transitions = excluded.transitions, updated_at = excluded.updated_at",
        )
        .bind(&workflow.id)
        .bind(external_id)
        .bind(i64::from(holds))
        .bind(transitions)
        .bind(to_ms(now))
        .execute(&mut **tx)
        .await
        .map_err(query_error("write condition state"))?;
        if !fires {
            continue;
        }
        if depth > MAX_DEPTH {
            tracing::warn!(
                tenant = catalog.tenant(),
                workflow = %workflow.spec.name,
                kind,
                record = external_id,
                depth,
                "Workflow cascade too deep; condition transition recorded without a run."
            );
            continue;
        }
        let delivery_id = format!("record:{external_id}:{transitions}");
        let payload = serde_json::json!({"kind": kind, "id": external_id, "record": data});
        let run = NewRun {
            workflow,
            tenant: catalog.tenant(),
            delivery_id: &delivery_id,
            subject_kind: Some(kind),
            subject_id: Some(external_id),
            payload: &payload,
            depth,
            now,
        };
        if let Some(id) = insert_run(tx, &run).await? {
            runs.push(id);
        }
    }
    Ok(runs)
}

impl Store {
    /// Runs the installation's workflows triggered by a **verified** webhook delivery (the
    /// ingress calls this after signature verification; nothing here re-verifies).
    ///
    /// Every workflow of the installation whose trigger is `webhookEvent: event_type` gets one
    /// run for `delivery_id`, recorded with the payload before any action runs; a delivery id
    /// a workflow has seen before records nothing new (at most one run per workflow and
    /// delivery, even under concurrent calls). Runs still pending (a crashed executor) are
    /// executed; failed ones are not (retry them with [`Store::retry_workflow_run`]). Returns
    /// the runs of this delivery in their current state; an action failure is a run with
    /// status `failed`, not an `Err`.
    ///
    /// The record a `setField` action writes is located by the connector's webhook scheme
    /// (see [`record_locator`](super::record_locator)).
    pub async fn run_webhook_workflows(
        &self,
        installation: &str,
        delivery_id: &str,
        event_type: &str,
        payload: &serde_json::Value,
        now: Timestamp,
    ) -> Result<Vec<WorkflowRun>, WorkflowError> {
        if delivery_id.trim().is_empty() {
            return Err(WorkflowError::InvalidDelivery {
                message: "the delivery id is empty".into(),
            });
        }
        let tenant = self.live_installation_tenant(installation).await?;
        let mut tx = self.begin_write().await?;
        let catalog = ObjectCatalog::load(&mut tx, &tenant).await?;
        let workflows: Vec<&CompiledWorkflow> = catalog
            .webhook_workflows(installation, event_type)
            .collect();
        if workflows.is_empty() {
            tx.rollback()
                .await
                .map_err(query_error("release write transaction"))?;
            return Ok(Vec::new());
        }
        for workflow in &workflows {
            let CompiledTrigger::Webhook { locator, .. } = &workflow.trigger else {
                continue;
            };
            let subject_id = locate(payload, locator);
            let subject_kind = workflow
                .spec
                .actions
                .iter()
                .find_map(|action| match action {
                    Action::SetField(set) => set.kind.as_deref(),
                    _ => None,
                });
            let run = NewRun {
                workflow,
                tenant: &tenant,
                delivery_id,
                subject_kind,
                subject_id: subject_id.as_deref(),
                payload,
                depth: 0,
                now,
            };
            insert_run(&mut tx, &run).await?;
        }
        tx.commit()
            .await
            .map_err(query_error("commit workflow runs"))?;
        let mut runs = Vec::with_capacity(workflows.len());
        for workflow in workflows {
            let run_id: String = sqlx::query_scalar(
                "SELECT id FROM workflow_runs WHERE workflow_id = $1 AND delivery_id = $2",
            )
            .bind(&workflow.id)
            .bind(delivery_id)
            .fetch_one(self.pool())
            .await
            .map_err(query_error("read workflow run"))?;
            runs.push(self.execute_run(&run_id, Claim::Pending, now).await?);
        }
        Ok(runs)
    }

    /// The tenant of an installation that is not uninstalled.
    async fn live_installation_tenant(&self, installation: &str) -> Result<String, WorkflowError> {
        let row = sqlx::query("SELECT tenant_id, status FROM installations WHERE id = $1")
            .bind(installation)
            .fetch_optional(self.pool())
            .await
            .map_err(query_error("read installation"))?;
        let Some(row) = row else {
            return Err(WorkflowError::UnknownInstallation {
                installation: installation.to_owned(),
            });
        };
        let read = |e: sqlx::Error| StoreError::Corrupt {
            what: "installation",
            message: e.to_string(),
        };
        let status: String = row.try_get("status").map_err(read)?;
        if status == "uninstalled" {
            return Err(WorkflowError::Uninstalled {
                installation: installation.to_owned(),
            });
        }
        Ok(row.try_get("tenant_id").map_err(read)?)
    }
}
