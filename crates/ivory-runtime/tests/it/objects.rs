//! Object definitions and formula fields on a real SQLite store: provisioning (idempotent,
//! versioned, additive migration, breaking changes refused unless allowed, bad formulas and
//! cycles refused with their position), formulas computed on every write with the injected
//! clock, platform-side edits validated against the definition.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use ivory_runtime::Installation;
use ivory_runtime::objects::{
    BreakingChange, ChangeOutcome, ChangePolicy, FieldInput, ObjectError,
};
use ivory_runtime::store::{Actor, CommitScope, Tombstones};
use ivory_runtime::{Store, StoreError};
use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::{Record, RecordOp};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::support::{env, t0};

/// The invoice object of the Stripe-like test connector.
pub(crate) fn invoice_fields() -> Value {
    json!([
        {"name": "number", "type": "string"},
        {"name": "customer", "type": "string", "required": true},
        {"name": "status", "type": "string", "required": true},
        {"name": "amount_due", "type": "currency"},
        {"name": "amount_paid", "type": "currency"},
        {"name": "due_date", "type": "datetime"},
        {"name": "outstanding", "type": "formula", "formula": "{amount_due} - {amount_paid}"},
        {"name": "overdue", "type": "formula",
         "formula": "AND({outstanding} > 0, DATETIME_DIFF(TODAY(), {due_date}, \"days\") > 30)"},
        {"name": "follow_up", "type": "reference", "references": "task"}
    ])
}

/// A Stripe-like manifest with the given `objects` and `workflows` blocks.
pub(crate) fn manifest(objects: Value, workflows: Value) -> Manifest {
    serde_json::from_value(json!({
        "id": "stripe-revenue",
        "name": "Stripe Revenue",
        "version": "1.0.0",
        "publisher": "Ivorycom",
        "description": "Mirrors invoices; follows up failed payments.",
        "hosts": ["api.stripe.com"],
        "connection": {"type": "api_key", "sync": {
            "cursor": "opaque_token", "direction": "inbound",
            "conflictPolicy": "source_wins", "rateLimitPerMinute": 100}},
        "webhooks": {"scheme": "stripe", "events": ["invoice.payment_failed", "invoice.paid"]},
        "objects": objects,
        "workflows": workflows,
    }))
    .expect("manifest")
}

pub(crate) fn invoices(fields: Value) -> Value {
    json!([{"kind": "invoice", "label": "Invoice", "fields": fields}])
}

pub(crate) fn admin() -> Actor {
    Actor::User("admin@acme.test".into())
}

pub(crate) async fn install(store: &Store, tenant: &str, manifest: &Manifest) -> Installation {
    store
        .ensure_installation(tenant, manifest, &BTreeMap::new(), t0())
        .await
        .expect("installation")
}

/// Writes records the way a sync does.
pub(crate) async fn seed(
    store: &Store,
    installation: &Installation,
    kind: &str,
    records: Vec<(String, Value)>,
) {
    let ops: Vec<RecordOp> = records
        .into_iter()
        .map(|(id, data)| RecordOp::Upsert {
            kind: kind.to_owned(),
            record: Record::new(id, data),
        })
        .collect();
    let scope = CommitScope {
        tenant: &installation.tenant_id,
        installation: &installation.id,
        now: t0(),
        fence: None,
    };
    store.commit(&scope, &ops, None).await.expect("commit");
}

pub(crate) async fn record(store: &Store, tenant: &str, kind: &str, id: &str) -> Value {
    store
        .find_record(tenant, kind, id)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("no {kind} {id}"))
        .data
}

pub(crate) async fn count(store: &Store, tenant: &str, kind: &str) -> usize {
    store
        .export_records(tenant, kind, Tombstones::Exclude)
        .try_collect::<Vec<_>>()
        .await
        .expect("export")
        .len()
}

fn days(n: i64) -> Timestamp {
    t0().checked_add(SignedDuration::from_hours(24 * n))
        .expect("time")
}

#[test]
fn the_test_manifest_is_valid_for_the_sdk() {
    let manifest = manifest(invoices(invoice_fields()), json!([]));
    manifest.validate(ValidationMode::Test).expect("valid");
}

