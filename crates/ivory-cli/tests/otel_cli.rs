//! OpenTelemetry end to end: the real binary syncs `example-items` against the fake items API
//! with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an OTLP/HTTP receiver on loopback, which
//! decodes the protobuf payloads. Without the endpoint nothing is exported and nothing waits.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use ivory_testkit::items::ItemsUpstream;
use ivory_testkit::otlp::{OtlpReceiver, ReceivedSpan};
use serde_json::Value;

const OTEL_VARS: [&str; 6] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "DEPLOY_ENV",
    "IVORY_LOG_FORMAT",
    "IVORY_LOG",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
];

/// Runs `ivory --db db args…` with exactly the telemetry variables in `env`, off the async
/// runtime (the fakes keep serving on it meanwhile).
async fn ivory(db: &Path, env: &[(&str, &str)], args: &[&str]) -> (Output, Duration) {
    let mut command = Command::cargo_bin("ivory").expect("binary");
    for var in OTEL_VARS {
        command.env_remove(var);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.arg("--db").arg(db).args(args);
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = command.output().expect("runs");
        (output, started.elapsed())
    })
    .await
    .expect("join")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn installed(db: &Path) {
    let (out, _) = ivory(
        db,
        &[],
        &["install", "example-items", "--tenant", "acme", "--approve"],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_exports_its_trace_metrics_and_propagates_traceparent() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let fake = ItemsUpstream::start(230, 1, 32).await.expect("fake");
    let receiver = OtlpReceiver::start().await.expect("receiver");
    installed(&db).await;
    let base = fake.base_url().to_string();
    let endpoint = receiver.endpoint();

    let (out, _) = ivory(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "ivory-connectors"),
            ("DEPLOY_ENV", "ci"),
            ("IVORY_LOG", "info"),
        ],
        &[
            "sync",
            "example-items",
            "--tenant",
            "acme",
            "--base-url",
            &base,
            "--json",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    // Logs go to stderr: stdout stays the one summary object.
    let summary: Value =
        serde_json::from_slice(out.stdout.trim_ascii()).expect("stdout is one JSON object");
    assert_eq!(summary["pages"], 3);

    // The exporter flushed before the process exited.
    let spans = receiver.spans();
    let syncs = named(&spans, "sync");
    assert_eq!(syncs.len(), 1, "{spans:#?}");
    let sync = syncs[0];
    assert_eq!(sync.parent_span_id, None);
    assert_eq!(sync.attributes["connector"], "example-items");
    assert_eq!(sync.attributes["tenant_id"], "acme");
    assert_eq!(sync.attributes["outcome"], "succeeded");
    assert!(sync.attributes["run_id"].starts_with("run_"));
    assert_eq!(sync.resource["service.name"], "ivory-connectors");
    assert_eq!(sync.resource["deployment.environment"], "ci");

    let fetches = named(&spans, "fetch");
    assert_eq!(fetches.len(), 3, "one span per page: {spans:#?}");
    for fetch in &fetches {
        assert_eq!(fetch.trace_id, sync.trace_id);
        assert_eq!(fetch.parent_span_id.as_deref(), Some(sync.span_id.as_str()));
        assert_eq!(fetch.kind, 3, "client");
        assert_eq!(fetch.attributes["http.request.method"], "GET");
        assert_eq!(fetch.attributes["http.response.status_code"], "200");
        assert_eq!(fetch.attributes["outcome"], "ok");
        assert!(
            fetch.attributes["url.full"].contains("/v1/items"),
            "{:?}",
            fetch.attributes
        );
        assert_eq!(fetch.resource["service.name"], "ivory-connectors");
    }

    // Every upstream request carried the W3C traceparent of its fetch span, in the sync's trace.
    let traceparents = fake.traceparents();
    assert_eq!(traceparents.len(), 3, "{traceparents:?}");
    for (header, fetch) in traceparents.iter().zip(&fetches) {
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4, "{header}");
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], sync.trace_id, "{header}");
        assert_eq!(parts[3], "01", "sampled: {header}");
        assert!(
            fetches.iter().any(|f| f.span_id == parts[2]),
            "{header} names a fetch span ({})",
            fetch.span_id
        );
    }

    // RED metrics, without tenant labels.
    let points = receiver.points();
    let runs: Vec<_> = points
        .iter()
        .filter(|p| p.metric == "ivory.sync.runs")
        .collect();
    assert_eq!(runs.len(), 1, "{points:#?}");
    assert_eq!(runs[0].value, 1.0);
    assert_eq!(runs[0].attributes["connector"], "example-items");
    assert_eq!(runs[0].attributes["outcome"], "succeeded");
    assert_eq!(runs[0].resource["service.name"], "ivory-connectors");
    let durations: Vec<_> = points
        .iter()
        .filter(|p| p.metric == "ivory.sync.duration")
        .collect();
    assert_eq!(durations.len(), 1);
    assert_eq!(durations[0].value, 1.0, "one sample");
    let requests: f64 = points
        .iter()
        .filter(|p| p.metric == "ivory.fetch.requests")
        .inspect(|p| {
            assert_eq!(p.attributes["connector"], "example-items");
            assert_eq!(p.attributes["http.response.status_code"], "200");
        })
        .map(|p| p.value)
        .sum();
    assert_eq!(requests, 3.0);
    assert!(
        points
            .iter()
            .any(|p| p.metric == "http.client.request.duration")
    );
    for point in &points {
        for label in ["tenant_id", "installation", "run_id", "url.full"] {
            assert!(
                !point.attributes.contains_key(label),
                "{label} is not a metric label: {point:?}"
            );
        }
    }

    // JSON logs (on by default with an endpoint) carry the labels, the span fields and the
    // trace ids of the span they were written in.
    let logs: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("a JSON log line: {l}")))
        .collect();
    let started = logs
        .iter()
        .find(|l| l["message"] == "Sync started.")
        .expect("the run's first log line");
    assert_eq!(started["level"], "info");
    assert_eq!(started["service"], "ivory-connectors");
    assert_eq!(started["env"], "ci");
    assert_eq!(started["tenant_id"], "acme");
    assert_eq!(started["connector"], "example-items");
    assert_eq!(started["trace_id"], sync.trace_id.as_str());
    assert_eq!(started["span_id"], sync.span_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported_and_nothing_waits() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("ivory.db");
    let fake = ItemsUpstream::start(50, 1, 32).await.expect("fake");
    let receiver = OtlpReceiver::start().await.expect("receiver");
    installed(&db).await;
    let base = fake.base_url().to_string();
    let sync = [
        "sync",
        "example-items",
        "--tenant",
        "acme",
        "--base-url",
        base.as_str(),
        "--full-refresh",
    ];

    let (plain, plain_took) = ivory(&db, &[("IVORY_LOG", "info")], &sync).await;
    assert!(plain.status.success(), "{}", stderr(&plain));
    assert_eq!(receiver.requests(), 0);
    assert!(fake.traceparents().is_empty(), "no trace context to send");
    let text = stderr(&plain);
    assert!(text.contains("Sync started."), "{text}");
    assert!(
        !text.trim_start().starts_with('{') && !text.contains("trace_id"),
        "text logs as before: {text}"
    );
    assert!(plain_took < Duration::from_secs(10), "{plain_took:?}");

    // A collector that is down (a closed port) costs the final flush at most, bounded by the
    // exporter timeout: the sync itself succeeds.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let down = format!("http://{closed}");
    let (out, took) = ivory(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &down),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
        ],
        &sync,
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(took < Duration::from_secs(8), "{took:?}");

    // A malformed endpoint is a warning, never a failure or a panic.
    for bad in ["not a url", "ftp://127.0.0.1:4318", "127.0.0.1:4318"] {
        let (out, _) = ivory(&db, &[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)], &sync).await;
        assert!(out.status.success(), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{bad}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    assert_eq!(receiver.requests(), 0);
}
