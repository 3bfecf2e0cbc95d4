//! Tokens, produced one at a time so the first error in the source is the one reported.

use std::fmt;

use crate::number::format_number;
use crate::parser::ParseError;
use crate::span::Span;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    Number(f64),
    String(String),
    Field(String),
    Ident(String),
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Amp,
    Eq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

/// Describes a token for "found …" in messages.
impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Number(x) => write!(f, "the number {}", format_number(*x)),
            TokenKind::String(text) => {
                let shown: String = text.chars().take(30).collect();
                let ellipsis = if shown.len() < text.len() { "…" } else { "" };
                write!(f, "the string {shown:?}{ellipsis}")
            }
            TokenKind::Field(name) => write!(f, "the field {{{name}}}"),
            TokenKind::Ident(name) => write!(f, "`{name}`"),
            TokenKind::LParen => f.write_str("`(`"),
            TokenKind::RParen => f.write_str("`)`"),
            TokenKind::Comma => f.write_str("`,`"),
            TokenKind::Plus => f.write_str("`+`"),
            TokenKind::Minus => f.write_str("`-`"),
            TokenKind::Star => f.write_str("`*`"),
            TokenKind::Slash => f.write_str("`/`"),
            TokenKind::Percent => f.write_str("`%`"),
            TokenKind::Amp => f.write_str("`&`"),
            TokenKind::Eq => f.write_str("`=`"),
            TokenKind::NotEq => f.write_str("`!=`"),
            TokenKind::Lt => f.write_str("`<`"),
            TokenKind::Le => f.write_str("`<=`"),
            TokenKind::Gt => f.write_str("`>`"),
            TokenKind::Ge => f.write_str("`>=`"),
            TokenKind::Eof => f.write_str("the end of the formula"),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) span: Span,
}

/// A position in the source.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    offset: usize,
    line: usize,
    column: usize,
}

#[derive(Debug)]
pub(crate) struct Lexer<'a> {
    source: &'a str,
    at: Cursor,
}

