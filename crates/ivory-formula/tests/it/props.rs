//! Property tests: the parser never panics and reports consistent positions; printing and
//! parsing round-trip; the evaluator never panics and agrees with the checker; algebraic laws.

use std::collections::HashMap;

use ivory_formula::{
    BinaryOp, Expr, FieldType, Function, ParseError, Value, ValueType, check, evaluate, parse,
};
use jiff::Timestamp;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use crate::support::assert_conforms;

// ---------------------------------------------------------------------------------------
// Generators.

/// Finite numbers: small integers, simple fractions (negative ones too) and any finite f64.
fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..1000).prop_map(f64::from),
        (-4000i32..4000).prop_map(|n| f64::from(n) / 8.0),
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
    ]
}

/// A field name the printer can print: not blank, no braces, no line break.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec!["A", "B", "Amount Due", "Due", "Flag", "Missing"]).prop_map(str::to_owned),
        "[^{}\\n]{1,12}".prop_filter("not blank", |s| !s.trim().is_empty()),
    ]
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (
        Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(),
        0i32..1_000_000_000,
    )
        .prop_map(|(second, nanos)| {
            Timestamp::new(second, nanos)
                .or_else(|_| Timestamp::new(second, 0))
                .expect("in range")
        })
}

/// Any value, including ones no JSON field produces (errors, non-finite numbers).
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Blank),
        number().prop_map(Value::Number),
        Just(Value::Number(f64::NAN)),
        ".{0,8}".prop_map(Value::String),
        any::<bool>().prop_map(Value::Boolean),
        timestamp().prop_map(Value::Datetime),
        Just(Value::Error("upstream".to_owned())),
        select(vec!["2026-03-01", "2026-03-01T10:00:00Z", "days", "M", ""])
            .prop_map(|s| Value::String(s.to_owned())),
    ]
}

/// Arbitrary trees, well typed or not, with any number of arguments.
fn any_expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        number().prop_map(Expr::number),
        any::<String>().prop_map(Expr::string),
        any::<bool>().prop_map(Expr::boolean),
        field_name().prop_map(Expr::field),
    ];
    leaf.prop_recursive(6, 64, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(Expr::negate),
            (select(BinaryOp::ALL.to_vec()), inner.clone(), inner.clone())
                .prop_map(|(op, left, right)| Expr::binary(op, left, right)),
            (select(Function::ALL.to_vec()), vec(inner, 0..4))
                .prop_map(|(function, args)| Expr::call(function, args)),
        ]
    })
}

/// Formula-shaped text: mostly tokens, some broken ones.
fn token_soup() -> impl Strategy<Value = String> {
    let tokens = vec![
        "(",
        ")",
        ",",
        "+",
        "-",
        "*",
        "/",
        "%",
        "&",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "{A}",
        "{Due}",
        "{",
        "}",
        "\"s\"",
        "'t'",
        "\"",
        "'",
        "1",
        "2.5",
        ".5",
        "5.",
        "IF",
        "if",
        "ROUND",
        "AND",
        "TRUE",
        "FALSE()",
        "BLANK()",
        "TODAY()",
        "DATETIME_DIFF",
        "LEN",
        "x",
        " ",
        "\n",
        "\\",
        "é",
        "\u{0}",
        "==",
        "!",
    ];
    vec(select(tokens), 0..30).prop_map(|tokens| tokens.concat())
}

/// The schema of the typed generator.
fn typed_fields(name: &str) -> Option<FieldType> {
    Some(match name {
        "Qty" | "Missing" => FieldType::Number,
        "Amount" => FieldType::Currency,
        "S1" | "Missing Text" => FieldType::String,
        "S2" => FieldType::Json,
        "Flag" => FieldType::Boolean,
        "Due" | "Created" | "Missing Date" => FieldType::Datetime,
        _ => return None,
    })
}

