//! `{{path}}` templates in action values and log messages (the syntax is documented in the
//! module doc of [`crate::workflows`]).

use serde_json::Value;

/// Expands every template in the strings of `value`.
pub(crate) fn render_value(value: &Value, context: &Value) -> Value {
    match value {
        Value::String(text) => render_string(text, context),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| render_value(v, context)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), render_value(v, context)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Expands a string: a lone template keeps its value's type, otherwise text.
pub(crate) fn render_string(text: &str, context: &Value) -> Value {
    let trimmed = text.trim();
    if let Some(inner) = trimmed
        .strip_prefix("{{")
        .and_then(|rest| rest.strip_suffix("}}"))
        && !inner.contains("{{")
        && !inner.contains("}}")
    {
        return resolve(inner.trim(), context)
            .cloned()
            .unwrap_or(Value::Null);
    }
    Value::String(render_text(text, context))
}

/// Expands a string as text.
pub(crate) fn render_text(text: &str, context: &Value) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let path = rest[start + 2..start + 2 + len].trim();
        match resolve(path, context) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

fn resolve<'a>(path: &str, context: &'a Value) -> Option<&'a Value> {
    if path.is_empty() {
        return None;
    }
    let mut value = context;
    for step in path.split('.') {
        value = match value {
            Value::Object(map) => map.get(step)?,
            Value::Array(items) => items.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn context() -> Value {
        json!({
            "payload": {"data": {"object": {"id": "in_1", "amount_due": 1200, "lines": [{"id": "li_1"}]}}},
            "record": {"Amount Due": 12.5, "number": null},
            "now": "2026-02-01T00:00:00Z",
        })
    }

    #[test]
    fn a_lone_template_keeps_the_json_type_and_text_splices() {
        let ctx = context();
        assert_eq!(
            render_string("{{ payload.data.object.amount_due }}", &ctx),
            json!(1200)
        );
        assert_eq!(
            render_string(
                "Invoice {{payload.data.object.id}}: {{record.Amount Due}} due",
                &ctx
            ),
            json!("Invoice in_1: 12.5 due")
        );
        assert_eq!(
            render_string("{{payload.data.object.lines.0.id}}", &ctx),
            json!("li_1")
        );
        assert_eq!(render_string("{{payload.nope.deeper}}", &ctx), Value::Null);
        assert_eq!(
            render_string("x{{record.number}}y{{nope}}", &ctx),
            json!("xy")
        );
        assert_eq!(
            render_string("open {{ never closed", &ctx),
            json!("open {{ never closed")
        );
        assert_eq!(
            render_value(&json!({"a": ["{{now}}", 3]}), &ctx),
            json!({"a": ["2026-02-01T00:00:00Z", 3]})
        );
    }
}
