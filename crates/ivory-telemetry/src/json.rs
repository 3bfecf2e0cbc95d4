//! JSON log lines: the platform's labels, the enclosing spans' fields, the trace ids.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats an event as one JSON object: `timestamp`, the labels `service`, `env`, `level`,
/// `message`, `target`, then the fields of the enclosing spans (outermost first, so the inner
/// span wins a clash) and of the event, and `trace_id` / `span_id` of the innermost exported
/// span. Use with [`JsonFields`] as the field formatter (span fields are stored as JSON).
#[derive(Debug, Clone)]
pub struct JsonLog {
    service: String,
    env: String,
}

impl JsonLog {
    /// A formatter labelling lines with `service` and `env`.
    pub fn new(service: &str, env: &str) -> Self {
        Self {
            service: service.to_owned(),
            env: env.to_owned(),
        }
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonLog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(jiff::Timestamp::now().to_string()),
        );
        line.insert(
            "level".into(),
            Value::String(meta.level().as_str().to_ascii_lowercase()),
        );
        line.insert("service".into(), Value::String(self.service.clone()));
        line.insert("env".into(), Value::String(self.env.clone()));

        let mut span_ids = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                span_ids.push(span.id());
                line.insert("span".into(), Value::String(span.name().to_owned()));
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields)
                {
                    for (key, value) in fields {
                        if !key.starts_with("otel.") {
                            line.insert(key, value);
                        }
                    }
                }
            }
        }
        // No extension lock is held here: the bridge may take one to build the span context.
        if let Some(dispatch) = tracing::dispatcher::get_default(|d| Some(d.clone())) {
            for id in span_ids.iter().rev() {
                let Some(context) = tracing_opentelemetry::get_otel_context(id, &dispatch) else {
                    continue;
                };
                let span = context.span();
                let span_context = span.span_context();
                if span_context.is_valid() {
                    line.insert(
                        "trace_id".into(),
                        Value::String(span_context.trace_id().to_string()),
                    );
                    line.insert(
                        "span_id".into(),
                        Value::String(span_context.span_id().to_string()),
                    );
                    break;
                }
            }
        }

        let mut fields = FieldMap(Map::new());
        event.record(&mut fields);
        let message = fields.0.remove("message");
        line.insert(
            "message".into(),
            message.unwrap_or(Value::String(String::new())),
        );
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        line.extend(fields.0);
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields as JSON values.
struct FieldMap(Map<String, Value>);

impl Visit for FieldMap {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}
