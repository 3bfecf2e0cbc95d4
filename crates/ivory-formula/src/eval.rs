//! The evaluator: total over every expression and every record.

use std::cmp::Ordering;

use jiff::Timestamp;

use crate::ast::{BinaryOp, Expr, ExprKind, Function, MAX_DEPTH};
use crate::datetime::{DatetimeUnit, UNIT_SPELLINGS, datetime_diff, parse_datetime, start_of_day};
use crate::number::round_half_away;
use crate::value::{Value, normalize_zero};

/// Evaluates an expression against a record at the instant `now`.
///
/// `record` returns a field's value, or `None` for a missing field (read as blank). Values
/// typically come from [`Value::from_json`]. `now` is the only clock `TODAY()` and `NOW()`
/// read; pass the platform's injected clock, never the system time directly.
///
/// Evaluation is total: it never panics and never fails. Problems (division by zero, a
/// string where a number is needed, an unparsable date string) produce a [`Value::Error`]
/// that propagates through every operator and function, except through the branch `IF` does
/// not take and the arguments `AND`/`OR` do not reach. Expressions that passed
/// [`check`](crate::check) can still produce errors, but only for these runtime reasons.
///
/// ```
/// use ivory_formula::{Value, evaluate, parse};
///
/// let expr = parse(r#"IF({Status} = "paid", 0, {Amount Due} - {Amount Paid})"#)?;
/// let record = |name: &str| match name {
///     "Status" => Some(Value::from("open")),
///     "Amount Due" => Some(Value::Number(120.0)),
///     _ => None, // {Amount Paid} is missing: blank, 0 in arithmetic
/// };
/// let now = "2026-03-01T12:00:00Z".parse()?;
/// assert_eq!(evaluate(&expr, &record, now), Value::Number(120.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn evaluate(expr: &Expr, record: &impl Fn(&str) -> Option<Value>, now: Timestamp) -> Value {
    let evaluator = Evaluator { record, now };
    evaluator.eval(expr, 1)
}

/// `Err` holds the [`Value::Error`] to return.
type Eval<T> = Result<T, Value>;

fn fail(message: impl Into<String>) -> Value {
    Value::Error(message.into())
}

/// `a number`, `a string`, … for messages.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Blank => "a blank",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Error(_) => "an error",
    }
}

/// A finite number result; `-0` becomes `0`.
fn number_result(x: f64) -> Eval<Value> {
    if x.is_finite() {
        Ok(Value::Number(normalize_zero(x)))
    } else {
        Err(fail("the result is too large for a number"))
    }
}

/// A number operand: blank is 0, a boolean 1 or 0. `what` names the consumer in messages.
fn to_number(value: Value, what: &dyn Fn() -> String) -> Eval<f64> {
    match value {
        Value::Blank => Ok(0.0),
        Value::Number(x) => Ok(x),
        Value::Boolean(b) => Ok(if b { 1.0 } else { 0.0 }),
        Value::Error(_) => Err(value),
        Value::String(_) | Value::Datetime(_) => Err(fail(format!(
            "{} needs a number, found {}",
            what(),
            describe(&value)
        ))),
    }
}

/// Text, as `&` sees it.
fn to_text(value: Value) -> Eval<String> {
    match value.to_text() {
        Some(text) => Ok(text),
        None => Err(value),
    }
}

/// Truthiness: blank, 0, `""` and `FALSE()` are false; everything else is true.
fn truthy(value: Value) -> Eval<bool> {
    match value {
        Value::Blank => Ok(false),
        Value::Number(x) => Ok(x != 0.0),
        Value::String(text) => Ok(!text.is_empty()),
        Value::Boolean(b) => Ok(b),
        Value::Datetime(_) => Ok(true),
        Value::Error(_) => Err(value),
    }
}

/// A datetime operand: blank is `None`, a string is parsed.
fn to_datetime(value: Value, what: &str) -> Eval<Option<Timestamp>> {
    match value {
        Value::Blank => Ok(None),
        Value::Datetime(timestamp) => Ok(Some(timestamp)),
        Value::String(ref text) => match parse_datetime(text) {
            Some(timestamp) => Ok(Some(timestamp)),
            None => Err(fail(format!("{text:?} is not a datetime"))),
        },
        Value::Error(_) => Err(value),
        Value::Number(_) | Value::Boolean(_) => Err(fail(format!(
            "{what} needs a datetime, found {}",
            describe(&value)
        ))),
    }
}

