//! The type checker.

use std::fmt;

use crate::ast::{Arity, BinaryOp, Expr, ExprKind, Function, MAX_DEPTH};
use crate::datetime::{DatetimeUnit, UNIT_SPELLINGS, parse_datetime};
use crate::span::{Span, write_located};
use crate::value::{FieldType, ValueType};

/// A formula that parses but is not well typed: where, and why.
///
/// Displays as `column 5: unknown field {Amount}` (or `line 2, column 5: …`; no position for
/// hand-built expressions).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TypeError {
    span: Span,
    kind: TypeErrorKind,
}

impl TypeError {
    /// What is wrong.
    pub fn kind(&self) -> &TypeErrorKind {
        &self.kind
    }

    /// The offending sub-expression.
    pub fn span(&self) -> Span {
        self.span
    }

    /// Byte offset of the offending sub-expression.
    pub fn offset(&self) -> usize {
        self.span.start
    }

    /// 1-based line of the offending sub-expression (0 for hand-built expressions).
    pub fn line(&self) -> usize {
        self.span.line
    }

    /// 1-based column of the offending sub-expression, in characters (0 for hand-built
    /// expressions).
    pub fn column(&self) -> usize {
        self.span.column
    }
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, self.span, &self.kind)
    }
}

/// Which operand of a binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The left operand.
    Left,
    /// The right operand.
    Right,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Left => "left",
            Side::Right => "right",
        })
    }
}

/// The kinds of type error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeErrorKind {
    /// A field reference names no field of the object.
    #[error("unknown field {{{name}}}")]
    UnknownField {
        /// The name between the braces.
        name: String,
    },
    /// A function called with too few or too many arguments.
    #[error("{function} takes {expected}, found {found}")]
    WrongArity {
        /// The function.
        function: Function,
        /// What it accepts.
        expected: Arity,
        /// How many arguments it was given.
        found: usize,
    },
    /// A function argument of the wrong type.
    #[error("argument {position} of {function} must be {expected}, found {}", found.with_article())]
    ArgumentType {
        /// The function.
        function: Function,
        /// The argument's 1-based position.
        position: usize,
        /// What the argument must be, such as `a number`.
        expected: &'static str,
        /// The argument's type.
        found: ValueType,
    },
    /// An operand of an arithmetic operator is not a number (or boolean, or blank).
    #[error("the {side} operand of `{op}` must be a number, found {}", found.with_article())]
    OperandType {
        /// The operator.
        op: BinaryOp,
        /// Which operand.
        side: Side,
        /// The operand's type.
        found: ValueType,
    },
    /// The operand of unary `-` is not a number (or boolean, or blank).
    #[error("the operand of unary `-` must be a number, found {}", found.with_article())]
    NegateType {
        /// The operand's type.
        found: ValueType,
    },
    /// A comparison between types that cannot be compared, such as a number and a string.
    #[error("cannot compare {} with {} using `{op}`", left.with_article(), right.with_article())]
    Incomparable {
        /// The comparison.
        op: BinaryOp,
        /// The left operand's type.
        left: ValueType,
        /// The right operand's type.
        right: ValueType,
    },
    /// The two branches of `IF` have different types.
    #[error(
        "the branches of IF have different types: {} and {}",
        then.with_article(),
        otherwise.with_article()
    )]
    BranchMismatch {
        /// The type of the `then` branch.
        then: ValueType,
        /// The type of the `else` branch.
        otherwise: ValueType,
    },
    /// A string literal used as a datetime does not parse as one.
    #[error("{text:?} is not a datetime: use an RFC 3339 timestamp or a YYYY-MM-DD date")]
    InvalidDatetime {
        /// The literal's text.
        text: String,
    },
    /// A `DATETIME_DIFF` unit literal that is not a unit.
    #[error("unknown DATETIME_DIFF unit {unit:?} (the units are {UNIT_SPELLINGS})")]
    UnknownUnit {
        /// The literal's text.
        unit: String,
    },
    /// The whole formula can only ever be blank (such as `BLANK()`).
    #[error("the formula is always blank")]
    AlwaysBlank,
    /// A hand-built expression deeper than [`MAX_DEPTH`].
    #[error("the formula nests too deeply (more than {MAX_DEPTH} levels)")]
    TooDeep,
}

