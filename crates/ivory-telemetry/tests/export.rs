//! In process: the telemetry installed against an OTLP/HTTP receiver on loopback (one global
//! subscriber per process, hence one test in this binary). A real `Fetcher` request retried
//! once sends the `traceparent` of its span with each attempt; JSON log lines carry that
//! span's ids; webhook and workflow spans become RED metrics without tenant labels.

use std::io::Write;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ivory_sdk::fetch::RetryPolicy;
use ivory_sdk::{Clock, FetchConfig, Fetcher, HttpConfig};
use ivory_telemetry::{LogFormat, LogOutput, Options, Settings};
use ivory_testkit::otlp::OtlpReceiver;
use serde_json::Value;
use tracing::Instrument;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_logs_and_metrics_reach_the_receiver() {
    let receiver = OtlpReceiver::start().await.expect("receiver");
    let logs = Buffer::default();
    let writer = logs.clone();
    let settings = Settings {
        endpoint: Some(Url::parse(&receiver.endpoint()).expect("url")),
        service_name: "ivory-test".into(),
        deploy_env: "test".into(),
        log_format: LogFormat::Json,
    };
    let telemetry = ivory_telemetry::init_with(
        settings,
        Options {
            default_filter: "info".into(),
            output: LogOutput::Writer(BoxMakeWriter::new(move || writer.clone())),
        },
        Vec::new(),
    );
    assert!(telemetry.is_exporting());

    let upstream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/things"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&upstream)
        .await;
    Mock::given(method("GET"))
        .and(path("/things"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .mount(&upstream)
        .await;
    let mut config = FetchConfig::new(NonZeroU32::new(6000).expect("rate"), vec![]);
    config.base_url_override = Some(Url::parse(&upstream.uri()).expect("uri"));
    config.http = HttpConfig::default();
    config.retry = RetryPolicy {
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    assert!(config.trace_context.is_some(), "installed by init");
    let fetcher = Fetcher::new(config, Clock::system()).expect("fetcher");

    let run = tracing::info_span!(
        "sync",
        tenant_id = "acme",
        connector = "things",
        outcome = tracing::field::Empty
    );
    async {
        tracing::info!(page = 1, "Fetching things.");
        let response = fetcher
            .get("/things")
            .send()
            .await
            .expect("retried to a 200");
        assert_eq!(response.status(), 200);
        tracing::Span::current().record("outcome", "succeeded");
    }
    .instrument(run)
    .await;
    tracing::info_span!(
        "webhook",
        tenant_id = "acme",
        connector = "things",
        outcome = "accepted"
    )
    .in_scope(|| tracing::info!("Webhook delivery stored."));
    tracing::info_span!("workflow", tenant_id = "acme", outcome = "failed").in_scope(|| {});
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .expect("flushed");

    let spans = receiver.spans();
    let sync = spans.iter().find(|s| s.name == "sync").expect("sync span");
    let fetch = spans
        .iter()
        .find(|s| s.name == "fetch")
        .expect("fetch span");
    assert_eq!(fetch.parent_span_id.as_deref(), Some(sync.span_id.as_str()));
    assert_eq!(fetch.attributes["retries"], "1");
    assert_eq!(fetch.attributes["http.response.status_code"], "200");
    assert_eq!(sync.resource["service.name"], "ivory-test");
    assert_eq!(sync.resource["deployment.environment"], "test");
    let webhook = spans.iter().find(|s| s.name == "webhook").expect("webhook");
    assert_eq!(webhook.attributes["outcome"], "accepted");

    // Both attempts carried the fetch span's context.
    let requests = upstream.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2);
    let expected = format!("00-{}-{}-01", fetch.trace_id, fetch.span_id);
    for request in &requests {
        let header = request
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok());
        assert_eq!(header, Some(expected.as_str()));
    }

    let lines: Vec<Value> = String::from_utf8(logs.0.lock().expect("logs").clone())
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let fetching = lines
        .iter()
        .find(|l| l["message"] == "Fetching things.")
        .expect("logged");
    assert_eq!(fetching["trace_id"], sync.trace_id.as_str());
    assert_eq!(fetching["span_id"], sync.span_id.as_str());
    assert_eq!(fetching["tenant_id"], "acme");
    assert_eq!(fetching["page"], 1);
    assert_eq!(fetching["service"], "ivory-test");
    assert_eq!(fetching["env"], "test");
    assert_eq!(fetching["level"], "info");
    let stored = lines
        .iter()
        .find(|l| l["message"] == "Webhook delivery stored.")
        .expect("logged");
    assert_eq!(stored["span_id"], webhook.span_id.as_str());

    let points = receiver.points();
    let value = |metric: &str, outcome: &str| -> f64 {
        points
            .iter()
            .filter(|p| {
                p.metric == metric
                    && p.attributes.get("outcome").map(String::as_str) == Some(outcome)
            })
            .map(|p| p.value)
            .sum()
    };
    assert_eq!(value("ivory.sync.runs", "succeeded"), 1.0);
    assert_eq!(value("ivory.fetch.requests", "ok"), 1.0);
    assert_eq!(value("ivory.webhook.deliveries", "accepted"), 1.0);
    assert_eq!(value("ivory.workflow.runs", "failed"), 1.0);
    assert_eq!(value("ivory.workflow.duration", "failed"), 1.0);
    assert!(
        points
            .iter()
            .all(|p| !p.attributes.contains_key("tenant_id")),
        "{points:#?}"
    );
}
