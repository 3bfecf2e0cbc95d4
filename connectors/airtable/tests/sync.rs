//! The Airtable connector against the testkit's faithful fake Airtable, through the real
//! runner and store (real clock, paced at the manifest's 4 requests per second under the
//! fake's 5 per second per base): schema discovery, ≥ 3 pages, formulas computed by the
//! platform equal to Airtable's, an untranslatable formula kept as synced and reported, an
//! offset that expires mid-listing, deletions on a full pass, new and retyped fields, and a
//! crash then re-run.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use ivory_connector_airtable::{AirtableConnector, manifest};
use ivory_runtime::store::Tombstones;
use ivory_runtime::{RunError, Runner, Store, SyncOptions, SyncSummary};
use ivory_sdk::fetch::RetryPolicy;
use ivory_sdk::manifest::FieldType;
use ivory_sdk::{Clock, Credentials, Secret};
use ivory_testkit::airtable::{BASE_ID, FakeAirtable, TEST_ACCESS_TOKEN};
use jiff::Timestamp;
use serde_json::{Value, json};

const ORDERS: usize = 250;
const CUSTOMERS: usize = 12;

struct World {
    _dir: tempfile::TempDir,
    store: Store,
}

async fn world(settings: &[(&str, &str)]) -> World {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path().join("ivory.db").to_str().expect("path"))
        .await
        .expect("store");
    let settings: BTreeMap<String, String> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    store
        .ensure_installation("acme", manifest(), &settings, Timestamp::now())
        .await
        .expect("installed");
    World { _dir: dir, store }
}

fn options(fake: &FakeAirtable) -> SyncOptions {
    SyncOptions {
        base_url: Some(fake.base_url()),
        retry: RetryPolicy {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..SyncOptions::default()
    }
}

fn credentials() -> Credentials {
    Credentials::OAuth2 {
        access_token: Secret::new(TEST_ACCESS_TOKEN),
        expires_at: None,
    }
}

/// A sync whose clock is now plus `offset` seconds.
async fn sync_at(store: &Store, fake: &FakeAirtable, offset: i64) -> Result<SyncSummary, RunError> {
    let clock = Clock::starting_at(
        Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(offset))
            .expect("time"),
    );
    Runner::new(store.clone(), clock)
        .sync(
            "acme",
            manifest(),
            &AirtableConnector::default(),
            credentials(),
            options(fake),
        )
        .await
}

async fn sync(store: &Store, fake: &FakeAirtable) -> Result<SyncSummary, RunError> {
    sync_at(store, fake, 0).await
}

async fn export(store: &Store, kind: &str, tombstones: Tombstones) -> Vec<(String, Value, bool)> {
    store
        .export_records("acme", kind, tombstones)
        .map_ok(|r| (r.id, r.data, r.deleted_at.is_some()))
        .try_collect()
        .await
        .expect("export")
}

/// What the platform should hold for a fake record: Airtable's cells by name (formulas as
/// Airtable computed them), an unchecked checkbox (omitted by Airtable) as `false`.
fn expected(record: &Value, checkboxes: &[&str]) -> (String, Value) {
    let mut fields = record["fields"].clone();
    for name in checkboxes {
        if fields.get(*name).is_none() {
            fields[*name] = json!(false);
        }
    }
    (record["id"].as_str().expect("id").to_owned(), fields)
}

