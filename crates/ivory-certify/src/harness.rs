//! The dynamic half of certification: the connector runs in the real runtime (a SQLite store
//! in a temp dir, the paced fetcher, the sync runner) against its **own mocked upstream**,
//! reached through a fault-injecting proxy that this harness controls and that logs every
//! request's arrival. With canary credentials and a canary webhook secret, so that any leak
//! of either into logs, records, cursors, errors or the report is caught.
//!
//! Checks (each a [`Check`] with its evidence):
//! - **pages all read**: the records stored equal the upstream's count;
//! - **Retry-After honoured**: the proxy answers one request `429` with `Retry-After: 1`; the
//!   connector's next request must come at least a second later;
//! - **requests per minute**: the peak rate over any run of consecutive requests, projected to
//!   a minute, must not exceed the declared `rateLimitPerMinute`;
//! - **crash and re-run**: the proxy never answers the middle request; the sync is dropped (the
//!   process "dies"); a new run after the lease expired must leave exactly the clean run's
//!   records;
//! - **webhooks**: a valid delivery is accepted; tampered, stale, wrong-secret and replayed
//!   ones are refused (through the connector's own `verify_webhook`);
//! - **conflict policy**: for bidirectional connectors (not yet exercised by this harness: it
//!   fails, honestly, until it is);
//! - **canary secrets**: neither canary appears anywhere.
//!
//! A connector is certified through a [`Target`]: its manifest, its implementation, and a way
//! to start its mocked upstream holding a given number of records and accepting a given
//! credential. Built-in connectors provide one in the CLI; external crates will provide one
//! from a harness entry point (ARCHITECTURE.md).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use ivory_runtime::store::Tombstones;
use ivory_runtime::{Runner, Store, SyncOptions};
use ivory_sdk::connector::BoxFuture;
use ivory_sdk::fetch::RetryPolicy;
use ivory_sdk::manifest::{Direction, Manifest};
use ivory_sdk::webhook::{Delivery, InMemoryReplayGuard, Scheme, Verifier, VerifierConfig};
use ivory_sdk::{Clock, Credentials, DynConnector, Secret};
use jiff::Timestamp;
use tokio::sync::Notify;
use url::Url;

use crate::check::Check;

/// A connector's mocked upstream, started by its [`Target`].
pub trait MockUpstream: Send + Sync {
    /// Where it listens.
    fn base_url(&self) -> Url;
}

/// What a connector supplies to be certified dynamically.
pub trait Target: Send + Sync {
    /// The manifest under certification.
    fn manifest(&self) -> &Manifest;
    /// The implementation.
    fn connector(&self) -> Arc<dyn DynConnector>;
    /// The record kind a sync fills (the one whose count is checked).
    fn record_kind(&self) -> &str;
    /// Starts the mocked upstream with `records` records, accepting `credential` as the
    /// tenant's API key or access token; its clock at `now`.
    fn start_upstream<'a>(
        &'a self,
        records: usize,
        credential: &'a Secret,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Box<dyn MockUpstream>, String>>;
    /// How many records to serve so that a sync makes about 25 requests.
    fn dataset_size(&self) -> usize;
    /// A webhook body for the manifest's scheme (an event the connector handles).
    fn webhook_body(&self) -> Option<Vec<u8>>;
}

#[derive(Debug, Clone)]
struct Arrival {
    at: Instant,
    status: u16,
}

#[derive(Debug, Default)]
struct ProxyState {
    log: Vec<Arrival>,
    served: usize,
    throttle_at: Option<usize>,
    hang_at: Option<usize>,
}

struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    hung: Arc<Notify>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct ProxyShared {
    upstream: Url,
    client: reqwest::Client,
    state: Arc<Mutex<ProxyState>>,
    hung: Arc<Notify>,
}

