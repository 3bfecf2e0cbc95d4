//! Compiled formulas: parse + check, for provisioning.

use jiff::Timestamp;

use crate::ast::Expr;
use crate::check::{TypeError, check};
use crate::eval::evaluate;
use crate::parser::{ParseError, parse};
use crate::span::Span;
use crate::value::{FieldType, Value, ValueType};

/// Why a formula was refused at provisioning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// The formula does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The formula parses but does not type-check against the object's fields.
    #[error(transparent)]
    Type(#[from] TypeError),
}

impl CompileError {
    /// Where the problem is.
    pub fn span(&self) -> Span {
        match self {
            CompileError::Parse(error) => error.span(),
            CompileError::Type(error) => error.span(),
        }
    }

    /// Byte offset of the problem.
    pub fn offset(&self) -> usize {
        self.span().start
    }

    /// 1-based line of the problem.
    pub fn line(&self) -> usize {
        self.span().line
    }

    /// 1-based column of the problem, in characters.
    pub fn column(&self) -> usize {
        self.span().column
    }
}

/// A formula that parsed and type-checked against an object's fields: what the platform
/// stores for a formula field and evaluates on every write.
///
/// ```
/// use ivory_formula::{FieldType, Formula, Value, ValueType};
///
/// let fields = |name: &str| match name {
///     "Amount Due" | "Amount Paid" => Some(FieldType::Currency),
///     "Status" => Some(FieldType::String),
///     _ => None,
/// };
/// let balance = Formula::compile(
///     r#"IF({Status} = "paid", 0, {Amount Due} - {Amount Paid})"#,
///     &fields,
/// )?;
/// assert_eq!(balance.result_type(), ValueType::Number);
/// assert_eq!(balance.fields(), ["Status", "Amount Due", "Amount Paid"]);
///
/// let record = serde_json::json!({"Status": "open", "Amount Due": "120.50", "Amount Paid": 20});
/// let value = balance.evaluate(
///     &|name: &str| Some(Value::from_json(record.get(name)?, fields(name)?)),
///     "2026-03-01T00:00:00Z".parse()?,
/// );
/// assert_eq!(value.to_json(), serde_json::json!(100.5));
///
/// let error = Formula::compile("{Amount Due} * {Stauts}", &fields).unwrap_err();
/// assert_eq!(error.to_string(), "column 16: unknown field {Stauts}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    source: String,
    expr: Expr,
    result_type: ValueType,
}

impl Formula {
    /// Parses and type-checks `source` against the object's fields.
    ///
    /// # Errors
    ///
    /// [`CompileError::Parse`] or [`CompileError::Type`], each with its position.
    pub fn compile(
        source: &str,
        fields: &impl Fn(&str) -> Option<FieldType>,
    ) -> Result<Formula, CompileError> {
        let expr = parse(source)?;
        let result_type = check(&expr, fields)?;
        Ok(Formula {
            source: source.to_owned(),
            expr,
            result_type,
        })
    }

    /// The source as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed expression (its `Display` is the canonical form of the source).
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The type of the formula's values (besides blank and error values).
    pub fn result_type(&self) -> ValueType {
        self.result_type
    }

    /// The distinct fields the formula references, in order of first appearance.
    pub fn fields(&self) -> Vec<&str> {
        self.expr.fields()
    }

    /// Evaluates the formula; see [`evaluate`](crate::evaluate).
    pub fn evaluate(&self, record: &impl Fn(&str) -> Option<Value>, now: Timestamp) -> Value {
        evaluate(&self.expr, record, now)
    }
}