/// A comparison. Pairs that are unequal but unordered (a blank and a datetime, or values of
/// unrelated types) are `!=` and nothing else, except that ordering values of unrelated types
/// is an error.
fn compare(op: BinaryOp, left: Value, right: Value) -> Eval<Value> {
    use Value::*;
    if left.is_error() {
        return Err(left);
    }
    if right.is_error() {
        return Err(right);
    }
    let numeric = |value: &Value| match value {
        Blank => Some(0.0),
        Number(x) => Some(*x),
        Boolean(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    };
    let ordering: Option<Ordering> = match (&left, &right) {
        (String(a), String(b)) => Some(a.cmp(b)),
        (Blank, String(b)) => Some("".cmp(b.as_str())),
        (String(a), Blank) => Some(a.as_str().cmp("")),
        (Datetime(a), Datetime(b)) => Some(a.cmp(b)),
        (Datetime(a), String(_)) => to_datetime(right.clone(), "a comparison")?.map(|b| a.cmp(&b)),
        (String(_), Datetime(b)) => to_datetime(left.clone(), "a comparison")?.map(|a| a.cmp(b)),
        (Blank, Datetime(_)) | (Datetime(_), Blank) => None,
        _ => match (numeric(&left), numeric(&right)) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ if matches!(op, BinaryOp::Eq | BinaryOp::NotEq) => None,
            _ => {
                return Err(fail(format!(
                    "cannot compare {} with {} using `{op}`",
                    describe(&left),
                    describe(&right)
                )));
            }
        },
    };
    let result = match (op, ordering) {
        (BinaryOp::Eq, ordering) => ordering == Some(Ordering::Equal),
        (BinaryOp::NotEq, ordering) => ordering != Some(Ordering::Equal),
        (_, None) => false,
        (BinaryOp::Lt, Some(ordering)) => ordering.is_lt(),
        (BinaryOp::Le, Some(ordering)) => ordering.is_le(),
        (BinaryOp::Gt, Some(ordering)) => ordering.is_gt(),
        (BinaryOp::Ge, Some(ordering)) => ordering.is_ge(),
        (_, Some(_)) => false,
    };
    Ok(Boolean(result))
}

#[derive(Debug)]
struct Evaluator<'r, R> {
    record: &'r R,
    now: Timestamp,
}

