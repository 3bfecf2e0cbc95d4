//! Schema discovery: an Airtable base's tables (`GET /v0/meta/bases/{baseId}/tables`) become
//! platform object definitions, one per table.
//!
//! ## Kinds
//! A table's kind is `airtable_` + its name in lower snake case: ASCII letters and digits
//! kept (lowercased, a word break before an inner capital: `Line Items` and `LineItems` are
//! both `airtable_line_items`), anything else a separator, at most 64 characters. A name with
//! no ASCII letter or digit uses the table id; when two tables of the base map to the same
//! kind, the later one (in the base's order) gets its table id appended.
//!
//! ## Fields
//! A platform field is named like the Airtable field (so formulas read as in Airtable),
//! except that `{`, `}` and line breaks, which a formula reference cannot hold, become `(`,
//! `)` and spaces; a blank name, or one that collides after that, gets the field id.
//!
//! | Airtable field type | platform type |
//! |---|---|
//! | `singleLineText`, `multilineText`, `richText`, `email`, `url`, `phoneNumber`, `singleSelect` | `string` |
//! | `number`, `percent` (a fraction: 0.5 is 50 %), `rating`, `duration` (seconds), `autoNumber`, `count` | `number` |
//! | `currency` | `currency` |
//! | `checkbox` (an unchecked box, which Airtable omits, is stored as `false`) | `boolean` |
//! | `date`, `dateTime`, `createdTime`, `lastModifiedTime` | `datetime` |
//! | `formula` that translates ([`crate::formula`]) | `formula`, computed by the platform |
//! | `formula` that does not, `rollup` | the type of its `options.result`, as above (`json` when there is none), holding Airtable's value |
//! | `multipleSelects`, `multipleRecordLinks` (record ids), `multipleAttachments`, `singleCollaborator`, `multipleCollaborators`, `createdBy`, `lastModifiedBy`, `multipleLookupValues`/`lookup`, `barcode`, `button`, `aiText`, `externalSyncSource`, and any type this connector does not know | `json`: Airtable's value as is, never dropped |
//!
//! Records are stored with their cells under the platform field names; cells of translated
//! formula fields are not copied (the platform computes them on every write).

use std::collections::{HashMap, HashSet};

use ivory_formula::{Formula, ValueType};
use ivory_sdk::Record;
use ivory_sdk::manifest::{FieldSpec, FieldType, ObjectSpec};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::formula::rewrite_references;

/// `GET /v0/meta/bases/{baseId}/tables`.
#[derive(Debug, Clone, Deserialize)]
pub struct BaseSchema {
    /// The base's tables, in the base's order.
    pub tables: Vec<TableSchema>,
}

/// A table of the base schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableSchema {
    /// `tbl…`.
    pub id: String,
    /// The table's name.
    pub name: String,
    /// The primary field's id.
    #[serde(default)]
    pub primary_field_id: Option<String>,
    /// The table's fields, in order.
    #[serde(default)]
    pub fields: Vec<FieldSchema>,
}

/// A field of the base schema.
#[derive(Debug, Clone, Deserialize)]
pub struct FieldSchema {
    /// `fld…`.
    pub id: String,
    /// The field's name.
    pub name: String,
    /// The Airtable field type (`singleLineText`, `formula`…).
    #[serde(rename = "type")]
    pub kind: String,
    /// Type-specific options (`formula`, `result`, `choices`…).
    #[serde(default)]
    pub options: Option<Value>,
}

/// A record as the list endpoint returns it (with `returnFieldsByFieldId=true`).
#[derive(Debug, Clone, Deserialize)]
pub struct AirtableRecord {
    /// `rec…`.
    pub id: String,
    /// Cells by field id; empty cells are omitted by Airtable.
    #[serde(default)]
    pub fields: Map<String, Value>,
}

/// The platform type of an Airtable field type (see the module's table). `formula` and
/// `rollup` map through their `options.result`.
pub fn platform_type(kind: &str, options: Option<&Value>) -> FieldType {
    match kind {
        "singleLineText" | "multilineText" | "richText" | "email" | "url" | "phoneNumber"
        | "singleSelect" => FieldType::String,
        "number" | "percent" | "rating" | "duration" | "autoNumber" | "count" => FieldType::Number,
        "currency" => FieldType::Currency,
        "checkbox" => FieldType::Boolean,
        "date" | "dateTime" | "createdTime" | "lastModifiedTime" => FieldType::Datetime,
        "formula" | "rollup" => result_type(options),
        _ => FieldType::Json,
    }
}