impl Proxy {
    async fn start(upstream: Url) -> Result<Self, String> {
        ivory_sdk::fetch::install_tls_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("proxy client: {e}"))?;
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let hung = Arc::new(Notify::new());
        let shared = ProxyShared {
            upstream,
            client,
            state: state.clone(),
            hung: hung.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            state,
            hung,
            server,
        })
    }

    fn url(&self) -> Url {
        #[allow(clippy::unwrap_used)] // A socket address always forms a URL.
        Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn forward(
    State(shared): State<ProxyShared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (throttle, hang) = {
        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.served += 1;
        let n = state.served;
        let throttle = state.throttle_at == Some(n);
        let hang = state.hang_at == Some(n);
        state.log.push(Arrival {
            at: Instant::now(),
            status: if throttle { 429 } else { 200 },
        });
        (throttle, hang)
    };
    if hang {
        shared.hung.notify_one();
        std::future::pending::<()>().await;
    }
    if throttle {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "rate limited by the certification suite",
        )
            .into_response();
    }
    let mut target = shared.upstream.clone();
    target.set_path(uri.path());
    target.set_query(uri.query());
    let mut request = shared.client.request(method, target.as_str()).body(body);
    for (name, value) in &headers {
        if name != "host" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            let mut out = (status, body).into_response();
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    out.headers_mut().insert(name, value.clone());
                }
            }
            out
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            format!("the mocked upstream failed: {error}"),
        )
            .into_response(),
    }
}

/// Captured tracing output (for the canary check).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
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

fn canary(what: &str) -> Secret {
    Secret::new(format!(
        "ivory-canary-{what}-{:016x}",
        rand::random::<u64>()
    ))
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
}

async fn world(target: &dyn Target, now: Timestamp) -> Result<World, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("certify.db");
    let path = path
        .to_str()
        .ok_or_else(|| format!("the temp dir {} is not UTF-8", dir.path().display()))?;
    let store = Store::open(path).await.map_err(|e| e.to_string())?;
    store
        .ensure_installation("certification", target.manifest(), &Default::default(), now)
        .await
        .map_err(|e| e.to_string())?;
    Ok(World { _dir: dir, store })
}

fn credentials_for(manifest: &Manifest, secret: &Secret) -> Credentials {
    use ivory_sdk::manifest::AuthType;
    match manifest.connection.auth {
        AuthType::None => Credentials::None,
        AuthType::ApiKey => Credentials::ApiKey(secret.clone()),
        _ => Credentials::OAuth2 {
            access_token: secret.clone(),
            expires_at: None,
        },
    }
}

fn options(base: Url) -> SyncOptions {
    SyncOptions {
        base_url: Some(base),
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
            ..RetryPolicy::default()
        },
        ..SyncOptions::default()
    }
}

async fn snapshot(store: &Store, kind: &str) -> Result<Vec<(String, serde_json::Value)>, String> {
    store
        .export_records("certification", kind, Tombstones::Include)
        .map_ok(|r| (r.id, r.data))
        .try_collect()
        .await
        .map_err(|e| e.to_string())
}

/// Runs every dynamic check against `target`.
pub async fn dynamic_checks(target: &dyn Target) -> Vec<Check> {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let api_key = canary("credential");
    let webhook_secret = canary("webhook");
    let mut checks = Vec::new();
    let mut leaked_text = String::new();
    {
        let _guard = tracing::dispatcher::set_default(&dispatch);
        match sync_checks(target, &api_key, &mut leaked_text).await {
            Ok(mut found) => checks.append(&mut found),
            Err(error) => {
                leaked_text.push_str(&error);
                checks.push(Check::fail("sync under the harness", error));
            }
        }
        checks.extend(webhook_checks(target, &webhook_secret));
        checks.push(conflict_check(target.manifest()));
    }
    let mut everything =
        String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    everything.push_str(&leaked_text);
    for check in &checks {
        everything.push_str(&check.evidence);
    }
    let leaks: Vec<&str> = [
        ("credential", &api_key),
        ("webhook secret", &webhook_secret),
    ]
    .iter()
    .filter(|(_, secret)| everything.contains(secret.expose()))
    .map(|(name, _)| *name)
    .collect();
    checks.push(if leaks.is_empty() {
        Check::pass(
            "canary secrets",
            "neither canary appears in logs, records, cursors, errors or the report",
        )
    } else {
        Check::fail(
            "canary secrets",
            format!(
                "leaked: {} (found in logs, records, cursors or errors)",
                leaks.join(", ")
            ),
        )
    });
    checks
}