impl<R: Fn(&str) -> Option<Value>> Evaluator<'_, R> {
    fn eval(&self, expr: &Expr, depth: usize) -> Value {
        match self.eval_inner(expr, depth) {
            Ok(value) | Err(value) => value,
        }
    }

    fn eval_inner(&self, expr: &Expr, depth: usize) -> Eval<Value> {
        if depth > MAX_DEPTH {
            return Err(fail(format!(
                "the formula nests too deeply (more than {MAX_DEPTH} levels)"
            )));
        }
        let next = depth + 1;
        match &expr.kind {
            ExprKind::Number(x) => number_result(*x),
            ExprKind::String(text) => Ok(Value::String(text.clone())),
            ExprKind::Boolean(b) => Ok(Value::Boolean(*b)),
            ExprKind::Field(name) => match (self.record)(name) {
                None => Ok(Value::Blank),
                Some(Value::Number(x)) => number_result(x).map_err(|_| {
                    fail(format!(
                        "field {{{name}}} holds a number that is not finite"
                    ))
                }),
                Some(value) => Ok(value),
            },
            ExprKind::Negate(operand) => {
                let x = to_number(self.eval(operand, next), &|| "unary `-`".to_owned())?;
                number_result(-x)
            }
            ExprKind::Binary { op, left, right } => {
                let left = self.eval(left, next);
                let right = self.eval(right, next);
                binary(*op, left, right)
            }
            ExprKind::Call { function, args } => self.call(*function, args, next),
        }
    }

    fn call(&self, function: Function, args: &[Expr], next: usize) -> Eval<Value> {
        let arity = function.arity();
        if !arity.accepts(args.len()) {
            return Err(fail(format!(
                "{function} takes {arity}, found {}",
                args.len()
            )));
        }
        let arg = |i: usize| self.eval(&args[i], next);
        let what = || function.name().to_owned();
        match function {
            Function::And => {
                for i in 0..args.len() {
                    if !truthy(arg(i))? {
                        return Ok(Value::Boolean(false));
                    }
                }
                Ok(Value::Boolean(true))
            }
            Function::Or => {
                for i in 0..args.len() {
                    if truthy(arg(i))? {
                        return Ok(Value::Boolean(true));
                    }
                }
                Ok(Value::Boolean(false))
            }
            Function::Not => Ok(Value::Boolean(!truthy(arg(0))?)),
            Function::If => {
                if truthy(arg(0))? {
                    Ok(arg(1))
                } else if args.len() > 2 {
                    Ok(arg(2))
                } else {
                    Ok(Value::Blank)
                }
            }
            Function::Concatenate => {
                let mut text = String::new();
                for i in 0..args.len() {
                    text.push_str(&to_text(arg(i))?);
                }
                Ok(Value::String(text))
            }
            Function::Round => {
                let x = to_number(arg(0), &what)?;
                let digits = if args.len() > 1 {
                    to_number(arg(1), &what)?
                } else {
                    0.0
                };
                // In range after the clamp, and integral after the trunc.
                let digits = digits.trunc().clamp(-1000.0, 1000.0) as i64;
                number_result(round_half_away(x, digits))
            }
            Function::Abs => number_result(to_number(arg(0), &what)?.abs()),
            Function::Min | Function::Max => {
                let mut best: Option<f64> = None;
                for i in 0..args.len() {
                    let value = arg(i);
                    if value.is_blank() {
                        continue;
                    }
                    let x = to_number(value, &what)?;
                    best = Some(match best {
                        None => x,
                        Some(b) if function == Function::Min => b.min(x),
                        Some(b) => b.max(x),
                    });
                }
                best.map_or(Ok(Value::Blank), number_result)
            }
            Function::Len => {
                let count = to_text(arg(0))?.chars().count();
                // Exact: a string's length is far below 2^53.
                Ok(Value::Number(count as f64))
            }
            Function::Lower => Ok(Value::String(to_text(arg(0))?.to_lowercase())),
            Function::Upper => Ok(Value::String(to_text(arg(0))?.to_uppercase())),
            Function::Trim => Ok(Value::String(to_text(arg(0))?.trim().to_owned())),
            Function::Blank => Ok(Value::Blank),
            Function::DatetimeDiff => {
                let a = to_datetime(arg(0), "DATETIME_DIFF")?;
                let b = to_datetime(arg(1), "DATETIME_DIFF")?;
                let unit = if args.len() > 2 {
                    match arg(2) {
                        Value::Blank => DatetimeUnit::Seconds,
                        value => {
                            let text = to_text(value)?;
                            DatetimeUnit::parse(&text).ok_or_else(|| {
                                fail(format!(
                                    "unknown DATETIME_DIFF unit {text:?} (the units are \
                                     {UNIT_SPELLINGS})"
                                ))
                            })?
                        }
                    }
                } else {
                    DatetimeUnit::Seconds
                };
                match (a, b) {
                    (Some(a), Some(b)) => number_result(datetime_diff(a, b, unit).map_err(fail)?),
                    _ => Ok(Value::Blank),
                }
            }
            Function::Today => start_of_day(self.now)
                .map(Value::Datetime)
                .ok_or_else(|| fail("TODAY() is out of range")),
            Function::Now => Ok(Value::Datetime(self.now)),
        }
    }
}

fn binary(op: BinaryOp, left: Value, right: Value) -> Eval<Value> {
    if op == BinaryOp::Concat {
        let mut text = to_text(left)?;
        text.push_str(&to_text(right)?);
        return Ok(Value::String(text));
    }
    if op.is_comparison() {
        return compare(op, left, right);
    }
    let what = || format!("`{op}`");
    let a = to_number(left, &what)?;
    let b = to_number(right, &what)?;
    match op {
        BinaryOp::Add => number_result(a + b),
        BinaryOp::Sub => number_result(a - b),
        BinaryOp::Mul => number_result(a * b),
        BinaryOp::Div | BinaryOp::Rem if b == 0.0 => Err(fail("division by zero")),
        BinaryOp::Div => number_result(a / b),
        BinaryOp::Rem => number_result(a % b),
        _ => Err(fail(format!("`{op}` is not an arithmetic operator"))),
    }
}
