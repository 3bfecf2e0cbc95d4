//! Workflows on a real SQLite store: a Stripe-like `invoice.payment_failed` webhook marks the
//! mirrored invoice, creates a follow-up task and logs, once per delivery id (also under
//! concurrent deliveries); a failing action is recorded with its event and retried; a record
//! condition fires on the false-to-true transition only; two tenants with the same connector
//! share nothing.

use ivory_runtime::Store;
use ivory_runtime::objects::{ChangePolicy, FieldInput};
use ivory_runtime::workflows::{RunTrigger, WorkflowError, WorkflowRunStatus};
use ivory_sdk::manifest::Manifest;
use serde_json::{Value, json};

use crate::objects::{admin, count, install, invoice_fields, invoices, manifest, record, seed};
use crate::support::{env, t0};

fn payment_failed_workflow() -> Value {
    json!({
        "name": "payment-failed-follow-up",
        "trigger": {"webhookEvent": "invoice.payment_failed"},
        "actions": [
            {"setField": {"kind": "invoice", "field": "status", "value": "payment_failed"}},
            {"createRecord": {"kind": "task", "fields": {
                "title": "Follow up on invoice {{payload.data.object.number}}",
                "customer": "{{payload.data.object.customer}}",
                "amount_due": "{{payload.data.object.amount_due}}",
                "invoice": "{{payload.data.object.id}}",
                "priority": "high"
            }}},
            {"setField": {"kind": "invoice", "field": "follow_up", "value": "{{created.1}}"}},
            {"log": {"message": "Payment failed for {{record.customer}} ({{record.outstanding}} outstanding): task {{created.1}}."}}
        ]
    })
}

fn large_balance_workflow() -> Value {
    json!({
        "name": "large-balance",
        "trigger": {"recordCondition": {"kind": "invoice", "condition": "{outstanding} > 1000"}},
        "actions": [
            {"createRecord": {"kind": "task", "fields": {
                "title": "Large balance on {{record.number}}: {{record.outstanding}}"
            }}},
            {"log": {"message": "{{trigger.record_id}} crossed 1000"}}
        ]
    })
}

fn stripe() -> Manifest {
    manifest(
        invoices(invoice_fields()),
        json!([payment_failed_workflow(), large_balance_workflow()]),
    )
}

fn payment_failed(invoice: &str) -> Value {
    json!({
        "id": "evt_1",
        "type": "invoice.payment_failed",
        "data": {"object": {"id": invoice, "object": "invoice", "number": "INV-0042",
                            "customer": "cus_9", "amount_due": 2500}}
    })
}

fn invoice(amount_due: i64) -> Value {
    json!({"number": "INV-0042", "customer": "cus_9", "status": "open",
           "amount_due": amount_due, "amount_paid": 0, "due_date": "2026-01-20"})
}

/// A tenant with the Stripe-like connector installed, provisioned, and invoice `in_1` (500
/// outstanding: below the large-balance condition).
async fn tenant(store: &Store, tenant: &str) -> String {
    let m = stripe();
    let inst = install(store, tenant, &m).await;
    store
        .provision(&inst.id, &m, ChangePolicy::AdditiveOnly, &admin(), t0())
        .await
        .expect("provision");
    seed(store, &inst, "invoice", vec![("in_1".into(), invoice(500))]).await;
    inst.id
}