/// Records of [`typed_fields`]: each value of its field's type, or absent. The `Missing…`
/// fields are always absent.
fn typed_record() -> impl Strategy<Value = HashMap<&'static str, Value>> {
    (
        option::of(number()),
        option::of(number()),
        option::of(".{0,6}"),
        option::of(".{0,6}"),
        option::of(any::<bool>()),
        option::of(timestamp()),
        option::of(timestamp()),
    )
        .prop_map(|(qty, amount, s1, s2, flag, due, created)| {
            let mut record = HashMap::new();
            let mut put = |name, value: Option<Value>| {
                if let Some(value) = value {
                    record.insert(name, value);
                }
            };
            put("Qty", qty.map(Value::Number));
            put("Amount", amount.map(Value::Number));
            put("S1", s1.map(Value::String));
            put("S2", s2.map(Value::String));
            put("Flag", flag.map(Value::Boolean));
            put("Due", due.map(Value::Datetime));
            put("Created", created.map(Value::Datetime));
            record
        })
}

fn date_literal() -> impl Strategy<Value = Expr> {
    (1900i32..2100, 1u8..=12, 1u8..=28)
        .prop_map(|(y, m, d)| Expr::string(format!("{y:04}-{m:02}-{d:02}")))
}

fn unit_literal() -> impl Strategy<Value = Expr> {
    select(vec![
        "ms", "s", "m", "h", "d", "w", "M", "Q", "y", "days", "Weeks", "month", "YEARS",
    ])
    .prop_map(Expr::string)
}

/// Well-typed trees, one strategy per result type.
#[derive(Clone)]
struct Typed {
    number: BoxedStrategy<Expr>,
    string: BoxedStrategy<Expr>,
    boolean: BoxedStrategy<Expr>,
    datetime: BoxedStrategy<Expr>,
}

impl Typed {
    fn of(&self, ty: ValueType) -> BoxedStrategy<Expr> {
        match ty {
            ValueType::Number => self.number.clone(),
            ValueType::String => self.string.clone(),
            ValueType::Boolean => self.boolean.clone(),
            ValueType::Datetime => self.datetime.clone(),
        }
    }
}

fn fields_of(names: Vec<&'static str>) -> BoxedStrategy<Expr> {
    select(names).prop_map(Expr::field).boxed()
}

/// `IF(any, x[, x])`.
fn if_of(any: &BoxedStrategy<Expr>, branch: &BoxedStrategy<Expr>) -> BoxedStrategy<Expr> {
    (any.clone(), branch.clone(), option::of(branch.clone()))
        .prop_map(|(condition, then, otherwise)| {
            let mut args = vec![condition, then];
            args.extend(otherwise);
            Expr::call(Function::If, args)
        })
        .boxed()
}

fn call1(function: Function, arg: &BoxedStrategy<Expr>) -> BoxedStrategy<Expr> {
    arg.clone()
        .prop_map(move |arg| Expr::call(function, vec![arg]))
        .boxed()
}

fn call_n(function: Function, arg: &BoxedStrategy<Expr>) -> BoxedStrategy<Expr> {
    vec(arg.clone(), 1..4)
        .prop_map(move |args| Expr::call(function, args))
        .boxed()
}

fn binary_of(
    ops: Vec<BinaryOp>,
    left: &BoxedStrategy<Expr>,
    right: &BoxedStrategy<Expr>,
) -> BoxedStrategy<Expr> {
    (select(ops), left.clone(), right.clone())
        .prop_map(|(op, left, right)| Expr::binary(op, left, right))
        .boxed()
}

