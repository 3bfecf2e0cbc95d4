//! Runtime values, static types and record field types.

use std::fmt;

use jiff::Timestamp;

use crate::datetime::parse_datetime;
use crate::number::format_number;

/// The text of an error value: what [`Value::Error`] displays as, as in Airtable.
pub const ERROR_TEXT: &str = "#ERROR!";

/// A value a formula computes or reads from a record.
///
/// Numbers produced by the evaluator are always finite and never negative zero.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value: a missing or `null` field, `BLANK()`, `IF` without a taken branch.
    Blank,
    /// A number (also currency amounts).
    Number(f64),
    /// Text.
    String(String),
    /// `TRUE()` or `FALSE()`; behaves as 1 or 0 in arithmetic and text.
    Boolean(bool),
    /// An instant.
    Datetime(Timestamp),
    /// Evaluation failed (division by zero, a string where a number is needed…); the text
    /// says why. Errors propagate through operators and functions; displays as `#ERROR!`.
    Error(String),
}

/// The static type of a formula or sub-expression, as [`check`](crate::check) infers it.
///
/// A value of a formula of type `T` is either of type `T`, [`Value::Blank`] or
/// [`Value::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// [`Value::Number`].
    Number,
    /// [`Value::String`].
    String,
    /// [`Value::Boolean`].
    Boolean,
    /// [`Value::Datetime`].
    Datetime,
}

impl ValueType {
    /// `number`, `string`, `boolean` or `datetime`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Number => "number",
            ValueType::String => "string",
            ValueType::Boolean => "boolean",
            ValueType::Datetime => "datetime",
        }
    }

    /// The name with its article, for messages: `a number`.
    pub(crate) fn with_article(self) -> &'static str {
        match self {
            ValueType::Number => "a number",
            ValueType::String => "a string",
            ValueType::Boolean => "a boolean",
            ValueType::Datetime => "a datetime",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type of a record field a formula can reference (the field types of custom objects;
/// a formula field is referenced with the [`ValueType`] of its result, converted with
/// `From`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Text; a JSON string.
    String,
    /// A number; a JSON number or a numeric string (`"1500.00"`).
    Number,
    /// An amount of money; a number in formulas.
    Currency,
    /// A JSON boolean, or the strings `"true"` / `"false"`.
    Boolean,
    /// An RFC 3339 timestamp or a `YYYY-MM-DD` date (midnight UTC), as a JSON string.
    Datetime,
    /// The external id of another record; a string in formulas.
    Reference,
    /// Any JSON; a string in formulas (a JSON string's text, or the compact JSON of
    /// anything else).
    Json,
}

impl FieldType {
    /// The type formulas see for this field.
    pub fn value_type(self) -> ValueType {
        match self {
            FieldType::Number | FieldType::Currency => ValueType::Number,
            FieldType::String | FieldType::Reference | FieldType::Json => ValueType::String,
            FieldType::Boolean => ValueType::Boolean,
            FieldType::Datetime => ValueType::Datetime,
        }
    }

    /// The manifest spelling: `string`, `number`, `currency`, `boolean`, `datetime`,
    /// `reference` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Currency => "currency",
            FieldType::Boolean => "boolean",
            FieldType::Datetime => "datetime",
            FieldType::Reference => "reference",
            FieldType::Json => "json",
        }
    }
}

