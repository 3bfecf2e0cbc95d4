//! A small Rust lexer: the string literals and identifiers of a source file, each marked as
//! test code or not.
//!
//! Comments (line, block, nested, doc) are skipped, so a URL in a doc comment is not a call.
//! String literals of every form are read (`"…"`, `r#"…"#`, `b"…"`, `br"…"`, `c"…"`), with
//! their contents undecoded. Literals inside attributes (`#[doc = "…"]`) are skipped.
//!
//! Test code is: a file the caller marks as test code, a file with `#![cfg(test)]`, and the
//! item following a `#[cfg(test)]`, `#[cfg(all(test, …))]`, `#[test]` or `#[…::test]`
//! attribute (such as `#[tokio::test]`).

/// Where a token starts: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// A string literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Literal {
    /// Its contents, between the quotes, undecoded.
    pub(crate) text: String,
    pub(crate) at: Position,
    pub(crate) in_test: bool,
}

/// An identifier (keywords included; raw identifiers without their `r#`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ident {
    pub(crate) name: String,
    pub(crate) at: Position,
    pub(crate) in_test: bool,
}

/// What a file holds.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    pub(crate) literals: Vec<Literal>,
    pub(crate) idents: Vec<Ident>,
}

struct Cursor {
    chars: Vec<char>,
    index: usize,
    line: usize,
    column: usize,
}

impl Cursor {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.index + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.index += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn position(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }
}

/// An attribute being read.
struct Attribute {
    inner: bool,
    depth: usize,
    text: String,
}

/// Lexes `source`. `file_is_test` marks every token as test code.
pub(crate) fn lex(source: &str, file_is_test: bool) -> Facts {
    let mut cursor = Cursor {
        chars: source.chars().collect(),
        index: 0,
        line: 1,
        column: 1,
    };
    let mut facts = Facts::default();
    let mut whole_file_test = file_is_test;
    let mut attribute: Option<Attribute> = None;
    // Test regions: the brace depth at which each open test item's body started.
    let mut regions: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    // Parentheses and brackets, so that a `;` inside `[u8; 4]` does not end an item.
    let mut nesting = 0usize;
    // Set after a test attribute, until the item's body opens (or the item ends with `;`).
    let mut pending: Option<usize> = None;

    while let Some(c) = cursor.peek(0) {
        let at = cursor.position();
        let in_test = whole_file_test || !regions.is_empty();

        // Comments.
        if c == '/' && cursor.peek(1) == Some('/') {
            while cursor.peek(0).is_some_and(|c| c != '\n') {
                cursor.bump();
            }
            continue;
        }
        if c == '/' && cursor.peek(1) == Some('*') {
            block_comment(&mut cursor);
            continue;
        }

        // Strings, plain and prefixed.
        if c == '"' {
            cursor.bump();
            let text = quoted(&mut cursor);
            if attribute.is_none() {
                facts.literals.push(Literal { text, at, in_test });
            }
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let word = ident(&mut cursor);
            let next = cursor.peek(0);
            match (word.as_str(), next) {
                ("r" | "br" | "cr", Some('"' | '#')) if raw_string_ahead(&cursor) => {
                    let text = raw_string(&mut cursor);
                    if attribute.is_none() {
                        facts.literals.push(Literal { text, at, in_test });
                    }
                }
                ("b" | "c", Some('"')) => {
                    cursor.bump();
                    let text = quoted(&mut cursor);
                    if attribute.is_none() {
                        facts.literals.push(Literal { text, at, in_test });
                    }
                }
                ("b", Some('\'')) => {
                    cursor.bump();
                    char_literal_rest(&mut cursor);
                }
                ("r", Some('#')) => {
                    // A raw identifier: `r#type`.
                    cursor.bump();
                    let name = ident(&mut cursor);
                    push_ident(&mut facts, &mut attribute, name, at, in_test);
                }
                _ => push_ident(&mut facts, &mut attribute, word, at, in_test),
            }
            continue;
        }
        if c == '\'' {
            cursor.bump();
            // A char literal ('a', '\n', '"') or a lifetime / label ('a, 'static).
            let is_char = cursor.peek(0) == Some('\\') || cursor.peek(1) == Some('\'');
            if is_char {
                char_literal_rest(&mut cursor);
            }
            continue;
        }

        // Attributes.
        if c == '#' && attribute.is_none() {
            let inner = cursor.peek(1) == Some('!') && cursor.peek(2) == Some('[');
            if cursor.peek(1) == Some('[') || inner {
                cursor.bump();
                if inner {
                    cursor.bump();
                }
                cursor.bump();
                attribute = Some(Attribute {
                    inner,
                    depth: 1,
                    text: String::new(),
                });
                continue;
            }
        }
        if let Some(attr) = attribute.as_mut() {
            cursor.bump();
            match c {
                '[' => attr.depth += 1,
                ']' => attr.depth -= 1,
                _ => {}
            }
            if attr.depth == 0 {
                if is_test_attribute(&attr.text) {
                    if attr.inner && braces == 0 {
                        whole_file_test = true;
                    } else if !attr.inner {
                        pending = Some(nesting);
                    }
                }
                attribute = None;
            } else if !c.is_whitespace() {
                attr.text.push(c);
            }
            continue;
        }

        cursor.bump();
        match c {
            '{' => {
                braces += 1;
                if pending.take().is_some() {
                    regions.push(braces);
                }
            }
            '}' => {
                if regions.last() == Some(&braces) {
                    regions.pop();
                }
                braces = braces.saturating_sub(1);
            }
            '(' | '[' => nesting += 1,
            ')' | ']' => nesting = nesting.saturating_sub(1),
            ';' if pending == Some(nesting) => pending = None,
            _ => {}
        }
    }
    facts
}