async fn assert_mirrors(store: &Store, fake: &FakeAirtable) {
    for (table, kind, checkboxes) in [
        ("Orders", "airtable_orders", &["Paid"][..]),
        ("Customers", "airtable_customers", &[][..]),
    ] {
        let mut want: Vec<(String, Value)> = fake
            .records(table)
            .iter()
            .map(|r| expected(r, checkboxes))
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let got: Vec<(String, Value)> = export(store, kind, Tombstones::Exclude)
            .await
            .into_iter()
            .map(|(id, data, _)| (id, data))
            .collect();
        assert_eq!(got.len(), want.len(), "{kind}");
        for (got, want) in got.iter().zip(&want) {
            assert_eq!(
                got, want,
                "{kind} record {} differs from Airtable's",
                want.0
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_the_schema_and_mirrors_every_page_with_formulas_computed_by_the_platform() {
    let w = world(&[("baseId", BASE_ID)]).await;
    let fake = FakeAirtable::start(ORDERS, CUSTOMERS).await.expect("fake");
    let summary = sync(&w.store, &fake).await.expect("sync");
    let total = (ORDERS + CUSTOMERS) as u64;
    assert_eq!(summary.totals.records_created, total);
    assert_eq!(
        summary.totals.pages,
        3 + 1,
        "three Orders pages, one Customers page"
    );
    assert_eq!(summary.totals.requests, 1 + 3 + 1, "schema, then the pages");
    assert_eq!(
        summary.totals.responses_429, 0,
        "the declared rate stays under 5 req/s"
    );
    assert_eq!(summary.cursor, None, "cursor: none");
    let notes = summary.notes.join("\n");
    assert!(
        notes.contains("\"Status Code\"") && notes.contains("SWITCH"),
        "the untranslatable formula is reported: {notes}"
    );
    assert_eq!(summary.notes.len(), 1, "{notes}");

    // Every listing request pages by 100 and asks for field ids.
    for request in fake
        .requests()
        .iter()
        .filter(|r| !r.path.contains("/meta/"))
    {
        assert!(request.query.contains("pageSize=100"), "{request:?}");
        assert!(
            request.query.contains("returnFieldsByFieldId=true"),
            "{request:?}"
        );
    }

    // One object per table, Airtable types mapped, formulas translated to platform names.
    let definitions = w.store.object_definitions("acme").await.expect("defs");
    let kinds: Vec<&str> = definitions.iter().map(|d| d.kind.as_str()).collect();
    assert_eq!(kinds, ["airtable_customers", "airtable_orders"]);
    let orders = &definitions[1].spec;
    let field = |name: &str| {
        orders
            .fields
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("field {name}"))
    };
    for (name, field_type) in [
        ("Name", FieldType::String),
        ("Qty", FieldType::Number),
        ("Unit Price", FieldType::Currency),
        ("Status", FieldType::String),
        ("Paid", FieldType::Boolean),
        ("Order Date", FieldType::Datetime),
        ("Customer", FieldType::Json),
        ("Tags", FieldType::Json),
        ("Notes", FieldType::String),
        ("Status Code", FieldType::String),
    ] {
        assert_eq!(field(name).r#type, field_type, "{name}");
    }
    for (name, formula) in [
        ("Total", "{Qty} * {Unit Price}"),
        ("Total with tax", "ROUND({Total} * 1.2, 2)"),
        ("Label", "CONCATENATE(UPPER({Name}), \" x\", {Qty})"),
        ("Outstanding", "IF({Paid}, 0, {Total with tax})"),
    ] {
        assert_eq!(field(name).r#type, FieldType::Formula, "{name}");
        assert_eq!(field(name).formula.as_deref(), Some(formula), "{name}");
    }
    let customers = &definitions[0].spec;
    let types: Vec<(&str, FieldType)> = customers
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.r#type))
        .collect();
    assert_eq!(
        types,
        [
            ("Name", FieldType::String),
            ("Email", FieldType::String),
            ("Rating", FieldType::Number),
            ("Created", FieldType::Datetime),
            ("Logo", FieldType::Json),
            ("Account Manager", FieldType::Json),
            ("Hologram", FieldType::Json),
            ("Tier", FieldType::Formula),
        ]
    );

    // The platform computed every formula field (the connector does not copy Airtable's value
    // of a translated formula) and it equals Airtable's value for every fixture record.
    assert_mirrors(&w.store, &fake).await;

    // A second sync rewrites nothing.
    let again = sync(&w.store, &fake).await.expect("again");
    assert_eq!(again.totals.records_unchanged, total);
    assert_eq!(
        (
            again.totals.records_created,
            again.totals.records_updated,
            again.totals.records_deleted
        ),
        (0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_that_expires_mid_listing_restarts_the_table_without_duplicates() {
    let w = world(&[("baseId", BASE_ID), ("tables", "Orders")]).await;
    let fake = FakeAirtable::start(ORDERS, CUSTOMERS).await.expect("fake");
    fake.expire_offset_at_page(3);
    let summary = sync(&w.store, &fake).await.expect("sync");
    assert_eq!(
        summary.totals.records_created, ORDERS as u64,
        "no duplicate"
    );
    assert_eq!(
        summary.totals.records_unchanged, 200,
        "pages 1–2 were read again"
    );
    assert!(
        summary.notes.iter().any(|n| n.contains("restarted")),
        "{:?}",
        summary.notes
    );
    let requests = fake.requests();
    let expired = requests
        .iter()
        .position(|r| r.status == 422)
        .expect("a 422");
    assert!(requests[expired].query.contains("offset="));
    assert!(
        !requests[expired + 1].query.contains("offset="),
        "the listing started over: {:?}",
        requests[expired + 1]
    );
    assert_eq!(
        export(&w.store, "airtable_orders", Tombstones::Include)
            .await
            .len(),
        ORDERS
    );
    assert!(
        export(&w.store, "airtable_customers", Tombstones::Include)
            .await
            .is_empty(),
        "tables=Orders"
    );
    assert_mirrors_orders_only(&w.store, &fake).await;
}

async fn assert_mirrors_orders_only(store: &Store, fake: &FakeAirtable) {
    let want: Vec<(String, Value)> = {
        let mut v: Vec<_> = fake
            .records("Orders")
            .iter()
            .map(|r| expected(r, &["Paid"]))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let got: Vec<(String, Value)> = export(store, "airtable_orders", Tombstones::Exclude)
        .await
        .into_iter()
        .map(|(id, data, _)| (id, data))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_edits_and_new_fields_land_on_the_next_full_pass() {
    let w = world(&[("baseId", BASE_ID)]).await;
    let fake = FakeAirtable::start(ORDERS, CUSTOMERS).await.expect("fake");
    sync(&w.store, &fake).await.expect("first");

    let orders = fake.records("Orders");
    let first_page = orders[3]["id"].as_str().expect("id").to_owned();
    let last_page = orders[240]["id"].as_str().expect("id").to_owned();
    let edited = orders[120]["id"].as_str().expect("id").to_owned();
    assert!(fake.delete_record("Orders", &first_page));
    assert!(fake.delete_record("Orders", &last_page));
    assert!(fake.edit_record("Orders", &edited, json!({"Qty": 40, "Paid": false})));
    fake.add_field(
        "Orders",
        "Priority",
        "singleSelect",
        Some(json!({"choices": [{"id": "selhigh000000001", "name": "high"}]})),
    )
    .expect("field");
    assert!(fake.edit_record("Orders", &edited, json!({"Priority": "high"})));
    let added = fake
        .add_record(
            "Orders",
            json!({"Name": "Order new", "Qty": 2, "Unit Price": 10.5, "Status": "open"}),
        )
        .expect("record");

    let second = sync(&w.store, &fake).await.expect("second");
    assert_eq!(second.totals.records_deleted, 2);
    assert_eq!(second.totals.records_created, 1);
    assert_eq!(second.totals.records_updated, 1);
    let all = export(&w.store, "airtable_orders", Tombstones::Include).await;
    let find = |id: &str| all.iter().find(|(rid, ..)| rid == id).expect(id).clone();
    assert!(find(&first_page).2 && find(&last_page).2, "tombstoned");
    assert!(!find(&added).2);
    let edited_now = find(&edited).1;
    assert_eq!(
        edited_now["Priority"], "high",
        "the new Airtable field synced"
    );
    assert_eq!(
        edited_now["Total"].as_f64(),
        Some(40.0 * edited_now["Unit Price"].as_f64().expect("price")),
        "recomputed by the platform"
    );
    assert_mirrors(&w.store, &fake).await;

    let definitions = w.store.object_definitions("acme").await.expect("defs");
    let orders = definitions
        .iter()
        .find(|d| d.kind == "airtable_orders")
        .expect("orders");
    assert_eq!(orders.version, 2, "additive change: a new version");
    let priority = orders
        .spec
        .fields
        .iter()
        .find(|f| f.name == "Priority")
        .expect("the new field was provisioned");
    assert_eq!(priority.r#type, FieldType::String);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retyped_field_is_refused_naming_it_and_the_other_tables_still_sync() {
    let w = world(&[("baseId", BASE_ID)]).await;
    let fake = FakeAirtable::start(120, CUSTOMERS).await.expect("fake");
    sync(&w.store, &fake).await.expect("first");
    assert!(fake.retype_field("Orders", "Qty", "singleLineText", None));
    let customer = fake.records("Customers")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(fake.edit_record("Customers", &customer, json!({"Rating": 5})));
    match sync(&w.store, &fake).await {
        Err(RunError::Failed { summary, error }) => {
            let text = error.to_string();
            assert!(
                text.contains("\"Orders\"")
                    && text.contains("\"Qty\"")
                    && text.contains("retyped from number to string"),
                "{text}"
            );
            assert_eq!(summary.totals.records_updated, 1, "Customers synced");
        }
        other => panic!("expected a refused schema change, got {other:?}"),
    }
    let customers = export(&w.store, "airtable_customers", Tombstones::Exclude).await;
    let updated = customers
        .iter()
        .find(|(id, ..)| *id == customer)
        .expect("customer");
    assert_eq!(updated.1["Rating"], 5);
    assert_eq!(updated.1["Tier"], "VIP", "platform-computed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_listing_then_rerun_is_exact_and_an_unfinished_pass_deletes_nothing() {
    // The clean result: one sync of a base where the record was already deleted.
    let clean = world(&[("baseId", BASE_ID)]).await;
    let fake = FakeAirtable::start(ORDERS, CUSTOMERS).await.expect("fake");
    let gone = fake.records("Orders")[7]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(fake.delete_record("Orders", &gone));
    sync(&clean.store, &fake).await.expect("clean");
    let expected_orders = export(&clean.store, "airtable_orders", Tombstones::Exclude).await;
    let expected_customers = export(&clean.store, "airtable_customers", Tombstones::Exclude).await;
    assert_eq!(expected_orders.len(), ORDERS - 1);

    // A first sync sees the record; it is deleted upstream; the next sync dies mid-listing.
    let w = world(&[("baseId", BASE_ID)]).await;
    let fake = FakeAirtable::start(ORDERS, CUSTOMERS).await.expect("fake");
    sync(&w.store, &fake).await.expect("first");
    assert!(fake.delete_record("Orders", &gone));
    let served = fake.requests().len();
    // Schema, Customers, Orders page 1, then Orders page 2 never answers.
    fake.hang_at_request(served + 4);
    let connector = AirtableConnector::default();
    let runner = Runner::new(w.store.clone(), Clock::system());
    let crashing = runner.sync(
        "acme",
        manifest(),
        &connector,
        credentials(),
        options(&fake),
    );
    tokio::select! {
        _ = fake.hung() => {}
        done = crashing => panic!("expected a hang, the sync ended: {done:?}"),
    }
    let after_crash = export(&w.store, "airtable_orders", Tombstones::Include).await;
    let record = after_crash
        .iter()
        .find(|(id, ..)| *id == gone)
        .expect("still stored");
    assert!(!record.2, "an unfinished pass deletes nothing");

    // The process is gone; an hour later its lease has expired and a new run starts over.
    let rerun = sync_at(&w.store, &fake, 3_600).await.expect("re-run");
    assert_eq!(rerun.totals.records_deleted, 1);
    assert_eq!(rerun.totals.records_created, 0, "nothing duplicated");
    assert_eq!(
        export(&w.store, "airtable_orders", Tombstones::Exclude).await,
        expected_orders
    );
    assert_eq!(
        export(&w.store, "airtable_customers", Tombstones::Exclude).await,
        expected_customers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_base_or_table_setting_fails_clearly_and_changes_nothing() {
    let fake = FakeAirtable::start(5, 2).await.expect("fake");
    let w = world(&[("baseId", BASE_ID), ("tables", "Orders, Invoices")]).await;
    match sync(&w.store, &fake).await {
        Err(RunError::Failed { error, .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("Invoices") && text.contains("Customers, Orders"),
                "{text}"
            );
        }
        other => panic!("expected a configuration failure, got {other:?}"),
    }
    let w = world(&[("baseId", "appDoesNotExist00")]).await;
    match sync(&w.store, &fake).await {
        Err(RunError::Failed { error, .. }) => {
            assert!(error.to_string().contains("403"), "{error}");
        }
        other => panic!("expected a refused base, got {other:?}"),
    }
    assert!(
        w.store
            .object_definitions("acme")
            .await
            .expect("defs")
            .is_empty()
    );
}
