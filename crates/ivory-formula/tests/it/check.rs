//! The type checker: inferred types, and errors naming the field, function or operator with
//! its column.

use ivory_formula::{
    BinaryOp, CompileError, Expr, FieldType, Formula, Function, MAX_DEPTH, TypeErrorKind,
    ValueType, check, parse,
};

use crate::support::fields;

#[test]
fn infers_the_type_of_the_result() {
    let table = [
        ("1", ValueType::Number),
        ("{Amount Due}", ValueType::Number),
        ("{Owner}", ValueType::String),
        ("{Meta}", ValueType::String),
        ("{Done}", ValueType::Boolean),
        ("{Due}", ValueType::Datetime),
        ("{Done} + 1", ValueType::Number),
        ("{Qty} & \"\"", ValueType::String),
        ("{Due} & \"\"", ValueType::String),
        ("{Qty} > 1", ValueType::Boolean),
        ("{Done} = 1", ValueType::Boolean),
        ("{Due} < \"2026-01-01\"", ValueType::Boolean),
        ("{Due} < {Status}", ValueType::Boolean),
        ("{Due} = BLANK()", ValueType::Boolean),
        ("IF({Done}, {Due})", ValueType::Datetime),
        ("IF({Done}, BLANK(), \"x\")", ValueType::String),
        ("IF({Status}, 1, {Qty})", ValueType::Number),
        ("AND({Status}, {Due})", ValueType::Boolean),
        ("LEN({Qty})", ValueType::Number),
        ("UPPER({Due})", ValueType::String),
        ("ROUND({Amount Due} / 3, {Qty})", ValueType::Number),
        ("MIN({Done}, BLANK(), 2)", ValueType::Number),
        ("DATETIME_DIFF(\"2026-03-01\", {Due})", ValueType::Number),
        (
            "DATETIME_DIFF({Due}, {Created}, {Status})",
            ValueType::Number,
        ),
        ("DATETIME_DIFF(NOW(), BLANK(), BLANK())", ValueType::Number),
        ("TODAY()", ValueType::Datetime),
        ("-BLANK()", ValueType::Number),
    ];
    for (source, expected) in table {
        let expr = parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(check(&expr, &fields), Ok(expected), "{source}");
    }
}

/// `(source, display)`.
const ERRORS: &[(&str, &str)] = &[
    ("{Stauts} = 1", "column 1: unknown field {Stauts}"),
    ("1 + {amount due}", "column 5: unknown field {amount due}"),
    ("IF(1)", "column 1: IF takes 2 or 3 arguments, found 1"),
    ("1 + ABS(1, 2)", "column 5: ABS takes 1 argument, found 2"),
    ("TODAY(1)", "column 1: TODAY takes no arguments, found 1"),
    ("MIN()", "column 1: MIN takes at least 1 argument, found 0"),
    (
        "ROUND(1, 2, 3)",
        "column 1: ROUND takes 1 or 2 arguments, found 3",
    ),
    (
        "{Qty} * {Status}",
        "column 9: the right operand of `*` must be a number, found a string",
    ),
    (
        "\"3\" + 1",
        "column 1: the left operand of `+` must be a number, found a string",
    ),
    (
        "{Due} - {Created}",
        "column 1: the left operand of `-` must be a number, found a datetime",
    ),
    (
        "-{Due}",
        "column 2: the operand of unary `-` must be a number, found a datetime",
    ),
    (
        "{Qty} = {Status}",
        "column 1: cannot compare a number with a string using `=`",
    ),
    (
        "1 + 1 < {Done} & \"\"",
        "column 1: cannot compare a number with a string using `<`",
    ),
    (
        "{Due} >= 5",
        "column 1: cannot compare a datetime with a number using `>=`",
    ),
    (
        "IF({Done}, 1, \"x\")",
        "column 15: the branches of IF have different types: a number and a string",
    ),
    (
        "IF({Done}, {Due}, TRUE())",
        "column 19: the branches of IF have different types: a datetime and a boolean",
    ),
    (
        "ROUND(\"2.5\")",
        "column 7: argument 1 of ROUND must be a number, found a string",
    ),
    (
        "ROUND(2.5, {Status})",
        "column 12: argument 2 of ROUND must be a number, found a string",
    ),
    (
        "MAX(1, 2, {Due})",
        "column 11: argument 3 of MAX must be a number, found a datetime",
    ),
    (
        "DATETIME_DIFF({Due}, 5, \"days\")",
        "column 22: argument 2 of DATETIME_DIFF must be a datetime or a date string, found a number",
    ),
    (
        "DATETIME_DIFF({Due}, {Created}, 1)",
        "column 33: argument 3 of DATETIME_DIFF must be a unit such as \"days\", found a number",
    ),
    (
        "DATETIME_DIFF({Due}, \"2026-13-01\")",
        "column 22: \"2026-13-01\" is not a datetime: use an RFC 3339 timestamp or a YYYY-MM-DD date",
    ),
    (
        "DATETIME_DIFF({Due}, {Created}, \"fortnights\")",
        "column 33: unknown DATETIME_DIFF unit \"fortnights\" (the units are milliseconds/ms, \
         seconds/s, minutes/m, hours/h, days/d, weeks/w, months/M, quarters/Q, years/y)",
    ),
    (
        "DATETIME_DIFF({Due}, {Created}, \"D\")",
        "column 33: unknown DATETIME_DIFF unit \"D\" (the units are milliseconds/ms, \
         seconds/s, minutes/m, hours/h, days/d, weeks/w, months/M, quarters/Q, years/y)",
    ),
    (
        "{Due} < \"soon\"",
        "column 9: \"soon\" is not a datetime: use an RFC 3339 timestamp or a YYYY-MM-DD date",
    ),
    ("BLANK()", "column 1: the formula is always blank"),
    (
        "IF({Done}, BLANK())",
        "column 1: the formula is always blank",
    ),
    (
        "IF({Done},\n  1,\n  {Nope})",
        "line 3, column 3: unknown field {Nope}",
    ),
];

