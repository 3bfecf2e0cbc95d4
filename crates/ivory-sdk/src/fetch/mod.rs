//! The paced, resilient `fetch` every upstream request of a connector goes through.
//!
//! One [`Fetcher`] serves one installation's sync. For every request it:
//! 1. resolves the URL against the installation's base URL and refuses hosts the manifest does
//!    not declare (loopback only when a base-URL override is set, for tests and the demo);
//! 2. waits for a slot of the [`Pacer`] (GCRA at the declared `rateLimitPerMinute`);
//! 3. sends, with the tenant's credentials, redirects off (a redirect could leave the
//!    allow-listed hosts);
//! 4. asks the pure [`RetryPolicy`] what to do: a 429 blocks the whole installation's pacer for
//!    the `Retry-After` (or a jittered backoff), a 5xx or transport failure is retried with
//!    backoff when the request is idempotent, and a bounded number of retries ends in a typed
//!    [`FetchError`];
//! 5. counts requests, retries, 429s, time slept and pages ([`FetchStats`]).
//!
//! Every request runs in a `fetch` tracing span (method, URL without its query, final status,
//! retries, `outcome`); with a [`TraceContext`] each attempt carries the W3C `traceparent` of
//! that span upstream.
//!
//! All waiting goes through the injected [`Clock`], so tests run on tokio's paused time.

mod auth;
mod error;
mod pacer;
mod retry;
mod trace;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Method;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use url::Url;

pub use auth::{AuthError, StaticToken, Token, TokenSource};
pub use error::FetchError;
pub use pacer::{Gcra, Pacer, SAFETY_MARGIN};
pub use retry::{Decision, GiveUp, Outcome, RetryPolicy, RetryReason, parse_retry_after};
pub use trace::{TraceContext, install_trace_context, installed_trace_context};

use crate::clock::Clock;
use crate::secret::Secret;
use error::{display_url, snippet};

/// The W3C trace-context header.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Settings of the underlying HTTP client.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Connect timeout (`None`: no timeout).
    pub connect_timeout: Option<Duration>,
    /// Whole-request timeout (`None`: no timeout).
    pub request_timeout: Option<Duration>,
    /// Keep idle connections for reuse.
    pub pool_idle: bool,
    /// Largest response body accepted.
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Some(Duration::from_secs(10)),
            request_timeout: Some(Duration::from_secs(60)),
            pool_idle: true,
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

impl HttpConfig {
    /// For tests on tokio's paused clock: no client timeouts and no idle pool, whose timers
    /// would make virtual time jump while a real socket is awaited (see ECOSYSTEM.md).
    pub fn virtual_time() -> Self {
        Self {
            connect_timeout: None,
            request_timeout: None,
            pool_idle: false,
            ..Self::default()
        }
    }
}

/// How an installation's requests are built, paced and retried.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// The declared `rateLimitPerMinute`.
    pub rate_per_minute: NonZeroU32,
    /// Requests allowed back to back (default 1: evenly spread).
    pub burst: NonZeroU32,
    /// The manifest's `hosts`.
    pub hosts: Vec<String>,
    /// A base-URL override (a local fake upstream); also the only way loopback is allowed.
    pub base_url_override: Option<Url>,
    /// The retry policy.
    pub retry: RetryPolicy,
    /// The HTTP client's settings.
    pub http: HttpConfig,
    /// Where the bearer credential of every request comes from (unless a request opts out).
    pub auth: Option<Arc<dyn TokenSource>>,
    /// Seed of the backoff jitter (deterministic tests); `None` seeds from the OS.
    pub jitter_seed: Option<u64>,
    /// Cancelled when the run must stop (a graceful shutdown): no further request is sent and a
    /// pacing or backoff wait ends at once, with [`FetchError::Stopped`]. As every page is a
    /// request, a sync stops at a page boundary; what it committed stays.
    pub stop: Option<CancellationToken>,
    /// The installation's rate limit as shared with every other process syncing it (the
    /// platform's store): each request also reserves a slot there, and a 429 holds everyone
    /// back. `None`: this fetcher's own pacing only.
    pub shared_rate_limit: Option<Arc<dyn SharedRateLimit>>,
    /// Supplies the W3C `traceparent` sent with every attempt; `new` takes the process-wide
    /// one ([`install_trace_context`]). `None`: no header.
    pub trace_context: Option<TraceContext>,
}

