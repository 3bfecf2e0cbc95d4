//! The server's Prometheus metrics (`GET /metrics`, OpenMetrics text).
//!
//! RED for the HTTP face (requests by route and status, latency by route), and what operators
//! watch of the work: syncs by outcome, records by operation, upstream requests, retries and
//! 429s, webhook deliveries by verdict. Labels are bounded sets — a route template, a
//! connector id, a verdict — never a tenant or an installation (cardinality).

use std::sync::atomic::AtomicI64;

use ivory_runtime::SyncSummary;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    connector: String,
    outcome: String,
}

/// What a webhook delivery became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Verified, stored and processed.
    Accepted,
    /// A legitimate upstream retry of an event already stored.
    Duplicate,
    /// The exact same delivery again, inside its window.
    Replayed,
    /// Failed verification (signature, timestamp, headers).
    Rejected,
    /// No such active installation.
    UnknownInstallation,
    /// The installation cannot verify deliveries (no secret, no webhooks).
    NotConfigured,
    /// Larger than the body limit.
    TooLarge,
    /// Stored, but processing failed (the upstream's retry processes it again).
    Failed,
}

impl Verdict {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Duplicate => "duplicate",
            Verdict::Replayed => "replayed",
            Verdict::Rejected => "rejected",
            Verdict::UnknownInstallation => "unknown_installation",
            Verdict::NotConfigured => "not_configured",
            Verdict::TooLarge => "too_large",
            Verdict::Failed => "failed",
        }
    }
}

/// The metrics of one server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
    syncs: Family<OutcomeLabels, Counter>,
    syncs_running: Gauge<i64, AtomicI64>,
    records: Family<OutcomeLabels, Counter>,
    upstream_requests: Family<ConnectorLabels, Counter>,
    upstream_retries: Family<ConnectorLabels, Counter>,
    upstream_429s: Family<ConnectorLabels, Counter>,
    webhooks: Family<OutcomeLabels, Counter>,
}

fn duration_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered (at zero).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ivory");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> _);
        let syncs = Family::<OutcomeLabels, Counter>::default();
        let syncs_running = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        let records = Family::<OutcomeLabels, Counter>::default();
        let upstream_requests = Family::<ConnectorLabels, Counter>::default();
        let upstream_retries = Family::<ConnectorLabels, Counter>::default();
        let upstream_429s = Family::<ConnectorLabels, Counter>::default();
        let webhooks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by route template, method and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by route template",
            http_duration.clone(),
        );
        registry.register(
            "syncs",
            "Sync runs finished, by connector and outcome (succeeded, failed, interrupted, refused)",
            syncs.clone(),
        );
        registry.register(
            "syncs_running",
            "Sync runs in progress in this process",
            syncs_running.clone(),
        );
        registry.register(
            "records",
            "Records written by syncs, by connector and operation (created, updated, unchanged, deleted)",
            records.clone(),
        );
        registry.register(
            "upstream_requests",
            "Requests sent to upstream APIs by syncs (retries included)",
            upstream_requests.clone(),
        );
        registry.register(
            "upstream_retries",
            "Upstream requests retried",
            upstream_retries.clone(),
        );
        registry.register(
            "upstream_rate_limited",
            "429 responses from upstream APIs",
            upstream_429s.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries, by connector and verdict",
            webhooks.clone(),
        );
        Self {
            registry,
            http_requests,
            http_duration,
            syncs,
            syncs_running,
            records,
            upstream_requests,
            upstream_retries,
            upstream_429s,
            webhooks,
        }
    }

    /// Counts one HTTP request.
    pub fn http_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts one webhook delivery.
    pub fn webhook(&self, connector: &str, verdict: Verdict) {
        self.webhooks
            .get_or_create(&OutcomeLabels {
                connector: connector.to_owned(),
                outcome: verdict.as_str().to_owned(),
            })
            .inc();
    }

    /// A sync started (until [`sync_finished`](Self::sync_finished)).
    pub fn sync_started(&self) {
        self.syncs_running.inc();
    }

    /// A sync ended with `outcome`; `summary` when it ran (its counts are added).
    pub fn sync_finished(&self, connector: &str, outcome: &str, summary: Option<&SyncSummary>) {
        self.syncs_running.dec();
        self.syncs
            .get_or_create(&OutcomeLabels {
                connector: connector.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        let Some(summary) = summary else {
            return;
        };
        let t = &summary.totals;
        for (op, n) in [
            ("created", t.records_created),
            ("updated", t.records_updated),
            ("unchanged", t.records_unchanged),
            ("deleted", t.records_deleted),
        ] {
            self.records
                .get_or_create(&OutcomeLabels {
                    connector: connector.to_owned(),
                    outcome: op.to_owned(),
                })
                .inc_by(n);
        }
        let labels = ConnectorLabels {
            connector: connector.to_owned(),
        };
        self.upstream_requests
            .get_or_create(&labels)
            .inc_by(t.requests);
        self.upstream_retries
            .get_or_create(&labels)
            .inc_by(t.retries);
        self.upstream_429s
            .get_or_create(&labels)
            .inc_by(t.responses_429);
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
