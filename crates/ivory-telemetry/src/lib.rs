//! Logs, traces and RED metrics of the `ivory` processes, per the platform's observability
//! contract (PLATFORM.md §3).
//!
//! [`init`] reads the environment once and installs the process's `tracing` subscriber:
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL of an OTLP/HTTP receiver (`http://collector:4318`): spans go to `/v1/traces`, metrics to `/v1/metrics`, protobuf-encoded. Unset or empty: nothing is exported and no exporter thread is started. A value that is not an `http(s)` URL is a warning and disables export; it never stops the command |
//! | `OTEL_SERVICE_NAME` | resource attribute `service.name` and the `service` log label (default `ivory`) |
//! | `DEPLOY_ENV` | resource attribute `deployment.environment` and the `env` log label (default `dev`) |
//! | `IVORY_LOG_FORMAT` | `json` or `text`; default `json` when an endpoint is set, `text` otherwise |
//! | `IVORY_LOG` | the log filter (`EnvFilter` syntax); the binary's `-v` flags give the default |
//!
//! **Traces.** The existing `tracing` spans are bridged to OpenTelemetry
//! (`tracing-opentelemetry`): `sync` (one sync run), `fetch` (one upstream request with its
//! retries, a child of `sync`), `webhook` (one delivery) and `workflow` (one workflow run). The
//! bridge sees spans at `INFO` and above whatever the log filter is, so `-v` does not change
//! what is traced. While exporting, the SDK's fetcher sends the W3C `traceparent` of its `fetch`
//! span with every attempt ([`ivory_sdk::fetch::install_trace_context`]).
//!
//! **Metrics.** RED metrics are derived from those spans' lifecycles (a span's close is one
//! operation, its duration the histogram sample, its `outcome` field the error dimension):
//! `ivory.sync.runs` / `ivory.sync.duration`, `ivory.fetch.requests` /
//! `http.client.request.duration`, `ivory.webhook.deliveries` / `ivory.webhook.duration`,
//! `ivory.workflow.runs` / `ivory.workflow.duration`. Their attributes come from an allow-list
//! (`connector`, `outcome`, `http.request.method`, `http.response.status_code`):
//! `tenant_id`, installation and run ids never become metric attributes (cardinality).
//!
//! **Logs.** JSON lines carry the labels `service`, `env`, `level`, the message and target, the
//! fields of the enclosing spans (`tenant_id`, `connector`, `run_id`, …) and the event's own,
//! plus `trace_id` / `span_id` while a span is exported. Where they go is the binary's choice
//! ([`LogOutput`]): a service's stdout, or stderr for one-shot commands whose stdout is their
//! result.
//!
//! **Lifecycle.** The returned [`Telemetry`] flushes and shuts the exporters down when dropped.
//! Spans are handed to a batch processor on its own thread through a bounded queue (full:
//! dropped, never waited for); the only wait is that final flush, bounded by the exporter
//! timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default).

mod json;
mod red;

use std::fmt;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};
use url::Url;

pub use json::JsonLog;

/// Default `service.name` when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "ivory";
/// Default `deployment.environment` when `DEPLOY_ENV` is unset.
pub const DEFAULT_DEPLOY_ENV: &str = "dev";

/// A telemetry setting that could not be used; the process goes on without it.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is not an `http(s)` URL.
    #[error(
        "OTEL_EXPORTER_OTLP_ENDPOINT={value:?} is not an http(s) URL ({reason}); not exporting"
    )]
    InvalidEndpoint {
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// `IVORY_LOG_FORMAT` is neither `json` nor `text`.
    #[error("IVORY_LOG_FORMAT={0:?} is neither \"json\" nor \"text\"; using the default")]
    UnknownLogFormat(String),
    /// An OTLP exporter could not be built.
    #[error("the OTLP {signal} exporter could not be built: {reason}; not exporting")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// The exporter's error.
        reason: String,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`tracing-subscriber`'s default format).
    Text,
    /// One JSON object per line with the platform's labels and trace ids.
    Json,
}

/// The telemetry settings, read from the environment by [`Settings::from_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The OTLP/HTTP base URL; `None`: nothing is exported.
    pub endpoint: Option<Url>,
    /// `service.name`.
    pub service_name: String,
    /// `deployment.environment`.
    pub deploy_env: String,
    /// The log line format.
    pub log_format: LogFormat,
}

