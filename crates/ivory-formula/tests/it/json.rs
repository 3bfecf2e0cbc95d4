//! Record values from JSON, formula results to JSON.

use ivory_formula::{ERROR_TEXT, FieldType, Value};
use serde_json::json;

use crate::support::timestamp;

#[test]
fn reads_json_field_values_by_field_type() {
    let table = [
        (json!(null), FieldType::Number, Value::Blank),
        (json!(null), FieldType::Datetime, Value::Blank),
        (json!(null), FieldType::Json, Value::Blank),
        (json!("abc"), FieldType::String, Value::from("abc")),
        (json!(12), FieldType::String, Value::from("12")),
        (json!(1.5), FieldType::Reference, Value::from("1.5")),
        (json!("rec_1"), FieldType::Reference, Value::from("rec_1")),
        (json!(12), FieldType::Number, Value::Number(12.0)),
        (json!(-0.0), FieldType::Number, Value::Number(0.0)),
        (json!(12.25), FieldType::Currency, Value::Number(12.25)),
        (json!("1500.00"), FieldType::Currency, Value::Number(1500.0)),
        (json!(" -2.5e3 "), FieldType::Number, Value::Number(-2500.0)),
        (json!("+7"), FieldType::Number, Value::Number(7.0)),
        (json!(""), FieldType::Number, Value::Blank),
        (json!(true), FieldType::Boolean, Value::Boolean(true)),
        (json!("FALSE"), FieldType::Boolean, Value::Boolean(false)),
        (
            json!("2026-03-01T10:30:00+01:00"),
            FieldType::Datetime,
            Value::Datetime(timestamp("2026-03-01T09:30:00Z")),
        ),
        (
            json!("2026-03-01"),
            FieldType::Datetime,
            Value::Datetime(timestamp("2026-03-01T00:00:00Z")),
        ),
        (
            json!("2026-03-01T09:30:00"),
            FieldType::Datetime,
            Value::Datetime(timestamp("2026-03-01T09:30:00Z")),
        ),
        (json!(""), FieldType::Datetime, Value::Blank),
        (json!("text"), FieldType::Json, Value::from("text")),
        (
            json!({"a": [1, true]}),
            FieldType::Json,
            Value::from(r#"{"a":[1,true]}"#),
        ),
        (json!(3), FieldType::Json, Value::from("3")),
    ];
    for (json, field_type, expected) in table {
        assert_eq!(
            Value::from_json(&json, field_type),
            expected,
            "{json} as {field_type}"
        );
    }
}

#[test]
fn json_that_does_not_fit_its_field_type_is_an_error_value() {
    let table = [
        (
            json!(true),
            FieldType::String,
            "expected a string for a string field, found the boolean true",
        ),
        (
            json!([1]),
            FieldType::Reference,
            "expected a string for a reference field, found an array",
        ),
        (
            json!("12 apples"),
            FieldType::Number,
            "expected a number for a number field, found the string \"12 apples\"",
        ),
        (
            json!("NaN"),
            FieldType::Number,
            "expected a number for a number field, found the string \"NaN\"",
        ),
        (
            json!("inf"),
            FieldType::Currency,
            "expected a number for a currency field, found the string \"inf\"",
        ),
        (
            json!("1e999"),
            FieldType::Number,
            "expected a number for a number field, found the string \"1e999\"",
        ),
        (
            json!(true),
            FieldType::Number,
            "expected a number for a number field, found the boolean true",
        ),
        (
            json!(1),
            FieldType::Boolean,
            "expected a boolean for a boolean field, found the number 1",
        ),
        (
            json!("yes"),
            FieldType::Boolean,
            "expected a boolean for a boolean field, found the string \"yes\"",
        ),
        (
            json!(1_767_225_600),
            FieldType::Datetime,
            "expected an RFC 3339 timestamp or a YYYY-MM-DD date for a datetime field, found the number 1767225600",
        ),
        (
            json!("2026-02-30"),
            FieldType::Datetime,
            "expected an RFC 3339 timestamp or a YYYY-MM-DD date for a datetime field, found the string \"2026-02-30\"",
        ),
    ];
    for (json, field_type, message) in table {
        let error = Value::try_from_json(&json, field_type).expect_err("mismatch");
        assert_eq!(error.to_string(), message);
        assert_eq!(error.field_type(), field_type);
        assert_eq!(
            Value::from_json(&json, field_type),
            Value::Error(message.to_owned())
        );
    }
}

#[test]
fn writes_results_as_json() {
    let table = [
        (Value::Blank, json!(null)),
        (Value::Number(3.0), json!(3)),
        (Value::Number(-3.0), json!(-3)),
        (Value::Number(99.5), json!(99.5)),
        (Value::Number(1e300), json!(1e300)),
        (
            Value::Number(9_007_199_254_740_992.0),
            json!(9_007_199_254_740_992_i64),
        ),
        (Value::from("a\"b"), json!("a\"b")),
        (Value::Boolean(true), json!(true)),
        (
            Value::Datetime(timestamp("2026-03-01T09:30:00.5+01:00")),
            json!("2026-03-01T08:30:00.5Z"),
        ),
        (
            Value::Error("division by zero".to_owned()),
            json!({"error": "#ERROR!", "message": "division by zero"}),
        ),
    ];
    for (value, expected) in table {
        assert_eq!(value.to_json(), expected, "{value:?}");
    }
}

#[test]
fn values_display_as_formula_text() {
    assert_eq!(Value::Number(1.0).to_string(), "1");
    assert_eq!(Value::Boolean(false).to_string(), "0");
    assert_eq!(Value::Blank.to_string(), "");
    assert_eq!(Value::Error("x".to_owned()).to_string(), ERROR_TEXT);
    assert_eq!(Value::Error("x".to_owned()).to_text(), None);
    assert_eq!(
        Value::Datetime(timestamp("2026-03-01T00:00:00Z")).to_string(),
        "2026-03-01T00:00:00Z"
    );
}

#[test]
fn json_round_trips_through_the_field_type_of_the_result() {
    let values = [
        Value::Number(12.5),
        Value::Number(-4.0),
        Value::from("text"),
        Value::Boolean(false),
        Value::Datetime(timestamp("2026-03-01T09:30:00Z")),
        Value::Blank,
    ];
    for value in values {
        let field_type = value
            .value_type()
            .map_or(FieldType::String, FieldType::from);
        assert_eq!(Value::from_json(&value.to_json(), field_type), value);
    }
}