async fn sync_checks(
    target: &dyn Target,
    credential: &Secret,
    seen: &mut String,
) -> Result<Vec<Check>, String> {
    let manifest = target.manifest();
    let connector = target.connector();
    let now = Timestamp::now();
    let records = target.dataset_size();
    let credentials = credentials_for(manifest, credential);
    let mut checks = Vec::new();

    // The clean run, with one 429 injected.
    let upstream = target.start_upstream(records, credential, now).await?;
    let proxy = Proxy::start(upstream.base_url()).await?;
    proxy.lock().throttle_at = Some(3);
    let clean = world(target, now).await?;
    let runner = Runner::new(clean.store.clone(), Clock::starting_at(now));
    let result = runner
        .sync(
            "certification",
            manifest,
            connector.as_ref(),
            credentials.clone(),
            options(proxy.url()),
        )
        .await;
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            return Err(format!("the clean sync failed: {error}"));
        }
    };
    let stored = snapshot(&clean.store, target.record_kind()).await?;
    seen.push_str(&serde_json::to_string(&stored).unwrap_or_default());
    seen.push_str(summary.cursor.as_deref().unwrap_or(""));
    checks.push(if stored.len() == records {
        Check::pass(
            "pages all read",
            format!(
                "{} records stored = {records} upstream ({} pages)",
                stored.len(),
                summary.totals.pages
            ),
        )
    } else {
        Check::fail(
            "pages all read",
            format!(
                "{} records stored ≠ {records} upstream ({} pages)",
                stored.len(),
                summary.totals.pages
            ),
        )
    });
    let log = proxy.lock().log.clone();
    let throttled = log.iter().position(|a| a.status == 429);
    checks.push(
        match throttled.and_then(|i| Some((log[i].at, log.get(i + 1)?.at))) {
            Some((limited, next)) if next.duration_since(limited) >= Duration::from_millis(990) => {
                Check::pass(
                    "Retry-After honoured",
                    format!(
                        "next request {:.2} s after a 429 with Retry-After: 1",
                        next.duration_since(limited).as_secs_f64()
                    ),
                )
            }
            Some((limited, next)) => Check::fail(
                "Retry-After honoured",
                format!(
                    "next request only {:.2} s after a 429 with Retry-After: 1",
                    next.duration_since(limited).as_secs_f64()
                ),
            ),
            None => Check::fail(
                "Retry-After honoured",
                "the sync made too few requests to inject a 429 (dataset too small)",
            ),
        },
    );
    checks.push(rate_check(
        &log,
        manifest.connection.sync.rate_limit_per_minute,
    ));

    // The crash: the middle request is never answered; the "process" dies there.
    let requests = log.len();
    let upstream = target.start_upstream(records, credential, now).await?;
    let proxy = Proxy::start(upstream.base_url()).await?;
    let crash_at = (requests / 2).max(2);
    proxy.lock().hang_at = Some(crash_at);
    let crashed = world(target, now).await?;
    let runner = Runner::new(crashed.store.clone(), Clock::starting_at(now));
    let sync = runner.sync(
        "certification",
        manifest,
        connector.as_ref(),
        credentials.clone(),
        options(proxy.url()),
    );
    let died = tokio::select! {
        _ = proxy.hung.notified() => true,
        _ = sync => false,
    };
    let later = now
        .checked_add(jiff::SignedDuration::from_hours(1))
        .map_err(|e| e.to_string())?;
    let rerun = Runner::new(crashed.store.clone(), Clock::starting_at(later))
        .sync(
            "certification",
            manifest,
            connector.as_ref(),
            credentials,
            options(proxy.url()),
        )
        .await
        .map_err(|e| format!("the re-run after the crash failed: {e}"))?;
    let after = snapshot(&crashed.store, target.record_kind()).await?;
    checks.push(if !died {
        Check::fail("crash and re-run", format!("the sync ended before request {crash_at}: nothing to crash"))
    } else if after == stored {
        Check::pass("crash and re-run", format!("killed at request {crash_at} of {requests}; the re-run ({} requests) left exactly the clean run's {} records", rerun.totals.requests, after.len()))
    } else {
        Check::fail("crash and re-run", format!("killed at request {crash_at}; after the re-run {} records differ from the clean run's {}", after.len(), stored.len()))
    });
    Ok(checks)
}

