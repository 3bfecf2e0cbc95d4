//! One object definition compiled: field types, formulas in dependency order, the computation
//! of formula fields, value validation, and the breaking-change diff between two versions.

use std::collections::{HashMap, HashSet};

use ivory_formula::{CompileError, Formula, Value as FValue, ValueType};
use ivory_sdk::manifest::{FieldType, ObjectSpec};
use jiff::Timestamp;
use serde_json::{Map, Value};

use super::error::{BreakingChange, ObjectError};

/// The type of a field as the platform sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    /// A stored field of this type.
    Plain(ivory_formula::FieldType),
    /// A formula field with this result type.
    Formula(ValueType),
}

impl FieldKind {
    /// The type formulas read the field as.
    pub(crate) fn formula_view(self) -> ivory_formula::FieldType {
        match self {
            FieldKind::Plain(field_type) => field_type,
            FieldKind::Formula(result) => result.into(),
        }
    }
}

/// An object definition with its formulas compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledObject {
    spec: ObjectSpec,
    fields: HashMap<String, FieldKind>,
    required: HashSet<String>,
    /// Formula fields in dependency order (a formula comes after every formula it reads).
    formulas: Vec<(String, Formula)>,
}

/// The manifest type of a plain field, as the formula language types it.
fn plain_type(field_type: FieldType) -> Option<ivory_formula::FieldType> {
    Some(match field_type {
        FieldType::String => ivory_formula::FieldType::String,
        FieldType::Number => ivory_formula::FieldType::Number,
        FieldType::Currency => ivory_formula::FieldType::Currency,
        FieldType::Boolean => ivory_formula::FieldType::Boolean,
        FieldType::Datetime => ivory_formula::FieldType::Datetime,
        FieldType::Reference => ivory_formula::FieldType::Reference,
        FieldType::Json => ivory_formula::FieldType::Json,
        FieldType::Formula => return None,
    })
}