#[tokio::test]
async fn provisioning_is_idempotent_and_versioned() {
    let env = env().await;
    let m = manifest(invoices(invoice_fields()), json!([]));
    let inst = install(&env.store, "acme", &m).await;

    let first = env
        .store
        .provision(&inst.id, &m, ChangePolicy::AdditiveOnly, &admin(), t0())
        .await
        .expect("provision");
    assert_eq!(first.tenant, "acme");
    assert_eq!(first.objects.len(), 1);
    assert_eq!(first.objects[0].outcome, ChangeOutcome::Created);
    assert_eq!(first.objects[0].version, 1);
    let events = env.store.audit_events("acme").await.expect("audit").len();
    assert!(events >= 1, "provisioning is audited");

    let again = env
        .store
        .provision(&inst.id, &m, ChangePolicy::AdditiveOnly, &admin(), days(1))
        .await
        .expect("provision again");
    assert!(!again.changed());
    assert_eq!(again.objects[0].outcome, ChangeOutcome::Unchanged);
    assert_eq!(again.objects[0].version, 1);
    assert_eq!(
        env.store.audit_events("acme").await.expect("audit").len(),
        events,
        "an identical manifest writes nothing"
    );
    let definitions = env.store.object_definitions("acme").await.expect("list");
    assert_eq!(definitions.len(), 1);
    assert_eq!(definitions[0].version, 1);
    assert_eq!(definitions[0].installation_id, inst.id);
    assert_eq!(definitions[0].updated_at, t0());
}

#[tokio::test]
async fn an_added_formula_field_migrates_existing_records_in_batches() {
    let env = env().await;
    let v1 = manifest(invoices(invoice_fields()), json!([]));
    let inst = install(&env.store, "acme", &v1).await;
    env.store
        .provision(&inst.id, &v1, ChangePolicy::AdditiveOnly, &admin(), t0())
        .await
        .expect("v1");
    // More records than one recomputation batch (200).
    let records = (0..250)
        .map(|i| {
            (
                format!("in_{i:03}"),
                json!({"customer": "cus_1", "status": "open", "amount_due": i, "amount_paid": "0"}),
            )
        })
        .collect();
    seed(&env.store, &inst, "invoice", records).await;
    let before = env
        .store
        .find_record("acme", "invoice", "in_007")
        .await
        .expect("read")
        .expect("record");

    let mut fields = invoice_fields();
    fields.as_array_mut().expect("array").push(json!(
        {"name": "amount_due_cents", "type": "formula", "formula": "ROUND({amount_due} * 100, 0)"}
    ));
    let v2 = manifest(invoices(fields), json!([]));
    let report = env
        .store
        .provision(&inst.id, &v2, ChangePolicy::AdditiveOnly, &admin(), days(1))
        .await
        .expect("v2");
    assert_eq!(report.objects[0].outcome, ChangeOutcome::Updated);
    assert_eq!(report.objects[0].version, 2);
    assert_eq!(report.objects[0].added_fields, ["amount_due_cents"]);
    assert!(report.objects[0].breaking.is_empty());
    assert_eq!(report.recomputed, 250, "every existing record was migrated");

    let after = env
        .store
        .find_record("acme", "invoice", "in_007")
        .await
        .expect("read")
        .expect("record");
    assert_eq!(after.data["amount_due_cents"], json!(700));
    assert_eq!(after.data["outstanding"], json!(7));
    assert_eq!(after.version, before.version + 1);
    assert_eq!(
        after.platform_updated_at, None,
        "a migration is not an edit"
    );

    // Recomputing again changes nothing.
    assert_eq!(
        env.store
            .recompute_formulas("acme", "invoice", days(1))
            .await
            .expect("recompute"),
        0
    );
}