/// The platform type of a computed field's `options.result` (`json` when absent or itself
/// computed).
fn result_type(options: Option<&Value>) -> FieldType {
    let Some(result) = options.and_then(|o| o.get("result")) else {
        return FieldType::Json;
    };
    match result.get("type").and_then(Value::as_str) {
        Some("formula" | "rollup") | None => FieldType::Json,
        Some(kind) => platform_type(kind, result.get("options")),
    }
}

/// How formulas see a plain field of this type.
fn formula_view(field_type: FieldType) -> ivory_formula::FieldType {
    match field_type {
        FieldType::String => ivory_formula::FieldType::String,
        FieldType::Number => ivory_formula::FieldType::Number,
        FieldType::Currency => ivory_formula::FieldType::Currency,
        FieldType::Boolean => ivory_formula::FieldType::Boolean,
        FieldType::Datetime => ivory_formula::FieldType::Datetime,
        FieldType::Reference => ivory_formula::FieldType::Reference,
        FieldType::Json | FieldType::Formula => ivory_formula::FieldType::Json,
    }
}

fn value_view(value_type: ValueType) -> ivory_formula::FieldType {
    match value_type {
        ValueType::Number => ivory_formula::FieldType::Number,
        ValueType::Boolean => ivory_formula::FieldType::Boolean,
        ValueType::Datetime => ivory_formula::FieldType::Datetime,
        _ => ivory_formula::FieldType::String,
    }
}

/// `name` in lower snake case (ASCII letters and digits; see the module doc).
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len());
    let mut pending_break = false;
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            pending_break = true;
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1).copied();
        let camel_break = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
            });
        if (pending_break || camel_break) && !out.is_empty() {
            out.push('_');
        }
        pending_break = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The platform kind of each table, in order (see the module doc).
pub fn kinds(tables: &[TableSchema]) -> Vec<String> {
    const PREFIX: &str = "airtable_";
    let mut taken = HashSet::new();
    tables
        .iter()
        .map(|table| {
            let mut base = snake_case(&table.name);
            if !base.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                base = table.id.to_ascii_lowercase();
            }
            let mut kind = format!("{PREFIX}{base}");
            kind.truncate(64);
            if !taken.insert(kind.clone()) {
                let suffix = format!("_{}", table.id.to_ascii_lowercase());
                kind.truncate(64 - suffix.len().min(64));
                kind.push_str(&suffix);
                kind.truncate(64);
                taken.insert(kind.clone());
            }
            kind
        })
        .collect()
}

/// A platform field name for an Airtable field name (see the module doc).
fn clean_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '{' => '(',
            '}' => ')',
            '\n' | '\r' => ' ',
            other => other,
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// How one Airtable field lands on the platform.
#[derive(Debug, Clone)]
struct Planned {
    /// The platform field name.
    name: String,
    /// A translated formula: the platform computes it, the upstream cell is not copied.
    computed: bool,
    /// A checkbox: omitted when unchecked, stored as `false`.
    checkbox: bool,
}

/// A table's object definition and how its records map onto it.
#[derive(Debug, Clone)]
pub struct TablePlan {
    /// `tbl…`.
    pub table_id: String,
    /// The table's name.
    pub table_name: String,
    /// The platform kind.
    pub kind: String,
    /// The object definition to provision.
    pub spec: ObjectSpec,
    /// Why some formula fields are kept as synced values (for the sync's notes).
    pub notes: Vec<String>,
    by_id: HashMap<String, Planned>,
}

enum FormulaState {
    /// Rewritten to platform names, not compiled yet.
    Pending(String),
    /// Compiles: computed by the platform.
    Translated(String),
    /// Kept as Airtable's value, with the reason.
    Synced(String),
}