#[test]
fn type_errors_name_the_culprit_and_its_column() {
    let mut failures = Vec::new();
    for &(source, expected) in ERRORS {
        let expr = parse(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        match check(&expr, &fields) {
            Ok(ty) => failures.push(format!("{source}: checked as {ty}")),
            Err(error) => {
                if error.to_string() != expected {
                    failures.push(format!(
                        "{source}\n    expected {expected}\n    got      {error}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn type_errors_are_structured() {
    let expr = parse("1 + ABS(1, 2)").expect("parses");
    let error = check(&expr, &fields).expect_err("arity");
    assert_eq!((error.offset(), error.line(), error.column()), (4, 1, 5));
    let TypeErrorKind::WrongArity {
        function,
        expected,
        found,
    } = error.kind()
    else {
        panic!("{error:?}");
    };
    assert_eq!(
        (*function, expected.min, expected.max, *found),
        (Function::Abs, 1, Some(1), 2)
    );

    let expr = parse("{Qty} * {Status}").expect("parses");
    let error = check(&expr, &fields).expect_err("operand");
    assert!(matches!(
        error.kind(),
        TypeErrorKind::OperandType {
            op: BinaryOp::Mul,
            found: ValueType::String,
            ..
        }
    ));
}

#[test]
fn hand_built_expressions_have_no_position() {
    let expr = Expr::binary(BinaryOp::Add, Expr::number(1.0), Expr::field("Nope"));
    let error = check(&expr, &fields).expect_err("unknown field");
    assert_eq!(error.to_string(), "unknown field {Nope}");
    assert_eq!(error.line(), 0);

    let mut deep = Expr::number(1.0);
    for _ in 0..MAX_DEPTH {
        deep = Expr::negate(deep);
    }
    let error = check(&deep, &fields).expect_err("too deep");
    assert_eq!(error.kind(), &TypeErrorKind::TooDeep);
}

#[test]
fn formulas_compile_from_parse_and_check() {
    let formula = Formula::compile("round({Amount Due}/{Qty},2)", &fields).expect("compiles");
    assert_eq!(formula.source(), "round({Amount Due}/{Qty},2)");
    assert_eq!(formula.expr().to_string(), "ROUND({Amount Due} / {Qty}, 2)");
    assert_eq!(formula.result_type(), ValueType::Number);
    assert_eq!(formula.fields(), ["Amount Due", "Qty"]);
    assert_eq!(FieldType::from(formula.result_type()), FieldType::Number);

    let error = Formula::compile("ROUND({Amount Due}", &fields).expect_err("parse error");
    assert!(matches!(error, CompileError::Parse(_)));
    assert_eq!(
        error.to_string(),
        "column 19: expected `)` after the arguments of ROUND"
    );
    assert_eq!((error.offset(), error.line(), error.column()), (18, 1, 19));

    let error = Formula::compile("ROUND({Amount Due}, {Status})", &fields).expect_err("type");
    assert!(matches!(error, CompileError::Type(_)));
    assert_eq!(error.column(), 21);
}
