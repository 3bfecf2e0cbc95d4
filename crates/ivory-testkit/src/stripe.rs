//! A faithful fake of the parts of Stripe's API a revenue sync uses (upstreams.md §1), on
//! loopback:
//!
//! - `GET /v1/invoices` and `GET /v1/events`: newest first (`created` desc, then id desc),
//!   `limit` 1–100 (default 10), `starting_after` / `ending_before` (exclusive; both → 400),
//!   `{object: "list", url, has_more, data}`; events filtered by `type` (with `*` wildcards)
//!   or `types[]`, and **kept 30 days only**: an `ending_before` naming an event that is gone is
//!   a 404 `resource_missing`, like an unknown id.
//! - Bearer authentication with the tenant's key (401 otherwise, Stripe's error body).
//! - Invoice objects in the basil+ shape (`amount_due`, `amount_paid`, `amount_remaining`,
//!   `status`, `status_transitions`, `period_start/_end`, no `paid`).
//! - Scripted faults (429 with `Retry-After`, 5xx), a hang at request *k*, a request log.
//! - Test controls that change invoices and emit the matching events (`invoice.created`,
//!   `invoice.updated`, `invoice.paid`, `invoice.voided`, `invoice.deleted`,
//!   `invoice.payment_failed`), and a clock that can be moved forward (retention).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::Notify;
use url::Url;

use crate::items::{Fault, LoggedRequest};

/// The fake account's secret key (an obviously fake test value).
pub const TEST_API_KEY: &str = "sk_test_ivory_fake_key_0000000000";
/// Events are listed for 30 days.
pub const EVENT_RETENTION_SECONDS: i64 = 30 * 24 * 3600;
/// The fake's clock starts here (2026-03-01T00:00:00Z).
pub const START: i64 = 1_772_323_200;

#[derive(Debug, Clone)]
struct Event {
    id: String,
    created: i64,
    kind: String,
    object: Value,
}

#[derive(Debug)]
struct Inner {
    api_key: String,
    now: i64,
    invoices: Vec<Value>,
    events: Vec<Event>,
    next_invoice: u64,
    next_event: u64,
    faults: VecDeque<Fault>,
    log: Vec<LoggedRequest>,
    hang_at: Option<usize>,
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
pub struct FakeStripe {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn invoice(n: u64, created: i64) -> Value {
    let amount = 1000 + (n % 97) * 250;
    json!({
        "id": format!("in_{n:08}"),
        "object": "invoice",
        "customer": format!("cus_{:06}", n % 311),
        "customer_email": format!("billing+{}@example.com", n % 311),
        "number": format!("IVRY-{n:06}"),
        "status": "open",
        "currency": "eur",
        "amount_due": amount,
        "amount_paid": 0,
        "amount_remaining": amount,
        "subtotal": amount,
        "total": amount,
        "created": created,
        "due_date": created + 30 * 86_400,
        "period_start": created - 30 * 86_400,
        "period_end": created,
        "attempt_count": 0,
        "livemode": false,
        "collection_method": "send_invoice",
        "status_transitions": {"finalized_at": created, "paid_at": null, "voided_at": null, "marked_uncollectible_at": null},
        "metadata": {}
    })
}

impl FakeStripe {
    /// Starts a fake account holding `invoices` open invoices created one minute apart,
    /// ending at the fake's start time.
    pub async fn start(invoices: u64) -> std::io::Result<Self> {
        Self::start_at(invoices, START).await
    }

    /// Like [`FakeStripe::start`], with the fake's clock at `now` (Unix seconds).
    pub async fn start_at(invoices: u64, now: i64) -> std::io::Result<Self> {
        Self::start_with_key(invoices, now, TEST_API_KEY).await
    }

