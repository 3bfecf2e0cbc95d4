//! Parse errors (position and message) and canonical printing.

use ivory_formula::{BinaryOp, Expr, ExprKind, Function, MAX_DEPTH, parse};

/// `(source, line, column, message)`.
const ERRORS: &[(&str, usize, usize, &str)] = &[
    ("", 1, 1, "the formula is empty"),
    ("   ", 1, 4, "the formula is empty"),
    (
        "IF({Paid}, 1",
        1,
        13,
        "expected `)` after the arguments of IF",
    ),
    (
        "IF(1 2)",
        1,
        6,
        "expected `,` or `)` after an argument of IF, found the number 2",
    ),
    ("IF(1,)", 1, 6, "expected an argument of IF, found `)`"),
    (
        "ROUND",
        1,
        6,
        "expected `(` after ROUND, found the end of the formula",
    ),
    (
        "1 +",
        1,
        4,
        "expected a value after `+`, found the end of the formula",
    ),
    ("1 + * 2", 1, 5, "expected a value after `+`, found `*`"),
    (
        "-",
        1,
        2,
        "expected a value after `-`, found the end of the formula",
    ),
    (
        "(1 + 2",
        1,
        7,
        "expected `)` to close the `(` at column 1, found the end of the formula",
    ),
    (
        "(1 + 2 3",
        1,
        8,
        "expected `)` to close the `(` at column 1, found the number 3",
    ),
    ("()", 1, 2, "expected a value after `(`, found `)`"),
    ("1)", 1, 2, "`)` without a matching `(`"),
    (
        "{a} {b}",
        1,
        5,
        "expected an operator or the end of the formula, found the field {b}",
    ),
    (
        "1 2",
        1,
        3,
        "expected an operator or the end of the formula, found the number 2",
    ),
    (
        "{Amount",
        1,
        1,
        "this field reference is not closed: expected `}` before the end of the formula",
    ),
    (
        "{Amount\n}",
        1,
        1,
        "this field reference is not closed: expected `}` before the end of the line",
    ),
    (
        "{Amount {Due}",
        1,
        1,
        "this field reference is not closed: expected `}` before the next `{`",
    ),
    ("{}", 1, 1, "empty field reference: write {Field Name}"),
    ("{  }", 1, 1, "empty field reference: write {Field Name}"),
    ("1 + }", 1, 5, "`}` without a matching `{`"),
    (
        "\"abc",
        1,
        1,
        "this string is not closed: expected a closing \"",
    ),
    (
        "'abc\\'",
        1,
        1,
        "this string is not closed: expected a closing '",
    ),
    (
        "\"abc\\",
        1,
        1,
        "this string is not closed: expected a closing \"",
    ),
    (
        "'a\\qb'",
        1,
        3,
        "unknown escape `\\q` in a string (the escapes are \\\", \\', \\\\, \\n and \\t)",
    ),
    ("FOO(1)", 1, 1, "unknown function `FOO`"),
    (
        "Price * 2",
        1,
        1,
        "`Price` is not a function or a value; a field reference needs braces, as in {Price}",
    ),
    (
        "TRUE(1)",
        1,
        6,
        "TRUE() takes no arguments, found the number 1",
    ),
    ("1 == 2", 1, 3, "`==` is not an operator: use `=`"),
    ("1 && 2", 1, 3, "`&&` is not an operator: use AND(a, b)"),
    ("1 || 2", 1, 3, "`||` is not an operator: use OR(a, b)"),
    ("1 | 2", 1, 3, "unexpected character `|`"),
    (
        "!{Done}",
        1,
        1,
        "`!` is not an operator: use NOT(x), or `!=`",
    ),
    ("5.", 1, 2, "expected a digit after the decimal point"),
    ("5.x", 1, 2, "expected a digit after the decimal point"),
    (
        "1.2.3",
        1,
        4,
        "expected an operator or the end of the formula, found the number 0.3",
    ),
    ("#", 1, 1, "unexpected character `#`"),
    ("1 + \u{0}", 1, 5, "unexpected character '\\0'"),
    ("\"é\" & )", 1, 7, "expected a value after `&`, found `)`"),
    ("1 +\n  * 2", 2, 3, "expected a value after `+`, found `*`"),
    (
        "IF(\n  {A},\n  1,\n  2",
        4,
        4,
        "expected `)` after the arguments of IF",
    ),
    ("\r\n\r\n)", 3, 1, "`)` without a matching `(`"),
];

