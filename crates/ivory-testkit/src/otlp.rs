//! An OTLP/HTTP receiver on loopback (feature `otlp`): accepts `POST /v1/traces` and
//! `POST /v1/metrics` with protobuf bodies, decodes them with the OpenTelemetry protocol's own
//! message types and keeps what it received, flattened for assertions. It stands in for the
//! OpenTelemetry Collector, which is not installable here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;

/// One received span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The span name.
    pub name: String,
    /// Trace id, lowercase hex.
    pub trace_id: String,
    /// Span id, lowercase hex.
    pub span_id: String,
    /// The parent's span id, when the span has a parent.
    pub parent_span_id: Option<String>,
    /// The span kind (OTLP enum value: 1 internal, 2 server, 3 client).
    pub kind: i32,
    /// The status code (OTLP enum value: 0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// The span's attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// The resource attributes of the batch it came in.
    pub resource: BTreeMap<String, String>,
}

/// One received metric data point.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    /// The metric name.
    pub metric: String,
    /// The data point's attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// A sum's value or a histogram's count.
    pub value: f64,
    /// The resource attributes of the batch it came in.
    pub resource: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    points: Vec<ReceivedPoint>,
    requests: usize,
}

/// The running receiver. Dropping it stops the server.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OtlpReceiver {
    /// Starts a receiver on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            received,
            server,
        })
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    /// The metric data points received so far.
    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.lock().points.clone()
    }

    /// How many export requests arrived (both signals, decodable or not).
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn ok() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Bytes::new(),
    )
        .into_response()
}

async fn traces(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> Response {
    let mut received = received.lock().unwrap_or_else(|p| p.into_inner());
    received.requests += 1;
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    for batch in request.resource_spans {
        let resource = batch
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope in batch.scope_spans {
            for span in scope.spans {
                received.spans.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    kind: span.kind,
                    status_code: span.status.map_or(0, |s| s.code),
                    attributes: attributes(&span.attributes),
                    resource: resource.clone(),
                });
            }
        }
    }
    ok()
}

async fn metrics(State(received): State<Arc<Mutex<Received>>>, body: Bytes) -> Response {
    let mut received = received.lock().unwrap_or_else(|p| p.into_inner());
    received.requests += 1;
    let Ok(request) = ExportMetricsServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    for batch in request.resource_metrics {
        let resource = batch
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for scope in batch.scope_metrics {
            for metric in scope.metrics {
                let points: Vec<(BTreeMap<String, String>, f64)> = match metric.data {
                    Some(Data::Sum(sum)) => sum
                        .data_points
                        .iter()
                        .map(|p| (attributes(&p.attributes), number(p.value.as_ref())))
                        .collect(),
                    Some(Data::Gauge(gauge)) => gauge
                        .data_points
                        .iter()
                        .map(|p| (attributes(&p.attributes), number(p.value.as_ref())))
                        .collect(),
                    #[allow(clippy::cast_precision_loss)]
                    Some(Data::Histogram(histogram)) => histogram
                        .data_points
                        .iter()
                        .map(|p| (attributes(&p.attributes), p.count as f64))
                        .collect(),
                    _ => Vec::new(),
                };
                for (attributes, value) in points {
                    received.points.push(ReceivedPoint {
                        metric: metric.name.clone(),
                        attributes,
                        value,
                        resource: resource.clone(),
                    });
                }
            }
        }
    }
    ok()
}

#[allow(clippy::cast_precision_loss)]
fn number(
    value: Option<&opentelemetry_proto::tonic::metrics::v1::number_data_point::Value>,
) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    match value {
        Some(Value::AsDouble(v)) => *v,
        Some(Value::AsInt(v)) => *v as f64,
        None => 0.0,
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(text).unwrap_or_default(),
            )
        })
        .collect()
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