/// A rate limit shared by processes: GCRA state kept where they all see it (the platform keeps
/// it in its store). The fetcher still paces itself; this adds the other processes' requests.
pub trait SharedRateLimit: Send + Sync + std::fmt::Debug {
    /// Reserves the next slot of a GCRA with this `interval` and burst `tolerance`; returns
    /// how long to wait before sending. An error is logged and the request goes on under the
    /// fetcher's own pacing (the store being down fails the sync's commit anyway).
    fn reserve(
        &self,
        interval: Duration,
        tolerance: Duration,
    ) -> crate::connector::BoxFuture<'_, Result<Duration, String>>;
    /// Holds every process's requests back for `wait` (an upstream's `Retry-After`).
    fn block_for(&self, wait: Duration) -> crate::connector::BoxFuture<'_, ()>;
}

impl FetchConfig {
    /// A configuration for `hosts` at `per_minute`, with defaults for everything else.
    pub fn new(per_minute: NonZeroU32, hosts: Vec<String>) -> Self {
        Self {
            rate_per_minute: per_minute,
            burst: NonZeroU32::MIN,
            hosts,
            base_url_override: None,
            retry: RetryPolicy::default(),
            http: HttpConfig::default(),
            auth: None,
            jitter_seed: None,
            stop: None,
            shared_rate_limit: None,
            trace_context: installed_trace_context(),
        }
    }

    /// Sends `secret` as a static bearer credential.
    #[must_use]
    pub fn with_bearer(mut self, secret: Secret) -> Self {
        self.auth = Some(Arc::new(StaticToken::new(secret)));
        self
    }
}

/// Counters of one fetcher (one sync).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FetchStats {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Retries made.
    pub retries: u64,
    /// 429 responses seen.
    pub responses_429: u64,
    /// Time spent waiting for pacing, `Retry-After` and backoff, in milliseconds.
    pub slept_ms: u64,
    /// Pages read by the pagination helpers.
    pub pages: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    responses_429: AtomicU64,
    slept_us: AtomicU64,
    pages: AtomicU64,
}

impl Counters {
    fn add_sleep(&self, slept: Duration) {
        let micros = u64::try_from(slept.as_micros()).unwrap_or(u64::MAX);
        self.slept_us.fetch_add(micros, Ordering::Relaxed);
    }
}

/// The installation's paced HTTP client. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    pacer: Pacer,
    retry: RetryPolicy,
    hosts: HostPolicy,
    base: Option<Url>,
    clock: Clock,
    counters: Counters,
    auth: Option<Arc<dyn TokenSource>>,
    rng: Mutex<StdRng>,
    max_body_bytes: usize,
    stop: CancellationToken,
    shared: Option<Arc<dyn SharedRateLimit>>,
    trace_context: Option<TraceContext>,
}

