//! Evaluation tables: common Airtable formulas and the documented semantics decisions.

use ivory_formula::{Expr, Function, MAX_DEPTH, Value, evaluate, parse};

use crate::support::{now, record, timestamp, value_of, value_unchecked};

fn num(x: f64) -> Value {
    Value::Number(x)
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn boolean(b: bool) -> Value {
    Value::Boolean(b)
}

fn error(message: &str) -> Value {
    Value::Error(message.to_owned())
}

fn run(table: &[(&str, Value)]) {
    let mut failures = Vec::new();
    for (source, expected) in table {
        let got = value_of(source);
        if &got != expected {
            failures.push(format!(
                "{source}\n    expected {expected:?}\n    got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn airtable_examples() {
    run(&[
        (
            r#"IF({Status} = "paid", 0, {Amount Due} - {Amount Paid})"#,
            num(99.5),
        ),
        (r#"IF({Status} = "open", "chase", "done")"#, text("chase")),
        ("ROUND(2.5)", num(3.0)),
        ("ROUND(-2.5)", num(-3.0)),
        ("ROUND(1.5)", num(2.0)),
        ("ROUND(0.5)", num(1.0)),
        ("ROUND(-0.4)", num(0.0)),
        ("ROUND(1234.5678, 2)", num(1234.57)),
        ("ROUND(1.005, 2)", num(1.01)),
        ("ROUND(16.8, -1)", num(20.0)),
        ("ROUND(1.99, 0)", num(2.0)),
        ("ROUND(2.567, 1.9)", num(2.6)),
        (r#"CONCATENATE("a", 1, TRUE())"#, text("a11")),
        (
            r#"CONCATENATE("Total: ", 3.5, " for ", {Qty})"#,
            text("Total: 3.5 for 3"),
        ),
        (
            r#"DATETIME_DIFF("2026-03-01", "2026-01-01", "days")"#,
            num(59.0),
        ),
        (
            r#"DATETIME_DIFF("2026-01-01", "2026-03-01", "days")"#,
            num(-59.0),
        ),
        (
            r#"DATETIME_DIFF("2026-03-01", "2026-01-01", "weeks")"#,
            num(8.0),
        ),
        (
            r#"DATETIME_DIFF("2026-03-01", "2026-01-01", "months")"#,
            num(2.0),
        ),
        (
            r#"DATETIME_DIFF("2026-03-01", "2026-01-01", "M")"#,
            num(2.0),
        ),
        (
            r#"DATETIME_DIFF("2026-03-01", "2026-01-01", "m")"#,
            num(84_960.0),
        ),
        (
            r#"DATETIME_DIFF("2026-03-01", "2026-01-01", "hours")"#,
            num(1_416.0),
        ),
        (
            r#"DATETIME_DIFF("2026-03-01", "2026-01-01", "Hour")"#,
            num(1_416.0),
        ),
        (
            r#"DATETIME_DIFF("2026-03-01", "2026-01-01")"#,
            num(5_097_600.0),
        ),
        (
            r#"DATETIME_DIFF("2026-03-01", "2026-01-01", "s")"#,
            num(5_097_600.0),
        ),
        (
            r#"DATETIME_DIFF("2026-03-01", "2026-01-01", "ms")"#,
            num(5_097_600_000.0),
        ),
        (
            r#"DATETIME_DIFF("2027-02-28", "2026-03-01", "years")"#,
            num(0.0),
        ),
        (
            r#"DATETIME_DIFF("2027-03-01", "2026-03-01", "y")"#,
            num(1.0),
        ),
        (
            r#"DATETIME_DIFF("2026-12-31", "2026-01-01", "quarters")"#,
            num(3.0),
        ),
        (
            r#"DATETIME_DIFF("2026-02-14", "2026-01-15", "months")"#,
            num(0.0),
        ),
        (
            r#"DATETIME_DIFF("2026-02-28", "2026-01-31", "months")"#,
            num(1.0),
        ),
        (
            r#"DATETIME_DIFF("2026-01-31", "2026-02-28", "months")"#,
            num(0.0),
        ),
        (
            r#"DATETIME_DIFF("2025-02-28", "2024-02-29", "years")"#,
            num(1.0),
        ),
        (
            r#"DATETIME_DIFF("2026-01-02T00:00:00Z", "2026-01-01T00:00:01Z", "d")"#,
            num(0.0),
        ),
        (
            r#"DATETIME_DIFF("2026-01-01T10:00:00+02:00", "2026-01-01T08:00:00Z", "h")"#,
            num(0.0),
        ),
        (r#"DATETIME_DIFF(TODAY(), {Due}, "days")"#, num(45.0)),
        (r#"DATETIME_DIFF(NOW(), TODAY(), "minutes")"#, num(754.0)),
        (r#"DATETIME_DIFF({Due}, {Created}, "hours")"#, num(337.0)),
        ("1 & \"\"", text("1")),
        ("3.5 & \"\"", text("3.5")),
        ("0.1 + 0.2", num(0.300_000_000_000_000_04)),
        ("(0.1 + 0.2) & \"\"", text("0.30000000000000004")),
        ("ABS(-2)", num(2.0)),
        ("MIN(3, 1, 2)", num(1.0)),
        ("MAX(3, 1, 2)", num(3.0)),
        ("LEN(\"hello\")", num(5.0)),
        ("LEN(\"héllo\")", num(5.0)),
        ("LEN(12345)", num(5.0)),
        ("LOWER(\"ÀB\")", text("àb")),
        ("UPPER(\"straße\")", text("STRASSE")),
        ("TRIM({Name})", text("Ada Lovelace")),
        ("TRIM(\"  a  b  \")", text("a  b")),
        ("AND(1, \"x\", TRUE())", boolean(true)),
        ("AND({Done}, {Not Done})", boolean(false)),
        ("OR(0, \"\", FALSE())", boolean(false)),
        ("OR({Missing}, {Qty})", boolean(true)),
        ("NOT(0)", boolean(true)),
        ("NOT({Status})", boolean(false)),
        ("IF({Done}, \"yes\", \"no\")", text("yes")),
        ("IF({Empty}, \"yes\", \"no\")", text("no")),
        ("IF({Zero}, 1, 2)", num(2.0)),
    ]);
}

#[test]
fn precedence_and_associativity() {
    run(&[
        ("1 + 2 * 3", num(7.0)),
        ("(1 + 2) * 3", num(9.0)),
        ("-2 * 3", num(-6.0)),
        ("-{Qty} * 2", num(-6.0)),
        ("--{Qty}", num(3.0)),
        ("2 - 1 - 1", num(0.0)),
        ("8 / 4 / 2", num(1.0)),
        ("2 * 3 % 4", num(2.0)),
        ("7 % 3", num(1.0)),
        ("-7 % 3", num(-1.0)),
        ("7 % -3", num(1.0)),
        ("\"a\" & 1 + 2", text("a3")),
        ("1 + 2 & 3 * 4", text("312")),
        ("1 + 2 = 3", boolean(true)),
        ("\"a\" & \"b\" = \"ab\"", boolean(true)),
        ("1 < 2 = TRUE()", boolean(true)),
        ("2 - -1", num(3.0)),
        ("2--1", num(3.0)),
        ("1 <> 2", boolean(true)),
        ("1 != 1", boolean(false)),
        ("round(2.5) + Abs(-1)", num(4.0)),
        ("true", boolean(true)),
        ("False()", boolean(false)),
        ("TRUE + TRUE", num(2.0)),
    ]);
}

#[test]
fn blanks() {
    run(&[
        ("{Missing} + 1", num(1.0)),
        ("{Missing} + {Missing}", num(0.0)),
        ("{Missing} * 5", num(0.0)),
        ("-{Missing}", num(0.0)),
        ("{Missing} & \"x\"", text("x")),
        ("{Missing Text} & {Missing}", text("")),
        ("{Missing} = 0", boolean(true)),
        ("{Missing Text} = \"\"", boolean(true)),
        ("{Missing} = BLANK()", boolean(true)),
        ("{Missing Text} < \"a\"", boolean(true)),
        ("{Missing Date} = {Due}", boolean(false)),
        ("{Missing Date} != {Due}", boolean(true)),
        ("{Missing Date} < {Due}", boolean(false)),
        ("{Missing Date} > {Due}", boolean(false)),
        ("LEN({Missing Text})", num(0.0)),
        ("UPPER({Missing Text})", text("")),
        ("MIN({Missing}, 4, 2)", num(2.0)),
        ("MAX({Missing}, -4)", num(-4.0)),
        ("MIN({Missing})", Value::Blank),
        ("ROUND({Missing})", num(0.0)),
        ("IF({Missing}, 1, 2)", num(2.0)),
        ("IF({Done} = FALSE(), 1)", Value::Blank),
        ("IF({Done}, BLANK(), 1)", Value::Blank),
        (
            "DATETIME_DIFF({Missing Date}, {Due}, \"days\")",
            Value::Blank,
        ),
        ("DATETIME_DIFF({Due}, {Created}, BLANK())", num(1_213_200.0)),
        ("{Missing}", Value::Blank),
        ("{Missing Date}", Value::Blank),
    ]);
}

#[test]
fn errors_propagate_except_through_untaken_branches() {
    run(&[
        ("1 / 0", error("division by zero")),
        ("1 % 0", error("division by zero")),
        ("{Qty} / {Zero}", error("division by zero")),
        ("{Qty} / {Missing}", error("division by zero")),
        ("(1 / 0) + 1", error("division by zero")),
        ("(1 / 0) & \"x\"", error("division by zero")),
        ("LEN(1 / 0)", error("division by zero")),
        ("1 / 0 = 1 / 0", error("division by zero")),
        ("ROUND(1 / 0, 2)", error("division by zero")),
        ("IF(1 / 0, 1, 2)", error("division by zero")),
        ("IF(FALSE(), 1 / 0, 2)", num(2.0)),
        ("IF(TRUE(), 2, 1 / 0)", num(2.0)),
        ("AND(FALSE(), 1 / 0)", boolean(false)),
        ("OR(TRUE(), 1 / 0)", boolean(true)),
        ("AND(TRUE(), 1 / 0)", error("division by zero")),
        ("MIN(1, 1 / 0)", error("division by zero")),
        ("(1 / 0) + {Qty} / 0", error("division by zero")),
        (
            "999999999999999999999999999999 * 999999999999999999999999999999 * 1000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            error("the result is too large for a number"),
        ),
        (
            r#"DATETIME_DIFF({Due}, "not a date" & "", "days")"#,
            error("\"not a date\" is not a datetime"),
        ),
        (
            r#"DATETIME_DIFF({Due}, {Created}, "fort" & "nights")"#,
            error(
                "unknown DATETIME_DIFF unit \"fortnights\" (the units are milliseconds/ms, \
                 seconds/s, minutes/m, hours/h, days/d, weeks/w, months/M, quarters/Q, years/y)",
            ),
        ),
    ]);
}

#[test]
fn comparisons() {
    run(&[
        ("\"abc\" = \"abc\"", boolean(true)),
        ("\"abc\" = \"ABC\"", boolean(false)),
        ("\"a\" < \"b\"", boolean(true)),
        ("\"B\" < \"a\"", boolean(true)),
        ("\"é\" > \"z\"", boolean(true)),
        ("{Done} = 1", boolean(true)),
        ("{Not Done} = 0", boolean(true)),
        ("TRUE() > FALSE()", boolean(true)),
        ("{Due} < {Created}", boolean(false)),
        ("{Due} > \"2026-01-14\"", boolean(true)),
        ("{Due} = \"2026-01-15T00:00:00Z\"", boolean(true)),
        ("\"2026-01-15\" = {Due}", boolean(true)),
        ("TODAY() = \"2026-03-01\"", boolean(true)),
        ("NOW() >= TODAY()", boolean(true)),
        ("2 >= 2", boolean(true)),
        ("2 <= 1", boolean(false)),
    ]);
}

/// Ill-typed formulas are refused by `check`, but `evaluate` still has to give them a
/// meaning: no coercion between strings and numbers.
#[test]
fn ill_typed_formulas_evaluate_to_documented_values() {
    let table = [
        ("\"3\" + 1", error("`+` needs a number, found a string")),
        ("-\"x\"", error("unary `-` needs a number, found a string")),
        ("{Due} * 2", error("`*` needs a number, found a datetime")),
        (
            "ROUND(\"2.5\")",
            error("ROUND needs a number, found a string"),
        ),
        ("1 = \"1\"", boolean(false)),
        ("1 != \"1\"", boolean(true)),
        ("{Due} = 5", boolean(false)),
        (
            "1 < \"1\"",
            error("cannot compare a number with a string using `<`"),
        ),
        ("{Due} < \"soon\"", error("\"soon\" is not a datetime")),
        (
            "DATETIME_DIFF(1, 2)",
            error("DATETIME_DIFF needs a datetime, found a number"),
        ),
        ("IF(1)", error("IF takes 2 or 3 arguments, found 1")),
        ("TODAY(1)", error("TODAY takes no arguments, found 1")),
        ("MIN()", error("MIN takes at least 1 argument, found 0")),
        ("{Unknown} & \"x\"", text("x")),
        ("IF(TRUE(), 1, \"x\")", num(1.0)),
        (
            "{Number Text} * 2",
            error("`*` needs a number, found a string"),
        ),
    ];
    for (source, expected) in table {
        assert_eq!(value_unchecked(source), expected, "{source}");
    }
}

#[test]
fn the_clock_is_injected() {
    let expr = parse("TODAY()").expect("parses");
    assert_eq!(
        evaluate(&expr, &record, timestamp("2026-03-01T23:59:59Z")),
        Value::Datetime(timestamp("2026-03-01T00:00:00Z"))
    );
    assert_eq!(
        evaluate(&expr, &record, timestamp("1999-12-31T00:00:00Z")),
        Value::Datetime(timestamp("1999-12-31T00:00:00Z"))
    );
    let expr = parse("NOW()").expect("parses");
    assert_eq!(evaluate(&expr, &record, now()), Value::Datetime(now()));
    assert_eq!(
        value_of("TODAY() & \"\""),
        text("2026-03-01T00:00:00Z"),
        "datetimes print as RFC 3339"
    );
}

#[test]
fn datetimes_at_the_edges_of_the_range_do_not_panic() {
    let min = jiff::Timestamp::MIN;
    let max = jiff::Timestamp::MAX;
    let record = |name: &str| match name {
        "A" => Some(Value::Datetime(min)),
        "B" => Some(Value::Datetime(max)),
        _ => None,
    };
    for unit in ["ms", "s", "m", "h", "d", "w", "M", "Q", "y"] {
        for source in [
            format!("DATETIME_DIFF({{A}}, {{B}}, \"{unit}\")"),
            format!("DATETIME_DIFF({{B}}, {{A}}, \"{unit}\")"),
        ] {
            let value = evaluate(&parse(&source).expect("parses"), &record, min);
            // Calendar units overflow jiff's span range across ±9999 years: an error value.
            let expected_error = matches!(unit, "M" | "Q" | "y");
            assert_eq!(value.is_error(), expected_error, "{source}: {value:?}");
        }
    }
    let today = evaluate(&parse("TODAY()").expect("parses"), &record, min);
    assert!(!today.is_blank());
}

#[test]
fn hand_built_trees_deeper_than_the_limit_evaluate_to_an_error() {
    let mut expr = Expr::number(1.0);
    for _ in 0..MAX_DEPTH {
        expr = Expr::call(Function::Abs, vec![expr]);
    }
    assert_eq!(
        evaluate(&expr, &record, now()),
        error("the formula nests too deeply (more than 128 levels)")
    );
}

#[test]
fn non_finite_inputs_become_errors() {
    let record = |_: &str| Some(Value::Number(f64::NAN));
    let value = evaluate(&parse("{X} + 1").expect("parses"), &record, now());
    assert_eq!(value, error("field {X} holds a number that is not finite"));
    let value = evaluate(&Expr::number(f64::INFINITY), &record, now());
    assert!(value.is_error());
}