/// Type-checks an expression against the types of the record's fields, returning the type
/// of its value.
///
/// `fields` maps a field name to its type, or `None` when the object has no such field.
/// The rules (see the crate documentation for the full table): arithmetic takes numbers,
/// booleans (1/0) and blanks; `&` and the text functions take anything; comparisons need
/// comparable types; `IF`'s branches must have the same type (or be blank).
///
/// ```
/// use ivory_formula::{FieldType, ValueType, check, parse};
///
/// let fields = |name: &str| match name {
///     "Amount" => Some(FieldType::Currency),
///     "Status" => Some(FieldType::String),
///     _ => None,
/// };
/// let expr = parse(r#"IF({Status} = "paid", 0, {Amount})"#)?;
/// assert_eq!(check(&expr, &fields)?, ValueType::Number);
///
/// let expr = parse("{Amount} * {Status}")?;
/// let error = check(&expr, &fields).unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "column 12: the right operand of `*` must be a number, found a string"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
///
/// The first [`TypeError`] in source order (arguments left to right, operands before their
/// operator).
pub fn check(
    expr: &Expr,
    fields: &impl Fn(&str) -> Option<FieldType>,
) -> Result<ValueType, TypeError> {
    let checker = Checker { fields };
    checker.infer(expr, 1)?.ok_or(TypeError {
        span: expr.span,
        kind: TypeErrorKind::AlwaysBlank,
    })
}

/// A static type; `None` is "always blank", which fits anywhere.
type Ty = Option<ValueType>;

#[derive(Debug)]
struct Checker<'f, F> {
    fields: &'f F,
}

fn error(span: Span, kind: TypeErrorKind) -> TypeError {
    TypeError { span, kind }
}

/// Number, boolean (1/0) or blank (0).
fn is_numeric(ty: Ty) -> bool {
    matches!(ty, None | Some(ValueType::Number | ValueType::Boolean))
}

fn comparable(left: Ty, right: Ty) -> bool {
    match (left, right) {
        (None, _) | (_, None) => true,
        (Some(left), Some(right)) => {
            use ValueType::*;
            matches!(
                (left, right),
                (Number | Boolean, Number | Boolean)
                    | (String, String)
                    | (Datetime, Datetime | String)
                    | (String, Datetime)
            )
        }
    }
}

fn string_literal(expr: &Expr) -> Option<&str> {
    match &expr.kind {
        ExprKind::String(text) => Some(text),
        _ => None,
    }
}

/// A string literal used as a datetime must parse as one.
fn check_datetime_literal(expr: &Expr) -> Result<(), TypeError> {
    match string_literal(expr) {
        Some(text) if parse_datetime(text).is_none() => Err(error(
            expr.span,
            TypeErrorKind::InvalidDatetime {
                text: text.to_owned(),
            },
        )),
        _ => Ok(()),
    }
}