    /// Like [`FakeStripe::start_at`], accepting `api_key` as the account's key (certification
    /// runs with a canary key).
    pub async fn start_with_key(invoices: u64, now: i64, api_key: &str) -> std::io::Result<Self> {
        let first = now - i64::try_from(invoices).unwrap_or(0) * 60;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                api_key: api_key.to_owned(),
                now,
                invoices: (1..=invoices)
                    .map(|n| invoice(n, first + i64::try_from(n).unwrap_or(0) * 60))
                    .collect(),
                events: Vec::new(),
                next_invoice: invoices + 1,
                next_event: 1,
                faults: VecDeque::new(),
                log: Vec::new(),
                hang_at: None,
                served: 0,
            }),
            started: tokio::time::Instant::now(),
            hung: Notify::new(),
        });
        let app = Router::new()
            .route("/v1/invoices", get(list_invoices))
            .route("/v1/events", get(list_events))
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> Url {
        #[allow(clippy::unwrap_used)] // A socket address always forms a valid URL.
        Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    /// Queues scripted faults for the next requests.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    /// Request `k` (1-based) never gets an answer; [`FakeStripe::hung`] resolves when it came.
    pub fn hang_at_request(&self, k: usize) {
        self.lock().hang_at = Some(k);
    }

    /// Resolves once the request set by [`FakeStripe::hang_at_request`] arrived.
    pub async fn hung(&self) {
        self.shared.hung.notified().await;
    }

    /// Every request served.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    /// Moves the fake's clock forward.
    pub fn advance(&self, seconds: i64) {
        self.lock().now += seconds;
    }

    /// The fake's current time (Unix seconds).
    pub fn now(&self) -> i64 {
        self.lock().now
    }

    /// An invoice as the fake holds it.
    pub fn invoice(&self, id: &str) -> Option<Value> {
        self.lock().invoices.iter().find(|i| i["id"] == id).cloned()
    }

    /// All invoices, oldest first.
    pub fn invoices(&self) -> Vec<Value> {
        self.lock().invoices.clone()
    }

    fn emit(inner: &mut Inner, kind: &str, object: Value) -> Value {
        let id = format!("evt_{:08}", inner.next_event);
        inner.next_event += 1;
        inner.now += 1;
        let event = Event {
            id: id.clone(),
            created: inner.now,
            kind: kind.to_owned(),
            object,
        };
        let json = event_json(&event);
        inner.events.push(event);
        json
    }

    /// Creates an invoice (and its `invoice.created` event); returns the invoice.
    pub fn create_invoice(&self) -> Value {
        let mut inner = self.lock();
        inner.now += 60;
        let n = inner.next_invoice;
        inner.next_invoice += 1;
        let created = inner.now;
        let invoice = invoice(n, created);
        inner.invoices.push(invoice.clone());
        Self::emit(&mut inner, "invoice.created", invoice.clone());
        invoice
    }

    fn change(&self, id: &str, kind: &str, apply: impl FnOnce(&mut Value, i64)) -> Option<Value> {
        let mut inner = self.lock();
        let now = inner.now + 1;
        let invoice = inner.invoices.iter_mut().find(|i| i["id"] == id)?;
        apply(invoice, now);
        let snapshot = invoice.clone();
        Some(Self::emit(&mut inner, kind, snapshot))
    }

    /// Marks an invoice paid (`invoice.paid`); returns the event.
    pub fn pay(&self, id: &str) -> Option<Value> {
        self.change(id, "invoice.paid", |inv, now| {
            inv["status"] = json!("paid");
            inv["amount_paid"] = inv["amount_due"].clone();
            inv["amount_remaining"] = json!(0);
            inv["status_transitions"]["paid_at"] = json!(now);
        })
    }

    /// Voids an invoice (`invoice.voided`); returns the event.
    pub fn void(&self, id: &str) -> Option<Value> {
        self.change(id, "invoice.voided", |inv, now| {
            inv["status"] = json!("void");
            inv["status_transitions"]["voided_at"] = json!(now);
        })
    }

    /// A failed payment attempt (`invoice.payment_failed`); returns the event.
    pub fn fail_payment(&self, id: &str) -> Option<Value> {
        self.change(id, "invoice.payment_failed", |inv, _| {
            let attempts = inv["attempt_count"].as_u64().unwrap_or(0) + 1;
            inv["attempt_count"] = json!(attempts);
        })
    }

    /// Deletes an invoice (`invoice.deleted`); returns the event.
    pub fn delete(&self, id: &str) -> Option<Value> {
        let mut inner = self.lock();
        let index = inner.invoices.iter().position(|i| i["id"] == id)?;
        let mut invoice = inner.invoices.remove(index);
        invoice["deleted"] = json!(true);
        Some(Self::emit(&mut inner, "invoice.deleted", invoice))
    }
}

fn event_json(event: &Event) -> Value {
    json!({
        "id": event.id,
        "object": "event",
        "api_version": "2026-06-24.dahlia",
        "created": event.created,
        "type": event.kind,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": event.object}
    })
}

fn stripe_error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> Response {
    let mut error = json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    (status, Json(json!({"error": error}))).into_response()
}

/// Authentication, faults, the request log, the hang.
async fn gate(shared: &Shared, headers: &HeaderMap, path: &str, query: &str) -> Option<Response> {
    let at = shared.started.elapsed();
    let (fault, hang, api_key) = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.served += 1;
        let hang = inner.hang_at == Some(inner.served);
        let fault = inner.faults.pop_front();
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
        (fault, hang, inner.api_key.clone())
    };
    if hang {
        shared.hung.notify_one();
        std::future::pending::<()>().await;
    }
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {api_key}"));
    if !authorized {
        return Some(stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "Invalid API Key provided.",
            None,
        ));
    }
    match fault {
        Some(Fault::TooManyRequests(retry_after)) => {
            let mut response = stripe_error(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_request_error",
                Some("rate_limit"),
                "Request rate limit exceeded.",
                None,
            );
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert("retry-after", value);
            }
            Some(response)
        }
        Some(Fault::Status(status)) => Some(stripe_error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "api_error",
            None,
            "An unexpected error occurred.",
            None,
        )),
        None => None,
    }
}

