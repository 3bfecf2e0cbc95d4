//! A fake "items" upstream on loopback: a Stripe-shaped list (`starting_after`, `has_more`)
//! and a HubSpot-shaped changes feed (`since`, `after`, `paging.next.after`), with scripted
//! faults (429 with `Retry-After`, 5xx, a hang at request *k*), optional enforcement of a
//! requests-per-minute limit, and a request log on tokio's clock (virtual in paused tests).
//!
//! Items are `{"id": "it_0000042", "object": "item", "updated": <unix seconds>, "amount": n,
//! "note": "…"}`, listed in ascending id order; the changes feed orders by (`updated`, `id`).
//! Several items share each `updated` second, so window boundaries have ties.
//!
//! [`ItemsUpstream::start`] keeps every item in memory; [`ItemsUpstream::start_generated`]
//! computes each item from its index when a page is served and writes the page's JSON directly,
//! so a fake of millions of items costs neither memory nor much CPU (the benchmarks use it, so
//! that the fake does not dominate what they measure).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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
    /// Set in generated mode: `items` stays empty and items are computed from their index.
    generated: Option<Generated>,
}

/// The items of a generated fake: item `n` (1-based, `n <= count`) is
/// `item_json(n, BASE_UPDATED + (n - 1) / ties, pad)`, so the id order and the
/// (`updated`, `id`) order coincide.
#[derive(Debug)]
struct Generated {
    count: u64,
    ties: u64,
    note: String,
}

impl Generated {
    fn updated(&self, n: u64) -> i64 {
        BASE_UPDATED + i64::try_from((n - 1) / self.ties).unwrap_or(i64::MAX)
    }

    /// The 1-based index of the item with this id, if it exists.
    fn index_of(&self, id: &str) -> Option<u64> {
        let n: u64 = id.strip_prefix("it_")?.parse().ok()?;
        (n >= 1 && n <= self.count && format!("it_{n:07}") == id).then_some(n)
    }

    /// Appends item `n`'s JSON: the same object as [`item_json`], keys in sorted order.
    fn write_item(&self, out: &mut String, n: u64) {
        let _ = write!(
            out,
            r#"{{"amount":{},"currency":"eur","id":"it_{n:07}","note":"{}","object":"item","updated":{}}}"#,
            n * 100,
            self.note,
            self.updated(n),
        );
    }

    /// Appends the JSON array of items `first..=last` (1-based; empty when `first > last`).
    fn write_items(&self, out: &mut String, first: u64, last: u64) {
        out.push('[');
        for n in first..=last {
            if n > first {
                out.push(',');
            }
            self.write_item(out, n);
        }
        out.push(']');
    }