fn push_ident(
    facts: &mut Facts,
    attribute: &mut Option<Attribute>,
    name: String,
    at: Position,
    in_test: bool,
) {
    match attribute {
        Some(attr) => attr.text.push_str(&name),
        None => facts.idents.push(Ident { name, at, in_test }),
    }
}

/// `test`, `tokio::test`, `tokio::test(flavor = …)`, `cfg(test)`, `cfg(all(test, …))`.
fn is_test_attribute(text: &str) -> bool {
    let head = text.split('(').next().unwrap_or(text);
    head == "test"
        || head.ends_with("::test")
        || text == "cfg(test)"
        || text.starts_with("cfg(all(test,")
        || text.starts_with("cfg(all(test)")
}

fn ident(cursor: &mut Cursor) -> String {
    let mut word = String::new();
    while let Some(c) = cursor.peek(0) {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            cursor.bump();
        } else {
            break;
        }
    }
    word
}

fn block_comment(cursor: &mut Cursor) {
    cursor.bump();
    cursor.bump();
    let mut depth = 1usize;
    while depth > 0 {
        match (cursor.peek(0), cursor.peek(1)) {
            (Some('/'), Some('*')) => {
                cursor.bump();
                cursor.bump();
                depth += 1;
            }
            (Some('*'), Some('/')) => {
                cursor.bump();
                cursor.bump();
                depth -= 1;
            }
            (Some(_), _) => {
                cursor.bump();
            }
            (None, _) => return,
        }
    }
}

/// The rest of a `"…"` literal after its opening quote.
fn quoted(cursor: &mut Cursor) -> String {
    let mut text = String::new();
    while let Some(c) = cursor.bump() {
        match c {
            '"' => break,
            '\\' => {
                text.push(c);
                if let Some(escaped) = cursor.bump() {
                    text.push(escaped);
                }
            }
            _ => text.push(c),
        }
    }
    text
}

/// Whether the cursor (after `r`, `br` or `cr`) is at `#*"`.
fn raw_string_ahead(cursor: &Cursor) -> bool {
    let mut ahead = 0;
    while cursor.peek(ahead) == Some('#') {
        ahead += 1;
    }
    cursor.peek(ahead) == Some('"')
}