impl Settings {
    /// Reads the settings from the process environment. Never fails: what cannot be used is
    /// returned as a warning and replaced by its default.
    pub fn from_env() -> (Self, Vec<TelemetryError>) {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> (Self, Vec<TelemetryError>) {
        let mut warnings = Vec::new();
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let endpoint = non_empty("OTEL_EXPORTER_OTLP_ENDPOINT").and_then(|value| {
            match parse_endpoint(value.trim()) {
                Ok(url) => Some(url),
                Err(reason) => {
                    warnings.push(TelemetryError::InvalidEndpoint { value, reason });
                    None
                }
            }
        });
        let log_format = match non_empty("IVORY_LOG_FORMAT").map(|v| v.trim().to_ascii_lowercase())
        {
            Some(v) if v == "json" => LogFormat::Json,
            Some(v) if v == "text" => LogFormat::Text,
            other => {
                if let Some(other) = other {
                    warnings.push(TelemetryError::UnknownLogFormat(other));
                }
                if endpoint.is_some() {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                }
            }
        };
        let settings = Self {
            endpoint,
            service_name: non_empty("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned()),
            deploy_env: non_empty("DEPLOY_ENV").unwrap_or_else(|| DEFAULT_DEPLOY_ENV.to_owned()),
            log_format,
        };
        (settings, warnings)
    }
}

fn parse_endpoint(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme {:?}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    Ok(url)
}

/// The OTLP/HTTP URL of one signal under the base endpoint (`…/v1/traces`), as the OTLP
/// exporter specification builds it from `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn signal_url(endpoint: &Url, signal: &str) -> String {
    format!("{}/v1/{signal}", endpoint.as_str().trim_end_matches('/'))
}

/// Where log lines go.
pub enum LogOutput {
    /// Standard output: services, whose stdout is their log stream (PLATFORM.md §3).
    Stdout,
    /// Standard error: one-shot commands, whose stdout is their result (`--json`, exports).
    Stderr,
    /// Any writer (tests).
    Writer(BoxMakeWriter),
}

impl fmt::Debug for LogOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stdout => "Stdout",
            Self::Stderr => "Stderr",
            Self::Writer(_) => "Writer(..)",
        })
    }
}

/// What the binary decides: the default log filter and where logs go.
#[derive(Debug)]
pub struct Options {
    /// The log filter when `IVORY_LOG` is unset or invalid (`warn`, `info`, `debug`, …).
    pub default_filter: String,
    /// Where log lines go.
    pub output: LogOutput,
}

/// The installed telemetry; flushes and shuts the exporters down when dropped.
#[must_use = "dropping it shuts the exporters down"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.is_exporting())
            .finish()
    }
}

impl Telemetry {
    /// Whether spans and metrics are exported.
    pub fn is_exporting(&self) -> bool {
        self.tracer.is_some()
    }

    /// Exports what is buffered now (spans and metrics), without shutting down.
    pub fn flush(&self) {
        if let Some(tracer) = &self.tracer {
            let _ = tracer.force_flush();
        }
        if let Some(meter) = &self.meter {
            let _ = meter.force_flush();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(tracer) = self.tracer.take()
            && let Err(error) = tracer.shutdown()
        {
            eprintln!("warning: exporting the last spans failed: {error}");
        }
        if let Some(meter) = self.meter.take()
            && let Err(error) = meter.shutdown()
        {
            eprintln!("warning: exporting the last metrics failed: {error}");
        }
    }
}

/// Reads the environment ([`Settings::from_env`]) and installs the process's subscriber.
/// Never fails: unusable settings are logged as warnings once the subscriber is up.
pub fn init(options: Options) -> Telemetry {
    let (settings, warnings) = Settings::from_env();
    init_with(settings, options, warnings)
}

/// [`init`] with explicit settings; `warnings` are logged once the subscriber is installed.
/// When a global subscriber is installed already, only the exporters are set up (and their
/// spans are lost): call it once per process.
pub fn init_with(settings: Settings, options: Options, warnings: Vec<TelemetryError>) -> Telemetry {
    let mut warnings = warnings;
    let pipeline = match &settings.endpoint {
        Some(endpoint) => match Pipeline::build(endpoint, &settings) {
            Ok(pipeline) => Some(pipeline),
            Err(error) => {
                warnings.push(error);
                None
            }
        },
        None => None,
    };

    let filter = EnvFilter::try_from_env("IVORY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(&options.default_filter));
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    let json = JsonLog::new(&settings.service_name, &settings.deploy_env);
    let fmt_layer = match (settings.log_format, options.output) {
        (LogFormat::Json, output) => tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json)
            .with_writer(make_writer(output))
            .with_filter(filter)
            .boxed(),
        (LogFormat::Text, output) => tracing_subscriber::fmt::layer()
            .with_writer(make_writer(output))
            .with_filter(filter)
            .boxed(),
    };
    layers.push(fmt_layer);
    if let Some(pipeline) = &pipeline {
        let tracer = pipeline.tracer.tracer("ivory");
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(LevelFilter::INFO)
                .boxed(),
        );
        layers.push(
            red::RedLayer::new(&pipeline.meter)
                .with_filter(LevelFilter::INFO)
                .boxed(),
        );
        ivory_sdk::fetch::install_trace_context(ivory_sdk::fetch::TraceContext::new(
            current_traceparent,
        ));
    }
    let _ = tracing_subscriber::registry().with(layers).try_init();
    for warning in warnings {
        tracing::warn!(error = %warning, "Telemetry setting ignored.");
    }
    match pipeline {
        Some(pipeline) => Telemetry {
            tracer: Some(pipeline.tracer),
            meter: Some(pipeline.meter),
        },
        None => Telemetry {
            tracer: None,
            meter: None,
        },
    }
}