impl From<ValueType> for FieldType {
    /// The field type that stores a formula result of this type.
    fn from(value_type: ValueType) -> FieldType {
        match value_type {
            ValueType::Number => FieldType::Number,
            ValueType::String => FieldType::String,
            ValueType::Boolean => FieldType::Boolean,
            ValueType::Datetime => FieldType::Datetime,
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JSON field value that does not fit its field type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} for a {field_type} field, found {found}")]
pub struct JsonValueError {
    field_type: FieldType,
    expected: &'static str,
    found: String,
}

impl JsonValueError {
    /// The field type the value was read as.
    pub fn field_type(&self) -> FieldType {
        self.field_type
    }
}

impl Value {
    /// Reads a record's JSON field value as a formula value; a value that does not fit the
    /// field type becomes a [`Value::Error`] (so the formula shows `#ERROR!`, as Airtable
    /// does for bad inputs). See [`Value::try_from_json`] for the rules.
    pub fn from_json(json: &serde_json::Value, field_type: FieldType) -> Value {
        Value::try_from_json(json, field_type)
            .unwrap_or_else(|error| Value::Error(error.to_string()))
    }

    /// Reads a record's JSON field value as a formula value.
    ///
    /// `null` is [`Value::Blank`] for every type. Otherwise:
    ///
    /// | field type | accepted JSON |
    /// |---|---|
    /// | `string`, `reference` | a string; a number (its text, for numeric ids) |
    /// | `number`, `currency` | a number; a string holding a decimal number (`"1500.00"`, `"-2.5e3"`); `""` is blank |
    /// | `boolean` | a boolean; the strings `"true"` / `"false"` (any case) |
    /// | `datetime` | a string: RFC 3339 (`2026-03-01T09:30:00Z`), a date-time without offset (UTC) or a date (`2026-03-01`, midnight UTC); `""` is blank |
    /// | `json` | anything: a string as its text, anything else as compact JSON text |
    ///
    /// # Errors
    ///
    /// [`JsonValueError`] when the JSON does not fit the field type.
    pub fn try_from_json(
        json: &serde_json::Value,
        field_type: FieldType,
    ) -> Result<Value, JsonValueError> {
        use serde_json::Value as Json;
        let mismatch = |expected: &'static str| JsonValueError {
            field_type,
            expected,
            found: describe_json(json),
        };
        if json.is_null() {
            return Ok(Value::Blank);
        }
        match field_type {
            FieldType::String | FieldType::Reference => match json {
                Json::String(text) => Ok(Value::String(text.clone())),
                Json::Number(number) => number
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .map(|x| Value::String(format_number(x)))
                    .ok_or_else(|| mismatch("a string")),
                _ => Err(mismatch("a string")),
            },
            FieldType::Number | FieldType::Currency => match json {
                Json::Number(number) => number
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .map(|x| Value::Number(normalize_zero(x)))
                    .ok_or_else(|| mismatch("a finite number")),
                Json::String(text) if text.trim().is_empty() => Ok(Value::Blank),
                Json::String(text) => parse_decimal(text.trim())
                    .map(|x| Value::Number(normalize_zero(x)))
                    .ok_or_else(|| mismatch("a number")),
                _ => Err(mismatch("a number")),
            },
            FieldType::Boolean => match json {
                Json::Bool(b) => Ok(Value::Boolean(*b)),
                Json::String(text) if text.eq_ignore_ascii_case("true") => Ok(Value::Boolean(true)),
                Json::String(text) if text.eq_ignore_ascii_case("false") => {
                    Ok(Value::Boolean(false))
                }
                _ => Err(mismatch("a boolean")),
            },
            FieldType::Datetime => match json {
                Json::String(text) if text.trim().is_empty() => Ok(Value::Blank),
                Json::String(text) => parse_datetime(text)
                    .map(Value::Datetime)
                    .ok_or_else(|| mismatch("an RFC 3339 timestamp or a YYYY-MM-DD date")),
                _ => Err(mismatch("an RFC 3339 timestamp or a YYYY-MM-DD date")),
            },
            FieldType::Json => Ok(match json {
                Json::String(text) => Value::String(text.clone()),
                other => Value::String(other.to_string()),
            }),
        }
    }

    /// The value as JSON, for storing a formula result.
    ///
    /// Blank is `null`; an integral number within ±2⁵³ is a JSON integer (`3`, not `3.0`);
    /// a datetime is an RFC 3339 string in UTC; an error is
    /// `{"error": "#ERROR!", "message": "division by zero"}` (Airtable's API reports formula
    /// errors as `{"error": "#ERROR!"}`).
    pub fn to_json(&self) -> serde_json::Value {
        const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
        match self {
            Value::Blank => serde_json::Value::Null,
            Value::Number(x) if x.fract() == 0.0 && x.abs() <= MAX_EXACT => {
                // Exact: integral and within the range where f64 holds every integer.
                serde_json::Value::from(*x as i64)
            }
            Value::Number(x) => serde_json::Value::from(*x),
            Value::String(text) => serde_json::Value::String(text.clone()),
            Value::Boolean(b) => serde_json::Value::Bool(*b),
            Value::Datetime(timestamp) => serde_json::Value::String(timestamp.to_string()),
            Value::Error(message) => serde_json::json!({"error": ERROR_TEXT, "message": message}),
        }
    }

    /// The value's type; `None` for blank and error values.
    pub fn value_type(&self) -> Option<ValueType> {
        match self {
            Value::Number(_) => Some(ValueType::Number),
            Value::String(_) => Some(ValueType::String),
            Value::Boolean(_) => Some(ValueType::Boolean),
            Value::Datetime(_) => Some(ValueType::Datetime),
            Value::Blank | Value::Error(_) => None,
        }
    }

    /// Whether this is [`Value::Blank`].
    pub fn is_blank(&self) -> bool {
        matches!(self, Value::Blank)
    }

    /// Whether this is [`Value::Error`].
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// The value as text, exactly as `&` and the text functions see it: blank is `""`, a
    /// number its shortest decimal without `.0` (`1`, `3.5`), a boolean `1` or `0`, a
    /// datetime RFC 3339 in UTC (`2026-03-01T00:00:00Z`). `None` for an error.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Blank => String::new(),
            Value::Number(x) => format_number(*x),
            Value::String(text) => text.clone(),
            Value::Boolean(b) => if *b { "1" } else { "0" }.to_owned(),
            Value::Datetime(timestamp) => timestamp.to_string(),
            Value::Error(_) => return None,
        })
    }
}

impl fmt::Display for Value {
    /// [`Value::to_text`], and `#ERROR!` for an error.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_text() {
            Some(text) => f.write_str(&text),
            None => f.write_str(ERROR_TEXT),
        }
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Number(x)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::String(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::String(text)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}

impl From<Timestamp> for Value {
    fn from(timestamp: Timestamp) -> Value {
        Value::Datetime(timestamp)
    }
}

/// `-0.0` as `0.0`, everything else unchanged.
pub(crate) fn normalize_zero(x: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x }
}

/// A decimal number in JSON-number syntax with an optional leading `+`: digits, an optional
/// fraction and exponent. No `inf`, `NaN`, hex or thousands separators.
fn parse_decimal(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let valid = unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && unsigned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if !valid {
        return None;
    }
    text.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// A short description of a JSON value for error messages.
fn describe_json(json: &serde_json::Value) -> String {
    use serde_json::Value as Json;
    match json {
        Json::Null => "null".to_owned(),
        Json::Bool(b) => format!("the boolean {b}"),
        Json::Number(n) => format!("the number {n}"),
        Json::String(s) => {
            let mut shown: String = s.chars().take(40).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            format!("the string {shown:?}")
        }
        Json::Array(_) => "an array".to_owned(),
        Json::Object(_) => "an object".to_owned(),
    }
}