#[tokio::test]
async fn removing_or_retyping_a_field_is_refused_unless_the_change_is_marked_breaking() {
    let env = env().await;
    let v1 = manifest(invoices(invoice_fields()), json!([]));
    let inst = install(&env.store, "acme", &v1).await;
    env.store
        .provision(&inst.id, &v1, ChangePolicy::AdditiveOnly, &admin(), t0())
        .await
        .expect("v1");

    let mut fields = invoice_fields();
    let list = fields.as_array_mut().expect("array");
    list.retain(|f| f["name"] != "number");
    for field in list.iter_mut() {
        if field["name"] == "amount_due" {
            field["type"] = json!("string");
        }
    }
    // `outstanding` no longer type-checks over a string: drop the formulas using it.
    list.retain(|f| f["name"] != "outstanding" && f["name"] != "overdue");
    let v2 = manifest(invoices(fields), json!([]));

    let refused = env
        .store
        .provision(&inst.id, &v2, ChangePolicy::AdditiveOnly, &admin(), days(1))
        .await
        .expect_err("breaking");
    let ObjectError::Breaking { changes } = &refused else {
        panic!("expected Breaking, got {refused:?}");
    };
    assert!(changes.contains(&BreakingChange::FieldRemoved {
        kind: "invoice".into(),
        field: "number".into()
    }));
    assert!(changes.contains(&BreakingChange::FieldRetyped {
        kind: "invoice".into(),
        field: "amount_due".into(),
        from: "currency".into(),
        to: "string".into()
    }));
    let message = refused.to_string();
    assert!(message.contains("field \"number\" removed"), "{message}");
    assert!(
        message.contains("field \"amount_due\" retyped from currency to string"),
        "{message}"
    );
    let definitions = env.store.object_definitions("acme").await.expect("list");
    assert_eq!(definitions[0].version, 1, "nothing was written");

    // A removed object kind is breaking too.
    let no_objects = manifest(json!([]), json!([]));
    let refused = env
        .store
        .provision(
            &inst.id,
            &no_objects,
            ChangePolicy::AdditiveOnly,
            &admin(),
            days(1),
        )
        .await
        .expect_err("breaking");
    assert!(
        matches!(&refused, ObjectError::Breaking { changes }
            if changes == &[BreakingChange::ObjectRemoved { kind: "invoice".into() }]),
        "{refused:?}"
    );

    // Marked breaking, it applies.
    let applied = env
        .store
        .provision(
            &inst.id,
            &v2,
            ChangePolicy::AllowBreaking,
            &admin(),
            days(2),
        )
        .await
        .expect("breaking allowed");
    assert_eq!(applied.objects[0].outcome, ChangeOutcome::Updated);
    assert_eq!(applied.objects[0].version, 2);
    assert_eq!(applied.objects[0].breaking.len(), 4, "{applied:?}");
    let catalog = env.store.object_catalog("acme").await.expect("catalog");
    assert!(!catalog.computes("invoice"));
    let definition = catalog.definition("invoice").expect("definition");
    assert!(definition.fields.iter().all(|f| f.name != "number"));
}

#[tokio::test]
async fn a_formula_that_does_not_parse_or_type_check_is_refused_with_its_position() {
    let env = env().await;
    let cases = [
        (
            "{amount_due} -* 2",
            "object \"invoice\", field \"bad\": column 15:",
            (1, 15),
        ),
        (
            "{amount_due} * {amount_du}",
            "object \"invoice\", field \"bad\": column 16: unknown field {amount_du}",
            (1, 16),
        ),
        (
            "{amount_due} +\n  {status}",
            "object \"invoice\", field \"bad\": line 2, column 3:",
            (2, 3),
        ),
    ];
    for (formula, expected, (line, column)) in cases {
        let mut fields = invoice_fields();
        fields
            .as_array_mut()
            .expect("array")
            .push(json!({"name": "bad", "type": "formula", "formula": formula}));
        let m = manifest(invoices(fields), json!([]));
        let inst = install(&env.store, "acme", &m).await;
        let error = env
            .store
            .provision(&inst.id, &m, ChangePolicy::AdditiveOnly, &admin(), t0())
            .await
            .expect_err("refused");
        let ObjectError::Formula {
            kind,
            field,
            error: compile,
        } = &error
        else {
            panic!("expected a formula error, got {error:?}");
        };
        assert_eq!((kind.as_str(), field.as_str()), ("invoice", "bad"));
        assert_eq!(
            (compile.line(), compile.column()),
            (line, column),
            "{formula}"
        );
        assert!(error.to_string().starts_with(expected), "{error}");
    }
    assert!(
        env.store
            .object_definitions("acme")
            .await
            .expect("list")
            .is_empty(),
        "nothing was provisioned"
    );
}

#[tokio::test]
async fn formula_fields_referencing_each_other_in_a_cycle_are_refused() {
    let env = env().await;
    let m = manifest(
        json!([{"kind": "deal", "fields": [
            {"name": "amount", "type": "number"},
            {"name": "a", "type": "formula", "formula": "{b} + {amount}"},
            {"name": "b", "type": "formula", "formula": "{c} * 2"},
            {"name": "c", "type": "formula", "formula": "IF({a} > 1, 1, 0)"},
        ]}]),
        json!([]),
    );
    let inst = install(&env.store, "acme", &m).await;
    let error = env
        .store
        .provision(&inst.id, &m, ChangePolicy::AdditiveOnly, &admin(), t0())
        .await
        .expect_err("cycle");
    assert!(
        matches!(&error, ObjectError::Cycle { kind, cycle } if kind == "deal" && cycle == &["a", "b", "c", "a"]),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "object \"deal\": formula fields reference each other in a cycle: {a} → {b} → {c} → {a}"
    );
}