impl TablePlan {
    /// Plans `table` as the object kind `kind`.
    pub fn new(table: &TableSchema, kind: String) -> TablePlan {
        // Platform names, unique.
        let mut names: Vec<String> = Vec::with_capacity(table.fields.len());
        for field in &table.fields {
            let mut name = clean_name(&field.name);
            if name.is_empty() {
                name.clone_from(&field.id);
            }
            if names.contains(&name) {
                name = format!("{name} ({})", field.id);
            }
            names.push(name);
        }
        // References (by id, or by name) → platform names.
        let mut references = HashMap::new();
        for (field, name) in table.fields.iter().zip(&names) {
            references.insert(field.name.clone(), name.clone());
            references.insert(field.id.clone(), name.clone());
        }

        // Types as formulas see them; formulas are compiled in dependency order.
        let mut view: HashMap<String, ivory_formula::FieldType> = HashMap::new();
        let mut states: HashMap<usize, FormulaState> = HashMap::new();
        for (index, (field, name)) in table.fields.iter().zip(&names).enumerate() {
            if field.kind != "formula" {
                view.insert(
                    name.clone(),
                    formula_view(platform_type(&field.kind, field.options.as_ref())),
                );
                continue;
            }
            let options = field.options.as_ref();
            let valid = options
                .and_then(|o| o.get("isValid"))
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let text = options
                .and_then(|o| o.get("formula"))
                .and_then(Value::as_str);
            let state = match (valid, text) {
                (false, _) => {
                    FormulaState::Synced("Airtable reports the formula as invalid".into())
                }
                (true, None) => FormulaState::Synced("the schema gives no formula text".into()),
                (true, Some(text)) => match rewrite_references(text, &references) {
                    Ok(rewritten) => FormulaState::Pending(rewritten),
                    Err(untranslatable) => FormulaState::Synced(untranslatable.reason),
                },
            };
            if let FormulaState::Synced(_) = state {
                view.insert(
                    name.clone(),
                    formula_view(platform_type(&field.kind, options)),
                );
            }
            states.insert(index, state);
        }
        loop {
            let pending: Vec<usize> = states
                .iter()
                .filter(|(_, s)| matches!(s, FormulaState::Pending(_)))
                .map(|(i, _)| *i)
                .collect();
            if pending.is_empty() {
                break;
            }
            let pending_names: HashSet<&str> = pending.iter().map(|i| names[*i].as_str()).collect();
            let mut progress = false;
            let mut sorted = pending.clone();
            sorted.sort_unstable();
            for index in sorted {
                let Some(FormulaState::Pending(text)) = states.get(&index) else {
                    continue;
                };
                let text = text.clone();
                let name = names[index].clone();
                let field = &table.fields[index];
                let outcome = match ivory_formula::parse(&text) {
                    Err(error) => Err(error.to_string()),
                    Ok(expr) => {
                        let fields = expr.fields();
                        if fields.contains(&name.as_str()) {
                            Err("the formula references its own field".to_owned())
                        } else if fields.iter().any(|f| pending_names.contains(f)) {
                            continue; // compile once the formulas it reads are typed
                        } else {
                            Formula::compile(&text, &|f: &str| view.get(f).copied())
                                .map_err(|error| error.to_string())
                        }
                    }
                };
                progress = true;
                match outcome {
                    Ok(compiled) => {
                        view.insert(name, value_view(compiled.result_type()));
                        states.insert(index, FormulaState::Translated(text));
                    }
                    Err(reason) => {
                        view.insert(
                            name,
                            formula_view(platform_type(&field.kind, field.options.as_ref())),
                        );
                        states.insert(index, FormulaState::Synced(reason));
                    }
                }
                // Re-evaluate the pending set: a formula waiting on this one may go next.
                break;
            }
            if !progress {
                for index in pending {
                    let field = &table.fields[index];
                    view.insert(
                        names[index].clone(),
                        formula_view(platform_type(&field.kind, field.options.as_ref())),
                    );
                    states.insert(
                        index,
                        FormulaState::Synced(
                            "formula fields reference each other in a cycle".into(),
                        ),
                    );
                }
            }
        }

        let mut fields = Vec::with_capacity(table.fields.len());
        let mut by_id = HashMap::with_capacity(table.fields.len());
        let mut notes = Vec::new();
        for (index, (field, name)) in table.fields.iter().zip(&names).enumerate() {
            let plain = platform_type(&field.kind, field.options.as_ref());
            let (r#type, formula, computed) = match states.remove(&index) {
                Some(FormulaState::Translated(text)) => (FieldType::Formula, Some(text), true),
                Some(FormulaState::Synced(reason)) => {
                    notes.push(format!(
                        "table {:?}, formula field {:?}: kept as the value Airtable computes ({}), not computed by the platform: {reason}",
                        table.name,
                        field.name,
                        plain.as_str()
                    ));
                    (plain, None, false)
                }
                Some(FormulaState::Pending(_)) | None => (plain, None, false),
            };
            fields.push(FieldSpec {
                name: name.clone(),
                r#type,
                formula,
                references: None,
                required: false,
            });
            by_id.insert(
                field.id.clone(),
                Planned {
                    name: name.clone(),
                    computed,
                    checkbox: field.kind == "checkbox",
                },
            );
        }
        TablePlan {
            table_id: table.id.clone(),
            table_name: table.name.clone(),
            spec: ObjectSpec {
                kind: kind.clone(),
                label: Some(table.name.clone()),
                fields,
            },
            kind,
            notes,
            by_id,
        }
    }

