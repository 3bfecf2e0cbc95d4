//! Stage one of validation: the JSON Schema generated from the types, and the translation of
//! its errors into `path: message` findings.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::path::{Findings, JsonPath};
use super::types::Manifest;

/// Generates the manifest's JSON Schema (draft 2020-12) from the Rust types.
///
/// `Option` fields are optional keys, never `null`: the generated `null` alternatives are
/// removed so that the schema is as strict as validation.
pub(crate) fn generate() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<Manifest>().to_value();
    strip_null(&mut schema);
    schema
}

/// Removes `null` from `type` lists, `{"type": "null"}` alternatives and `"default": null`.
fn strip_null(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let single = types.remove(0);
                    map.insert("type".to_owned(), single);
                }
            }
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            for keyword in ["anyOf", "oneOf"] {
                let Some(Value::Array(alternatives)) = map.get_mut(keyword) else {
                    continue;
                };
                alternatives.retain(|alt| alt.get("type") != Some(&Value::from("null")));
                if alternatives.len() == 1
                    && let Some(Value::Object(only)) = alternatives.pop()
                {
                    map.remove(keyword);
                    for (key, value) in only {
                        map.entry(key).or_insert(value);
                    }
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// The generated schema and its compiled validator, built once.
struct Compiled {
    schema: Value,
    validator: jsonschema::Validator,
}

/// `None` only if the generated schema does not compile, which the test suite rules out;
/// validation then relies on deserialization and the semantic rules alone.
fn compiled() -> Option<&'static Compiled> {
    static COMPILED: OnceLock<Option<Compiled>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let schema = generate();
            let validator = jsonschema::validator_for(&schema).ok()?;
            Some(Compiled { schema, validator })
        })
        .as_ref()
}

/// Validates `doc` against the schema, recording every error in `findings`.
pub(crate) fn check(doc: &Value, findings: &mut Findings) {
    let Some(compiled) = compiled() else {
        return;
    };
    let context = Context {
        doc,
        schema: &compiled.schema,
    };
    for error in compiled.validator.iter_errors(doc) {
        translate(&error, &context, findings);
    }
}

/// What error translation looks things up in.
struct Context<'a> {
    doc: &'a Value,
    schema: &'a Value,
}

/// Turns a JSON pointer into a path, using the document to tell array indices from keys.
fn locate(pointer: &str, doc: &Value) -> JsonPath {
    let mut path = JsonPath::root();
    let mut node = Some(doc);
    for raw in pointer.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        match (node, token.parse::<usize>()) {
            (Some(Value::Array(items)), Ok(index)) => {
                node = items.get(index);
                path = path.index(index);
            }
            (current, _) => {
                node = current.and_then(|value| value.get(token.as_str()));
                path = path.key(&token);
            }
        }
    }
    path
}

fn translate(
    error: &jsonschema::ValidationError<'_>,
    context: &Context<'_>,
    findings: &mut Findings,
) {
    let pointer = error.instance_path().as_str();
    let path = locate(pointer, context.doc);
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            for key in unexpected {
                findings.push(path.key(key), "unknown key");
            }
        }
        ValidationErrorKind::Required { property } => {
            let key = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            findings.push(path.key(&key), "required");
        }
        ValidationErrorKind::Type { kind } => {
            findings.push(path, format!("must be {}", type_phrase(kind)));
        }
        ValidationErrorKind::Enum { options } => {
            findings.push(path, one_of_values(options_list(options)));
        }
        ValidationErrorKind::Constant { expected_value } => {
            findings.push(path, one_of_values(vec![(**expected_value).clone()]));
        }
        ValidationErrorKind::OneOfNotValid { context: branches }
        | ValidationErrorKind::AnyOf { context: branches } => {
            alternatives(error, path, branches, context, findings);
        }
        ValidationErrorKind::Minimum { limit } => findings.push(path, minimum(limit)),
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            findings.push(path, format!("must be > {limit}"));
        }
        ValidationErrorKind::Maximum { limit } => {
            findings.push(path, format!("must be <= {limit}"))
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            findings.push(path, format!("must be < {limit}"));
        }
        _ => findings.push(path, error.to_string()),
    }
}

