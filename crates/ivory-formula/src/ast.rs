//! The syntax tree.

use std::fmt;

use crate::span::Span;

/// The deepest expression tree the language accepts.
///
/// [`parse`](crate::parse) refuses deeper formulas (and deeper parenthesis nesting), so every
/// parsed tree can be checked, evaluated, printed and dropped without exhausting the stack.
/// For deeper trees built by hand, [`check`](crate::check) returns a type error and
/// [`evaluate`](crate::evaluate) an error value; printing them is not guarded.
///
/// A leaf has depth 1; `IF({A} > 1, 2, 3)` has depth 3.
pub const MAX_DEPTH: usize = 128;

/// A formula expression: what it is ([`ExprKind`]) and where it came from ([`Span`]).
///
/// Equality is structural: two expressions are equal when their trees are equal, wherever
/// they came from (spans are ignored), so `parse("1+2")` equals `parse("1 + 2")` and
/// `parse(&expr.to_string())` equals `expr`. Number literals compare as `f64`.
///
/// [`Display`](fmt::Display) prints the canonical form (see the crate documentation).
#[derive(Debug, Clone)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Where it is in the source; [`Span::DETACHED`] for expressions built by hand.
    pub span: Span,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

/// The kinds of expression.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ExprKind {
    /// A number literal. Parsed literals are finite; `-12` (a minus sign directly before a
    /// number) is the literal −12, not a negation.
    Number(f64),
    /// A string literal, unescaped.
    String(String),
    /// `TRUE()`, `FALSE()`, or bare `TRUE` / `FALSE`.
    Boolean(bool),
    /// A field reference `{Name}`; holds the name between the braces, exactly as written.
    Field(String),
    /// Unary minus applied to anything but a number literal: `-{Amount}`.
    Negate(Box<Expr>),
    /// A binary operator.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        left: Box<Expr>,
        /// The right operand.
        right: Box<Expr>,
    },
    /// A function call. The parser accepts any number of arguments; [`check`](crate::check)
    /// enforces arity.
    Call {
        /// The function called.
        function: Function,
        /// The arguments, in order.
        args: Vec<Expr>,
    },
}

impl Expr {
    /// An expression with no source position ([`Span::DETACHED`]).
    pub fn new(kind: ExprKind) -> Expr {
        Expr {
            kind,
            span: Span::DETACHED,
        }
    }

    /// A number literal.
    pub fn number(value: f64) -> Expr {
        Expr::new(ExprKind::Number(value))
    }

    /// A string literal.
    pub fn string(value: impl Into<String>) -> Expr {
        Expr::new(ExprKind::String(value.into()))
    }

    /// `TRUE()` or `FALSE()`.
    pub fn boolean(value: bool) -> Expr {
        Expr::new(ExprKind::Boolean(value))
    }

    /// A field reference `{name}`.
    pub fn field(name: impl Into<String>) -> Expr {
        Expr::new(ExprKind::Field(name.into()))
    }

    /// `-operand`.
    pub fn negate(operand: Expr) -> Expr {
        Expr::new(ExprKind::Negate(Box::new(operand)))
    }

    /// `left op right`.
    pub fn binary(op: BinaryOp, left: Expr, right: Expr) -> Expr {
        Expr::new(ExprKind::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        })
    }

    /// `FUNCTION(args…)`.
    pub fn call(function: Function, args: Vec<Expr>) -> Expr {
        Expr::new(ExprKind::Call { function, args })
    }

    /// The distinct field names this expression references, in order of first appearance.
    ///
    /// The platform uses this to order formula fields that reference other formula fields
    /// and to refuse cycles.
    pub fn fields(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let mut stack = vec![self];
        while let Some(expr) = stack.pop() {
            match &expr.kind {
                ExprKind::Field(name) => {
                    if !names.contains(&name.as_str()) {
                        names.push(name);
                    }
                }
                ExprKind::Number(_) | ExprKind::String(_) | ExprKind::Boolean(_) => {}
                ExprKind::Negate(operand) => stack.push(operand),
                ExprKind::Binary { left, right, .. } => {
                    stack.push(right);
                    stack.push(left);
                }
                ExprKind::Call { args, .. } => stack.extend(args.iter().rev()),
            }
        }
        names
    }
}

/// Binary operators, from the tightest binding to the loosest:
/// `*` `/` `%`, then `+` `-`, then `&`, then the comparisons. All are left-associative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`: the remainder, with the sign of the dividend (as in JavaScript).
    Rem,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `&`: text concatenation.
    Concat,
    /// `=`
    Eq,
    /// `!=`, also written `<>`.
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl BinaryOp {
    /// Every operator.
    pub const ALL: [BinaryOp; 12] = [
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Concat,
        BinaryOp::Eq,
        BinaryOp::NotEq,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
    ];

    /// The canonical spelling (`!=` for [`BinaryOp::NotEq`]).
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Concat => "&",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
        }
    }

    /// Binding strength: 4 for `* / %`, 3 for `+ -`, 2 for `&`, 1 for comparisons.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => 4,
            BinaryOp::Add | BinaryOp::Sub => 3,
            BinaryOp::Concat => 2,
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => 1,
        }
    }

    /// Whether this is one of the arithmetic operators `* / % + -`.
    pub fn is_arithmetic(self) -> bool {
        self.precedence() >= 3
    }

    /// Whether this is one of the comparisons `= != < <= > >=`.
    pub fn is_comparison(self) -> bool {
        self.precedence() == 1
    }
}