impl Fetcher {
    /// Builds a fetcher. Fails when the base URL or a credential cannot be used.
    pub fn new(config: FetchConfig, clock: Clock) -> Result<Self, FetchError> {
        install_tls_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("ivory-connector-sdk/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(timeout) = config.http.connect_timeout {
            builder = builder.connect_timeout(timeout);
        }
        if let Some(timeout) = config.http.request_timeout {
            builder = builder.timeout(timeout);
        }
        if !config.http.pool_idle {
            builder = builder.pool_max_idle_per_host(0);
        }
        let client = builder.build().map_err(|e| FetchError::Build {
            url: String::new(),
            reason: format!("HTTP client: {e}"),
        })?;
        let hosts = HostPolicy::new(&config.hosts, config.base_url_override.as_ref());
        let base = match &config.base_url_override {
            Some(url) => Some(url.clone()),
            None => match config.hosts.first() {
                Some(host) => Some(parse_url(&format!("https://{host}"))?),
                None => None,
            },
        };
        let rng = match config.jitter_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                pacer: Pacer::new(config.rate_per_minute, config.burst, clock.clone()),
                retry: config.retry,
                hosts,
                base,
                clock,
                counters: Counters::default(),
                auth: config.auth,
                rng: Mutex::new(rng),
                max_body_bytes: config.http.max_body_bytes,
                stop: config.stop.unwrap_or_default(),
                shared: config.shared_rate_limit,
                trace_context: config.trace_context,
            }),
        })
    }

    /// The base URL paths are resolved against: the override, or `https://` + the first host.
    pub fn base_url(&self) -> Option<&Url> {
        self.inner.base.as_ref()
    }

    /// The clock this fetcher sleeps on.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// A request. `path_or_url` is a path starting with `/` (joined to the base URL, keeping
    /// any path prefix of the base) or an absolute URL on a declared host.
    pub fn request(&self, method: Method, path_or_url: &str) -> RequestBuilder {
        RequestBuilder {
            fetcher: self.clone(),
            idempotent: is_idempotent_method(&method),
            method,
            url: self.resolve(path_or_url),
            headers: HeaderMap::new(),
            body: None,
            auth: true,
        }
    }

    /// A GET request.
    pub fn get(&self, path_or_url: &str) -> RequestBuilder {
        self.request(Method::GET, path_or_url)
    }

    /// A POST request (not retried on 5xx unless marked with an idempotency key or
    /// [`RequestBuilder::retry_safe`]).
    pub fn post(&self, path_or_url: &str) -> RequestBuilder {
        self.request(Method::POST, path_or_url)
    }

    /// A PATCH request (not retried on 5xx unless marked safe).
    pub fn patch(&self, path_or_url: &str) -> RequestBuilder {
        self.request(Method::PATCH, path_or_url)
    }

    /// A DELETE request.
    pub fn delete(&self, path_or_url: &str) -> RequestBuilder {
        self.request(Method::DELETE, path_or_url)
    }

    /// The counters so far.
    pub fn stats(&self) -> FetchStats {
        let c = &self.inner.counters;
        FetchStats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            responses_429: c.responses_429.load(Ordering::Relaxed),
            slept_ms: c.slept_us.load(Ordering::Relaxed) / 1000,
            pages: c.pages.load(Ordering::Relaxed),
        }
    }

    /// Counts a page read (the pagination helpers do; a custom paginator built on
    /// [`crate::pagination::paginate`] should too, so run summaries stay right).
    pub fn count_page(&self) {
        self.inner.counters.pages.fetch_add(1, Ordering::Relaxed);
    }

    fn resolve(&self, path_or_url: &str) -> Result<Url, FetchError> {
        if path_or_url.starts_with("https://") || path_or_url.starts_with("http://") {
            return parse_url(path_or_url);
        }
        if !path_or_url.starts_with('/') {
            return Err(FetchError::InvalidUrl {
                url: path_or_url.to_owned(),
                reason: "a relative path must start with '/'".into(),
            });
        }
        let Some(base) = &self.inner.base else {
            return Err(FetchError::InvalidUrl {
                url: path_or_url.to_owned(),
                reason: "no base URL: the manifest declares no hosts and no override is set".into(),
            });
        };
        let mut base = base.clone();
        base.set_query(None);
        parse_url(&format!(
            "{}{path_or_url}",
            base.as_str().trim_end_matches('/')
        ))
    }

    fn jitter(&self) -> f64 {
        let mut rng = self.inner.rng.lock().unwrap_or_else(|p| p.into_inner());
        rng.random::<f64>()
    }

    async fn execute(&self, req: Prepared) -> Result<Response, FetchError> {
        let inner = &*self.inner;
        inner.hosts.check(&req.url)?;
        let shown = display_url(&req.url);
        let span = tracing::info_span!(
            "fetch",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %req.method,
            url.full = %shown,
            http.response.status_code = tracing::field::Empty,
            retries = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let result = self
            .execute_in_span(req, shown)
            .instrument(span.clone())
            .await;
        let (status, failure) = match &result {
            Ok(resp) => (Some(resp.status), None),
            Err(error) => (error.status(), Some(error)),
        };
        if let Some(status) = status {
            span.record("http.response.status_code", status);
        }
        match failure {
            None => span.record("outcome", "ok"),
            Some(FetchError::Stopped { .. }) => span.record("outcome", "stopped"),
            Some(_) => span
                .record("outcome", "error")
                .record("otel.status_code", "error"),
        };
        result
    }

    async fn execute_in_span(&self, req: Prepared, shown: String) -> Result<Response, FetchError> {
        let inner = &*self.inner;
        let method = req.method.to_string();
        let mut retries = 0u32;
        let mut seen_429 = 0u32;
        let mut refreshed_after_401 = false;
        let stopped = || FetchError::Stopped { url: shown.clone() };
        loop {
            if inner.stop.is_cancelled() {
                return Err(stopped());
            }
            let slept = tokio::select! {
                biased;
                () = inner.stop.cancelled() => return Err(stopped()),
                slept = inner.pacer.acquire() => slept,
            };
            inner.counters.add_sleep(slept);
            if let Some(shared) = &inner.shared {
                let (interval, tolerance) = inner.pacer.shape();
                match shared.reserve(interval, tolerance).await {
                    Ok(wait) if wait > Duration::ZERO => {
                        tokio::select! {
                            biased;
                            () = inner.stop.cancelled() => return Err(stopped()),
                            () = inner.clock.sleep(wait) => {}
                        }
                        inner.counters.add_sleep(wait);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "The shared rate limit is unavailable; pacing this process alone.")
                    }
                }
            }
            // Asked before every attempt: a refresh during a backoff is picked up.
            let token = match (&inner.auth, req.auth) {
                (Some(source), true) => {
                    Some(source.token().await.map_err(|e| FetchError::Auth {
                        url: shown.clone(),
                        message: e.message,
                        needs_reconsent: e.needs_reconsent,
                    })?)
                }
                _ => None,
            };
            inner.counters.requests.fetch_add(1, Ordering::Relaxed);
            let attempt = match self.attempt(&req, token.as_ref()).await {
                // Not retryable: a body over the limit, an unusable credential.
                Err(fatal @ (AttemptError::TooLarge(_) | AttemptError::Credential(_))) => {
                    return Err(fatal.into_fetch_error(&method, &shown, retries));
                }
                other => other,
            };
            if let (Ok(resp), Some(token), Some(source)) = (&attempt, &token, &inner.auth)
                && resp.status == 401
                && !refreshed_after_401
            {
                refreshed_after_401 = true;
                let renewed = source
                    .unauthorized(token)
                    .await
                    .map_err(|e| FetchError::Auth {
                        url: shown.clone(),
                        message: e.message,
                        needs_reconsent: e.needs_reconsent,
                    })?;
                if renewed {
                    tracing::debug!(url = %shown, "Credential refreshed after a 401; sending again.");
                    retries += 1;
                    inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::Span::current().record("retries", retries);
                    continue;
                }
            }
            let (outcome, response) = match &attempt {
                Ok(resp) => {
                    let retry_after = resp.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
                    (
                        Outcome::Status {
                            status: resp.status,
                            retry_after,
                        },
                        Some(resp),
                    )
                }
                Err(AttemptError::Connect(_)) => (Outcome::ConnectFailed, None),
                // A transport failure (the fatal kinds returned above).
                Err(_) => (Outcome::TransportFailed, None),
            };
            let status = response.map(|r| r.status);
            if status == Some(429) {
                seen_429 += 1;
                inner.counters.responses_429.fetch_add(1, Ordering::Relaxed);
            }
            let decision = inner.retry.decide(
                outcome,
                req.idempotent,
                retries,
                inner.clock.now(),
                self.jitter(),
            );
            match decision {
                Decision::Accept => {
                    let resp = attempt.map_err(|e| e.into_fetch_error(&method, &shown, retries))?;
                    if (200..300).contains(&resp.status) {
                        return Ok(resp);
                    }
                    return Err(status_error(&method, &shown, &resp, retries));
                }
                Decision::Retry { delay, reason } => {
                    tracing::debug!(
                        method = %method,
                        url = %shown,
                        ?status,
                        ?reason,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "Retrying upstream request."
                    );
                    retries += 1;
                    inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::Span::current().record("retries", retries);
                    if status == Some(429) {
                        // Everyone of this installation waits, not just this request.
                        inner.pacer.block_for(delay);
                        if let Some(shared) = &inner.shared {
                            shared.block_for(delay).await;
                        }
                    } else {
                        tokio::select! {
                            biased;
                            () = inner.stop.cancelled() => return Err(stopped()),
                            () = inner.clock.sleep(delay) => {}
                        }
                        inner.counters.add_sleep(delay);
                    }
                }
                Decision::GiveUp(give_up) => {
                    return Err(match (give_up, attempt) {
                        (GiveUp::RetryAfterTooLong(wait), Ok(resp)) => {
                            FetchError::RetryAfterTooLong {
                                method,
                                url: shown,
                                status: resp.status,
                                wait,
                                max: inner.retry.max_retry_after,
                            }
                        }
                        (_, Ok(resp)) if resp.status == 429 => FetchError::RateLimited {
                            method,
                            url: shown,
                            attempts: seen_429,
                            retries,
                        },
                        (_, Ok(resp)) => status_error(&method, &shown, &resp, retries),
                        (_, Err(e)) => e.into_fetch_error(&method, &shown, retries),
                    });
                }
            }
        }
    }

    async fn attempt(
        &self,
        req: &Prepared,
        token: Option<&Token>,
    ) -> Result<Response, AttemptError> {
        let inner = &*self.inner;
        let mut builder = inner
            .client
            .request(req.method.clone(), req.url.clone())
            .headers(req.headers.clone());
        if let Some(token) = token {
            let header =
                auth::bearer_header(token).map_err(|e| AttemptError::Credential(e.message))?;
            builder = builder.header(AUTHORIZATION, header);
        }
        if let Some(traceparent) = inner
            .trace_context
            .as_ref()
            .and_then(TraceContext::traceparent)
            && let Ok(value) = HeaderValue::from_str(&traceparent)
        {
            builder = builder.header(TRACEPARENT, value);
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let mut resp = builder.send().await.map_err(AttemptError::from_reqwest)?;
        let status = resp.status().as_u16();
        let headers = std::mem::take(resp.headers_mut());
        let limit = inner.max_body_bytes;
        if resp.content_length().is_some_and(|len| len > limit as u64) {
            return Err(AttemptError::TooLarge(limit));
        }
        let mut body = BytesMut::with_capacity(
            resp.content_length()
                .map_or(0, |len| usize::try_from(len).unwrap_or(0).min(limit)),
        );
        while let Some(chunk) = resp.chunk().await.map_err(AttemptError::from_reqwest)? {
            if body.len() + chunk.len() > limit {
                return Err(AttemptError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status,
            headers,
            body: body.freeze(),
            url: req.url.clone(),
        })
    }
}

/// Installs the process-wide TLS crypto provider (ring) that reqwest clients need; call it
/// before building any other reqwest client in the process. Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn status_error(method: &str, shown: &str, resp: &Response, retries: u32) -> FetchError {
    FetchError::Status {
        method: method.to_owned(),
        url: shown.to_owned(),
        status: resp.status,
        body: snippet(&resp.body, 2048),
        retries,
    }
}

