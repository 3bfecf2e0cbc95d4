//! The recursive-descent (Pratt) parser.

use std::fmt;

use crate::ast::{BinaryOp, Expr, ExprKind, Function, MAX_DEPTH};
use crate::lexer::{Lexer, Token, TokenKind};
use crate::span::{Span, write_located};

/// A formula that does not parse: where, and what was expected there.
///
/// Displays as ``column 7: expected `)` after the arguments of IF`` (or
/// `line 2, column 7: …` past the first line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    span: Span,
    message: String,
}

impl ParseError {
    pub(crate) fn new(span: Span, message: impl Into<String>) -> ParseError {
        ParseError {
            span,
            message: message.into(),
        }
    }

    /// Byte offset of the offending text (the source length when the formula ended too
    /// early).
    pub fn offset(&self) -> usize {
        self.span.start
    }

    /// 1-based line of the offending text.
    pub fn line(&self) -> usize {
        self.span.line
    }

    /// 1-based column of the offending text, in characters.
    pub fn column(&self) -> usize {
        self.span.column
    }

    /// The offending text (empty at the end of the formula).
    pub fn span(&self) -> Span {
        self.span
    }

    /// What is wrong, without the position: ``expected `)` after the arguments of IF``.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_located(f, self.span, &self.message)
    }
}

/// Parses a formula.
///
/// ```
/// let expr = ivory_formula::parse("round({Amount Due}/100,2)")?;
/// assert_eq!(expr.to_string(), "ROUND({Amount Due} / 100, 2)");
///
/// let error = ivory_formula::parse("IF({Paid}, 1").unwrap_err();
/// assert_eq!(error.to_string(), "column 13: expected `)` after the arguments of IF");
/// # Ok::<(), ivory_formula::ParseError>(())
/// ```
///
/// # Errors
///
/// [`ParseError`] at the first offending token: an unexpected character or token, an
/// unterminated string or field reference, an unknown function, a bare word that is not a
/// function (field references need braces), a number too large for `f64`, or nesting deeper
/// than [`MAX_DEPTH`].
pub fn parse(source: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser {
        lexer: Lexer::new(source),
        peeked: None,
        nesting: 0,
    };
    let (expr, _) = parser.expression(1, Want::Formula)?;
    let token = parser.next()?;
    match token.kind {
        TokenKind::Eof => Ok(expr),
        TokenKind::RParen => Err(ParseError::new(token.span, "`)` without a matching `(`")),
        other => Err(ParseError::new(
            token.span,
            format!("expected an operator or the end of the formula, found {other}"),
        )),
    }
}

/// What the parser was looking for when it wanted a value, for the error message.
#[derive(Debug, Clone, Copy)]
enum Want {
    Formula,
    AfterOperator(BinaryOp),
    AfterMinus,
    AfterParen,
    Argument(Function),
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Want::Formula => f.write_str("expected a value"),
            Want::AfterOperator(op) => write!(f, "expected a value after `{op}`"),
            Want::AfterMinus => f.write_str("expected a value after `-`"),
            Want::AfterParen => f.write_str("expected a value after `(`"),
            Want::Argument(function) => write!(f, "expected an argument of {function}"),
        }
    }
}

fn binary_op(kind: &TokenKind) -> Option<BinaryOp> {
    Some(match kind {
        TokenKind::Star => BinaryOp::Mul,
        TokenKind::Slash => BinaryOp::Div,
        TokenKind::Percent => BinaryOp::Rem,
        TokenKind::Plus => BinaryOp::Add,
        TokenKind::Minus => BinaryOp::Sub,
        TokenKind::Amp => BinaryOp::Concat,
        TokenKind::Eq => BinaryOp::Eq,
        TokenKind::NotEq => BinaryOp::NotEq,
        TokenKind::Lt => BinaryOp::Lt,
        TokenKind::Le => BinaryOp::Le,
        TokenKind::Gt => BinaryOp::Gt,
        TokenKind::Ge => BinaryOp::Ge,
        _ => return None,
    })
}

/// An expression and the depth of its tree.
type Parsed = (Expr, usize);