/// The peak rate over any `span` consecutive requests, projected to a minute.
fn rate_check(log: &[Arrival], declared: u32) -> Check {
    let name = "requests per minute";
    let interval = Duration::from_secs(60) / declared.max(1);
    let span = 10usize;
    if log.len() <= span {
        return Check::fail(
            name,
            format!("only {} requests: too few to measure a rate", log.len()),
        );
    }
    let mut peak = 0.0f64;
    for window in log.windows(span + 1) {
        let elapsed = window[span].at.duration_since(window[0].at);
        // `span` intervals in `elapsed`; a 429 retry is paced like any request.
        let rate = if elapsed.is_zero() {
            f64::INFINITY
        } else {
            span as f64 * 60.0 / elapsed.as_secs_f64()
        };
        peak = peak.max(rate);
    }
    // A small tolerance for timer jitter on a loaded machine.
    let allowed = f64::from(declared) * 1.02;
    let evidence = format!(
        "{} max ≤ {declared} declared (peak over {span} consecutive intervals; pacing interval {:.0} ms)",
        if peak.is_finite() {
            format!("{peak:.0}")
        } else {
            "unbounded".into()
        },
        interval.as_secs_f64() * 1000.0
    );
    if peak <= allowed {
        Check::pass(name, evidence)
    } else {
        Check::fail(name, evidence.replacen('≤', ">", 1))
    }
}