struct ListParams {
    limit: usize,
    starting_after: Option<String>,
    ending_before: Option<String>,
    pairs: Vec<(String, String)>,
}

fn list_params(query: &str) -> Result<ListParams, Box<Response>> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let limit = match get("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => {
            return Err(Box::new(stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid_integer"),
                "Invalid integer: limit must be between 1 and 100",
                Some("limit"),
            )));
        }
    };
    let (starting_after, ending_before) = (get("starting_after"), get("ending_before"));
    if starting_after.is_some() && ending_before.is_some() {
        return Err(Box::new(stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "You may only specify one of these parameters: ending_before, starting_after.",
            None,
        )));
    }
    Ok(ListParams {
        limit,
        starting_after,
        ending_before,
        pairs,
    })
}

/// Pages `items` (newest first) by the params; `Err` for an unknown cursor id.
fn page(
    items: &[(String, Value)],
    params: &ListParams,
    what: &str,
) -> Result<(Vec<Value>, bool), Box<Response>> {
    let missing = |id: &str, param: &str| {
        Box::new(stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such {what}: '{id}'"),
            Some(param),
        ))
    };
    if let Some(after) = &params.starting_after {
        let Some(i) = items.iter().position(|(id, _)| id == after) else {
            return Err(missing(after, "starting_after"));
        };
        let rest = &items[i + 1..];
        let data: Vec<Value> = rest
            .iter()
            .take(params.limit)
            .map(|(_, v)| v.clone())
            .collect();
        return Ok((data, rest.len() > params.limit));
    }
    if let Some(before) = &params.ending_before {
        let Some(i) = items.iter().position(|(id, _)| id == before) else {
            return Err(missing(before, "ending_before"));
        };
        // The `limit` items just newer than the cursor, still newest first.
        let newer = &items[..i];
        let start = newer.len().saturating_sub(params.limit);
        let data: Vec<Value> = newer[start..].iter().map(|(_, v)| v.clone()).collect();
        return Ok((data, start > 0));
    }
    let data: Vec<Value> = items
        .iter()
        .take(params.limit)
        .map(|(_, v)| v.clone())
        .collect();
    Ok((data, items.len() > params.limit))
}

async fn list_invoices(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if let Some(early) = gate(&shared, &headers, "/v1/invoices", &query).await {
        return early;
    }
    let params = match list_params(&query) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let status = params
        .pairs
        .iter()
        .find(|(k, _)| k == "status")
        .map(|(_, v)| v.clone());
    let inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let mut items: Vec<(String, Value)> = inner
        .invoices
        .iter()
        .filter(|i| status.as_ref().is_none_or(|s| i["status"] == s.as_str()))
        .map(|i| (i["id"].as_str().unwrap_or_default().to_owned(), i.clone()))
        .collect();
    items.sort_by(|a, b| (b.1["created"].as_i64(), &b.0).cmp(&(a.1["created"].as_i64(), &a.0)));
    match page(&items, &params, "invoice") {
        Ok((data, has_more)) => Json(
            json!({"object": "list", "url": "/v1/invoices", "has_more": has_more, "data": data}),
        )
        .into_response(),
        Err(response) => *response,
    }
}

fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

async fn list_events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if let Some(early) = gate(&shared, &headers, "/v1/events", &query).await {
        return early;
    }
    let params = match list_params(&query) {
        Ok(params) => params,
        Err(response) => return *response,
    };
    let single = params
        .pairs
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.clone());
    let many: Vec<String> = params
        .pairs
        .iter()
        .filter(|(k, _)| k == "types[]")
        .map(|(_, v)| v.clone())
        .collect();
    if single.is_some() && !many.is_empty() {
        return stripe_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            "You may only specify one of these parameters: type, types.",
            None,
        );
    }
    let inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let oldest = inner.now - EVENT_RETENTION_SECONDS;
    let mut items: Vec<(String, Value)> = inner
        .events
        .iter()
        .filter(|e| e.created >= oldest)
        .filter(|e| match (&single, many.is_empty()) {
            (Some(pattern), _) => type_matches(pattern, &e.kind),
            (None, false) => many.iter().any(|t| type_matches(t, &e.kind)),
            (None, true) => true,
        })
        .map(|e| (e.id.clone(), event_json(e)))
        .collect();
    items.sort_by(|a, b| (b.1["created"].as_i64(), &b.0).cmp(&(a.1["created"].as_i64(), &a.0)));
    match page(&items, &params, "event") {
        Ok((data, has_more)) => {
            Json(json!({"object": "list", "url": "/v1/events", "has_more": has_more, "data": data}))
                .into_response()
        }
        Err(response) => *response,
    }
}

async fn unexpected(uri: axum::http::Uri) -> Response {
    stripe_error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        &format!("Unrecognized request URL (GET: {}).", uri.path()),
        None,
    )
}