#[derive(Debug)]
enum AttemptError {
    Connect(String),
    Transport(String),
    /// The body exceeded this limit.
    TooLarge(usize),
    Credential(String),
}

impl AttemptError {
    fn from_reqwest(error: reqwest::Error) -> Self {
        // The URL is removed: it may carry secrets in its query.
        let connect = error.is_connect();
        let message = error_chain(&error.without_url());
        if connect {
            AttemptError::Connect(message)
        } else {
            AttemptError::Transport(message)
        }
    }

    fn into_fetch_error(self, method: &str, url: &str, retries: u32) -> FetchError {
        match self {
            AttemptError::Connect(message) | AttemptError::Transport(message) => {
                FetchError::Transport {
                    method: method.to_owned(),
                    url: url.to_owned(),
                    retries,
                    message,
                }
            }
            AttemptError::TooLarge(limit) => FetchError::BodyTooLarge {
                url: url.to_owned(),
                limit,
            },
            AttemptError::Credential(message) => FetchError::Auth {
                url: url.to_owned(),
                message,
                needs_reconsent: false,
            },
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn parse_url(text: &str) -> Result<Url, FetchError> {
    Url::parse(text).map_err(|e| FetchError::InvalidUrl {
        url: text.to_owned(),
        reason: e.to_string(),
    })
}

fn is_idempotent_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

#[derive(Debug)]
struct Prepared {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
    idempotent: bool,
    auth: bool,
}

/// A request being built; [`RequestBuilder::send`] runs it through pacing and retries.
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    fetcher: Fetcher,
    method: Method,
    url: Result<Url, FetchError>,
    headers: HeaderMap,
    body: Option<Bytes>,
    idempotent: bool,
    auth: bool,
}

impl RequestBuilder {
    /// Appends query parameters.
    pub fn query<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        if let Ok(url) = &mut self.url {
            let mut query = url.query_pairs_mut();
            for (k, v) in pairs {
                query.append_pair(k.as_ref(), v.as_ref());
            }
        }
        self
    }

    /// Sets a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                self.headers.insert(name, value);
            }
            _ => self.fail(format!("invalid header {name:?}")),
        }
        self
    }

    /// Sets a JSON body.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                self.body = Some(bytes.into());
            }
            Err(e) => self.fail(format!("JSON body: {e}")),
        }
        self
    }

    /// Sets a form-encoded body (`application/x-www-form-urlencoded`).
    pub fn form<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        let mut encoder = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            encoder.append_pair(k.as_ref(), v.as_ref());
        }
        self.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        self.body = Some(encoder.finish().into_bytes().into());
        self
    }

    /// Sends an `Idempotency-Key` and makes the request retryable on 5xx.
    pub fn idempotency_key(self, key: &str) -> Self {
        let mut this = self.header("Idempotency-Key", key);
        this.idempotent = true;
        this
    }

    /// Declares a non-GET request safe to retry (a read through POST, such as a search).
    pub fn retry_safe(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Sends no credentials with this request.
    pub fn without_auth(mut self) -> Self {
        self.auth = false;
        self
    }

    fn fail(&mut self, reason: String) {
        if self.url.is_ok() {
            let url = self.url.as_ref().map(display_url).unwrap_or_default();
            self.url = Err(FetchError::Build { url, reason });
        }
    }

    /// Sends the request: paced, retried per the policy. A 2xx is `Ok`; any other final
    /// status is [`FetchError::Status`] (or [`FetchError::RateLimited`] for 429).
    pub async fn send(self) -> Result<Response, FetchError> {
        let prepared = Prepared {
            method: self.method,
            url: self.url?,
            headers: self.headers,
            body: self.body,
            idempotent: self.idempotent,
            auth: self.auth,
        };
        self.fetcher.execute(prepared).await
    }
}

