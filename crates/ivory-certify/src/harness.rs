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
//! - **conflict policy outcome**: for connectors that write upstream (bidirectional or
//!   outbound), three synced records are edited on both sides after the clean run — the
//!   upstream's edit later, the platform's edit later, both in the same millisecond — and a
//!   sync must leave, on **both** sides, the value of the side that the declared
//!   `conflictPolicy` makes win ([`ivory_sdk::conflict::resolve`], with its tie rule);
//! - **canary secrets**: neither canary appears anywhere.
//!
//! A connector is certified through a [`Target`]: its manifest, its implementation, its
//! installation settings, and a way to start its mocked upstream holding a given number of
//! records and accepting a given credential ([`CredentialGate`] puts a canary in front of a
//! fake that knows only its own fixed token). Built-in connectors provide one in the CLI; a
//! connector crate outside the workspace provides one from its harness entry point,
//! [`crate::external`] (ARCHITECTURE.md, "Certification of external crates").

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use ivory_runtime::objects::FieldInput;
use ivory_runtime::store::{Actor, Tombstones};
use ivory_runtime::{Runner, Store, SyncOptions};
use ivory_sdk::conflict::{Outcome, Rule, resolve};
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

    /// Edits record `id` on the upstream's side, as one of its users would: sets `field` to
    /// `value` with the upstream's last-modified time `at`. The conflict check of connectors
    /// that write upstream needs it; the default refuses.
    fn edit(&self, id: &str, field: &str, value: &str, at: Timestamp) -> Result<(), String> {
        let _ = (id, field, value, at);
        Err("this mocked upstream cannot edit records".into())
    }

    /// The upstream's current value of `field` of record `id` (as text), for the conflict
    /// check; the default knows none.
    fn value(&self, id: &str, field: &str) -> Option<String> {
        let _ = (id, field);
        None
    }
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
    /// The installation settings of the certification tenant (e.g. the base an Airtable
    /// connector reads); none by default.
    fn settings(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// For connectors that write upstream: a text field of [`Target::record_kind`] that the
    /// conflict check edits on both sides (`None`: the check fails, saying so).
    fn conflict_field(&self) -> Option<&str> {
        None
    }
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
    relay(
        &shared.client,
        &shared.upstream,
        method,
        &uri,
        &headers,
        body,
    )
    .await
}

/// Forwards one request to `upstream` and its answer back (hop-by-hop headers aside).
async fn relay(
    client: &reqwest::Client,
    upstream: &Url,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut target = upstream.clone();
    target.set_path(uri.path());
    target.set_query(uri.query());
    let mut request = client.request(method, target.as_str()).body(body);
    for (name, value) in headers {
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

/// A relay in front of a fake upstream that accepts only its own fixed test credential: a
/// request must present the certification's (canary) credential in a header, which the gate
/// swaps for the fake's before forwarding; any other request is answered `401` without
/// reaching the fake. So a [`Target`] can certify a connector with canary credentials against
/// a fake it does not control, and the fake still proves the credential was sent.
pub struct CredentialGate {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for CredentialGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialGate")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for CredentialGate {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct GateShared {
    upstream: Url,
    client: reqwest::Client,
    expected: Secret,
    replacement: Secret,
}

impl CredentialGate {
    /// Starts a gate on loopback that forwards to `upstream` the requests presenting
    /// `expected`, with `expected` replaced by `replacement` (the fake's own credential).
    pub async fn start(
        upstream: Url,
        expected: &Secret,
        replacement: &str,
    ) -> Result<Self, String> {
        ivory_sdk::fetch::install_tls_provider();
        if expected.expose().is_empty() {
            return Err("the credential gate needs a non-empty credential".into());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("gate client: {e}"))?;
        let shared = GateShared {
            upstream,
            client,
            expected: expected.clone(),
            replacement: Secret::new(replacement.to_owned()),
        };
        let app = axum::Router::new().fallback(gate).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, server })
    }

    /// Where the gate listens (the base URL to give the connector).
    pub fn url(&self) -> Url {
        #[allow(clippy::unwrap_used)] // A socket address always forms a URL.
        Url::parse(&format!("http://{}", self.addr)).unwrap()
    }
}