fn make_writer(output: LogOutput) -> BoxMakeWriter {
    match output {
        LogOutput::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogOutput::Stderr => BoxMakeWriter::new(std::io::stderr),
        LogOutput::Writer(writer) => writer,
    }
}

/// The W3C `traceparent` of the current span, when it is exported.
pub fn current_traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

struct Pipeline {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

impl Pipeline {
    fn build(endpoint: &Url, settings: &Settings) -> Result<Self, TelemetryError> {
        // The OTLP exporter's reqwest client needs the process's rustls provider.
        ivory_sdk::fetch::install_tls_provider();
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attribute(KeyValue::new(
                "deployment.environment",
                settings.deploy_env.clone(),
            ))
            .build();
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(signal_url(endpoint, "traces"))
            .build()
            .map_err(|e| TelemetryError::Exporter {
                signal: "traces",
                reason: e.to_string(),
            })?;
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(signal_url(endpoint, "metrics"))
            .build()
            .map_err(|e| TelemetryError::Exporter {
                signal: "metrics",
                reason: e.to_string(),
            })?;
        let tracer = SdkTracerProvider::builder()
            .with_batch_exporter(spans)
            .with_resource(resource.clone())
            .build();
        let reader = PeriodicReader::builder(metrics)
            .with_interval(metric_interval())
            .build();
        let meter = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        Ok(Self { tracer, meter })
    }
}

/// `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds), 60 s by default.
fn metric_interval() -> Duration {
    std::env::var("OTEL_METRIC_EXPORT_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(Duration::from_secs(60), Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> (Settings, Vec<TelemetryError>) {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn nothing_set_means_text_logs_and_no_export() {
        let (s, warnings) = settings(&[]);
        assert!(warnings.is_empty());
        assert_eq!(s.endpoint, None);
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.service_name, "ivory");
        assert_eq!(s.deploy_env, "dev");
    }

    #[test]
    fn an_endpoint_turns_json_logs_on_unless_text_is_asked() {
        let (s, _) = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
            ("OTEL_SERVICE_NAME", "ivory-connectors"),
            ("DEPLOY_ENV", "staging"),
        ]);
        let endpoint = s.endpoint.expect("endpoint");
        assert_eq!(
            signal_url(&endpoint, "traces"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.service_name, "ivory-connectors");
        assert_eq!(s.deploy_env, "staging");
        let (s, _) = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/otlp"),
            ("IVORY_LOG_FORMAT", "text"),
        ]);
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(
            signal_url(s.endpoint.as_ref().expect("endpoint"), "metrics"),
            "http://collector:4318/otlp/v1/metrics"
        );
    }

    #[test]
    fn bad_values_are_warnings_not_failures() {
        for bad in [
            "not a url",
            "ftp://collector:4318",
            "collector:4318",
            "http://",
        ] {
            let (s, warnings) = settings(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", bad),
                ("IVORY_LOG_FORMAT", "yaml"),
            ]);
            assert_eq!(s.endpoint, None, "{bad}");
            assert_eq!(s.log_format, LogFormat::Text);
            assert_eq!(warnings.len(), 2, "{bad}: {warnings:?}");
            assert!(
                warnings[0]
                    .to_string()
                    .contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
                "{}",
                warnings[0]
            );
        }
        let (s, warnings) = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]);
        assert_eq!(s.endpoint, None);
        assert!(warnings.is_empty());
    }
}