/// The message for a `minimum`: integers with a lower bound of 1 read as "> 0".
pub(crate) fn minimum(limit: &Value) -> String {
    if limit.as_u64() == Some(1) {
        "must be > 0".to_owned()
    } else {
        format!("must be >= {limit}")
    }
}

fn type_phrase(kind: &TypeKind) -> String {
    let names: Vec<String> = match kind {
        TypeKind::Single(single) => vec![single.to_string()],
        TypeKind::Multiple(set) => set.iter().map(|t| t.to_string()).collect(),
    };
    let phrases: Vec<String> = names
        .iter()
        .map(|name| match name.as_str() {
            "integer" | "object" | "array" => format!("an {name}"),
            other => format!("a {other}"),
        })
        .collect();
    phrases.join(" or ")
}

fn options_list(options: &Value) -> Vec<Value> {
    match options {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

fn one_of_values(values: Vec<Value>) -> String {
    let shown: Vec<String> = values
        .iter()
        .map(|value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect();
    if shown.len() == 1 {
        format!("must be {}", shown.join(""))
    } else {
        format!("must be one of {}", shown.join(", "))
    }
}

/// Explains a failed `oneOf` / `anyOf`: an enum of documented values, or an externally
/// tagged enum (`{"setField": {…}}`) whose variant is picked by its single key.
fn alternatives(
    error: &jsonschema::ValidationError<'_>,
    path: JsonPath,
    branches: &[Vec<jsonschema::ValidationError<'static>>],
    context: &Context<'_>,
    findings: &mut Findings,
) {
    // Documented enum values are generated as one `const` per alternative.
    let mut constants = Vec::new();
    let all_constants = branches.iter().all(|branch| {
        let found = branch.iter().find_map(|error| match error.kind() {
            ValidationErrorKind::Constant { expected_value } => Some((**expected_value).clone()),
            ValidationErrorKind::Enum { options } => Some(Value::Array(options_list(options))),
            _ => None,
        });
        match found {
            Some(Value::Array(values)) => {
                constants.extend(values);
                true
            }
            Some(value) => {
                constants.push(value);
                true
            }
            None => false,
        }
    });
    if all_constants && !constants.is_empty() {
        findings.push(path, one_of_values(constants));
        return;
    }

    // A tagged alternative whose key is present fails only below this location: explain it.
    let pointer = error.instance_path().as_str();
    let mut matched = branches.iter().filter(|branch| {
        !branch.is_empty()
            && branch
                .iter()
                .all(|error| error.instance_path().as_str().len() > pointer.len())
    });
    if let (Some(branch), None) = (matched.next(), matched.next()) {
        for error in branch {
            translate(error, context, findings);
        }
        return;
    }

    let tags = variant_tags(error, context.schema);
    if tags.is_empty() {
        findings.push(path, "does not match any allowed form");
    } else {
        findings.push(
            path,
            format!(
                "must be an object with exactly one of the keys {}",
                tags.join(", ")
            ),
        );
    }
}

/// The keys of an externally tagged enum: the single required key of each alternative at the
/// failing keyword's location in the schema.
fn variant_tags(error: &jsonschema::ValidationError<'_>, schema: &Value) -> Vec<String> {
    let Some(Value::Array(alternatives)) = schema.pointer(error.schema_path().as_str()) else {
        return Vec::new();
    };
    alternatives
        .iter()
        .filter_map(|alternative| match alternative.get("required") {
            Some(Value::Array(required)) if required.len() == 1 => {
                required[0].as_str().map(str::to_owned)
            }
            _ => None,
        })
        .collect()
}
