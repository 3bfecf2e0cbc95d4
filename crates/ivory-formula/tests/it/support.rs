//! A fixed object schema, a record of it and a clock, shared by the table tests.

use ivory_formula::{FieldType, Value, ValueType, check, evaluate, parse};
use jiff::Timestamp;

/// The evaluation clock: 2026-03-01T12:34:56Z.
pub(crate) fn now() -> Timestamp {
    "2026-03-01T12:34:56Z".parse().expect("a timestamp")
}

pub(crate) fn timestamp(text: &str) -> Timestamp {
    text.parse().expect("a timestamp")
}

/// The object's fields. `Missing…` fields exist but have no value in [`record`].
pub(crate) fn fields(name: &str) -> Option<FieldType> {
    Some(match name {
        "Status" | "Name" | "Empty" | "Missing Text" | "Number Text" => FieldType::String,
        "Amount Due" | "Amount Paid" => FieldType::Currency,
        "Qty" | "Zero" | "Missing" | "Negative" => FieldType::Number,
        "Done" | "Not Done" => FieldType::Boolean,
        "Due" | "Created" | "Missing Date" => FieldType::Datetime,
        "Owner" => FieldType::Reference,
        "Meta" => FieldType::Json,
        _ => return None,
    })
}

/// The record, as JSON (the way the platform stores it).
pub(crate) fn record_json() -> serde_json::Value {
    serde_json::json!({
        "Status": "open",
        "Name": "  Ada Lovelace  ",
        "Empty": "",
        "Number Text": "42",
        "Amount Due": "120.00",
        "Amount Paid": 20.5,
        "Qty": 3,
        "Zero": 0,
        "Negative": -2.5,
        "Done": true,
        "Not Done": false,
        "Due": "2026-01-15",
        "Created": "2025-12-31T23:00:00Z",
        "Missing Date": null,
        "Owner": "rec_123",
        "Meta": {"tier": "gold"}
    })
}

pub(crate) fn record(name: &str) -> Option<Value> {
    let json = record_json();
    Some(Value::from_json(json.get(name)?, fields(name)?))
}

/// Parses, checks and evaluates `source` against [`record`] at [`now`], asserting that the
/// value fits the checked type.
pub(crate) fn value_of(source: &str) -> Value {
    let expr = parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
    let ty = check(&expr, &fields).unwrap_or_else(|e| panic!("{source}: {e}"));
    let value = evaluate(&expr, &record, now());
    assert_conforms(source, &value, ty);
    value
}

/// Parses and evaluates `source` without type-checking it (for ill-typed formulas).
pub(crate) fn value_unchecked(source: &str) -> Value {
    let expr = parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
    evaluate(&expr, &record, now())
}

pub(crate) fn assert_conforms(what: &str, value: &Value, ty: ValueType) {
    assert!(
        value.is_blank() || value.is_error() || value.value_type() == Some(ty),
        "{what}: {value:?} is not a {ty}"
    );
}