/// How a character is shown in messages: `#`, or an escape for control characters.
fn show_char(c: char) -> String {
    if c.is_control() {
        format!("{c:?}")
    } else {
        format!("`{c}`")
    }
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(source: &'a str) -> Lexer<'a> {
        Lexer {
            source,
            at: Cursor {
                offset: 0,
                line: 1,
                column: 1,
            },
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.source[self.at.offset..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.source[self.at.offset..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.at.offset += c.len_utf8();
        if c == '\n' {
            self.at.line += 1;
            self.at.column = 1;
        } else {
            self.at.column += 1;
        }
        Some(c)
    }

    fn span_from(&self, start: Cursor) -> Span {
        Span {
            start: start.offset,
            end: self.at.offset,
            line: start.line,
            column: start.column,
        }
    }

    fn error_at(&self, start: Cursor, message: impl Into<String>) -> ParseError {
        // The offending character (nothing at the end of the source).
        let end = start.offset
            + self.source[start.offset..]
                .chars()
                .next()
                .map_or(0, char::len_utf8);
        ParseError::new(
            Span {
                start: start.offset,
                end,
                line: start.line,
                column: start.column,
            },
            message,
        )
    }

    /// The next token, or the first lexical error.
    pub(crate) fn next_token(&mut self) -> Result<Token, ParseError> {
        while self.peek_char().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let start = self.at;
        let Some(c) = self.bump() else {
            return Ok(Token {
                kind: TokenKind::Eof,
                span: self.span_from(start),
            });
        };
        let kind = match c {
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            ',' => TokenKind::Comma,
            '+' => TokenKind::Plus,
            '-' => TokenKind::Minus,
            '*' => TokenKind::Star,
            '/' => TokenKind::Slash,
            '%' => TokenKind::Percent,
            '&' => {
                if self.peek_char() == Some('&') {
                    return Err(self.error_at(start, "`&&` is not an operator: use AND(a, b)"));
                }
                TokenKind::Amp
            }
            '|' => {
                let message = if self.peek_char() == Some('|') {
                    "`||` is not an operator: use OR(a, b)"
                } else {
                    "unexpected character `|`"
                };
                return Err(self.error_at(start, message));
            }
            '=' => {
                if self.peek_char() == Some('=') {
                    return Err(self.error_at(start, "`==` is not an operator: use `=`"));
                }
                TokenKind::Eq
            }
            '!' => {
                if self.peek_char() == Some('=') {
                    self.bump();
                    TokenKind::NotEq
                } else {
                    return Err(self.error_at(start, "`!` is not an operator: use NOT(x), or `!=`"));
                }
            }
            '<' => match self.peek_char() {
                Some('=') => {
                    self.bump();
                    TokenKind::Le
                }
                Some('>') => {
                    self.bump();
                    TokenKind::NotEq
                }
                _ => TokenKind::Lt,
            },
            '>' => {
                if self.peek_char() == Some('=') {
                    self.bump();
                    TokenKind::Ge
                } else {
                    TokenKind::Gt
                }
            }
            '{' => self.field(start)?,
            '"' | '\'' => self.string(start, c)?,
            '0'..='9' => self.number(start)?,
            '.' if self.peek_char().is_some_and(|d| d.is_ascii_digit()) => self.number(start)?,
            c if c.is_alphabetic() || c == '_' => {
                while self
                    .peek_char()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
                {
                    self.bump();
                }
                TokenKind::Ident(self.source[start.offset..self.at.offset].to_owned())
            }
            '}' => {
                return Err(self.error_at(start, "`}` without a matching `{`"));
            }
            other => {
                return Err(
                    self.error_at(start, format!("unexpected character {}", show_char(other)))
                );
            }
        };
        Ok(Token {
            kind,
            span: self.span_from(start),
        })
    }

    /// `{Name}`, after the `{`.
    fn field(&mut self, start: Cursor) -> Result<TokenKind, ParseError> {
        let name_start = self.at.offset;
        loop {
            match self.peek_char() {
                Some('}') => break,
                None => {
                    return Err(self.error_at(
                        start,
                        "this field reference is not closed: expected `}` before the end of \
                         the formula",
                    ));
                }
                Some('\n') => {
                    return Err(self.error_at(
                        start,
                        "this field reference is not closed: expected `}` before the end of \
                         the line",
                    ));
                }
                Some('{') => {
                    return Err(self.error_at(
                        start,
                        "this field reference is not closed: expected `}` before the next `{`",
                    ));
                }
                Some(_) => {
                    self.bump();
                }
            }
        }
        let name = &self.source[name_start..self.at.offset];
        self.bump();
        if name.trim().is_empty() {
            return Err(self.error_at(start, "empty field reference: write {Field Name}"));
        }
        Ok(TokenKind::Field(name.to_owned()))
    }

    /// A string literal, after its opening quote.
    fn string(&mut self, start: Cursor, quote: char) -> Result<TokenKind, ParseError> {
        let mut text = String::new();
        loop {
            let escape_start = self.at;
            match self.bump() {
                None => {
                    return Err(self.error_at(
                        start,
                        format!("this string is not closed: expected a closing {quote}"),
                    ));
                }
                Some(c) if c == quote => return Ok(TokenKind::String(text)),
                Some('\\') => match self.bump() {
                    Some('"') => text.push('"'),
                    Some('\'') => text.push('\''),
                    Some('\\') => text.push('\\'),
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    None => {
                        return Err(self.error_at(
                            start,
                            format!("this string is not closed: expected a closing {quote}"),
                        ));
                    }
                    Some(other) => {
                        return Err(self.error_at(
                            escape_start,
                            format!(
                                "unknown escape `\\{other}` in a string (the escapes are \\\", \
                                 \\', \\\\, \\n and \\t)"
                            ),
                        ));
                    }
                },
                Some(c) => text.push(c),
            }
        }
    }

    /// A number literal, after its first character: `12`, `3.5`, `.5`.
    fn number(&mut self, start: Cursor) -> Result<TokenKind, ParseError> {
        while self.peek_char().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        let had_point = self.source[start.offset..self.at.offset].contains('.');
        if !had_point && self.peek_char() == Some('.') {
            if !self.peek_second().is_some_and(|c| c.is_ascii_digit()) {
                let point = self.at;
                return Err(self.error_at(point, "expected a digit after the decimal point"));
            }
            self.bump();
            while self.peek_char().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        let text = &self.source[start.offset..self.at.offset];
        match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(TokenKind::Number(x)),
            _ => Err(self.error_at(start, "this number is too large")),
        }
    }
}
