//! Source positions.

use std::fmt;

/// A region of formula source: byte offsets plus the line and column where it starts.
///
/// Lines and columns are 1-based; columns count characters (Unicode scalar values), not
/// bytes, so `"é" & {X}` puts `{X}` at column 7. An expression built by hand rather than
/// parsed carries [`Span::DETACHED`], whose line is 0; errors about it carry no position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// 1-based line of `start`; 0 for [`Span::DETACHED`].
    pub line: usize,
    /// 1-based column of `start`, in characters; 0 for [`Span::DETACHED`].
    pub column: usize,
}

impl Span {
    /// The span of an expression that was not parsed from source.
    pub const DETACHED: Span = Span {
        start: 0,
        end: 0,
        line: 0,
        column: 0,
    };

    /// Whether this span is [`Span::DETACHED`] (no source position).
    pub fn is_detached(&self) -> bool {
        self.line == 0
    }

    /// The span from the start of `self` to the end of `other`.
    pub(crate) fn to(self, other: Span) -> Span {
        if self.is_detached() {
            return other;
        }
        Span {
            end: other.end.max(self.start),
            ..self
        }
    }

    /// Where this span starts, for error messages: `column 7`, or `line 2, column 7` past the
    /// first line.
    pub(crate) fn location(&self) -> Location {
        Location(*self)
    }
}

impl Default for Span {
    fn default() -> Self {
        Span::DETACHED
    }
}

/// Displays a span's start as `column C` (first line) or `line L, column C`.
#[derive(Debug)]
pub(crate) struct Location(Span);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let span = self.0;
        if span.line <= 1 {
            write!(f, "column {}", span.column)
        } else {
            write!(f, "line {}, column {}", span.line, span.column)
        }
    }
}

/// Writes `location: message`, or just the message for a detached span.
pub(crate) fn write_located(
    f: &mut fmt::Formatter<'_>,
    span: Span,
    message: &dyn fmt::Display,
) -> fmt::Result {
    if span.is_detached() {
        write!(f, "{message}")
    } else {
        write!(f, "{}: {message}", span.location())
    }
}