    fn page_capacity(&self, items: u64) -> usize {
        usize::try_from(items).unwrap_or(0) * (self.note.len() + 110) + 128
    }
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    started: tokio::time::Instant,
    /// The system time when `started` was taken.
    started_wall: std::time::SystemTime,
    hung: Notify,
    /// The W3C `traceparent` header of every request that carried one, in arrival order.
    traceparents: Mutex<Vec<String>>,
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
        Self::serve(items, None).await
    }

    /// Starts a fake serving the same `count` items as [`ItemsUpstream::start`] would, but
    /// computed from their index when a page is served instead of stored: memory stays flat
    /// whatever `count`, and a page's JSON is written directly (no `Value` per item). Faults,
    /// hangs, the request log and [`ItemsUpstream::enforce_rpm`] work as in the stored mode;
    /// [`ItemsUpstream::append`] and [`ItemsUpstream::touch`] are not supported (they log a
    /// warning and change nothing).
    pub async fn start_generated(count: u64, ties: u64, pad: usize) -> std::io::Result<Self> {
        let generated = Generated {
            count,
            ties: ties.max(1),
            note: "x".repeat(pad),
        };
        Self::serve(Vec::new(), Some(generated)).await
    }

    async fn serve(items: Vec<Item>, generated: Option<Generated>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                items,
                faults: VecDeque::new(),
                log: Vec::new(),
                rpm_limit: None,
                hang_at: None,
                fault_at: std::collections::HashMap::new(),
                served: 0,
                generated,
            }),
            started: tokio::time::Instant::now(),
            started_wall: std::time::SystemTime::now(),
            hung: Notify::new(),
            traceparents: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/items", get(list))
            .route("/v1/items/changes", get(changes))
            .fallback(unexpected)
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                record_traceparent,
            ))
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
        if inner.generated.is_some() {
            tracing::warn!("ItemsUpstream::append is not supported by a generated fake; ignored");
            return;
        }
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
        if inner.generated.is_some() {
            tracing::warn!("ItemsUpstream::touch is not supported by a generated fake; ignored");
            return;
        }
        if let Some(item) = inner.items.get_mut(n.saturating_sub(1)) {
            item.updated = updated;
            item.body["updated"] = json!(updated);
            item.body["amount"] = json!(item.body["amount"].as_u64().unwrap_or(0) + 1);
        }
    }

    /// The `traceparent` headers received, in arrival order.
    pub fn traceparents(&self) -> Vec<String> {
        self.shared
            .traceparents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        let inner = self.lock();
        match &inner.generated {
            Some(generated) => usize::try_from(generated.count).unwrap_or(usize::MAX),
            None => inner.items.len(),
        }
    }

    /// The system time at which the first logged request arrived (meaningful on the real
    /// clock only: under paused tokio time the log's times are virtual).
    pub fn first_request_at(&self) -> Option<std::time::SystemTime> {
        let first = self.lock().log.first().map(|r| r.at)?;
        self.shared.started_wall.checked_add(first)
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Notes the request's `traceparent` (trace-context propagation tests).
async fn record_traceparent(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(value) = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        shared
            .traceparents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(value.to_owned());
    }
    next.run(request).await
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
    if let Some(generated) = &inner.generated {
        return list_generated(generated, limit, params.starting_after.as_deref());
    }
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

fn list_generated(generated: &Generated, limit: usize, starting_after: Option<&str>) -> Response {
    let first = match starting_after {
        Some(after) => match generated.index_of(after) {
            Some(n) => n + 1,
            None => {
                let body = json!({"error": {"type": "invalid_request_error", "message": format!("No such item: '{after}'"), "param": "starting_after"}});
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
        },
        None => 1,
    };
    let last = (first + limit as u64 - 1).min(generated.count);
    let mut body = String::with_capacity(generated.page_capacity(limit as u64));
    body.push_str(r#"{"data":"#);
    generated.write_items(&mut body, first, last);
    let has_more = last < generated.count;
    let _ = write!(
        body,
        r#","has_more":{has_more},"object":"list","url":"/v1/items"}}"#
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn changes_generated(
    generated: &Generated,
    since: Option<i64>,
    limit: usize,
    offset: usize,
) -> Response {
    // Items before `skip` were updated before `since` (updated is non-decreasing in n).
    let skip = match since {
        Some(since) if since > BASE_UPDATED => u64::try_from(since - BASE_UPDATED)
            .unwrap_or(u64::MAX)
            .saturating_mul(generated.ties)
            .min(generated.count),
        _ => 0,
    };
    let total = generated.count - skip;
    let offset = (offset as u64).min(total);
    let end = (offset + limit as u64).min(total);
    let mut body = String::with_capacity(generated.page_capacity(end - offset));
    body.push('{');
    if end < total {
        let _ = write!(body, r#""paging":{{"next":{{"after":"{end}"}}}},"#);
    }
    body.push_str(r#""results":"#);
    generated.write_items(&mut body, skip + offset + 1, skip + end);
    let _ = write!(body, r#","total":{total}}}"#);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
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
    if let Some(generated) = &inner.generated {
        return changes_generated(generated, params.since, limit, offset);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    async fn list_page(fake: &ItemsUpstream, limit: usize, after: Option<&str>) -> Value {
        let query = match after {
            Some(after) => format!("limit={limit}&starting_after={after}"),
            None => format!("limit={limit}"),
        };
        let uri: axum::http::Uri = format!("/v1/items?{query}").parse().expect("uri");
        let params = ListParams {
            limit: Some(limit),
            starting_after: after.map(str::to_owned),
        };
        body_of(list(State(fake.shared.clone()), Query(params), uri).await).await
    }

    async fn changes_page(
        fake: &ItemsUpstream,
        since: Option<i64>,
        limit: usize,
        after: Option<&str>,
    ) -> Value {
        let uri: axum::http::Uri = "/v1/items/changes".parse().expect("uri");
        let params = ChangesParams {
            since,
            limit: Some(limit),
            after: after.map(str::to_owned),
        };
        body_of(changes(State(fake.shared.clone()), Query(params), uri).await).await
    }

    /// The generated mode serves exactly what the stored mode serves.
    #[tokio::test]
    async fn generated_pages_equal_stored_pages() {
        let stored = ItemsUpstream::start(23, 3, 17).await.expect("stored");
        let generated = ItemsUpstream::start_generated(23, 3, 17)
            .await
            .expect("generated");
        assert_eq!(generated.len(), 23);
        for (limit, after) in [
            (10, None),
            (10, Some("it_0000010")),
            (10, Some("it_0000020")),
            (100, Some("it_0000023")),
            (5, Some("it_0000099")),
            (5, Some("it_10")),
        ] {
            assert_eq!(
                list_page(&generated, limit, after).await,
                list_page(&stored, limit, after).await,
                "limit {limit}, after {after:?}"
            );
        }
        for (since, limit, after) in [
            (None, 10, None),
            (Some(BASE_UPDATED + 2), 4, None),
            (Some(BASE_UPDATED + 2), 4, Some("4")),
            (Some(BASE_UPDATED + 2), 4, Some("16")),
            (Some(BASE_UPDATED - 5), 200, None),
            (Some(BASE_UPDATED + 100), 10, None),
            (None, 10, Some("x")),
        ] {
            assert_eq!(
                changes_page(&generated, since, limit, after).await,
                changes_page(&stored, since, limit, after).await,
                "since {since:?}, limit {limit}, after {after:?}"
            );
        }
    }
}