fn typed(depth: usize) -> Typed {
    let leaves = Typed {
        number: prop_oneof![
            number().prop_map(Expr::number),
            fields_of(vec!["Qty", "Amount", "Missing"]),
        ]
        .boxed(),
        string: prop_oneof![
            ".{0,6}".prop_map(Expr::string),
            fields_of(vec!["S1", "S2", "Missing Text"]),
        ]
        .boxed(),
        boolean: prop_oneof![
            any::<bool>().prop_map(Expr::boolean),
            fields_of(vec!["Flag"])
        ]
        .boxed(),
        datetime: prop_oneof![
            fields_of(vec!["Due", "Created", "Missing Date"]),
            select(vec![Function::Today, Function::Now])
                .prop_map(|function| Expr::call(function, vec![])),
        ]
        .boxed(),
    };
    let arithmetic = vec![
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
    ];
    let comparisons = BinaryOp::ALL
        .into_iter()
        .filter(|op| op.is_comparison())
        .collect::<Vec<_>>();
    let mut level = leaves.clone();
    for _ in 0..depth {
        let prev = level.clone();
        let any = prop_oneof![
            prev.number.clone(),
            prev.string.clone(),
            prev.boolean.clone(),
            prev.datetime.clone()
        ]
        .boxed();
        let numeric = prop_oneof![3 => prev.number.clone(), 1 => prev.boolean.clone()].boxed();
        let date_arg = prop_oneof![prev.datetime.clone(), date_literal()].boxed();
        let digits = (-3i32..6).prop_map(|d| Expr::number(f64::from(d))).boxed();
        level = Typed {
            number: prop_oneof![
                3 => leaves.number.clone(),
                1 => numeric.clone().prop_map(Expr::negate),
                3 => binary_of(arithmetic.clone(), &numeric, &numeric),
                1 => call1(Function::Round, &numeric),
                1 => (numeric.clone(), digits)
                    .prop_map(|(x, d)| Expr::call(Function::Round, vec![x, d])),
                1 => call1(Function::Abs, &numeric),
                1 => call_n(Function::Min, &numeric),
                1 => call_n(Function::Max, &numeric),
                1 => call1(Function::Len, &any),
                1 => (date_arg.clone(), date_arg.clone(), option::of(unit_literal()))
                    .prop_map(|(a, b, unit)| {
                        let mut args = vec![a, b];
                        args.extend(unit);
                        Expr::call(Function::DatetimeDiff, args)
                    }),
                1 => if_of(&any, &prev.number),
            ]
            .boxed(),
            string: prop_oneof![
                3 => leaves.string.clone(),
                2 => binary_of(vec![BinaryOp::Concat], &any, &any),
                1 => call_n(Function::Concatenate, &any),
                1 => call1(Function::Lower, &any),
                1 => call1(Function::Upper, &any),
                1 => call1(Function::Trim, &any),
                1 => if_of(&any, &prev.string),
            ]
            .boxed(),
            boolean: prop_oneof![
                2 => leaves.boolean.clone(),
                2 => binary_of(comparisons.clone(), &numeric, &numeric),
                1 => binary_of(comparisons.clone(), &prev.string, &prev.string),
                1 => binary_of(comparisons.clone(), &prev.datetime, &prev.datetime),
                1 => binary_of(comparisons.clone(), &prev.datetime, &date_literal().boxed()),
                1 => call_n(Function::And, &any),
                1 => call_n(Function::Or, &any),
                1 => call1(Function::Not, &any),
                1 => if_of(&any, &prev.boolean),
            ]
            .boxed(),
            datetime: prop_oneof![
                3 => leaves.datetime.clone(),
                1 => if_of(&any, &prev.datetime),
            ]
            .boxed(),
        };
    }
    level
}

