//! Canonical printing of expressions.

use std::fmt::{self, Write as _};

use crate::ast::{Expr, ExprKind};
use crate::number::format_number;

/// The precedence of a negation (tighter than every binary operator).
const UNARY: u8 = 5;
/// The precedence of literals, references, calls.
const ATOM: u8 = 6;

impl fmt::Display for Expr {
    /// The canonical form: upper-case function names, `TRUE()`/`FALSE()`, double-quoted
    /// strings (escaping `\`, `"`, newline and tab), numbers without exponent or trailing `.0`,
    /// one space around binary operators, `, ` between arguments, `!=` for `<>`, and only the
    /// parentheses the precedence rules need.
    ///
    /// For every tree the parser can produce, `parse(&expr.to_string()) == Ok(expr)`. That
    /// holds for hand-built trees too when their number literals are finite and their field
    /// names are non-blank and contain no `{`, `}` or newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, self, 0)
    }
}

fn precedence(expr: &Expr) -> u8 {
    match &expr.kind {
        ExprKind::Binary { op, .. } => op.precedence(),
        ExprKind::Negate(_) => UNARY,
        _ => ATOM,
    }
}

fn write_expr(f: &mut fmt::Formatter<'_>, expr: &Expr, min_precedence: u8) -> fmt::Result {
    if precedence(expr) < min_precedence {
        f.write_char('(')?;
        write_expr(f, expr, 0)?;
        return f.write_char(')');
    }
    match &expr.kind {
        ExprKind::Number(x) => f.write_str(&format_number(*x)),
        ExprKind::String(text) => write_string(f, text),
        ExprKind::Boolean(true) => f.write_str("TRUE()"),
        ExprKind::Boolean(false) => f.write_str("FALSE()"),
        ExprKind::Field(name) => write!(f, "{{{name}}}"),
        ExprKind::Negate(operand) => {
            f.write_char('-')?;
            if let ExprKind::Number(_) = operand.kind {
                // `-12` would read back as the literal −12, not as a negation.
                f.write_char('(')?;
                write_expr(f, operand, 0)?;
                f.write_char(')')
            } else {
                write_expr(f, operand, UNARY)
            }
        }
        ExprKind::Binary { op, left, right } => {
            let precedence = op.precedence();
            write_expr(f, left, precedence)?;
            write!(f, " {op} ")?;
            // Left-associative: an equal-precedence right operand needs parentheses.
            write_expr(f, right, precedence + 1)
        }
        ExprKind::Call { function, args } => {
            write!(f, "{function}(")?;
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_expr(f, arg, 0)?;
            }
            f.write_char(')')
        }
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}