#[derive(Debug)]
struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    /// How many `expression`/prefix calls are active: bounds the recursion.
    nesting: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&Token, ParseError> {
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(token))
    }

    fn next(&mut self) -> Result<Token, ParseError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    fn too_deep(span: Span) -> ParseError {
        ParseError::new(
            span,
            format!("the formula nests too deeply (more than {MAX_DEPTH} levels)"),
        )
    }

    /// Enters one level of recursion, refusing to go deeper than [`MAX_DEPTH`].
    fn enter(&mut self, span: Span) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(Self::too_deep(span));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    /// Checks the depth of a node just built.
    fn node(expr: Expr, depth: usize) -> Result<Parsed, ParseError> {
        if depth > MAX_DEPTH {
            return Err(Self::too_deep(expr.span));
        }
        Ok((expr, depth))
    }

    /// Operators binding at least as tightly as `min_precedence`, left-associative.
    fn expression(&mut self, min_precedence: u8, want: Want) -> Result<Parsed, ParseError> {
        let here = self.peek()?.span;
        self.enter(here)?;
        let (mut left, mut depth) = self.prefix(want)?;
        while let Some(op) = binary_op(&self.peek()?.kind) {
            if op.precedence() < min_precedence {
                break;
            }
            self.next()?;
            let (right, right_depth) =
                self.expression(op.precedence() + 1, Want::AfterOperator(op))?;
            let span = left.span.to(right.span);
            let expr = Expr {
                kind: ExprKind::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                span,
            };
            (left, depth) = Self::node(expr, depth.max(right_depth) + 1)?;
        }
        self.leave();
        Ok((left, depth))
    }

    /// A value, a function call, a parenthesized expression or a negation.
    fn prefix(&mut self, want: Want) -> Result<Parsed, ParseError> {
        let token = self.next()?;
        let leaf = |kind| {
            Ok((
                Expr {
                    kind,
                    span: token.span,
                },
                1,
            ))
        };
        match token.kind {
            TokenKind::Number(x) => leaf(ExprKind::Number(x)),
            TokenKind::String(ref text) => leaf(ExprKind::String(text.clone())),
            TokenKind::Field(ref name) => leaf(ExprKind::Field(name.clone())),
            TokenKind::Minus => {
                if let TokenKind::Number(x) = self.peek()?.kind {
                    // `-12` is a literal.
                    let number = self.next()?;
                    return Ok((
                        Expr {
                            kind: ExprKind::Number(-x),
                            span: token.span.to(number.span),
                        },
                        1,
                    ));
                }
                self.enter(token.span)?;
                let (operand, depth) = self.prefix(Want::AfterMinus)?;
                self.leave();
                let span = token.span.to(operand.span);
                Self::node(
                    Expr {
                        kind: ExprKind::Negate(Box::new(operand)),
                        span,
                    },
                    depth + 1,
                )
            }
            TokenKind::LParen => {
                let (inner, depth) = self.expression(1, Want::AfterParen)?;
                let close = self.next()?;
                if close.kind != TokenKind::RParen {
                    return Err(ParseError::new(
                        close.span,
                        format!(
                            "expected `)` to close the `(` at {}, found {}",
                            token.span.location(),
                            close.kind
                        ),
                    ));
                }
                Ok((
                    Expr {
                        kind: inner.kind,
                        span: token.span.to(close.span),
                    },
                    depth,
                ))
            }
            TokenKind::Ident(ref name) => self.word(name, token.span),
            TokenKind::Eof if matches!(want, Want::Formula) => {
                Err(ParseError::new(token.span, "the formula is empty"))
            }
            TokenKind::RParen if matches!(want, Want::Formula) => {
                Err(ParseError::new(token.span, "`)` without a matching `(`"))
            }
            other => Err(ParseError::new(
                token.span,
                format!("{want}, found {other}"),
            )),
        }
    }

    /// A bare word: `TRUE`, `FALSE`, or a function call.
    fn word(&mut self, name: &str, span: Span) -> Result<Parsed, ParseError> {
        let open = self.peek()?.kind == TokenKind::LParen;
        for (literal, value) in [("TRUE", true), ("FALSE", false)] {
            if name.eq_ignore_ascii_case(literal) {
                let mut end = span;
                if open {
                    self.next()?;
                    let close = self.next()?;
                    if close.kind != TokenKind::RParen {
                        return Err(ParseError::new(
                            close.span,
                            format!("{literal}() takes no arguments, found {}", close.kind),
                        ));
                    }
                    end = close.span;
                }
                return Ok((
                    Expr {
                        kind: ExprKind::Boolean(value),
                        span: span.to(end),
                    },
                    1,
                ));
            }
        }
        let function = Function::from_name(name);
        let Some(function) = function.filter(|_| open) else {
            let message = match function {
                Some(function) => {
                    let found = self.peek()?.clone();
                    return Err(ParseError::new(
                        found.span,
                        format!("expected `(` after {function}, found {}", found.kind),
                    ));
                }
                None if open => format!("unknown function `{name}`"),
                None => format!(
                    "`{name}` is not a function or a value; a field reference needs braces, as in \
                     {{{name}}}"
                ),
            };
            return Err(ParseError::new(span, message));
        };
        self.next()?; // `(`
        let mut args = Vec::new();
        let mut depth = 0;
        if self.peek()?.kind == TokenKind::RParen {
            let close = self.next()?;
            return Self::node(
                Expr {
                    kind: ExprKind::Call { function, args },
                    span: span.to(close.span),
                },
                1,
            );
        }
        loop {
            let (arg, arg_depth) = self.expression(1, Want::Argument(function))?;
            args.push(arg);
            depth = depth.max(arg_depth);
            let token = self.next()?;
            match token.kind {
                TokenKind::Comma => {}
                TokenKind::RParen => {
                    return Self::node(
                        Expr {
                            kind: ExprKind::Call { function, args },
                            span: span.to(token.span),
                        },
                        depth + 1,
                    );
                }
                TokenKind::Eof => {
                    return Err(ParseError::new(
                        token.span,
                        format!("expected `)` after the arguments of {function}"),
                    ));
                }
                other => {
                    return Err(ParseError::new(
                        token.span,
                        format!(
                            "expected `,` or `)` after an argument of {function}, found {other}"
                        ),
                    ));
                }
            }
        }
    }
}