fn well_typed() -> impl Strategy<Value = (ValueType, Expr)> {
    let typed = typed(4);
    select(vec![
        ValueType::Number,
        ValueType::String,
        ValueType::Boolean,
        ValueType::Datetime,
    ])
    .prop_flat_map(move |ty| (Just(ty), typed.of(ty)))
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// The error's line and column agree with its byte offset.
fn assert_position_consistent(source: &str, error: &ParseError) {
    let offset = error.offset();
    assert!(offset <= source.len(), "{error:?}");
    assert!(source.is_char_boundary(offset), "{error:?}");
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    assert_eq!(
        (error.line(), error.column()),
        (line, column),
        "{source:?}: {error}"
    );
    assert!(error.span().end >= offset && error.span().end <= source.len());
    assert!(!error.message().is_empty());
}

/// For text that parses: printing round-trips; for text that does not: a consistent error.
/// Either way, checking and evaluating never panic.
fn exercise(source: &str, now: Timestamp) {
    match parse(source) {
        Ok(expr) => {
            let printed = expr.to_string();
            let reparsed = parse(&printed).unwrap_or_else(|e| panic!("{printed:?}: {e}"));
            assert_eq!(reparsed, expr, "{source:?} printed as {printed:?}");
            assert_eq!(reparsed.to_string(), printed, "printing is canonical");
            let fields = |_: &str| Some(FieldType::Number);
            let _ = check(&expr, &fields);
            let record = |_: &str| Some(Value::Number(1.0));
            let _ = evaluate(&expr, &record, now);
        }
        Err(error) => assert_position_consistent(source, &error),
    }
}

fn eval_with(expr: &Expr, record: &HashMap<&'static str, Value>, now: Timestamp) -> Value {
    evaluate(expr, &|name: &str| record.get(name).cloned(), now)
}

fn eval_fields(source: &str, values: &[(&'static str, Value)]) -> Value {
    let record: HashMap<&'static str, Value> = values.iter().cloned().collect();
    eval_with(
        &parse(source).expect("parses"),
        &record,
        Timestamp::UNIX_EPOCH,
    )
}

// ---------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_any_text_never_panics(source in any::<String>(), now in timestamp()) {
        exercise(&source, now);
    }

    #[test]
    fn parsing_token_soup_never_panics(source in token_soup(), now in timestamp()) {
        exercise(&source, now);
    }

    #[test]
    fn printing_then_parsing_gives_back_the_tree(expr in any_expr()) {
        let printed = expr.to_string();
        let reparsed = parse(&printed);
        prop_assert_eq!(reparsed.as_ref(), Ok(&expr), "printed as {}", printed);
    }

    #[test]
    fn evaluating_any_tree_never_panics(
        expr in any_expr(),
        values in vec((field_name(), value()), 0..6),
        now in timestamp(),
    ) {
        let record: HashMap<String, Value> = values.into_iter().collect();
        let value = evaluate(&expr, &|name: &str| record.get(name).cloned(), now);
        if let Value::Number(x) = value {
            prop_assert!(x.is_finite());
            prop_assert!(x != 0.0 || x.is_sign_positive(), "no negative zero");
        }
        let fields = |name: &str| record.get(name).and_then(Value::value_type).map(FieldType::from);
        let _ = check(&expr, &fields);
    }

    /// Soundness of the checker: a well-typed formula over a record of its schema evaluates
    /// to a value of the checked type (or blank, or an error).
    #[test]
    fn well_typed_trees_evaluate_to_their_type(
        (ty, expr) in well_typed(),
        record in typed_record(),
        now in timestamp(),
    ) {
        prop_assert_eq!(check(&expr, &typed_fields), Ok(ty), "{}", expr);
        let value = eval_with(&expr, &record, now);
        assert_conforms(&expr.to_string(), &value, ty);
        // And through JSON, as the platform stores it.
        let json = value.to_json();
        if !value.is_error() {
            prop_assert_eq!(Value::from_json(&json, FieldType::from(ty)), value);
        }
    }

    #[test]
    fn addition_and_multiplication_commute(a in number(), b in number()) {
        let values = [("A", Value::Number(a)), ("B", Value::Number(b))];
        prop_assert_eq!(eval_fields("{A} + {B}", &values), eval_fields("{B} + {A}", &values));
        prop_assert_eq!(eval_fields("{A} * {B}", &values), eval_fields("{B} * {A}", &values));
        prop_assert_eq!(eval_fields("{A} - {A}", &values), Value::Number(0.0));
    }

    #[test]
    fn len_of_a_concatenation_is_the_sum_of_lens(a in value(), b in value()) {
        let values = [("A", a), ("B", b)];
        let joined = eval_fields("LEN({A} & {B})", &values);
        let summed = eval_fields("LEN({A}) + LEN({B})", &values);
        if !joined.is_error() {
            prop_assert_eq!(joined, summed);
        }
        prop_assert_eq!(
            eval_fields("CONCATENATE({A}, {B})", &values),
            eval_fields("{A} & {B}", &values)
        );
    }

    #[test]
    fn exactly_one_ordering_holds(a in value(), b in value()) {
        let values = [("A", a), ("B", b)];
        let lt = eval_fields("{A} < {B}", &values);
        let eq = eval_fields("{A} = {B}", &values);
        let gt = eval_fields("{A} > {B}", &values);
        let ne = eval_fields("{A} != {B}", &values);
        let not_eq = eval_fields("NOT({A} = {B})", &values);
        prop_assert_eq!(&ne, &not_eq);
        if let (Value::Boolean(lt), Value::Boolean(eq), Value::Boolean(gt)) = (&lt, &eq, &gt) {
            // Unordered pairs (a blank and a datetime) have none; all others exactly one.
            prop_assert!(u8::from(*lt) + u8::from(*eq) + u8::from(*gt) <= 1);
            let le = eval_fields("{A} <= {B}", &values);
            prop_assert_eq!(le, Value::Boolean(*lt || *eq));
        }
    }

    #[test]
    fn numbers_are_totally_ordered(a in number(), b in number()) {
        let values = [("A", Value::Number(a)), ("B", Value::Number(b))];
        let count = ["{A} < {B}", "{A} = {B}", "{A} > {B}"]
            .into_iter()
            .filter(|source| eval_fields(source, &values) == Value::Boolean(true))
            .count();
        prop_assert_eq!(count, 1);
    }

    #[test]
    fn round_is_idempotent_symmetric_and_close(x in -1e12f64..1e12, digits in -4i32..8) {
        let values = [("X", Value::Number(x)), ("D", Value::Number(f64::from(digits)))];
        let Value::Number(once) = eval_fields("ROUND({X}, {D})", &values) else {
            panic!("ROUND of a number is a number");
        };
        let twice = eval_fields("ROUND(ROUND({X}, {D}), {D})", &values);
        prop_assert_eq!(twice, Value::Number(once));
        prop_assert_eq!(eval_fields("ROUND(-{X}, {D})", &values), Value::Number(-once + 0.0));
        let step = 10f64.powi(-digits);
        prop_assert!((once - x).abs() <= step / 2.0 * (1.0 + 1e-9) + x.abs() * 1e-15);
    }

    #[test]
    fn datetime_diff_is_antisymmetric_for_exact_units(
        a in timestamp(),
        b in timestamp(),
        unit in select(vec!["ms", "s", "m", "h", "d", "w"]),
    ) {
        let values = [("A", Value::Datetime(a)), ("B", Value::Datetime(b))];
        let forward = eval_fields(&format!("DATETIME_DIFF({{A}}, {{B}}, '{unit}')"), &values);
        let backward = eval_fields(&format!("-DATETIME_DIFF({{B}}, {{A}}, '{unit}')"), &values);
        prop_assert_eq!(forward, backward);
    }

    #[test]
    fn text_functions_are_idempotent(a in value()) {
        let values = [("A", a)];
        for f in ["TRIM", "LOWER", "UPPER"] {
            let once = eval_fields(&format!("{f}({{A}})"), &values);
            let twice = eval_fields(&format!("{f}({f}({{A}}))"), &values);
            if f == "TRIM" || !once.is_error() {
                prop_assert_eq!(&once, &twice, "{}", f);
            }
        }
    }

    #[test]
    fn if_with_a_negated_condition_swaps_branches(c in value(), x in value(), y in value()) {
        let values = [("C", c), ("X", x), ("Y", y)];
        prop_assert_eq!(
            eval_fields("IF({C}, {X}, {Y})", &values),
            eval_fields("IF(NOT({C}), {Y}, {X})", &values)
        );
    }
}