impl CompiledObject {
    /// Checks the spec, detects cycles between formula fields and compiles every formula
    /// against the object's fields (formula fields are seen with their result type).
    pub(crate) fn compile(spec: &ObjectSpec) -> Result<CompiledObject, ObjectError> {
        let kind = spec.kind.as_str();
        let invalid = |message: String| ObjectError::InvalidObject {
            kind: kind.to_owned(),
            message,
        };
        if spec.fields.is_empty() {
            return Err(invalid("at least one field is required".into()));
        }
        let mut fields = HashMap::new();
        let mut required = HashSet::new();
        // Parse every formula first: the references decide the compile order.
        let mut parsed: Vec<(&str, &str, Vec<String>)> = Vec::new();
        for field in &spec.fields {
            if field.name.trim().is_empty() {
                return Err(invalid("a field has an empty name".into()));
            }
            if fields.contains_key(&field.name) {
                return Err(invalid(format!("field {:?} is declared twice", field.name)));
            }
            match (plain_type(field.r#type), &field.formula) {
                (Some(field_type), None) => {
                    fields.insert(field.name.clone(), FieldKind::Plain(field_type));
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "field {:?} has a formula but is not of type formula",
                        field.name
                    )));
                }
                (None, None) => {
                    return Err(invalid(format!(
                        "formula field {:?} has no formula",
                        field.name
                    )));
                }
                (None, Some(source)) => {
                    let expr =
                        ivory_formula::parse(source).map_err(|error| ObjectError::Formula {
                            kind: kind.to_owned(),
                            field: field.name.clone(),
                            error: CompileError::Parse(error),
                        })?;
                    let references = expr.fields().into_iter().map(str::to_owned).collect();
                    // Placeholder until compiled; replaced below.
                    fields.insert(field.name.clone(), FieldKind::Formula(ValueType::String));
                    parsed.push((field.name.as_str(), source.as_str(), references));
                }
            }
            if field.required {
                required.insert(field.name.clone());
            }
        }

        let order = formula_order(kind, &parsed)?;
        let mut formulas = Vec::with_capacity(order.len());
        let mut compiled_types: HashMap<&str, ValueType> = HashMap::new();
        for index in order {
            let (name, source, _) = &parsed[index];
            let lookup = |reference: &str| match fields.get(reference)? {
                FieldKind::Plain(field_type) => Some(*field_type),
                FieldKind::Formula(_) => compiled_types.get(reference).map(|t| (*t).into()),
            };
            let formula =
                Formula::compile(source, &lookup).map_err(|error| ObjectError::Formula {
                    kind: kind.to_owned(),
                    field: (*name).to_owned(),
                    error,
                })?;
            compiled_types.insert(name, formula.result_type());
            formulas.push(((*name).to_owned(), formula));
        }
        for (name, formula) in &formulas {
            fields.insert(name.clone(), FieldKind::Formula(formula.result_type()));
        }
        Ok(CompiledObject {
            spec: spec.clone(),
            fields,
            required,
            formulas,
        })
    }

    /// The definition as provisioned.
    pub(crate) fn spec(&self) -> &ObjectSpec {
        &self.spec
    }

    /// The field's type, if declared.
    pub(crate) fn field(&self, name: &str) -> Option<FieldKind> {
        self.fields.get(name).copied()
    }

    /// Declared required fields.
    pub(crate) fn required_fields(&self) -> impl Iterator<Item = &str> {
        self.spec
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name.as_str())
    }

    /// Whether the kind has formula fields.
    pub(crate) fn has_formulas(&self) -> bool {
        !self.formulas.is_empty()
    }

    /// `(field, formula source)` of every formula field, in declaration order.
    pub(crate) fn formula_sources(&self) -> Vec<(&str, &str)> {
        self.spec
            .fields
            .iter()
            .filter_map(|f| Some((f.name.as_str(), f.formula.as_deref()?)))
            .collect()
    }

    /// Computes every formula field of `data` (in dependency order) and writes the results,
    /// overwriting whatever the data held for them. Formulas read the record's own values
    /// for plain fields and the freshly computed values for formula fields.
    pub(crate) fn compute(&self, data: &mut Map<String, Value>, now: Timestamp) {
        let mut computed: HashMap<&str, FValue> = HashMap::with_capacity(self.formulas.len());
        for (name, formula) in &self.formulas {
            let value = {
                let read = |field: &str| -> Option<FValue> {
                    if let Some(value) = computed.get(field) {
                        return Some(value.clone());
                    }
                    match self.fields.get(field)? {
                        FieldKind::Plain(field_type) => {
                            Some(FValue::from_json(data.get(field)?, *field_type))
                        }
                        // Not computed yet cannot happen (dependency order); read as blank.
                        FieldKind::Formula(_) => None,
                    }
                };
                formula.evaluate(&read, now)
            };
            computed.insert(name.as_str(), value);
        }
        for (name, value) in computed {
            data.insert(name.to_owned(), value.to_json());
        }
    }

    /// Reads a field of stored data as a formula value (conditions use this).
    pub(crate) fn read(&self, data: &Value, field: &str) -> Option<FValue> {
        let kind = self.fields.get(field)?;
        Some(FValue::from_json(data.get(field)?, kind.formula_view()))
    }

    /// Checks a value a platform-side write puts into `field`.
    pub(crate) fn validate(&self, field: &str, value: &Value) -> Result<(), ObjectError> {
        let kind = &self.spec.kind;
        match self.fields.get(field) {
            None => Err(ObjectError::UnknownField {
                kind: kind.clone(),
                field: field.to_owned(),
            }),
            Some(FieldKind::Formula(_)) => Err(ObjectError::FormulaField {
                kind: kind.clone(),
                field: field.to_owned(),
            }),
            Some(FieldKind::Plain(_)) if value.is_null() => {
                if self.required.contains(field) {
                    Err(ObjectError::RequiredField {
                        kind: kind.clone(),
                        field: field.to_owned(),
                    })
                } else {
                    Ok(())
                }
            }
            Some(FieldKind::Plain(field_type)) => FValue::try_from_json(value, *field_type)
                .map(drop)
                .map_err(|error| ObjectError::FieldType {
                    kind: kind.clone(),
                    field: field.to_owned(),
                    message: error.to_string(),
                }),
        }
    }

    /// A readable description of a field's type, for breaking-change messages.
    fn describe(&self, field: &str) -> String {
        let spec = self.spec.fields.iter().find(|f| f.name == field);
        match (self.fields.get(field), spec) {
            (Some(FieldKind::Formula(result)), _) => format!("formula ({result})"),
            (Some(FieldKind::Plain(_)), Some(spec)) if spec.r#type == FieldType::Reference => {
                match &spec.references {
                    Some(target) => format!("reference to {target}"),
                    None => "reference".to_owned(),
                }
            }
            (Some(FieldKind::Plain(field_type)), _) => field_type.as_str().to_owned(),
            (None, _) => "nothing".to_owned(),
        }
    }

    /// The breaking changes from `self` (the stored version) to `next`.
    pub(crate) fn breaking_changes(&self, next: &CompiledObject) -> Vec<BreakingChange> {
        let kind = &self.spec.kind;
        let mut changes = Vec::new();
        for field in &self.spec.fields {
            let name = &field.name;
            if next.fields.contains_key(name) {
                let (from, to) = (self.describe(name), next.describe(name));
                if from != to {
                    changes.push(BreakingChange::FieldRetyped {
                        kind: kind.clone(),
                        field: name.clone(),
                        from,
                        to,
                    });
                }
            } else {
                changes.push(BreakingChange::FieldRemoved {
                    kind: kind.clone(),
                    field: name.clone(),
                });
            }
        }
        changes
    }

    /// Fields of `next` that `self` does not have.
    pub(crate) fn added_fields(&self, next: &CompiledObject) -> Vec<String> {
        next.spec
            .fields
            .iter()
            .filter(|f| !self.fields.contains_key(&f.name))
            .map(|f| f.name.clone())
            .collect()
    }
}