/// A raw string from its `#*"` to the matching `"#*`.
fn raw_string(cursor: &mut Cursor) -> String {
    let mut hashes = 0;
    while cursor.peek(0) == Some('#') {
        cursor.bump();
        hashes += 1;
    }
    cursor.bump(); // the opening quote
    let mut text = String::new();
    while let Some(c) = cursor.bump() {
        if c == '"' && (0..hashes).all(|i| cursor.peek(i) == Some('#')) {
            for _ in 0..hashes {
                cursor.bump();
            }
            break;
        }
        text.push(c);
    }
    text
}

/// The rest of a char literal after its opening quote.
fn char_literal_rest(cursor: &mut Cursor) {
    if cursor.peek(0) == Some('\\') {
        cursor.bump();
        cursor.bump();
        // `\u{…}` and `\x41`: up to the closing quote, on this line.
        while cursor.peek(0).is_some_and(|c| c != '\'' && c != '\n') {
            cursor.bump();
        }
    } else {
        cursor.bump();
    }
    if cursor.peek(0) == Some('\'') {
        cursor.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literals(source: &str) -> Vec<(String, usize, usize, bool)> {
        lex(source, false)
            .literals
            .into_iter()
            .map(|l| (l.text, l.at.line, l.at.column, l.in_test))
            .collect()
    }

    fn lit(text: &str, line: usize, column: usize, in_test: bool) -> (String, usize, usize, bool) {
        (text.to_owned(), line, column, in_test)
    }

    #[test]
    fn reads_every_string_form_and_skips_comments() {
        let source = r####"
// "https://in.a.comment"
/* "block" /* nested "x" */ still comment */
/// "doc"
let a = "plain \"quoted\" text";
let b = r#"raw "with" quotes"#;
let c = br"bytes";
let d = b"b\"s";
let e = 'x'; let f = '"'; let g = '\''; let h: &'static str = "after lifetime";
fn k<'a>(x: &'a str) -> char { '\u{1F600}' }
let r#type = "raw ident";
"####;
        assert_eq!(
            literals(source),
            vec![
                lit(r#"plain \"quoted\" text"#, 5, 9, false),
                lit(r#"raw "with" quotes"#, 6, 9, false),
                lit("bytes", 7, 9, false),
                lit(r#"b\"s"#, 8, 9, false),
                lit("after lifetime", 9, 63, false),
                lit("raw ident", 11, 14, false),
            ]
        );
        let idents = lex(source, false).idents;
        assert!(idents.iter().any(|i| i.name == "type"));
        assert!(!idents.iter().any(|i| i.name == "comment"));
    }

    #[test]
    fn marks_test_code() {
        let source = r#"
#[doc = "https://skipped.in.attribute"]
fn live() { let _ = "live"; }
#[cfg(test)]
mod tests {
    fn helper() { let _ = "in cfg test"; }
    #[tokio::test(flavor = "current_thread")]
    async fn t() { let _ = "in tokio test"; }
}
const AFTER: [u8; 2] = [0; 2];
fn later() { let _ = "live again"; }
#[test]
fn unit() { let _ = "in test"; }
#[cfg(test)]
use something;
fn last() { let _ = "still live"; }
"#;
        let found: Vec<(String, bool)> = lex(source, false)
            .literals
            .into_iter()
            .map(|l| (l.text, l.in_test))
            .collect();
        assert_eq!(
            found,
            vec![
                ("live".to_owned(), false),
                ("in cfg test".to_owned(), true),
                ("in tokio test".to_owned(), true),
                ("live again".to_owned(), false),
                ("in test".to_owned(), true),
                ("still live".to_owned(), false),
            ]
        );
    }

    #[test]
    fn inner_cfg_test_marks_the_whole_file() {
        let facts = lex("#![cfg(test)]\nfn a() { let _ = \"x\"; }\n", false);
        assert!(facts.literals.iter().all(|l| l.in_test));
        let facts = lex("#![allow(dead_code)]\nfn a() { let _ = \"x\"; }\n", false);
        assert!(facts.literals.iter().all(|l| !l.in_test));
    }

    #[test]
    fn never_panics_on_truncated_input() {
        for source in [
            "\"open",
            "r#\"open",
            "/* open",
            "'",
            "b'",
            "#[cfg(test",
            "r#",
            "'\\",
        ] {
            let _ = lex(source, false);
        }
    }
}