/// A complete upstream response (the body is read, within the size limit).
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    url: Url,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The raw body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Decodes the body as JSON; on failure the error names the JSON path and shows the start
    /// of the body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, FetchError> {
        // Decode without path tracking first (tracking cost 22 % of the decode's instructions:
        // BENCHMARKS.md); only a failure is decoded again, with it, to name the path.
        if let Ok(value) = serde_json::from_slice(&self.body) {
            return Ok(value);
        }
        let mut de = serde_json::Deserializer::from_slice(&self.body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| FetchError::Decode {
            url: display_url(&self.url),
            path: e.path().to_string(),
            message: e.inner().to_string(),
            snippet: snippet(&self.body, 256),
        })
    }
}

#[derive(Debug)]
struct HostPolicy {
    allowed: Vec<String>,
    override_origin: Option<url::Origin>,
}

impl HostPolicy {
    fn new(hosts: &[String], base_override: Option<&Url>) -> Self {
        Self {
            allowed: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            override_origin: base_override.map(Url::origin),
        }
    }

    fn check(&self, url: &Url) -> Result<(), FetchError> {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if self.override_origin.as_ref() == Some(&url.origin()) {
            return Ok(());
        }
        let refuse = |reason: String| {
            Err(FetchError::HostNotAllowed {
                host: host.clone(),
                reason,
            })
        };
        if is_loopback(&host) {
            return refuse(
                "loopback hosts are allowed only through a base-URL override (tests, demo)".into(),
            );
        }
        if url.scheme() != "https" {
            return refuse(format!("only https is allowed, not {}", url.scheme()));
        }
        if !self.allowed.contains(&host) {
            return refuse(format!(
                "not among the manifest's hosts [{}]",
                self.allowed.join(", ")
            ));
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(hosts: &[&str], base: Option<&str>) -> Fetcher {
        let mut config = FetchConfig::new(
            NonZeroU32::new(60).expect("nz"),
            hosts.iter().map(|h| (*h).to_owned()).collect(),
        );
        config.base_url_override = base.map(|b| Url::parse(b).expect("url"));
        Fetcher::new(config, Clock::system()).expect("fetcher")
    }

    #[test]
    fn hosts_are_allow_listed() {
        let f = fetcher(&["api.stripe.com"], None);
        let ok = Url::parse("https://api.stripe.com/v1/invoices").expect("url");
        assert!(f.inner.hosts.check(&ok).is_ok());
        for bad in [
            "https://evil.example.com/x",
            "http://api.stripe.com/v1",
            "http://127.0.0.1:8080/v1",
            "https://localhost/v1",
            "http://[::1]:9/x",
        ] {
            let url = Url::parse(bad).expect("url");
            assert!(
                matches!(
                    f.inner.hosts.check(&url),
                    Err(FetchError::HostNotAllowed { .. })
                ),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn override_allows_exactly_its_origin() {
        let f = fetcher(&["api.stripe.com"], Some("http://127.0.0.1:4010/stripe"));
        let url = f.resolve("/v1/invoices").expect("resolve");
        assert_eq!(url.as_str(), "http://127.0.0.1:4010/stripe/v1/invoices");
        assert!(f.inner.hosts.check(&url).is_ok());
        let other_port = Url::parse("http://127.0.0.1:4011/x").expect("url");
        assert!(f.inner.hosts.check(&other_port).is_err());
    }

    #[test]
    fn relative_paths_must_be_rooted() {
        let f = fetcher(&["api.stripe.com"], None);
        assert!(matches!(
            f.resolve("v1/x"),
            Err(FetchError::InvalidUrl { .. })
        ));
        assert_eq!(
            f.resolve("/v1/x").expect("ok").as_str(),
            "https://api.stripe.com/v1/x"
        );
    }

    #[test]
    fn urls_in_errors_hide_the_query() {
        let url = Url::parse("https://api.example.com/v1/x?api_key=fake123&a=1").expect("url");
        assert_eq!(display_url(&url), "https://api.example.com/v1/x?…");
    }
}
