//! A fake "items" upstream on loopback: a Stripe-shaped list (`starting_after`, `has_more`)
//! and a HubSpot-shaped changes feed (`since`, `after`, `paging.next.after`), with scripted
//! faults (429 with `Retry-After`, 5xx, a hang at request *k*), optional enforcement of a
//! requests-per-minute limit, and a request log on tokio's clock (virtual in paused tests).
//!
//! Items are `{"id": "it_0000042", "object": "item", "updated": <unix seconds>, "amount": n,
//! "note": "…"}`, listed in ascending id order; the changes feed orders by (`updated`, `id`).
//! Several items share each `updated` second, so window boundaries have ties.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use url::Url;

/// A scripted answer for one request, consumed in order before normal answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer 429 with this `Retry-After` value (or none).
    TooManyRequests(Option<String>),
    /// Answer this status with an error body.
    Status(u16),
}

/// One request the fake served (or refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// When it arrived, on tokio's clock, since the fake started.
    pub at: Duration,
    /// The path.
    pub path: String,
    /// The raw query.
    pub query: String,
    /// The status answered.
    pub status: u16,
}

#[derive(Debug)]
struct Item {
    id: String,
    updated: i64,
    body: Value,
}

#[derive(Debug)]
struct Inner {
    items: Vec<Item>,
    faults: VecDeque<Fault>,
    log: Vec<LoggedRequest>,
    rpm_limit: Option<u32>,
    hang_at: Option<usize>,
    fault_at: std::collections::HashMap<usize, Fault>,
    served: usize,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    started: tokio::time::Instant,
    hung: Notify,
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct ItemsUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ItemsUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The base `updated` time of generated items (2026-01-01T00:00:00Z).
pub const BASE_UPDATED: i64 = 1_767_225_600;

/// Builds the JSON of item `n` (1-based) updated at `updated`, padded to about `pad` bytes.
pub fn item_json(n: u64, updated: i64, pad: usize) -> Value {
    json!({
        "id": format!("it_{n:07}"),
        "object": "item",
        "updated": updated,
        "amount": n * 100,
        "currency": "eur",
        "note": "x".repeat(pad),
    })
}

impl ItemsUpstream {
    /// Starts a fake with `count` items; items share an `updated` second in groups of
    /// `ties` (≥ 1); each item's JSON is padded with `pad` bytes.
    pub async fn start(count: u64, ties: u64, pad: usize) -> std::io::Result<Self> {
        let ties = ties.max(1);
        let items = (1..=count)
            .map(|n| {
                let updated = BASE_UPDATED + i64::try_from((n - 1) / ties).unwrap_or(i64::MAX);
                let body = item_json(n, updated, pad);
                Item {
                    id: format!("it_{n:07}"),
                    updated,
                    body,
                }
            })
            .collect();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                items,
                faults: VecDeque::new(),
                log: Vec::new(),
                rpm_limit: None,
                hang_at: None,
                fault_at: std::collections::HashMap::new(),
                served: 0,
            }),
            started: tokio::time::Instant::now(),
            hung: Notify::new(),
        });
        let app = Router::new()
            .route("/v1/items", get(list))
            .route("/v1/items/changes", get(changes))
            .fallback(unexpected)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> Url {
        #[allow(clippy::unwrap_used)] // A socket address always forms a valid URL.
        Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues scripted faults, answered to the next requests in order.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    /// Answers the `k`-th request (1-based) with `fault`.
    pub fn fault_at_request(&self, k: usize, fault: Fault) {
        self.lock().fault_at.insert(k, fault);
    }

    /// Answers 429 (`Retry-After: 60`) whenever more than `rpm` requests arrived in the
    /// trailing 60 seconds.
    pub fn enforce_rpm(&self, rpm: u32) {
        self.lock().rpm_limit = Some(rpm);
    }

    /// The `k`-th request (1-based) never gets an answer; [`ItemsUpstream::hung`] resolves
    /// when it arrives. Simulates a process killed mid-sync.
    pub fn hang_at_request(&self, k: usize) {
        self.lock().hang_at = Some(k);
    }

    /// Resolves when the request set by [`ItemsUpstream::hang_at_request`] has arrived.
    pub async fn hung(&self) {
        self.shared.hung.notified().await;
    }

    /// Appends `count` new items, updated at `updated`.
    pub fn append(&self, count: u64, updated: i64, pad: usize) {
        let mut inner = self.lock();
        let start = inner.items.len() as u64 + 1;
        for n in start..start + count {
            inner.items.push(Item {
                id: format!("it_{n:07}"),
                updated,
                body: item_json(n, updated, pad),
            });
        }
    }

    /// Changes item `n` (1-based): a new amount, updated at `updated`.
    pub fn touch(&self, n: usize, updated: i64) {
        let mut inner = self.lock();
        if let Some(item) = inner.items.get_mut(n.saturating_sub(1)) {
            item.updated = updated;
            item.body["updated"] = json!(updated);
            item.body["amount"] = json!(item.body["amount"].as_u64().unwrap_or(0) + 1);
        }
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decides the fate of one request: a scripted fault, a rate-limit 429, a hang, or `None` to
/// answer normally.
async fn gate(shared: &Shared, path: &str, query: &str) -> Option<Response> {
    let at = shared.started.elapsed();
    let (fault, hang) = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.served += 1;
        let hang = inner.hang_at == Some(inner.served);
        let served = inner.served;
        let mut fault = inner
            .fault_at
            .remove(&served)
            .or_else(|| inner.faults.pop_front());
        if fault.is_none()
            && let Some(limit) = inner.rpm_limit
        {
            let window_start = at.saturating_sub(Duration::from_secs(60));
            let recent = inner
                .log
                .iter()
                .filter(|r| r.at > window_start && r.status != 429)
                .count();
            if recent >= limit as usize {
                fault = Some(Fault::TooManyRequests(Some("60".into())));
            }
        }
        let status = match &fault {
            Some(Fault::TooManyRequests(_)) => 429,
            Some(Fault::Status(s)) => *s,
            None => 200,
        };
        if !hang {
            inner.log.push(LoggedRequest {
                at,
                path: path.to_owned(),
                query: query.to_owned(),
                status,
            });
        }
        (fault, hang)
    };
    if hang {
        shared.hung.notify_one();
        std::future::pending::<()>().await;
    }
    match fault {
        Some(Fault::TooManyRequests(retry_after)) => {
            let mut headers = HeaderMap::new();
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert("retry-after", value);
            }
            let body = json!({"error": {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests"}});
            Some((StatusCode::TOO_MANY_REQUESTS, headers, Json(body)).into_response())
        }
        Some(Fault::Status(status)) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body =
                json!({"error": {"type": "api_error", "message": format!("injected {status}")}});
            Some((code, Json(body)).into_response())
        }
        None => None,
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<usize>,
    starting_after: Option<String>,
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<ListParams>,
    uri: axum::http::Uri,
) -> Response {
    if let Some(early) = gate(&shared, uri.path(), uri.query().unwrap_or("")).await {
        return early;
    }
    let limit = params.limit.unwrap_or(10).clamp(1, 100);
    let inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let start = match &params.starting_after {
        Some(after) => match inner
            .items
            .binary_search_by(|item| item.id.as_str().cmp(after))
        {
            Ok(i) => i + 1,
            Err(_) => {
                let body = json!({"error": {"type": "invalid_request_error", "message": format!("No such item: '{after}'"), "param": "starting_after"}});
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
        },
        None => 0,
    };
    let end = (start + limit).min(inner.items.len());
    let data: Vec<&Value> = inner.items[start..end].iter().map(|i| &i.body).collect();
    Json(json!({
        "object": "list",
        "url": "/v1/items",
        "has_more": end < inner.items.len(),
        "data": data,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct ChangesParams {
    since: Option<i64>,
    limit: Option<usize>,
    after: Option<String>,
}

async fn changes(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<ChangesParams>,
    uri: axum::http::Uri,
) -> Response {
    if let Some(early) = gate(&shared, uri.path(), uri.query().unwrap_or("")).await {
        return early;
    }
    let limit = params.limit.unwrap_or(10).clamp(1, 200);
    let offset = match params.after.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => {
            let body = json!({"status": "error", "message": "after must be an integer", "category": "VALIDATION_ERROR"});
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let since = params.since.unwrap_or(i64::MIN);
    let mut matching: Vec<&Item> = inner.items.iter().filter(|i| i.updated >= since).collect();
    matching.sort_by(|a, b| (a.updated, &a.id).cmp(&(b.updated, &b.id)));
    let end = (offset + limit).min(matching.len());
    let results: Vec<&Value> = matching
        .get(offset..end)
        .unwrap_or_default()
        .iter()
        .map(|i| &i.body)
        .collect();
    let mut body = json!({"total": matching.len(), "results": results});
    if end < matching.len() {
        body["paging"] = json!({"next": {"after": end.to_string()}});
    }
    Json(body).into_response()
}

async fn unexpected(uri: axum::http::Uri) -> Response {
    let body = json!({"error": {"type": "invalid_request_error", "message": format!("Unrecognized request URL ({uri}) — the fake does not serve it")}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