async fn gate(
    State(shared): State<GateShared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = shared.expected.expose();
    let mut presented = false;
    let mut forwarded = HeaderMap::with_capacity(headers.len());
    for (name, value) in &headers {
        let swapped = value
            .to_str()
            .ok()
            .filter(|text| text.contains(expected))
            .and_then(|text| {
                http::HeaderValue::from_str(&text.replace(expected, shared.replacement.expose()))
                    .ok()
            });
        match swapped {
            Some(value) => {
                presented = true;
                forwarded.append(name.clone(), value);
            }
            None => {
                forwarded.append(name.clone(), value.clone());
            }
        }
    }
    if !presented {
        return (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            r#"{"error":"unauthorized","message":"the certification credential was not presented"}"#,
        )
            .into_response();
    }
    relay(
        &shared.client,
        &shared.upstream,
        method,
        &uri,
        &forwarded,
        body,
    )
    .await
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
        .ensure_installation("certification", target.manifest(), &target.settings(), now)
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
    // On the clean world, after its snapshot: records edited on both sides.
    let conflict = conflict_check(
        target,
        &ConflictWorld {
            store: &clean.store,
            upstream: upstream.as_ref(),
            base: proxy.url(),
            credentials: &credentials,
            stored: &stored,
            now,
        },
    )
    .await;

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
    checks.push(conflict);
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
    let measured = if peak.is_finite() {
        format!("{peak:.0}")
    } else {
        "unbounded".into()
    };
    let bound = if peak > f64::from(declared) && peak <= allowed {
        // Within the jitter tolerance: say so rather than print "608 ≤ 600".
        format!("{allowed:.0} allowed ({declared} declared + 2% for timer jitter)")
    } else {
        format!("{declared} declared")
    };
    let evidence = format!(
        "{measured} max ≤ {bound} (peak over {span} consecutive intervals; pacing interval {:.0} ms)",
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

/// What the conflict check works on: the clean run's world.
struct ConflictWorld<'a> {
    store: &'a Store,
    upstream: &'a dyn MockUpstream,
    base: Url,
    credentials: &'a Credentials,
    stored: &'a [(String, serde_json::Value)],
    now: Timestamp,
}

/// One record edited on both sides.
struct Case {
    label: &'static str,
    id: String,
    upstream_at: Timestamp,
    platform_at: Timestamp,
    upstream_value: String,
    platform_value: String,
}

const CONFLICT: &str = "conflict policy outcome";

/// The declared policy's outcome on records edited on both sides (see the module doc).
async fn conflict_check(target: &dyn Target, world: &ConflictWorld<'_>) -> Check {
    let manifest = target.manifest();
    if manifest.connection.sync.direction == Direction::Inbound {
        return Check::pass(
            CONFLICT,
            "inbound connector: the upstream always wins (source_wins); nothing to decide",
        );
    }
    match conflict_outcomes(target, world).await {
        Ok(check) => check,
        Err(error) => Check::fail(CONFLICT, error),
    }
}

fn value_text(value: Option<&serde_json::Value>) -> String {
    match value {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Null) | None => "(none)".into(),
        Some(other) => other.to_string(),
    }
}

async fn conflict_outcomes(
    target: &dyn Target,
    world: &ConflictWorld<'_>,
) -> Result<Check, String> {
    let manifest = target.manifest();
    let policy = manifest.connection.sync.conflict_policy;
    let kind = target.record_kind();
    let field = target.conflict_field().ok_or(
        "the target names no field to edit on both sides: the outcome cannot be exercised",
    )?;
    if world.stored.len() < 3 {
        return Err(format!(
            "the clean run stored {} records; three are needed",
            world.stored.len()
        ));
    }
    let at = |ms: i64| {
        world
            .now
            .checked_add(jiff::SignedDuration::from_millis(600_000 + ms))
            .map_err(|e| e.to_string())
    };
    // (label, upstream edit ms, platform edit ms), after the clean run.
    let plan = [
        ("upstream edited later", 200, 100),
        ("platform edited later", 300, 400),
        ("same millisecond", 500, 500),
    ];
    let mut cases = Vec::with_capacity(plan.len());
    for ((label, upstream_ms, platform_ms), (id, _)) in plan.into_iter().zip(world.stored) {
        let n = cases.len() + 1;
        cases.push(Case {
            label,
            id: id.clone(),
            upstream_at: at(upstream_ms)?,
            platform_at: at(platform_ms)?,
            upstream_value: format!("ivory-certification upstream edit {n}"),
            platform_value: format!("ivory-certification platform edit {n}"),
        });
    }
    for case in &cases {
        world
            .upstream
            .edit(&case.id, field, &case.upstream_value, case.upstream_at)
            .map_err(|e| format!("editing record {} upstream: {e}", case.id))?;
        world
            .store
            .update_record_fields(
                "certification",
                kind,
                &case.id,
                &[(
                    field.to_owned(),
                    FieldInput::Text(case.platform_value.clone()),
                )],
                &Actor::User("certification".into()),
                case.platform_at,
            )
            .await
            .map_err(|e| format!("editing record {} on the platform: {e}", case.id))?;
    }
    let sync_at = at(60_000)?;
    Runner::new(world.store.clone(), Clock::starting_at(sync_at))
        .sync(
            "certification",
            manifest,
            target.connector().as_ref(),
            world.credentials.clone(),
            options(world.base.clone()),
        )
        .await
        .map_err(|e| format!("the sync after edits on both sides failed: {e}"))?;
    let platform: BTreeMap<String, serde_json::Value> =
        snapshot(world.store, kind).await?.into_iter().collect();
    let mut lines = Vec::new();
    let mut ok = true;
    for case in &cases {
        let resolution = resolve(policy, case.upstream_at, case.platform_at);
        let (winner, expected) = match resolution.outcome {
            Outcome::SourceWins => ("upstream", &case.upstream_value),
            Outcome::PlatformWins => ("platform", &case.platform_value),
        };
        let ours = value_text(platform.get(&case.id).and_then(|data| data.get(field)));
        let theirs = world
            .upstream
            .value(&case.id, field)
            .unwrap_or_else(|| "(none)".into());
        let rule = if resolution.rule == Rule::Tie {
            " (tie rule)"
        } else {
            ""
        };
        if &ours == expected && &theirs == expected {
            lines.push(format!("{}: {winner} kept on both sides{rule}", case.label));
        } else {
            ok = false;
            let side = |value: &str| {
                if value == case.upstream_value {
                    "the upstream's edit".to_owned()
                } else if value == case.platform_value {
                    "the platform's edit".to_owned()
                } else {
                    format!("{value:?}")
                }
            };
            lines.push(format!(
                "{}: WRONG — {winner} should win{rule}; the platform has {}, the upstream has {}",
                case.label,
                side(&ours),
                side(&theirs)
            ));
        }
    }
    let evidence = format!("{}: {}", policy.as_str(), lines.join("; "));
    Ok(if ok {
        Check::pass(CONFLICT, evidence)
    } else {
        Check::fail(CONFLICT, evidence)
    })
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