/// The order formula fields compile and compute in: a depth-first topological sort of the
/// formula-to-formula references, refusing a cycle with its path.
fn formula_order(
    kind: &str,
    parsed: &[(&str, &str, Vec<String>)],
) -> Result<Vec<usize>, ObjectError> {
    let index: HashMap<&str, usize> = parsed
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| (*name, i))
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; parsed.len()];
    let mut order = Vec::with_capacity(parsed.len());
    // Iterative DFS over (node, next reference to look at); the stack is the open path.
    for root in 0..parsed.len() {
        if marks[root] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::Open;
        while let Some(top) = stack.len().checked_sub(1) {
            let (node, next) = stack[top];
            let references = &parsed[node].2;
            if next < references.len() {
                let reference = references[next].as_str();
                stack[top].1 += 1;
                let Some(&target) = index.get(reference) else {
                    continue; // a plain field or an unknown one (the checker reports it)
                };
                match marks[target] {
                    Mark::Done => {}
                    Mark::New => {
                        marks[target] = Mark::Open;
                        stack.push((target, 0));
                    }
                    Mark::Open => {
                        let start = stack
                            .iter()
                            .position(|(n, _)| *n == target)
                            .unwrap_or_default();
                        let mut cycle: Vec<String> = stack[start..]
                            .iter()
                            .map(|(n, _)| parsed[*n].0.to_owned())
                            .collect();
                        cycle.push(parsed[target].0.to_owned());
                        return Err(ObjectError::Cycle {
                            kind: kind.to_owned(),
                            cycle,
                        });
                    }
                }
            } else {
                marks[node] = Mark::Done;
                order.push(node);
                stack.pop();
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(fields: serde_json::Value) -> ObjectSpec {
        serde_json::from_value(serde_json::json!({"kind": "thing", "fields": fields}))
            .expect("spec")
    }

    #[test]
    fn formulas_compute_in_dependency_order_whatever_the_declaration_order() {
        let compiled = CompiledObject::compile(&object(serde_json::json!([
            {"name": "Total", "type": "formula", "formula": "{Net} + {Tax}"},
            {"name": "Tax", "type": "formula", "formula": "ROUND({Net} * 0.2, 2)"},
            {"name": "Net", "type": "currency"},
        ])))
        .expect("compiles");
        let mut data = serde_json::json!({"Net": "10.50", "Total": 1, "Tax": "bogus"});
        let map = data.as_object_mut().expect("object");
        compiled.compute(map, Timestamp::UNIX_EPOCH);
        assert_eq!(
            data,
            serde_json::json!({"Net": "10.50", "Tax": 2.1, "Total": 12.6})
        );
    }

    #[test]
    fn a_self_reference_is_a_cycle() {
        let error = CompiledObject::compile(&object(serde_json::json!([
            {"name": "A", "type": "formula", "formula": "{A} + 1"},
        ])))
        .expect_err("cycle");
        assert_eq!(
            error.to_string(),
            "object \"thing\": formula fields reference each other in a cycle: {A} → {A}"
        );
    }
}