    /// The platform record of an Airtable record: cells under platform names, translated
    /// formula cells left to the platform, unchecked checkboxes `false`, cells of fields the
    /// schema did not have (added since it was read) left out until the next sync's schema.
    pub fn record(&self, record: AirtableRecord) -> Record {
        let mut data = Map::with_capacity(record.fields.len());
        for (key, value) in record.fields {
            if let Some(field) = self.by_id.get(&key)
                && !field.computed
            {
                data.insert(field.name.clone(), value);
            }
        }
        for field in self.by_id.values().filter(|f| f.checkbox) {
            data.entry(field.name.clone()).or_insert(Value::Bool(false));
        }
        Record::new(record.id, Value::Object(data))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn table(fields: Value) -> TableSchema {
        serde_json::from_value(json!({"id": "tblT", "name": "Orders", "fields": fields}))
            .expect("table")
    }

    #[test]
    fn table_names_become_lower_snake_case_kinds() {
        assert_eq!(snake_case("Orders"), "orders");
        assert_eq!(snake_case("Line Items"), "line_items");
        assert_eq!(snake_case("LineItems"), "line_items");
        assert_eq!(snake_case("HTTPLogs 2026"), "http_logs_2026");
        assert_eq!(snake_case("  Café — menu! "), "caf_menu");
        let tables: Vec<TableSchema> = serde_json::from_value(json!([
            {"id": "tblA", "name": "Orders"},
            {"id": "tblB", "name": "orders"},
            {"id": "tblC", "name": "日本"},
        ]))
        .expect("tables");
        assert_eq!(
            kinds(&tables),
            ["airtable_orders", "airtable_orders_tblb", "airtable_tblc"]
        );
    }

    #[test]
    fn types_map_and_unknown_ones_are_json() {
        assert_eq!(platform_type("singleSelect", None), FieldType::String);
        assert_eq!(platform_type("percent", None), FieldType::Number);
        assert_eq!(platform_type("currency", None), FieldType::Currency);
        assert_eq!(platform_type("checkbox", None), FieldType::Boolean);
        assert_eq!(platform_type("createdTime", None), FieldType::Datetime);
        assert_eq!(platform_type("multipleRecordLinks", None), FieldType::Json);
        assert_eq!(platform_type("somethingNew", None), FieldType::Json);
        let rollup = json!({"result": {"type": "number", "options": {"precision": 0}}});
        assert_eq!(platform_type("rollup", Some(&rollup)), FieldType::Number);
        assert_eq!(platform_type("formula", None), FieldType::Json);
    }

    #[test]
    fn formulas_translate_in_dependency_order_or_stay_synced_with_a_reason() {
        let plan = TablePlan::new(
            &table(json!([
                {"id": "fldG", "name": "Gross", "type": "formula",
                 "options": {"formula": "{fldN} * 1.2", "isValid": true, "result": {"type": "number"}}},
                {"id": "fldN", "name": "Net {EUR}", "type": "formula",
                 "options": {"formula": "{fldQ} * {fldP}", "isValid": true, "result": {"type": "currency"}}},
                {"id": "fldQ", "name": "Qty", "type": "number"},
                {"id": "fldP", "name": "Price", "type": "currency"},
                {"id": "fldS", "name": "Code", "type": "formula",
                 "options": {"formula": "SWITCH({fldQ}, 1, \"one\", \"many\")", "isValid": true, "result": {"type": "singleLineText"}}},
                {"id": "fldX", "name": "Text math", "type": "formula",
                 "options": {"formula": "{fldC} * 2", "isValid": true, "result": {"type": "number"}}},
                {"id": "fldC", "name": "Comment", "type": "multilineText"},
                {"id": "fldI", "name": "Broken", "type": "formula",
                 "options": {"formula": "{fldQ} +", "isValid": false, "result": null}},
                {"id": "fldB", "name": "Done", "type": "checkbox"},
            ])),
            "airtable_orders".into(),
        );
        let field = |name: &str| {
            plan.spec
                .fields
                .iter()
                .find(|f| f.name == name)
                .cloned()
                .expect(name)
        };
        assert_eq!(field("Gross").formula.as_deref(), Some("{Net (EUR)} * 1.2"));
        assert_eq!(
            field("Net (EUR)").formula.as_deref(),
            Some("{Qty} * {Price}")
        );
        assert_eq!(field("Code").r#type, FieldType::String);
        assert_eq!(field("Text math").r#type, FieldType::Number);
        assert_eq!(field("Broken").r#type, FieldType::Json);
        assert_eq!(plan.notes.len(), 3, "{:?}", plan.notes);
        assert!(plan.notes[0].contains("SWITCH"), "{}", plan.notes[0]);

        let record = plan.record(
            serde_json::from_value(json!({"id": "rec1", "fields": {
                "fldQ": 2, "fldP": 3.5, "fldN": 7, "fldS": "many", "fldZ": "new field"
            }}))
            .expect("record"),
        );
        assert_eq!(
            record.data,
            json!({"Qty": 2, "Price": 3.5, "Code": "many", "Done": false})
        );
    }
}