impl fmt::Display for BinaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// The functions of the language. Names are case-insensitive in source.
///
/// `TRUE()` and `FALSE()` are literals ([`ExprKind::Boolean`]), not functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Function {
    /// `AND(x, …)`: whether every argument is truthy.
    And,
    /// `OR(x, …)`: whether any argument is truthy.
    Or,
    /// `NOT(x)`: whether the argument is falsy.
    Not,
    /// `IF(condition, then[, else])`.
    If,
    /// `CONCATENATE(x, …)`: the arguments as text, joined.
    Concatenate,
    /// `ROUND(x[, digits])`: half away from zero; negative digits round left of the point.
    Round,
    /// `ABS(x)`.
    Abs,
    /// `MIN(x, …)`: the smallest number, ignoring blanks.
    Min,
    /// `MAX(x, …)`: the largest number, ignoring blanks.
    Max,
    /// `LEN(x)`: the number of characters of the argument as text.
    Len,
    /// `LOWER(x)`.
    Lower,
    /// `UPPER(x)`.
    Upper,
    /// `TRIM(x)`: without leading and trailing whitespace.
    Trim,
    /// `BLANK()`: the blank value.
    Blank,
    /// `DATETIME_DIFF(a, b[, unit])`: `a − b` in whole units, truncated toward zero.
    DatetimeDiff,
    /// `TODAY()`: midnight UTC of the evaluation clock's date.
    Today,
    /// `NOW()`: the evaluation clock.
    Now,
}

/// How many arguments a function takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arity {
    /// The fewest arguments.
    pub min: usize,
    /// The most arguments, or `None` for any number.
    pub max: Option<usize>,
}

impl Arity {
    /// Whether `count` arguments are accepted.
    pub fn accepts(self, count: usize) -> bool {
        count >= self.min && self.max.is_none_or(|max| count <= max)
    }
}

impl fmt::Display for Arity {
    /// `no arguments`, `1 argument`, `2 or 3 arguments`, `at least 1 argument`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        match self.max {
            Some(0) => f.write_str("no arguments"),
            Some(max) if max == self.min => write!(f, "{max} {}", plural(max)),
            Some(max) if max == self.min + 1 => write!(f, "{} or {max} arguments", self.min),
            Some(max) => write!(f, "{} to {max} arguments", self.min),
            None => write!(f, "at least {} {}", self.min, plural(self.min)),
        }
    }
}

impl Function {
    /// Every function, in the order of the crate documentation.
    pub const ALL: [Function; 17] = [
        Function::And,
        Function::Or,
        Function::Not,
        Function::If,
        Function::Concatenate,
        Function::Round,
        Function::Abs,
        Function::Min,
        Function::Max,
        Function::Len,
        Function::Lower,
        Function::Upper,
        Function::Trim,
        Function::Blank,
        Function::DatetimeDiff,
        Function::Today,
        Function::Now,
    ];

    /// The canonical (upper-case) name, such as `DATETIME_DIFF`.
    pub fn name(self) -> &'static str {
        match self {
            Function::And => "AND",
            Function::Or => "OR",
            Function::Not => "NOT",
            Function::If => "IF",
            Function::Concatenate => "CONCATENATE",
            Function::Round => "ROUND",
            Function::Abs => "ABS",
            Function::Min => "MIN",
            Function::Max => "MAX",
            Function::Len => "LEN",
            Function::Lower => "LOWER",
            Function::Upper => "UPPER",
            Function::Trim => "TRIM",
            Function::Blank => "BLANK",
            Function::DatetimeDiff => "DATETIME_DIFF",
            Function::Today => "TODAY",
            Function::Now => "NOW",
        }
    }

    /// The function with this name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL
            .into_iter()
            .find(|function| function.name().eq_ignore_ascii_case(name))
    }

    /// How many arguments the function takes.
    pub fn arity(self) -> Arity {
        let (min, max) = match self {
            Function::And
            | Function::Or
            | Function::Concatenate
            | Function::Min
            | Function::Max => (1, None),
            Function::Not
            | Function::Abs
            | Function::Len
            | Function::Lower
            | Function::Upper
            | Function::Trim => (1, Some(1)),
            Function::If => (2, Some(3)),
            Function::Round => (1, Some(2)),
            Function::DatetimeDiff => (2, Some(3)),
            Function::Blank | Function::Today | Function::Now => (0, Some(0)),
        };
        Arity { min, max }
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