#[test]
fn parse_errors_name_the_position_and_what_was_expected() {
    let mut failures = Vec::new();
    for &(source, line, column, message) in ERRORS {
        match parse(source) {
            Ok(expr) => failures.push(format!("{source:?}: parsed as {expr}")),
            Err(error) => {
                let got = (error.line(), error.column(), error.message());
                if got != (line, column, message) {
                    failures.push(format!(
                        "{source:?}\n    expected {line}:{column} {message}\n    got      {}:{} {}",
                        got.0, got.1, got.2
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn parse_errors_display_with_their_position_and_a_byte_offset() {
    let error = parse("IF({Paid} = \"é\", 1").expect_err("unclosed");
    assert_eq!(
        error.to_string(),
        "column 19: expected `)` after the arguments of IF"
    );
    assert_eq!(error.offset(), 19, "byte offset: é is two bytes");
    assert_eq!(error.span().start, 19);

    let error = parse("1 +\n  * 2").expect_err("missing operand");
    assert_eq!(
        error.to_string(),
        "line 2, column 3: expected a value after `+`, found `*`"
    );
    assert_eq!(error.offset(), 6);
    assert_eq!(error.span().end, 7);
}

#[test]
fn nesting_is_bounded() {
    let too_deep = |source: &str| {
        let error = parse(source).expect_err("too deep");
        assert_eq!(
            error.message(),
            "the formula nests too deeply (more than 128 levels)",
            "{:.40}…",
            source
        );
    };
    too_deep(&format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000)));
    too_deep(&format!("{}1", "-".repeat(100_000)));
    too_deep(&format!("{}{{A}}", "-".repeat(100_000)));
    too_deep(&vec!["1"; 10_000].join(" + "));
    too_deep(&format!("{}1{}", "ABS(".repeat(10_000), ")".repeat(10_000)));
    too_deep(&format!("{}1", "1 & ".repeat(129)));

    // Just inside the limit.
    let source = format!("{}1", "1 + ".repeat(MAX_DEPTH - 1));
    let expr = parse(&source).expect("128 levels parse");
    assert_eq!(parse(&expr.to_string()).expect("reparses"), expr);
    let source = format!(
        "{}1{}",
        "ABS(".repeat(MAX_DEPTH - 1),
        ")".repeat(MAX_DEPTH - 1)
    );
    parse(&source).expect("128 levels parse");
    let nested_ifs = (0..40).fold("0".to_owned(), |inner, i| {
        format!("IF({{Status}} = \"s{i}\", {i}, {inner})")
    });
    parse(&nested_ifs).expect("40 nested IFs parse");
    // Wide is fine.
    parse(&format!(
        "CONCATENATE({})",
        vec!["\"x\""; 10_000].join(", ")
    ))
    .expect("wide");
}

#[test]
fn canonical_printing() {
    let table = [
        ("1+2*3", "1 + 2 * 3"),
        ("(1+2)*3", "(1 + 2) * 3"),
        ("1-(2-3)", "1 - (2 - 3)"),
        ("(1-2)-3", "1 - 2 - 3"),
        ("1-(2+3)", "1 - (2 + 3)"),
        ("1 - -2", "1 - -2"),
        ("-(1)", "-(1)"),
        ("-(-1)", "-(-1)"),
        ("-{A}", "-{A}"),
        ("-({A} + 1)", "-({A} + 1)"),
        ("--{A}", "--{A}"),
        ("-1.50", "-1.5"),
        ("007", "7"),
        (".5", "0.5"),
        ("0.0", "0"),
        ("-0", "0"),
        ("1 <> 2", "1 != 2"),
        (
            "if({A},'it\\'s',\"say \\\"hi\\\"\")",
            "IF({A}, \"it's\", \"say \\\"hi\\\"\")",
        ),
        ("\"line\nbreak\ttab\\\\\"", "\"line\\nbreak\\ttab\\\\\""),
        ("true", "TRUE()"),
        ("FALSE", "FALSE()"),
        ("concatenate({A},\"b\")", "CONCATENATE({A}, \"b\")"),
        (
            "datetime_diff(today(),{Due},'d')",
            "DATETIME_DIFF(TODAY(), {Due}, \"d\")",
        ),
        ("1 = 2 = 3", "1 = 2 = 3"),
        ("1 = (2 = 3)", "1 = (2 = 3)"),
        ("(1 & 2) & 3", "1 & 2 & 3"),
        ("1 & (2 & 3)", "1 & (2 & 3)"),
        ("(1 = 2) & 3", "(1 = 2) & 3"),
        ("{ spaced name }", "{ spaced name }"),
        ("( ( 1 ) )", "1"),
        ("BLANK()", "BLANK()"),
    ];
    for (source, expected) in table {
        let expr = parse(source).unwrap_or_else(|e| panic!("{source:?}: {e}"));
        assert_eq!(expr.to_string(), expected, "{source:?}");
    }
}

#[test]
fn trees_and_spans() {
    let expr = parse("-12").expect("parses");
    assert_eq!(
        expr.kind,
        ExprKind::Number(-12.0),
        "a minus before a number is a literal"
    );

    let expr = parse("{A} + IF({B}, 2)").expect("parses");
    let ExprKind::Binary { op, left, right } = &expr.kind else {
        panic!("{expr:?}");
    };
    assert_eq!(*op, BinaryOp::Add);
    assert_eq!((expr.span.start, expr.span.end), (0, 16));
    assert_eq!(
        (left.span.start, left.span.end, left.span.column),
        (0, 3, 1)
    );
    assert_eq!(
        (right.span.start, right.span.end, right.span.column),
        (6, 16, 7)
    );
    assert_eq!(
        right.kind,
        ExprKind::Call {
            function: Function::If,
            args: vec![Expr::field("B"), Expr::number(2.0)],
        }
    );
    assert_eq!(expr.fields(), ["A", "B"]);
    assert_eq!(
        parse("{B} & {A} & {B}").expect("parses").fields(),
        ["B", "A"]
    );

    // Equality ignores where an expression came from.
    assert_eq!(
        parse("1+2").expect("parses"),
        parse(" 1 +  2 ").expect("parses")
    );
    assert_eq!(
        parse("1 + 2").expect("parses"),
        Expr::binary(BinaryOp::Add, Expr::number(1.0), Expr::number(2.0))
    );
    assert_ne!(
        parse("1 + 2").expect("parses"),
        parse("2 + 1").expect("parses")
    );
}

#[test]
fn function_names_are_case_insensitive_and_complete() {
    for function in Function::ALL {
        assert_eq!(Function::from_name(function.name()), Some(function));
        assert_eq!(
            Function::from_name(&function.name().to_lowercase()),
            Some(function)
        );
        let source = format!("{}()", function.name().to_lowercase());
        let expr = parse(&source).expect("parses");
        assert_eq!(
            expr.kind,
            ExprKind::Call {
                function,
                args: vec![]
            }
        );
    }
    assert_eq!(Function::from_name("TRUE"), None, "TRUE is a literal");
}
