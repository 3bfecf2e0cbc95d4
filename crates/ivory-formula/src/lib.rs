//! # Ivory formulas
//!
//! The formula language of custom-object formula fields and workflow record conditions: the
//! common subset of Airtable formulas. The platform computes formula fields on every write
//! (it never trusts a value from the upstream), so this crate is pure: no IO, no clock of its
//! own, no panics.
//!
//! A formula goes through three steps:
//!
//! 1. [`parse`] turns source into an [`Expr`], or a [`ParseError`] with the byte offset,
//!    line and column of the first problem and what was expected there.
//! 2. [`check`] infers the [`ValueType`] of the result against the object's field types
//!    ([`FieldType`]), or returns a [`TypeError`] naming the field or function and its
//!    column.
//! 3. [`evaluate`] computes a [`Value`] from a record's values and an injected `now`. It is
//!    total: problems become [`Value::Error`], shown as `#ERROR!`.
//!
//! [`Formula::compile`] does steps 1 and 2 at provisioning and keeps the result for step 3.
//!
//! ```
//! use ivory_formula::{FieldType, Formula, Value, ValueType};
//!
//! let fields = |name: &str| match name {
//!     "Amount" => Some(FieldType::Currency),
//!     "Due" => Some(FieldType::Datetime),
//!     _ => None,
//! };
//! let formula = Formula::compile(
//!     r#"IF(DATETIME_DIFF(TODAY(), {Due}, "days") > 30, ROUND({Amount} * 1.05, 2), {Amount})"#,
//!     &fields,
//! )?;
//! assert_eq!(formula.result_type(), ValueType::Number);
//!
//! let record = serde_json::json!({"Amount": 100, "Due": "2026-01-15"});
//! let read = |name: &str| Some(Value::from_json(record.get(name)?, fields(name)?));
//! let now = "2026-03-01T08:00:00Z".parse()?;
//! assert_eq!(formula.evaluate(&read, now), Value::Number(105.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Expressions print in a canonical form ([`Expr`]'s `Display`) that parses back to an equal
//! expression; property tests hold the parser, printer, checker and evaluator to that and to
//! "never panics".
//!
#![doc = include_str!("language.md")]
#![warn(missing_docs)]

mod ast;
mod check;
mod datetime;
mod eval;
mod formula;
mod lexer;
mod number;
mod parser;
mod print;
mod span;
mod value;

pub use ast::{Arity, BinaryOp, Expr, ExprKind, Function, MAX_DEPTH};
pub use check::{Side, TypeError, TypeErrorKind, check};
pub use eval::evaluate;
pub use formula::{CompileError, Formula};
pub use parser::{ParseError, parse};
pub use span::Span;
pub use value::{ERROR_TEXT, FieldType, JsonValueError, Value, ValueType};