#[tokio::test]
async fn a_webhook_workflow_marks_the_invoice_creates_a_task_and_logs_once_per_delivery() {
    let env = env().await;
    let inst = tenant(&env.store, "acme").await;
    let runs = env
        .store
        .run_webhook_workflows(
            &inst,
            "evt_1",
            "invoice.payment_failed",
            &payment_failed("in_1"),
            t0(),
        )
        .await
        .expect("dispatch");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.status, WorkflowRunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.workflow, "payment-failed-follow-up");
    assert_eq!(run.delivery_id, "evt_1");
    assert_eq!(run.attempts, 1);
    assert_eq!(
        run.trigger,
        RunTrigger::WebhookEvent {
            event_type: "invoice.payment_failed".into()
        }
    );
    let subject = run.subject.as_ref().expect("subject");
    assert_eq!(
        (subject.kind.as_str(), subject.id.as_str()),
        ("invoice", "in_1")
    );
    assert_eq!(
        run.payload,
        payment_failed("in_1"),
        "the event is kept with the run"
    );

    let task_id = format!("{}-1", run.id);
    let invoice = record(&env.store, "acme", "invoice", "in_1").await;
    assert_eq!(invoice["status"], json!("payment_failed"));
    assert_eq!(invoice["follow_up"], json!(task_id));
    assert_eq!(
        invoice["outstanding"],
        json!(500),
        "formulas recomputed by the edit"
    );
    let task = record(&env.store, "acme", "task", &task_id).await;
    assert_eq!(
        task,
        json!({"title": "Follow up on invoice INV-0042", "customer": "cus_9",
               "amount_due": 2500, "invoice": "in_1", "priority": "high"})
    );
    assert_eq!(
        run.log,
        [format!(
            "Payment failed for cus_9 (500 outstanding): task {task_id}."
        )]
    );

    let events = env.store.audit_events("acme").await.expect("audit");
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert!(
        types.contains(&"audit.workflow_run.workflow_run"),
        "{types:?}"
    );
    assert!(types.contains(&"audit.record.create"), "{types:?}");
    let run_event = events
        .iter()
        .find(|e| e.event_type == "audit.workflow_run.workflow_run")
        .expect("run event");
    assert_eq!(
        run_event.payload["agent_id"],
        json!("workflow:payment-failed-follow-up")
    );
    assert_eq!(run_event.payload["diff_json"]["status"], json!("succeeded"));
    let workflow_events = types.len();

    // The same delivery again: nothing new.
    let again = env
        .store
        .run_webhook_workflows(
            &inst,
            "evt_1",
            "invoice.payment_failed",
            &payment_failed("in_1"),
            t0(),
        )
        .await
        .expect("redelivery");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, run.id);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(count(&env.store, "acme", "task").await, 1);
    assert_eq!(
        env.store.workflow_runs("acme").await.expect("runs").len(),
        1
    );
    assert_eq!(
        env.store.audit_events("acme").await.expect("audit").len(),
        workflow_events
    );

    // Other event types trigger nothing.
    let none = env
        .store
        .run_webhook_workflows(
            &inst,
            "evt_2",
            "invoice.paid",
            &payment_failed("in_1"),
            t0(),
        )
        .await
        .expect("dispatch");
    assert!(none.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_of_one_event_trigger_the_workflow_once() {
    let env = env().await;
    let inst = tenant(&env.store, "acme").await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = env.store.clone();
        let inst = inst.clone();
        tasks.push(tokio::spawn(async move {
            store
                .run_webhook_workflows(
                    &inst,
                    "evt_1",
                    "invoice.payment_failed",
                    &payment_failed("in_1"),
                    t0(),
                )
                .await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        let runs = task.await.expect("join").expect("dispatch");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, WorkflowRunStatus::Succeeded);
        ids.push(runs[0].id.clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one run for the delivery");
    let runs = env.store.workflow_runs("acme").await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].attempts, 1, "executed once");
    assert_eq!(count(&env.store, "acme", "task").await, 1);
}

#[tokio::test]
async fn a_failing_action_is_recorded_with_its_event_and_retried_idempotently() {
    let env = env().await;
    let inst = tenant(&env.store, "acme").await;
    // The event names an invoice the sync has not mirrored yet.
    let runs = env
        .store
        .run_webhook_workflows(
            &inst,
            "evt_9",
            "invoice.payment_failed",
            &payment_failed("in_9"),
            t0(),
        )
        .await
        .expect("dispatch");
    let failed = &runs[0];
    assert_eq!(failed.status, WorkflowRunStatus::Failed);
    assert_eq!(failed.attempts, 1);
    let error = failed.error.as_deref().expect("error");
    assert!(
        error.contains("action 0 (setField invoice.status)")
            && error.contains("no invoice record \"in_9\""),
        "{error}"
    );
    assert_eq!(
        failed.payload,
        payment_failed("in_9"),
        "the event is not lost"
    );
    assert!(failed.log.is_empty());
    assert_eq!(
        count(&env.store, "acme", "task").await,
        0,
        "no effect of the failed run kept"
    );
    let events = env.store.audit_events("acme").await.expect("audit");
    let failure = events
        .iter()
        .rfind(|e| e.event_type == "audit.workflow_run.workflow_run")
        .expect("failure audited");
    assert_eq!(failure.payload["diff_json"]["status"], json!("failed"));

    // Still missing: fails again.
    let again = env
        .store
        .retry_workflow_run(&failed.id, t0())
        .await
        .expect("retry");
    assert_eq!(again.status, WorkflowRunStatus::Failed);
    assert_eq!(again.attempts, 2);

    // The sync mirrors the invoice; the retry succeeds with the stored event.
    let installation = env
        .store
        .installation("acme", "stripe-revenue")
        .await
        .expect("read")
        .expect("installation");
    seed(
        &env.store,
        &installation,
        "invoice",
        vec![("in_9".into(), invoice(500))],
    )
    .await;
    let retried = env
        .store
        .retry_workflow_run(&failed.id, t0())
        .await
        .expect("retry");
    assert_eq!(
        retried.status,
        WorkflowRunStatus::Succeeded,
        "{:?}",
        retried.error
    );
    assert_eq!(retried.attempts, 3);
    assert_eq!(retried.error, None);
    assert_eq!(
        record(&env.store, "acme", "invoice", "in_9").await["status"],
        json!("payment_failed")
    );
    assert_eq!(count(&env.store, "acme", "task").await, 1);

    // Retrying a run that succeeded is a no-op.
    let noop = env
        .store
        .retry_workflow_run(&failed.id, t0())
        .await
        .expect("retry");
    assert_eq!(noop, retried);
    assert_eq!(count(&env.store, "acme", "task").await, 1);

    assert!(matches!(
        env.store.retry_workflow_run("wfr_nope", t0()).await,
        Err(WorkflowError::UnknownRun { .. })
    ));
}

#[tokio::test]
async fn a_record_condition_fires_on_the_transition_from_false_to_true_only() {
    let env = env().await;
    let inst = tenant(&env.store, "acme").await;
    let installation = env
        .store
        .installation("acme", "stripe-revenue")
        .await
        .expect("read")
        .expect("installation");
    seed(
        &env.store,
        &installation,
        "invoice",
        vec![("in_2".into(), invoice(500))],
    )
    .await;
    let set = |field: &str, value: Value| {
        let store = env.store.clone();
        let sets = vec![(field.to_owned(), FieldInput::Json(value))];
        async move {
            store
                .update_record_fields("acme", "invoice", "in_2", &sets, &admin(), t0())
                .await
                .expect("edit")
        }
    };

    let below = set("amount_due", json!(900)).await;
    assert!(below.runs.is_empty(), "900 is not above 1000");
    let crossed = set("amount_due", json!(2000)).await;
    assert_eq!(crossed.runs.len(), 1, "false → true fires");
    let run = &crossed.runs[0];
    assert_eq!(run.status, WorkflowRunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.delivery_id, "record:in_2:1");
    assert_eq!(
        run.trigger,
        RunTrigger::RecordCondition {
            kind: "invoice".into()
        }
    );
    assert_eq!(run.log, ["in_2 crossed 1000"]);
    assert_eq!(
        record(&env.store, "acme", "task", &format!("{}-0", run.id)).await["title"],
        json!("Large balance on INV-0042: 2000")
    );
    assert_eq!(run.payload["record"]["outstanding"], json!(2000));

    let still = set("amount_paid", json!(10)).await;
    assert!(still.runs.is_empty(), "still true: no new run");
    let dropped = set("amount_paid", json!(1500)).await;
    assert!(dropped.runs.is_empty(), "true → false: nothing");
    let again = set("amount_paid", json!(0)).await;
    assert_eq!(again.runs.len(), 1, "false → true again fires again");
    assert_eq!(again.runs[0].delivery_id, "record:in_2:2");

    let condition_runs = env
        .store
        .workflow_runs("acme")
        .await
        .expect("runs")
        .into_iter()
        .filter(|r| r.workflow == "large-balance")
        .count();
    assert_eq!(condition_runs, 2);
    // Synced writes evaluate conditions too (Store::commit reports them): in_3 arrives from a
    // sync above 1000, so the condition fires at once, from the sync.
    seed(
        &env.store,
        &installation,
        "invoice",
        vec![("in_3".into(), invoice(2500))],
    )
    .await;
    let from_sync: Vec<_> = env
        .store
        .workflow_runs("acme")
        .await
        .expect("runs")
        .into_iter()
        .filter(|r| r.workflow == "large-balance" && r.delivery_id.starts_with("record:in_3:"))
        .collect();
    assert_eq!(from_sync.len(), 1, "a synced write fired the condition");
    assert_eq!(from_sync[0].depth, 0);
    assert_eq!(from_sync[0].status, WorkflowRunStatus::Succeeded);
    // The webhook workflow's own write keeps the condition true: no second run.
    let webhook = env
        .store
        .run_webhook_workflows(
            &inst,
            "evt_3",
            "invoice.payment_failed",
            &payment_failed("in_3"),
            t0(),
        )
        .await
        .expect("dispatch");
    assert_eq!(webhook[0].status, WorkflowRunStatus::Succeeded);
    let after: usize = env
        .store
        .workflow_runs("acme")
        .await
        .expect("runs")
        .into_iter()
        .filter(|r| r.workflow == "large-balance" && r.delivery_id.starts_with("record:in_3:"))
        .count();
    assert_eq!(after, 1, "still true: no new run");
}

#[tokio::test]
async fn two_tenants_with_the_same_connector_share_no_definitions_runs_or_records() {
    let env = env().await;
    let a = tenant(&env.store, "tenant-a").await;
    let b = tenant(&env.store, "tenant-b").await;
    assert_ne!(a, b);

    // The same delivery id reaches tenant A only.
    let runs_a = env
        .store
        .run_webhook_workflows(
            &a,
            "evt_1",
            "invoice.payment_failed",
            &payment_failed("in_1"),
            t0(),
        )
        .await
        .expect("dispatch a");
    assert_eq!(runs_a[0].status, WorkflowRunStatus::Succeeded);
    assert_eq!(runs_a[0].tenant_id, "tenant-a");
    assert_eq!(
        record(&env.store, "tenant-a", "invoice", "in_1").await["status"],
        json!("payment_failed")
    );
    assert_eq!(
        record(&env.store, "tenant-b", "invoice", "in_1").await["status"],
        json!("open")
    );
    assert_eq!(count(&env.store, "tenant-a", "task").await, 1);
    assert_eq!(count(&env.store, "tenant-b", "task").await, 0);
    assert!(
        env.store
            .workflow_runs("tenant-b")
            .await
            .expect("runs")
            .is_empty()
    );

    // The same delivery id at tenant B is B's own first delivery.
    let runs_b = env
        .store
        .run_webhook_workflows(
            &b,
            "evt_1",
            "invoice.payment_failed",
            &payment_failed("in_1"),
            t0(),
        )
        .await
        .expect("dispatch b");
    assert_eq!(runs_b[0].status, WorkflowRunStatus::Succeeded);
    assert_ne!(runs_b[0].id, runs_a[0].id);
    assert_ne!(runs_b[0].workflow_id, runs_a[0].workflow_id);
    let runs_a_after = env.store.workflow_runs("tenant-a").await.expect("runs");
    assert!(runs_a_after.iter().all(|r| r.tenant_id == "tenant-a"));
    assert_eq!(runs_a_after.len(), 1);

    // A record condition in A does not fire B's workflow.
    let edit = env
        .store
        .update_record_fields(
            "tenant-a",
            "invoice",
            "in_1",
            &[("amount_due".into(), FieldInput::Json(json!(5000)))],
            &admin(),
            t0(),
        )
        .await
        .expect("edit a");
    assert_eq!(edit.runs.len(), 1);
    assert_eq!(edit.runs[0].tenant_id, "tenant-a");
    assert_eq!(
        env.store
            .workflow_runs("tenant-b")
            .await
            .expect("runs")
            .len(),
        1
    );

    // Definitions: B moves to v2; A stays at v1.
    let mut fields = invoice_fields();
    fields
        .as_array_mut()
        .expect("array")
        .push(json!({"name": "memo", "type": "string"}));
    let v2 = manifest(invoices(fields), json!([payment_failed_workflow()]));
    env.store
        .provision(&b, &v2, ChangePolicy::AdditiveOnly, &admin(), t0())
        .await
        .expect("provision b");
    let defs_a = env.store.object_definitions("tenant-a").await.expect("a");
    let defs_b = env.store.object_definitions("tenant-b").await.expect("b");
    assert_eq!((defs_a[0].version, defs_b[0].version), (1, 2));
    assert_eq!(defs_a[0].installation_id, a);
    assert_eq!(defs_b[0].installation_id, b);
    let catalog_a = env
        .store
        .object_catalog("tenant-a")
        .await
        .expect("catalog a");
    assert!(
        catalog_a.watches("invoice"),
        "A keeps its record-condition workflow"
    );
    let catalog_b = env
        .store
        .object_catalog("tenant-b")
        .await
        .expect("catalog b");
    assert!(
        !catalog_b.watches("invoice"),
        "B's was removed from its manifest"
    );
    let workflows_b = env.store.workflow_definitions("tenant-b").await.expect("b");
    assert!(workflows_b.iter().all(|w| w.installation_id == b));
    assert!(
        workflows_b
            .iter()
            .any(|w| w.name == "large-balance" && !w.enabled)
    );
    let workflows_a = env.store.workflow_definitions("tenant-a").await.expect("a");
    assert!(
        workflows_a
            .iter()
            .all(|w| w.installation_id == a && w.enabled)
    );

    // Audit trails are per tenant.
    let events_b = env.store.audit_events("tenant-b").await.expect("audit b");
    assert!(events_b.iter().all(|e| e.tenant_id == "tenant-b"));
}