#[tokio::test]
async fn formulas_are_computed_on_every_write_with_the_injected_clock_ignoring_upstream_values() {
    let env = env().await;
    let m = manifest(invoices(invoice_fields()), json!([]));
    let inst = install(&env.store, "acme", &m).await;
    env.store
        .provision(&inst.id, &m, ChangePolicy::AdditiveOnly, &admin(), t0())
        .await
        .expect("provision");
    let catalog = env.store.object_catalog("acme").await.expect("catalog");
    assert!(catalog.computes("invoice"));
    assert!(
        !catalog.computes("customer"),
        "no definition: nothing to compute"
    );

    // The hook Store::commit calls: upstream values for formula fields are overwritten.
    let mut upstream = json!({
        "customer": "cus_1", "status": "open", "amount_due": "120.50", "amount_paid": 20,
        "due_date": "2026-01-01", "outstanding": 999999, "overdue": "yes", "extra": [1, 2]
    });
    catalog
        .apply("invoice", &mut upstream, t0())
        .expect("apply");
    assert_eq!(upstream["outstanding"], json!(100.5));
    assert_eq!(
        upstream["overdue"],
        json!(true),
        "31 days after the due date"
    );
    assert_eq!(
        upstream["extra"],
        json!([1, 2]),
        "undeclared fields pass through"
    );
    let earlier = "2026-01-20T00:00:00Z".parse().expect("time");
    let computed = catalog
        .computed("invoice", &upstream, earlier)
        .expect("computed")
        .expect("a kind with formulas");
    assert_eq!(
        computed["overdue"],
        json!(false),
        "TODAY() is the injected now"
    );
    assert_eq!(
        catalog.computed("customer", &upstream, t0()).expect("ok"),
        None,
        "no copy for kinds without formulas"
    );
    let mut not_an_object = json!([1]);
    assert!(matches!(
        catalog.apply("invoice", &mut not_an_object, t0()),
        Err(ObjectError::NotAnObject { .. })
    ));

    // A platform-side edit recomputes too, bumps the version, stamps the edit and audits it.
    seed(
        &env.store,
        &inst,
        "invoice",
        vec![(
            "in_1".into(),
            json!({"customer": "cus_1", "status": "open", "amount_due": 100, "amount_paid": 0,
                   "due_date": "2026-01-15", "outstanding": -5}),
        )],
    )
    .await;
    let before = env
        .store
        .find_record("acme", "invoice", "in_1")
        .await
        .expect("read")
        .expect("record");
    let update = env
        .store
        .update_record_fields(
            "acme",
            "invoice",
            "in_1",
            &[("amount_paid".into(), FieldInput::Text("30".into()))],
            &admin(),
            days(3),
        )
        .await
        .expect("edit");
    assert_eq!(update.data["amount_paid"], json!(30));
    assert_eq!(update.data["outstanding"], json!(70));
    assert_eq!(
        update.data["overdue"],
        json!(false),
        "19 days after the due date"
    );
    assert_eq!(update.version, before.version + 1);
    assert!(update.changed.contains(&"amount_paid".to_owned()));
    assert!(update.changed.contains(&"outstanding".to_owned()));
    let stored = env
        .store
        .find_record("acme", "invoice", "in_1")
        .await
        .expect("read")
        .expect("record");
    assert_eq!(stored.data, update.data);
    assert_eq!(stored.platform_updated_at, Some(days(3)));

    let events = env.store.audit_events("acme").await.expect("audit");
    let edit = events
        .iter()
        .find(|e| e.event_type == "audit.record.update")
        .expect("record.update event");
    assert_eq!(edit.payload["object_id"], json!("invoice/in_1"));
    assert_eq!(edit.payload["user_id"], json!("admin@acme.test"));
    assert_eq!(edit.payload["diff_json"]["before"]["amount_paid"], json!(0));
    assert_eq!(edit.payload["diff_json"]["after"]["amount_paid"], json!(30));
    assert_eq!(edit.payload["diff_json"]["after"]["outstanding"], json!(70));

    // The same edit again changes nothing and writes nothing.
    let same = env
        .store
        .update_record_fields(
            "acme",
            "invoice",
            "in_1",
            &[("amount_paid".into(), FieldInput::Json(json!(30)))],
            &admin(),
            days(3),
        )
        .await
        .expect("no-op edit");
    assert!(same.changed.is_empty());
    assert_eq!(same.version, update.version);
}

