//! DSAR in the store (PLATFORM.md §2): export and erasure by the runtime's rules, the
//! suppression the commit path honours on large batches, and the erasure's atomicity. Runs on
//! SQLite and, with `IVORY_TEST_PG`, on PostgreSQL.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use ivory_runtime::Store;
use ivory_runtime::dsar::{DsarCaller, ErasureMode};
use ivory_runtime::store::{Actor, CommitScope, Tombstones};
use ivory_sdk::{Record, RecordOp};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::env;

const TENANT: &str = "dsar-test";

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("time")
}

fn caller() -> DsarCaller {
    DsarCaller::new(Actor::User("operator-test".into()))
}

async fn commit(store: &Store, ops: Vec<RecordOp>) -> ivory_sdk::CommitReceipt {
    store
        .commit(
            &CommitScope {
                tenant: TENANT,
                installation: "inst_test",
                now: now(),
                fence: None,
            },
            &ops,
            None,
        )
        .await
        .expect("commit")
}

fn upsert(kind: &str, id: &str, data: Value) -> RecordOp {
    RecordOp::Upsert {
        kind: kind.into(),
        record: Record::new(id, data),
    }
}

async fn all(store: &Store, kind: &str) -> BTreeMap<String, Value> {
    store
        .export_records(TENANT, kind, Tombstones::Include)
        .map_ok(|r| (r.id, r.data))
        .try_collect()
        .await
        .expect("export")
}

/// 1,000 contacts in one commit after an erasure: the erased one (by id, and a new id with
/// its email) is dropped, its invoice anonymized, the rest stored unchanged.
#[tokio::test]
async fn suppression_holds_in_large_batches() {
    let env = env().await;
    let store = &env.store;
    commit(
        store,
        vec![
            upsert(
                "contact",
                "7",
                json!({"email": "gone_100%@example.test", "firstname": "F"}),
            ),
            upsert(
                "stripe_invoice",
                "in_test_7",
                json!({"customer_email": "GONE_100%@example.test", "total": 70}),
            ),
            upsert(
                "airtable_people",
                "rec_test_x",
                json!({"mail": "gonex100%@example.test"}),
            ),
        ],
    )
    .await;
    let erased = store
        .dsar_delete(TENANT, "7", ErasureMode::Delete, false, &caller(), now())
        .await
        .expect("erase");
    assert_eq!(
        (erased.deleted, erased.anonymized, erased.blocked),
        (1, 1, false)
    );
    // `_` and `%` in the email are not wildcards: the look-alike row is untouched.
    assert_eq!(all(store, "airtable_people").await.len(), 1);

    let mut ops: Vec<RecordOp> = (0..1000)
        .map(|i| {
            upsert(
                "contact",
                &format!("{}", 1000 + i),
                json!({"email": format!("p{i}@example.test")}),
            )
        })
        .collect();
    ops.insert(
        500,
        upsert(
            "contact",
            "7",
            json!({"email": "gone_100%@example.test", "firstname": "F"}),
        ),
    );
    ops.push(upsert(
        "contact",
        "99999",
        json!({"email": " Gone_100%@Example.test"}),
    ));
    ops.push(upsert(
        "stripe_invoice",
        "in_test_8",
        json!({"customer_email": "gone_100%@example.test", "customer_name": "Fake", "total": 80}),
    ));
    let receipt = commit(store, ops).await;
    assert_eq!(receipt.created, 1001, "{receipt:?}");
    let contacts = all(store, "contact").await;
    assert_eq!(contacts.len(), 1000);
    assert!(!contacts.contains_key("7") && !contacts.contains_key("99999"));
    let invoices = all(store, "stripe_invoice").await;
    assert_eq!(
        invoices["in_test_8"],
        json!({"customer_email": null, "customer_name": null, "total": 80})
    );
    assert_eq!(
        invoices["in_test_7"],
        json!({"customer_email": null, "total": 70})
    );

    // Another tenant is not affected by this tenant's suppression.
    store
        .commit(
            &CommitScope {
                tenant: "other-test",
                installation: "inst_test",
                now: now(),
                fence: None,
            },
            &[upsert(
                "contact",
                "7",
                json!({"email": "gone_100%@example.test"}),
            )],
            None,
        )
        .await
        .expect("commit");
    let other: Vec<_> = store
        .export_records("other-test", "contact", Tombstones::Include)
        .try_collect()
        .await
        .expect("export");
    assert_eq!(other.len(), 1);
}

/// The export shape, and an erasure with its audit event in one transaction; a refused
/// request changes nothing.
#[tokio::test]
async fn export_and_erasure_are_audited_and_checked() {
    let env = env().await;
    let store = &env.store;
    commit(
        store,
        vec![upsert(
            "contact",
            "8",
            json!({"email": "eight@example.test", "phone": "000-test"}),
        )],
    )
    .await;
    let export = store
        .dsar_export(TENANT, "8", &caller(), now())
        .await
        .expect("export");
    let json = serde_json::to_value(&export).expect("json");
    assert_eq!(json["slices"][0]["kind"], "contact");
    assert_eq!(json["slices"][0]["rows"][0]["data"]["phone"], "000-test");
    let none = store
        .dsar_export(TENANT, "nobody", &caller(), now())
        .await
        .expect("export");
    assert_eq!(
        serde_json::to_value(&none).expect("json")["slices"],
        json!([])
    );
    assert!(matches!(
        store
            .dsar_delete(TENANT, " ", ErasureMode::Delete, false, &caller(), now())
            .await,
        Err(ivory_runtime::dsar::DsarError::MissingContact)
    ));
    let held = store
        .dsar_delete(TENANT, "8", ErasureMode::Delete, true, &caller(), now())
        .await
        .expect("held");
    assert!(held.blocked);
    assert_eq!(all(store, "contact").await.len(), 1);

    let anonymized = store
        .dsar_delete(TENANT, "8", ErasureMode::Anonymize, false, &caller(), now())
        .await
        .expect("anonymize");
    assert_eq!((anonymized.deleted, anonymized.anonymized), (0, 1));
    assert_eq!(
        all(store, "contact").await["8"],
        json!({"email": null, "phone": null})
    );
    // A later `delete` hardens it: the anonymized record goes, and a re-sync is dropped.
    let deleted = store
        .dsar_delete(TENANT, "8", ErasureMode::Delete, false, &caller(), now())
        .await
        .expect("delete");
    assert_eq!((deleted.deleted, deleted.anonymized), (1, 0));
    commit(
        store,
        vec![upsert(
            "contact",
            "8",
            json!({"email": "eight@example.test"}),
        )],
    )
    .await;
    assert!(all(store, "contact").await.is_empty());

    let events = store.audit_events(TENANT).await.expect("audit");
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "audit.contact.export",
            "audit.contact.export",
            "audit.contact.delete",
            "audit.contact.delete"
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| !e.payload.to_string().contains("eight@"))
    );
}