fn webhook_checks(target: &dyn Target, secret: &Secret) -> Vec<Check> {
    let name = "webhook verification";
    let manifest = target.manifest();
    let Some(spec) = &manifest.webhooks else {
        return vec![Check::pass(
            name,
            "the connector receives no webhooks: not applicable",
        )];
    };
    let Some(scheme) = Scheme::from_manifest(spec.scheme) else {
        return vec![Check::fail(
            name,
            "this scheme cannot be exercised by the harness yet",
        )];
    };
    let Some(body) = target.webhook_body() else {
        return vec![Check::fail(name, "the target supplies no webhook fixture")];
    };
    // Airtable's MAC secret is base64; Standard Webhooks' is whsec_ + base64.
    let secret = match scheme {
        Scheme::Airtable => Secret::new(base64_of(secret.expose())),
        Scheme::StandardWebhooks => Secret::new(format!("whsec_{}", base64_of(secret.expose()))),
        _ => secret.clone(),
    };
    let tolerance = Duration::from_secs(u64::from(spec.tolerance_seconds));
    let build = |key: &str| {
        Verifier::new(scheme.clone(), key)
            .map(|v| v.with_config(VerifierConfig::default().with_tolerance(tolerance)))
    };
    let (Ok(verifier), Ok(wrong)) = (
        build(secret.expose()),
        build(&base64_of("ivory-certification-wrong-secret")),
    ) else {
        return vec![Check::fail(
            name,
            "the canary secret is not usable with this scheme",
        )];
    };
    let now = Timestamp::now();
    let url = "https://platform.example/webhooks/certification";
    let delivery = Delivery::new(HeaderMap::new(), body.clone()).with_url(url);
    let Ok(valid) = verifier.sign(delivery.clone(), now) else {
        return vec![Check::fail(name, "could not sign the fixture")];
    };
    let connector = target.connector();
    let verify = |d: &Delivery, at: Timestamp| connector.verify_webhook_dyn(d, &verifier, at);
    let mut verdicts = Vec::new();
    let mut ok = true;
    let mut expect = |label: &str, accepted: bool, want: bool| {
        ok &= accepted == want;
        verdicts.push(format!(
            "{label}: {}{}",
            if accepted { "accepted" } else { "rejected" },
            if accepted == want { "" } else { " (WRONG)" }
        ));
    };
    let first = verify(&valid, now);
    expect("valid", first.is_ok(), true);
    let mut tampered_body = body.clone();
    if let Some(byte) = tampered_body.last_mut() {
        *byte ^= 0x01;
    }
    let tampered = Delivery::new(valid.headers().clone(), tampered_body).with_url(url);
    expect("tampered", verify(&tampered, now).is_ok(), false);
    let stale_at = now
        .checked_add(jiff::SignedDuration::from_secs(
            i64::from(spec.tolerance_seconds) + 120,
        ))
        .unwrap_or(now);
    if scheme == Scheme::Airtable {
        expect(
            "stale (not applicable: Airtable pings carry no timestamp; authentic)",
            verify(&valid, stale_at).is_ok(),
            true,
        );
    } else {
        expect("stale", verify(&valid, stale_at).is_ok(), false);
    }
    let forged = wrong.sign(delivery.clone(), now).ok();
    if let Some(forged) = forged {
        expect("wrong secret", verify(&forged, now).is_ok(), false);
    }
    let guard = InMemoryReplayGuard::default();
    let replayed = match first {
        Ok(verified) => {
            let key = verified.replay_key();
            let expires = verified.replay_expires_at();
            let once = guard.check_and_remember_sync("certification", key, expires, now);
            let again = verify(&valid, now).map(|v| {
                guard.check_and_remember_sync("certification", v.replay_key(), expires, now)
            });
            matches!(once, ivory_sdk::webhook::Freshness::Fresh)
                && matches!(again, Ok(ivory_sdk::webhook::Freshness::Replayed))
        }
        Err(_) => false,
    };
    expect("replayed", !replayed, false);
    vec![if ok {
        Check::pass(name, verdicts.join("; "))
    } else {
        Check::fail(name, verdicts.join("; "))
    }]
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

fn conflict_check(manifest: &Manifest) -> Check {
    let name = "conflict policy outcome";
    match manifest.connection.sync.direction {
        Direction::Inbound => Check::pass(
            name,
            "inbound connector: the upstream always wins (source_wins); nothing to decide",
        ),
        Direction::Outbound | Direction::Bidirectional => Check::fail(
            name,
            "a record edited on both sides is not exercised by this harness yet: certification of outbound and bidirectional connectors is incomplete",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrivals(gaps_ms: &[u64]) -> Vec<Arrival> {
        let start = Instant::now();
        let mut at = start;
        let mut out = vec![Arrival { at, status: 200 }];
        for gap in gaps_ms {
            at += Duration::from_millis(*gap);
            out.push(Arrival { at, status: 200 });
        }
        out
    }

    #[test]
    fn the_rate_check_sees_an_unpaced_burst() {
        let paced = arrivals(&[50; 20]); // 1200/min
        assert!(rate_check(&paced, 1200).passed());
        let burst = arrivals(&[5; 20]);
        let check = rate_check(&burst, 1200);
        assert!(!check.passed(), "{}", check.evidence);
        assert!(
            rate_check(&arrivals(&[50; 5]), 1200)
                .evidence
                .contains("too few")
        );
    }
}
