//! RED metrics (rate, errors, duration) derived from the lifecycle of the instrumented spans.
//!
//! One closed `sync` / `fetch` / `webhook` / `workflow` span is one operation: its counter is
//! incremented and its duration (creation to close, seconds) recorded, with attributes taken
//! only from [`LABELS`], whose values are bounded (connector ids, outcome words, HTTP methods
//! and status codes). Tenant, installation and run ids are never attributes.

use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, span};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The span fields that may become metric attributes.
const LABELS: [&str; 4] = [
    "connector",
    "outcome",
    "http.request.method",
    "http.response.status_code",
];

/// Histogram bucket boundaries, in seconds.
const BOUNDARIES: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

struct Op {
    count: Counter<u64>,
    duration: Histogram<f64>,
}

/// The layer; one per process.
pub(crate) struct RedLayer {
    sync: Op,
    fetch: Op,
    webhook: Op,
    workflow: Op,
}

impl RedLayer {
    pub(crate) fn new(provider: &SdkMeterProvider) -> Self {
        let meter = provider.meter("ivory");
        let op = |count: &'static str, what: &'static str, duration: &'static str| Op {
            count: meter
                .u64_counter(count)
                .with_description(format!("{what}, by outcome"))
                .build(),
            duration: meter
                .f64_histogram(duration)
                .with_unit("s")
                .with_description(format!("Duration of {what}"))
                .with_boundaries(BOUNDARIES.to_vec())
                .build(),
        };
        Self {
            sync: op("ivory.sync.runs", "sync runs", "ivory.sync.duration"),
            fetch: op(
                "ivory.fetch.requests",
                "upstream requests (retries included)",
                "http.client.request.duration",
            ),
            webhook: op(
                "ivory.webhook.deliveries",
                "webhook deliveries",
                "ivory.webhook.duration",
            ),
            workflow: op(
                "ivory.workflow.runs",
                "workflow runs",
                "ivory.workflow.duration",
            ),
        }
    }

    fn op(&self, name: &str) -> Option<&Op> {
        match name {
            "sync" => Some(&self.sync),
            "fetch" => Some(&self.fetch),
            "webhook" => Some(&self.webhook),
            "workflow" => Some(&self.workflow),
            _ => None,
        }
    }
}

/// What a measured span carries until it closes.
struct Measured {
    start: Instant,
    labels: Vec<KeyValue>,
}

impl Visit for Measured {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(
            field,
            i64::try_from(value).map_or_else(|_| value.to_string().into(), Into::into),
        );
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field, format!("{value:?}").into());
    }
}

impl Measured {
    fn set(&mut self, field: &Field, value: opentelemetry::Value) {
        let Some(name) = LABELS.iter().find(|l| **l == field.name()) else {
            return;
        };
        self.labels.retain(|kv| kv.key.as_str() != *name);
        self.labels.push(KeyValue::new(*name, value));
    }

    fn label(&self, name: &str) -> Option<&KeyValue> {
        self.labels.iter().find(|kv| kv.key.as_str() == name)
    }
}

impl<S> Layer<S> for RedLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.op(attrs.metadata().name()).is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut measured = Measured {
            start: Instant::now(),
            labels: Vec::new(),
        };
        attrs.record(&mut measured);
        // A request inherits the connector of the run it belongs to.
        if measured.label("connector").is_none() {
            let inherited = span.scope().skip(1).find_map(|parent| {
                parent
                    .extensions()
                    .get::<Measured>()
                    .and_then(|m| m.label("connector").cloned())
            });
            if let Some(connector) = inherited {
                measured.labels.push(connector);
            }
        }
        span.extensions_mut().insert(measured);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(measured) = span.extensions_mut().get_mut::<Measured>() {
            values.record(measured);
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(op) = self.op(span.name()) else {
            return;
        };
        let Some(mut measured) = span.extensions_mut().remove::<Measured>() else {
            return;
        };
        if measured.label("outcome").is_none() {
            measured.labels.push(KeyValue::new("outcome", "unknown"));
        }
        op.count.add(1, &measured.labels);
        op.duration
            .record(measured.start.elapsed().as_secs_f64(), &measured.labels);
    }
}