impl<F: Fn(&str) -> Option<FieldType>> Checker<'_, F> {
    fn infer(&self, expr: &Expr, depth: usize) -> Result<Ty, TypeError> {
        if depth > MAX_DEPTH {
            return Err(error(expr.span, TypeErrorKind::TooDeep));
        }
        Ok(match &expr.kind {
            ExprKind::Number(_) => Some(ValueType::Number),
            ExprKind::String(_) => Some(ValueType::String),
            ExprKind::Boolean(_) => Some(ValueType::Boolean),
            ExprKind::Field(name) => match (self.fields)(name) {
                Some(field_type) => Some(field_type.value_type()),
                None => {
                    return Err(error(
                        expr.span,
                        TypeErrorKind::UnknownField { name: name.clone() },
                    ));
                }
            },
            ExprKind::Negate(operand) => {
                let ty = self.infer(operand, depth + 1)?;
                match ty {
                    Some(found) if !is_numeric(ty) => {
                        return Err(error(operand.span, TypeErrorKind::NegateType { found }));
                    }
                    _ => Some(ValueType::Number),
                }
            }
            ExprKind::Binary { op, left, right } => {
                let left_ty = self.infer(left, depth + 1)?;
                let right_ty = self.infer(right, depth + 1)?;
                self.binary(expr, *op, (left, left_ty), (right, right_ty))?
            }
            ExprKind::Call { function, args } => {
                let arity = function.arity();
                if !arity.accepts(args.len()) {
                    return Err(error(
                        expr.span,
                        TypeErrorKind::WrongArity {
                            function: *function,
                            expected: arity,
                            found: args.len(),
                        },
                    ));
                }
                let types = args
                    .iter()
                    .map(|arg| self.infer(arg, depth + 1))
                    .collect::<Result<Vec<Ty>, TypeError>>()?;
                call(*function, args, &types)?
            }
        })
    }

    fn binary(
        &self,
        expr: &Expr,
        op: BinaryOp,
        (left, left_ty): (&Expr, Ty),
        (right, right_ty): (&Expr, Ty),
    ) -> Result<Ty, TypeError> {
        if op == BinaryOp::Concat {
            return Ok(Some(ValueType::String));
        }
        if op.is_arithmetic() {
            for (side, operand, ty) in [(Side::Left, left, left_ty), (Side::Right, right, right_ty)]
            {
                if let Some(found) = ty.filter(|_| !is_numeric(ty)) {
                    return Err(error(
                        operand.span,
                        TypeErrorKind::OperandType { op, side, found },
                    ));
                }
            }
            return Ok(Some(ValueType::Number));
        }
        if !comparable(left_ty, right_ty) {
            let (Some(left), Some(right)) = (left_ty, right_ty) else {
                return Ok(Some(ValueType::Boolean));
            };
            return Err(error(
                expr.span,
                TypeErrorKind::Incomparable { op, left, right },
            ));
        }
        match (left_ty, right_ty) {
            (Some(ValueType::Datetime), Some(ValueType::String)) => check_datetime_literal(right)?,
            (Some(ValueType::String), Some(ValueType::Datetime)) => check_datetime_literal(left)?,
            _ => {}
        }
        Ok(Some(ValueType::Boolean))
    }
}

/// The type of a call whose arity is correct, given its arguments' types.
fn call(function: Function, args: &[Expr], types: &[Ty]) -> Result<Ty, TypeError> {
    let argument_error = |position: usize, expected: &'static str, found: ValueType| {
        error(
            args[position].span,
            TypeErrorKind::ArgumentType {
                function,
                position: position + 1,
                expected,
                found,
            },
        )
    };
    let require_numeric = |from: usize| -> Result<(), TypeError> {
        for (position, ty) in types.iter().enumerate().skip(from) {
            if let Some(found) = ty.filter(|_| !is_numeric(*ty)) {
                return Err(argument_error(position, "a number", found));
            }
        }
        Ok(())
    };
    Ok(match function {
        Function::And | Function::Or | Function::Not => Some(ValueType::Boolean),
        Function::If => {
            let then = types[1];
            let otherwise = types.get(2).copied().flatten();
            match (then, otherwise) {
                (Some(then), Some(otherwise)) if then != otherwise => {
                    return Err(error(
                        args[2].span,
                        TypeErrorKind::BranchMismatch { then, otherwise },
                    ));
                }
                _ => then.or(otherwise),
            }
        }
        Function::Concatenate | Function::Lower | Function::Upper | Function::Trim => {
            Some(ValueType::String)
        }
        Function::Len => Some(ValueType::Number),
        Function::Round | Function::Abs | Function::Min | Function::Max => {
            require_numeric(0)?;
            Some(ValueType::Number)
        }
        Function::Blank => None,
        Function::Today | Function::Now => Some(ValueType::Datetime),
        Function::DatetimeDiff => {
            for position in 0..2 {
                match types[position] {
                    None | Some(ValueType::Datetime) => {}
                    Some(ValueType::String) => check_datetime_literal(&args[position])?,
                    Some(found) => {
                        return Err(argument_error(
                            position,
                            "a datetime or a date string",
                            found,
                        ));
                    }
                }
            }
            if let Some(unit_ty) = types.get(2).copied() {
                match unit_ty {
                    None | Some(ValueType::String) => {}
                    Some(found) => {
                        return Err(argument_error(2, "a unit such as \"days\"", found));
                    }
                }
                if let Some(unit) = string_literal(&args[2])
                    && DatetimeUnit::parse(unit).is_none()
                {
                    return Err(error(
                        args[2].span,
                        TypeErrorKind::UnknownUnit {
                            unit: unit.to_owned(),
                        },
                    ));
                }
            }
            Some(ValueType::Number)
        }
    })
}