#[tokio::test]
async fn platform_edits_are_validated_against_the_definition() {
    let env = env().await;
    let m = manifest(invoices(invoice_fields()), json!([]));
    let inst = install(&env.store, "acme", &m).await;
    env.store
        .provision(&inst.id, &m, ChangePolicy::AdditiveOnly, &admin(), t0())
        .await
        .expect("provision");
    seed(
        &env.store,
        &inst,
        "invoice",
        vec![(
            "in_1".into(),
            json!({"customer": "cus_1", "status": "open"}),
        )],
    )
    .await;
    let edit = |field: &str, input: FieldInput| {
        let store = env.store.clone();
        let field = field.to_owned();
        async move {
            store
                .update_record_fields(
                    "acme",
                    "invoice",
                    "in_1",
                    &[(field, input)],
                    &admin(),
                    days(1),
                )
                .await
        }
    };
    let text = |t: &str| FieldInput::Text(t.into());
    assert!(matches!(
        edit("nope", text("x")).await,
        Err(ObjectError::UnknownField { field, .. }) if field == "nope"
    ));
    assert!(matches!(
        edit("outstanding", FieldInput::Json(json!(1))).await,
        Err(ObjectError::FormulaField { field, .. }) if field == "outstanding"
    ));
    assert!(matches!(
        edit("amount_due", text("twelve")).await,
        Err(ObjectError::FieldType { field, .. }) if field == "amount_due"
    ));
    assert!(matches!(
        edit("amount_due", FieldInput::Json(json!({"a": 1}))).await,
        Err(ObjectError::FieldType { .. })
    ));
    assert!(matches!(
        edit("due_date", text("next tuesday")).await,
        Err(ObjectError::FieldType { .. })
    ));
    assert!(matches!(
        edit("customer", FieldInput::Json(Value::Null)).await,
        Err(ObjectError::RequiredField { field, .. }) if field == "customer"
    ));
    let missing = env
        .store
        .update_record_fields("acme", "invoice", "in_404", &[], &admin(), days(1))
        .await;
    assert!(
        matches!(missing, Err(ObjectError::RecordNotFound { .. })),
        "{missing:?}"
    );
    let version = env
        .store
        .find_record("acme", "invoice", "in_1")
        .await
        .expect("read")
        .expect("record")
        .version;
    assert_eq!(version, 1, "refused edits wrote nothing");

    // Text is converted by the declared type.
    let ok = edit("amount_due", text("12.50")).await.expect("currency");
    assert_eq!(ok.data["amount_due"], json!(12.5));
    let ok = edit("due_date", text("2026-03-01"))
        .await
        .expect("datetime");
    assert_eq!(ok.data["due_date"], json!("2026-03-01"));
    let ok = edit("amount_due", text("")).await.expect("blank");
    assert_eq!(ok.data["amount_due"], Value::Null);
    assert_eq!(
        ok.data["outstanding"],
        json!(0),
        "blank reads as 0 in arithmetic"
    );

    // Kinds without a definition are free-form.
    seed(
        &env.store,
        &inst,
        "note",
        vec![("n1".into(), json!({"text": "hi"}))],
    )
    .await;
    let free = env
        .store
        .update_record_fields(
            "acme",
            "note",
            "n1",
            &[("anything".into(), text("42"))],
            &admin(),
            days(1),
        )
        .await
        .expect("free-form");
    assert_eq!(free.data["anything"], json!("42"));
}

#[tokio::test]
async fn an_object_kind_provisioned_by_another_installation_of_the_tenant_is_refused() {
    let env = env().await;
    let first = manifest(invoices(invoice_fields()), json!([]));
    let inst = install(&env.store, "acme", &first).await;
    env.store
        .provision(&inst.id, &first, ChangePolicy::AdditiveOnly, &admin(), t0())
        .await
        .expect("provision");
    let mut second = first.clone();
    second.id = "other-billing".into();
    let other = install(&env.store, "acme", &second).await;
    let error = env
        .store
        .provision(
            &other.id,
            &second,
            ChangePolicy::AllowBreaking,
            &admin(),
            t0(),
        )
        .await
        .expect_err("owned");
    assert!(
        matches!(&error, ObjectError::KindOwned { kind, owner } if kind == "invoice" && owner == &inst.id),
        "{error:?}"
    );
    let unknown = env
        .store
        .provision(
            "inst_nope",
            &first,
            ChangePolicy::AdditiveOnly,
            &admin(),
            t0(),
        )
        .await;
    assert!(matches!(
        unknown,
        Err(ObjectError::UnknownInstallation { .. })
    ));
    // Refusals convert to a store error for callers that speak StoreError.
    assert!(matches!(
        StoreError::from(error),
        StoreError::Invalid { .. }
    ));
}
