//! A faithful fake of the parts of HubSpot a contact sync uses (upstreams.md §2), on loopback.
//!
//! **CRM v3 contacts**, behind OAuth bearer tokens (401 `EXPIRED_AUTHENTICATION` for an expired
//! token, `INVALID_AUTHENTICATION` for an unknown one):
//! - `GET /crm/v3/objects/contacts`: the list, by id, `limit` ≤ 100 (default 10), an **opaque**
//!   `after` (base64, like HubSpot's `NTI1Cg%3D%3D`), `properties` (comma list), `archived`
//!   (`true` lists only archived contacts, with `archivedAt`); no `paging` on the last page.
//! - `POST /crm/v3/objects/contacts/search`: `filterGroups` (OR of ANDs; ≤ 5 groups, ≤ 6
//!   filters per group, ≤ 18 in all), every operator of the spec, **one** sort, `limit` ≤ 200
//!   (default 10), an **integer** `after` (an offset), `total`, and a **400 once `after + limit`
//!   passes 10,000 results**. Dates filter as epoch-millisecond strings; `hs_object_id` compares
//!   as a number. Archived contacts never appear, and neither do changes the index has not
//!   caught up with ([`FakeHubSpot::set_index_lag`]). Records with equal sort values come in an
//!   order that is stable but *not* by id (HubSpot does not document one). Search responses
//!   carry no `X-HubSpot-RateLimit-*` headers.
//! - `POST /crm/v3/objects/contacts/batch/update` (200, or 207 with `errors` for unknown or
//!   archived ids; an empty string clears a property) and `/batch/create` (201; a 409
//!   `CONFLICT` "Contact already exists" when an email is taken), ≤ 100 inputs, read-only and
//!   unknown properties refused (400 `VALIDATION_ERROR`).
//! - Property values are strings (or `null`); `createdate`/`lastmodifieddate` are ISO-8601 with
//!   milliseconds, as in HubSpot's responses; `lastmodifieddate` moves on every write.
//!
//! **Rate limits** ([`Limits::HUBSPOT`]): 110 requests per rolling 10 s for everything but
//! search (with `X-HubSpot-RateLimit-Interval-Milliseconds`, `-Max`, `-Remaining`), and 5 per
//! rolling second for search, which is exempt from the 10-second limit. Over a limit: 429 with
//! HubSpot's body (`errorType: RATE_LIMIT`, `policyName`) and **no** `Retry-After` (HubSpot
//! documents none). Refused requests do not count against a limit.
//!
//! **OAuth v3 token endpoint** `POST /oauth/v3/token` (form; `client_id` and `client_secret` in
//! the body, as v3 requires): `refresh_token` grants, snake_case response with `expires_in:
//! 1800`, RFC 6749 errors plus HubSpot's legacy `status`/`message`. The refresh token is
//! returned unchanged (whether HubSpot rotates it is unverified; clients store what comes back).
//!
//! **Test controls**: bulk creation with shared timestamps, upstream edits and archives at a
//! chosen time, index lag, scripted faults (429 with `Retry-After`, 5xx), token expiry or an
//! upstream edit or archive at request *k*, a hang at request *k*, and a request log with JSON bodies. The
//! fake's clock (`lastmodifieddate` of writes through the API) starts at [`START_MS`] and moves
//! one millisecond per API write; tests set it with [`FakeHubSpot::set_now_ms`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Form, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use url::Url;

use crate::items::Fault;

/// The fake app's client id.
pub const CLIENT_ID: &str = "ivory-hubspot-test-client";
/// The fake app's client secret (an obviously fake test value).
pub const CLIENT_SECRET: &str = "hubspot-test-client-secret-not-real";
/// An access token the fake accepts from the start (until expired by a test control).
pub const ACCESS_TOKEN: &str = "hs-test-access-token-not-real";
/// The refresh token that goes with [`ACCESS_TOKEN`].
pub const REFRESH_TOKEN: &str = "hs-test-refresh-token-not-real";
/// The fake's clock starts here: 2026-03-01T00:00:00Z, in epoch milliseconds.
pub const START_MS: i64 = 1_772_323_200_000;
/// Lifetime of access tokens issued by refresh (HubSpot: 30 minutes).
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(1800);
/// Largest search page.
pub const SEARCH_MAX_LIMIT: usize = 200;
/// Largest list page.
pub const LIST_MAX_LIMIT: usize = 100;
/// Most inputs of one batch call.
pub const BATCH_MAX_INPUTS: usize = 100;
/// Results one search query can page through (`after + limit` may not pass it).
pub const SEARCH_RESULT_CAP: usize = 10_000;
/// The contact properties the fake knows (its property schema).
pub const PROPERTIES: &[&str] = &[
    "email",
    "firstname",
    "lastname",
    "phone",
    "company",
    "jobtitle",
    "lifecyclestage",
    "createdate",
    "lastmodifieddate",
    "hs_object_id",
];
/// Properties HubSpot computes; writes to them are refused.
pub const READ_ONLY: &[&str] = &["createdate", "lastmodifieddate", "hs_object_id"];
/// What a contact response carries when no `properties` are asked for.
pub const DEFAULT_PROPERTIES: &[&str] = &[
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
];
const FIRST_ID: u64 = 101;
const OPERATORS: &[&str] = &[
    "LT",
    "LTE",
    "GT",
    "GTE",
    "EQ",
    "NEQ",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
];

/// The fake's rate limits (`None`: not enforced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests per rolling 10 seconds, search excluded (HubSpot public apps: 110).
    pub per_ten_seconds: Option<u32>,
    /// Search requests per rolling second (HubSpot: 5).
    pub search_per_second: Option<u32>,
}

impl Limits {
    /// HubSpot's limits for a public app (upstreams.md 2.5).
    pub const HUBSPOT: Limits = Limits {
        per_ten_seconds: Some(110),
        search_per_second: Some(5),
    };
    /// No limits (large-dataset tests that pace faster than HubSpot would allow).
    pub const OFF: Limits = Limits {
        per_ten_seconds: None,
        search_per_second: None,
    };
}

/// One request the fake received (the token endpoint's included).
#[derive(Debug, Clone, PartialEq)]
pub struct HubSpotRequest {
    /// When it arrived, on tokio's clock, since the fake started.
    pub at: Duration,
    /// `GET` or `POST`.
    pub method: String,
    /// The path.
    pub path: String,
    /// The raw query.
    pub query: String,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// The status answered.
    pub status: u16,
}

impl HubSpotRequest {
    /// A search request.
    pub fn is_search(&self) -> bool {
        self.path.ends_with("/search")
    }
}

#[derive(Debug, Clone)]
enum Scripted {
    ExpireTokens,
    Archive {
        id: u64,
    },
    Edit {
        id: u64,
        properties: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone)]
struct Contact {
    props: BTreeMap<String, String>,
    created_ms: i64,
    updated_ms: i64,
    archived_ms: Option<i64>,
    /// False while the search index has not caught up with the last write.
    indexed: bool,
}

#[derive(Debug)]
struct Inner {
    now_ms: i64,
    contacts: BTreeMap<u64, Contact>,
    next_id: u64,
    limits: Limits,
    general_window: VecDeque<Instant>,
    search_window: VecDeque<Instant>,
    faults: VecDeque<Fault>,
    scripted: HashMap<usize, Vec<Scripted>>,
    hang_at: Option<usize>,
    served: usize,
    log: Vec<HubSpotRequest>,
    /// Access token → expiry (`None`: never).
    access: HashMap<String, Option<Instant>>,
    refresh: HashSet<String>,
    refreshes: u32,
    index_lag: bool,
    counter: u64,
}

impl Inner {
    fn write_stamp(&mut self) -> i64 {
        let at = self.now_ms;
        self.now_ms += 1;
        at
    }

    fn correlation(&mut self) -> String {
        self.counter += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.counter)
    }

    fn apply_edit(&mut self, id: u64, properties: &[(String, String)], at_ms: i64) -> bool {
        let lag = self.index_lag;
        let Some(contact) = self
            .contacts
            .get_mut(&id)
            .filter(|c| c.archived_ms.is_none())
        else {
            return false;
        };
        for (name, value) in properties {
            if value.is_empty() {
                contact.props.remove(name);
            } else {
                contact.props.insert(name.clone(), value.clone());
            }
        }
        contact.updated_ms = at_ms;
        contact.indexed = !lag;
        true
    }

    fn email_owner(&self, email: &str) -> Option<u64> {
        self.contacts
            .iter()
            .find(|(_, c)| {
                c.archived_ms.is_none()
                    && c.props
                        .get("email")
                        .is_some_and(|e| e.eq_ignore_ascii_case(email))
            })
            .map(|(id, _)| *id)
    }
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    started: Instant,
    hung: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeHubSpot {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeHubSpot {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeHubSpot {
    /// Starts an empty portal enforcing `limits`; [`ACCESS_TOKEN`] and [`REFRESH_TOKEN`] are
    /// valid.
    pub async fn start(limits: Limits) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                now_ms: START_MS,
                contacts: BTreeMap::new(),
                next_id: FIRST_ID,
                limits,
                general_window: VecDeque::new(),
                search_window: VecDeque::new(),
                faults: VecDeque::new(),
                scripted: HashMap::new(),
                hang_at: None,
                served: 0,
                log: Vec::new(),
                access: HashMap::from([(ACCESS_TOKEN.to_owned(), None)]),
                refresh: HashSet::from([REFRESH_TOKEN.to_owned()]),
                refreshes: 0,
                index_lag: false,
                counter: 0,
            }),
            started: Instant::now(),
            hung: Notify::new(),
        });
        let app = Router::new()
            .route("/crm/v3/objects/contacts", get(list_contacts))
            .route("/crm/v3/objects/contacts/search", post(search))
            .route("/crm/v3/objects/contacts/batch/update", post(batch_update))
            .route("/crm/v3/objects/contacts/batch/create", post(batch_create))
            .route("/oauth/v3/token", post(token))
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    /// The API base URL (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> Url {
        #[allow(clippy::unwrap_used)] // A socket address always forms a valid URL.
        Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    /// The OAuth v3 token endpoint.
    pub fn token_url(&self) -> Url {
        #[allow(clippy::unwrap_used)] // A socket address and a rooted path always form a URL.
        Url::parse(&format!("http://{}/oauth/v3/token", self.addr)).unwrap()
    }

    /// Changes the enforced limits.
    pub fn set_limits(&self, limits: Limits) {
        self.lock().limits = limits;
    }

    /// The fake's clock, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.lock().now_ms
    }

    /// Sets the fake's clock (the `lastmodifieddate` of the next API write).
    pub fn set_now_ms(&self, ms: i64) {
        self.lock().now_ms = ms;
    }

    /// Creates `count` contacts whose `createdate` and `lastmodifieddate` are all `at_ms`;
    /// returns their ids. Contact `N` gets `email` `contactN@example.com`, `firstname` `FN`,
    /// `lastname` `LN`.
    pub fn create_contacts(&self, count: usize, at_ms: i64) -> Vec<String> {
        let mut inner = self.lock();
        let indexed = !inner.index_lag;
        (0..count)
            .map(|_| {
                let id = inner.next_id;
                inner.next_id += 1;
                let props = BTreeMap::from([
                    ("email".to_owned(), format!("contact{id}@example.com")),
                    ("firstname".to_owned(), format!("F{id}")),
                    ("lastname".to_owned(), format!("L{id}")),
                ]);
                inner.contacts.insert(
                    id,
                    Contact {
                        props,
                        created_ms: at_ms,
                        updated_ms: at_ms,
                        archived_ms: None,
                        indexed,
                    },
                );
                id.to_string()
            })
            .collect()
    }

    /// Creates one contact with these properties at `at_ms`; returns its id.
    pub fn create_contact(&self, properties: &[(&str, &str)], at_ms: i64) -> String {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let indexed = !inner.index_lag;
        inner.contacts.insert(
            id,
            Contact {
                props: properties
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                created_ms: at_ms,
                updated_ms: at_ms,
                archived_ms: None,
                indexed,
            },
        );
        id.to_string()
    }

    /// An upstream edit (as a HubSpot user makes it) at `at_ms`: sets (or, with `""`, clears)
    /// properties and moves `lastmodifieddate`. False for an unknown or archived contact.
    pub fn edit(&self, id: &str, properties: &[(&str, &str)], at_ms: i64) -> bool {
        let Ok(id) = id.parse::<u64>() else {
            return false;
        };
        let properties: Vec<(String, String)> = properties
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.lock().apply_edit(id, &properties, at_ms)
    }

    /// Archives (deletes) a contact at `at_ms`. False for an unknown or archived contact.
    pub fn archive(&self, id: &str, at_ms: i64) -> bool {
        let mut inner = self.lock();
        let Some(contact) = id
            .parse::<u64>()
            .ok()
            .and_then(|id| inner.contacts.get_mut(&id))
            .filter(|c| c.archived_ms.is_none())
        else {
            return false;
        };
        contact.archived_ms = Some(at_ms);
        true
    }

    /// While on, writes (test edits and API writes) stay invisible to search until
    /// [`FakeHubSpot::catch_up_index`]: HubSpot's "may take a few moments" index lag.
    pub fn set_index_lag(&self, on: bool) {
        self.lock().index_lag = on;
    }

    /// The search index catches up with every write.
    pub fn catch_up_index(&self) {
        for contact in self.lock().contacts.values_mut() {
            contact.indexed = true;
        }
    }

    /// A contact as `GET /crm/v3/objects/contacts/{id}` would show it, with every known
    /// property (archived ones included).
    pub fn contact(&self, id: &str) -> Option<Value> {
        let inner = self.lock();
        let id = id.parse::<u64>().ok()?;
        inner
            .contacts
            .get(&id)
            .map(|c| contact_json(id, c, PROPERTIES))
    }

    /// Every live (not archived) contact, by id, with every known property.
    pub fn contacts(&self) -> Vec<Value> {
        self.lock()
            .contacts
            .iter()
            .filter(|(_, c)| c.archived_ms.is_none())
            .map(|(id, c)| contact_json(*id, c, PROPERTIES))
            .collect()
    }

    /// Queues scripted faults for the next API requests (not the token endpoint).
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.lock().faults.extend(faults);
    }

    /// From API request `k` (1-based) on, every access token issued so far is expired.
    pub fn expire_tokens_at_request(&self, k: usize) {
        self.lock()
            .scripted
            .entry(k)
            .or_default()
            .push(Scripted::ExpireTokens);
    }

    /// Just before API request `k` (1-based) is answered, a HubSpot user edits contact `id`
    /// (at the fake's clock).
    pub fn edit_at_request(&self, k: usize, id: &str, properties: &[(&str, &str)]) {
        let Ok(id) = id.parse::<u64>() else {
            return;
        };
        self.lock()
            .scripted
            .entry(k)
            .or_default()
            .push(Scripted::Edit {
                id,
                properties: properties
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            });
    }

    /// Just before API request `k` (1-based) is answered, a HubSpot user archives contact `id`.
    pub fn archive_at_request(&self, k: usize, id: &str) {
        let Ok(id) = id.parse::<u64>() else {
            return;
        };
        self.lock()
            .scripted
            .entry(k)
            .or_default()
            .push(Scripted::Archive { id });
    }

    /// Every access token issued so far expires now.
    pub fn expire_access_tokens(&self) {
        expire_all(&mut self.lock());
    }

    /// API request `k` (1-based) never gets an answer; [`FakeHubSpot::hung`] resolves when it
    /// came.
    pub fn hang_at_request(&self, k: usize) {
        self.lock().hang_at = Some(k);
    }

    /// Resolves once the request set by [`FakeHubSpot::hang_at_request`] arrived.
    pub async fn hung(&self) {
        self.shared.hung.notified().await;
    }

    /// Every request received (hung ones excluded).
    pub fn requests(&self) -> Vec<HubSpotRequest> {
        self.lock().log.clone()
    }

    /// Refresh-token grants served.
    pub fn refreshes(&self) -> u32 {
        self.lock().refreshes
    }
}

fn expire_all(inner: &mut Inner) {
    let past = Instant::now()
        .checked_sub(Duration::from_secs(1))
        .unwrap_or_else(Instant::now);
    for expiry in inner.access.values_mut() {
        *expiry = Some(past);
    }
}

/// HubSpot's ISO-8601 rendering of an epoch-millisecond time (`2026-03-01T00:00:00.000Z`).
pub fn iso(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => String::new(),
    }
}

fn property_value(id: u64, contact: &Contact, name: &str) -> Option<String> {
    match name {
        "hs_object_id" => Some(id.to_string()),
        "createdate" => Some(iso(contact.created_ms)),
        "lastmodifieddate" => Some(iso(contact.updated_ms)),
        other => contact.props.get(other).cloned(),
    }
}

/// The numeric value of a property for comparisons: dates in epoch ms, `hs_object_id`.
fn numeric_value(id: u64, contact: &Contact, name: &str) -> Option<i64> {
    match name {
        "hs_object_id" => i64::try_from(id).ok(),
        "createdate" => Some(contact.created_ms),
        "lastmodifieddate" => Some(contact.updated_ms),
        _ => None,
    }
}

fn is_numeric(name: &str) -> bool {
    matches!(name, "hs_object_id" | "createdate" | "lastmodifieddate")
}

fn contact_json(id: u64, contact: &Contact, properties: &[&str]) -> Value {
    let props: Map<String, Value> = properties
        .iter()
        .map(|name| {
            (
                (*name).to_owned(),
                property_value(id, contact, name).map_or(Value::Null, Value::String),
            )
        })
        .collect();
    let mut json = json!({
        "id": id.to_string(),
        "properties": props,
        "createdAt": iso(contact.created_ms),
        "updatedAt": iso(contact.updated_ms),
        "archived": contact.archived_ms.is_some(),
    });
    if let Some(at) = contact.archived_ms {
        json["archivedAt"] = json!(iso(at));
    }
    json
}

fn error(status: StatusCode, category: &str, message: &str, correlation: &str) -> Response {
    (
        status,
        Json(json!({
            "status": "error",
            "message": message,
            "correlationId": correlation,
            "category": category,
        })),
    )
        .into_response()
}

fn validation(message: &str, correlation: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        message,
        correlation,
    )
}

fn rate_limited(policy: &str, correlation: &str) -> Response {
    let message = match policy {
        "SECONDLY" => "You have reached your secondly limit.",
        _ => "You have reached your ten_secondly_rolling limit.",
    };
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({
            "status": "error",
            "message": message,
            "errorType": "RATE_LIMIT",
            "correlationId": correlation,
            "policyName": policy,
            "requestId": correlation,
        })),
    )
        .into_response()
}

/// What [`gate`] lets through: rate-limit headers to add (non-search requests).
struct Admitted {
    remaining: Option<u32>,
}

/// Scripted actions, the hang, authentication, faults and the rate limits of one API request.
async fn gate(shared: &Shared, headers: &HeaderMap, search: bool) -> Result<Admitted, Response> {
    let hang = {
        let mut inner = shared.lock();
        inner.served += 1;
        let k = inner.served;
        for action in inner.scripted.remove(&k).unwrap_or_default() {
            match action {
                Scripted::ExpireTokens => expire_all(&mut inner),
                Scripted::Archive { id } => {
                    let at = inner.write_stamp();
                    if let Some(contact) = inner.contacts.get_mut(&id) {
                        contact.archived_ms.get_or_insert(at);
                    }
                }
                Scripted::Edit { id, properties } => {
                    let at = inner.write_stamp();
                    inner.apply_edit(id, &properties, at);
                }
            }
        }
        inner.hang_at == Some(k)
    };
    if hang {
        shared.hung.notify_one();
        std::future::pending::<()>().await;
    }
    let mut guard = shared.lock();
    let inner = &mut *guard;
    let correlation = inner.correlation();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| inner.access.get(t)) {
        None => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
                &correlation,
            ));
        }
        Some(Some(expiry)) if Instant::now() >= *expiry => {
            let ago = Instant::now().saturating_duration_since(*expiry).as_secs();
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "EXPIRED_AUTHENTICATION",
                &format!("The OAuth token used to make this call expired {ago} second(s) ago."),
                &correlation,
            ));
        }
        Some(_) => {}
    }
    match inner.faults.pop_front() {
        Some(Fault::TooManyRequests(retry_after)) => {
            let mut response = rate_limited("TEN_SECONDLY_ROLLING", &correlation);
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert("retry-after", value);
            }
            return Err(response);
        }
        Some(Fault::Status(status)) => {
            return Err(error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "INTERNAL_ERROR",
                "Internal error.",
                &correlation,
            ));
        }
        None => {}
    }
    let now = Instant::now();
    let (window, max, span, policy) = if search {
        (
            &mut inner.search_window,
            inner.limits.search_per_second,
            Duration::from_secs(1),
            "SECONDLY",
        )
    } else {
        (
            &mut inner.general_window,
            inner.limits.per_ten_seconds,
            Duration::from_secs(10),
            "TEN_SECONDLY_ROLLING",
        )
    };
    while window
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= span)
    {
        window.pop_front();
    }
    let Some(max) = max else {
        return Ok(Admitted { remaining: None });
    };
    let used = u32::try_from(window.len()).unwrap_or(u32::MAX);
    if used >= max {
        return Err(rate_limited(policy, &correlation));
    }
    window.push_back(now);
    Ok(Admitted {
        remaining: (!search).then(|| max - used - 1),
    })
}

fn log(shared: &Shared, method: &str, uri: &Uri, body: Option<Value>, status: StatusCode) {
    let at = shared.started.elapsed();
    shared.lock().log.push(HubSpotRequest {
        at,
        method: method.to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        body,
        status: status.as_u16(),
    });
}

fn with_limit_headers(mut response: Response, admitted: &Admitted) -> Response {
    if let Some(remaining) = admitted.remaining {
        let headers = response.headers_mut();
        headers.insert(
            "x-hubspot-ratelimit-interval-milliseconds",
            HeaderValue::from_static("10000"),
        );
        headers.insert("x-hubspot-ratelimit-max", HeaderValue::from_static("110"));
        if let Ok(value) = HeaderValue::from_str(&remaining.to_string()) {
            headers.insert("x-hubspot-ratelimit-remaining", value);
        }
    }
    response
}

/// Runs `handle` behind the gate and logs the exchange.
async fn api(
    shared: &Shared,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Option<Value>,
    search: bool,
    handle: impl FnOnce(&mut Inner, &str) -> Response,
) -> Response {
    let response = match gate(shared, headers, search).await {
        Err(refused) => refused,
        Ok(admitted) => {
            let response = {
                let mut inner = shared.lock();
                let correlation = inner.correlation();
                handle(&mut inner, &correlation)
            };
            with_limit_headers(response, &admitted)
        }
    };
    log(shared, method, uri, body, response.status());
    response
}

fn parse_json(body: &Bytes) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

// ---------------------------------------------------------------------------------------------
// List

async fn list_contacts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    api(&shared, "GET", &uri, &headers, None, false, |inner, c| {
        list_page(inner, &query, c)
    })
    .await
}

fn list_page(inner: &Inner, query: &str, correlation: &str) -> Response {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit = match get("limit").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(l)) if (1..=LIST_MAX_LIMIT).contains(&l) => l,
        Some(_) => {
            return validation(
                &format!("limit must be an integer between 1 and {LIST_MAX_LIMIT}"),
                correlation,
            );
        }
    };
    let archived = match get("archived") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return validation(
                &format!("archived must be true or false, not {other:?}"),
                correlation,
            );
        }
    };
    let start = match get("after") {
        None => FIRST_ID,
        Some(token) => match STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            Some(id) => id,
            None => return validation("after is not a valid paging token", correlation),
        },
    };
    let properties = match properties_param(get("properties")) {
        Ok(p) => p,
        Err(name) => {
            return validation(&format!("Property \"{name}\" does not exist"), correlation);
        }
    };
    let names: Vec<&str> = properties.iter().map(String::as_str).collect();
    let mut page = inner
        .contacts
        .range(start..)
        .filter(|(_, c)| c.archived_ms.is_some() == archived)
        .take(limit + 1);
    let results: Vec<Value> = page
        .by_ref()
        .take(limit)
        .map(|(id, c)| contact_json(*id, c, &names))
        .collect();
    let mut body = json!({"results": results});
    if let Some((next, _)) = page.next() {
        let after = STANDARD.encode(format!("{next}\n"));
        body["paging"] = json!({"next": {
            "after": after,
            "link": format!("?after={after}"),
        }});
    }
    Json(body).into_response()
}

/// The `properties` parameter (comma list) checked against the schema; the defaults without.
fn properties_param(param: Option<&str>) -> Result<Vec<String>, String> {
    match param {
        None => Ok(DEFAULT_PROPERTIES.iter().map(|p| (*p).to_owned()).collect()),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                if PROPERTIES.contains(&p) {
                    Ok(p.to_owned())
                } else {
                    Err(p.to_owned())
                }
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Search

#[derive(Debug)]
struct Filter {
    property: String,
    operator: String,
    value: Option<String>,
    high: Option<String>,
    values: Vec<String>,
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_filter(value: &Value) -> Result<Filter, String> {
    let property = value
        .get("propertyName")
        .and_then(Value::as_str)
        .ok_or("a filter needs a propertyName")?;
    if !PROPERTIES.contains(&property) {
        return Err(format!("Property \"{property}\" does not exist"));
    }
    let operator = value
        .get("operator")
        .and_then(Value::as_str)
        .ok_or("a filter needs an operator")?;
    if !OPERATORS.contains(&operator) {
        return Err(format!("Unknown operator {operator:?}"));
    }
    let filter = Filter {
        property: property.to_owned(),
        operator: operator.to_owned(),
        value: value.get("value").and_then(scalar),
        high: value.get("highValue").and_then(scalar),
        values: value
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(scalar).collect())
            .unwrap_or_default(),
    };
    let needs_value = !matches!(
        operator,
        "IN" | "NOT_IN" | "HAS_PROPERTY" | "NOT_HAS_PROPERTY"
    );
    if needs_value && filter.value.is_none() {
        return Err(format!("operator {operator} needs a value"));
    }
    if operator == "BETWEEN" && filter.high.is_none() {
        return Err("operator BETWEEN needs a highValue".into());
    }
    if matches!(operator, "IN" | "NOT_IN") && filter.values.is_empty() {
        return Err(format!("operator {operator} needs values"));
    }
    if is_numeric(property) {
        for v in filter
            .value
            .iter()
            .chain(filter.high.iter())
            .chain(filter.values.iter())
        {
            if v.parse::<i64>().is_err() {
                return Err(format!(
                    "{property} values must be integers (dates: epoch milliseconds), not {v:?}"
                ));
            }
        }
    }
    Ok(filter)
}

fn matches_filter(id: u64, contact: &Contact, filter: &Filter) -> bool {
    let op = filter.operator.as_str();
    if is_numeric(&filter.property) {
        let Some(actual) = numeric_value(id, contact, &filter.property) else {
            return op == "NOT_HAS_PROPERTY";
        };
        let num = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<i64>().ok());
        let (value, high) = (num(&filter.value), num(&filter.high));
        let values: Vec<i64> = filter
            .values
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect();
        return match op {
            "EQ" => value == Some(actual),
            "NEQ" => value != Some(actual),
            "LT" => value.is_some_and(|v| actual < v),
            "LTE" => value.is_some_and(|v| actual <= v),
            "GT" => value.is_some_and(|v| actual > v),
            "GTE" => value.is_some_and(|v| actual >= v),
            "BETWEEN" => value.is_some_and(|v| actual >= v) && high.is_some_and(|h| actual <= h),
            "IN" => values.contains(&actual),
            "NOT_IN" => !values.contains(&actual),
            "HAS_PROPERTY" => true,
            "NOT_HAS_PROPERTY" => false,
            "CONTAINS_TOKEN" => filter.value.as_deref() == Some(actual.to_string().as_str()),
            _ => filter.value.as_deref() != Some(actual.to_string().as_str()),
        };
    }
    let actual = property_value(id, contact, &filter.property).map(|v| v.to_lowercase());
    let lower = |v: &Option<String>| v.as_ref().map(|v| v.to_lowercase());
    let (value, high) = (lower(&filter.value), lower(&filter.high));
    let Some(actual) = actual else {
        return matches!(
            op,
            "NEQ" | "NOT_IN" | "NOT_HAS_PROPERTY" | "NOT_CONTAINS_TOKEN"
        );
    };
    let values: Vec<String> = filter.values.iter().map(|v| v.to_lowercase()).collect();
    match op {
        "EQ" => value.as_deref() == Some(actual.as_str()),
        "NEQ" => value.as_deref() != Some(actual.as_str()),
        "LT" => value.is_some_and(|v| actual < v),
        "LTE" => value.is_some_and(|v| actual <= v),
        "GT" => value.is_some_and(|v| actual > v),
        "GTE" => value.is_some_and(|v| actual >= v),
        "BETWEEN" => value.is_some_and(|v| actual >= v) && high.is_some_and(|h| actual <= h),
        "IN" => values.contains(&actual),
        "NOT_IN" => !values.contains(&actual),
        "HAS_PROPERTY" => true,
        "NOT_HAS_PROPERTY" => false,
        "CONTAINS_TOKEN" => value.is_some_and(|v| actual.contains(v.trim_matches('*'))),
        _ => !value.is_some_and(|v| actual.contains(v.trim_matches('*'))),
    }
}

/// A stable order for records with equal sort values that is not the id order.
fn scramble(id: u64) -> u64 {
    let mut hasher = DefaultHasher::new();
    (id, 0x5eed_u64).hash(&mut hasher);
    hasher.finish()
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SortValue {
    Missing,
    Number(i64),
    Text(String),
}

async fn search(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let json = parse_json(&body);
    let logged = json.clone();
    api(
        &shared,
        "POST",
        &uri,
        &headers,
        logged,
        true,
        |inner, c| match json {
            Some(body) => search_page(inner, &body, c),
            None => validation("Invalid input JSON", c),
        },
    )
    .await
}

fn search_page(inner: &Inner, body: &Value, correlation: &str) -> Response {
    let Some(object) = body.as_object() else {
        return validation("Invalid input JSON: expected an object", correlation);
    };
    let groups: Vec<Value> = object
        .get("filterGroups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if groups.len() > 5 {
        return validation("Too many filter groups (at most 5)", correlation);
    }
    let mut parsed: Vec<Vec<Filter>> = Vec::with_capacity(groups.len());
    let mut total_filters = 0;
    for group in &groups {
        let filters = group
            .get("filters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if filters.len() > 6 {
            return validation("Too many filters in a group (at most 6)", correlation);
        }
        total_filters += filters.len();
        match filters
            .iter()
            .map(parse_filter)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(filters) => parsed.push(filters),
            Err(message) => return validation(&message, correlation),
        }
    }
    if total_filters > 18 {
        return validation("Too many filters (at most 18 in all)", correlation);
    }
    let sorts = object
        .get("sorts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if sorts.len() > 1 {
        return validation("Only one sort is allowed", correlation);
    }
    let sort = match sorts.first() {
        None => None,
        Some(Value::String(name)) => Some((name.clone(), true)),
        Some(sort) => {
            let name = sort.get("propertyName").and_then(Value::as_str);
            let direction = sort
                .get("direction")
                .and_then(Value::as_str)
                .unwrap_or("ASCENDING");
            match (name, direction) {
                (Some(name), "ASCENDING") => Some((name.to_owned(), true)),
                (Some(name), "DESCENDING") => Some((name.to_owned(), false)),
                _ => return validation("A sort needs a propertyName and a direction", correlation),
            }
        }
    };
    if let Some((name, _)) = &sort
        && !PROPERTIES.contains(&name.as_str())
    {
        return validation(&format!("Property \"{name}\" does not exist"), correlation);
    }
    let limit = match object
        .get("limit")
        .map(|v| scalar(v).and_then(|s| s.parse::<usize>().ok()))
    {
        None => 10,
        Some(Some(l)) if (1..=SEARCH_MAX_LIMIT).contains(&l) => l,
        Some(_) => {
            return validation(
                &format!("limit must be an integer between 1 and {SEARCH_MAX_LIMIT}"),
                correlation,
            );
        }
    };
    let after = match object.get("after").filter(|v| !v.is_null()) {
        None => 0,
        Some(value) => match scalar(value).and_then(|s| s.parse::<usize>().ok()) {
            Some(after) => after,
            None => {
                return validation("after must be formatted as an integer", correlation);
            }
        },
    };
    if after + limit > SEARCH_RESULT_CAP {
        return validation(
            &format!(
                "Paging through more than {SEARCH_RESULT_CAP} results of one search is not supported (after {after} + limit {limit})"
            ),
            correlation,
        );
    }
    let query = object
        .get("query")
        .and_then(Value::as_str)
        .map(str::to_lowercase);
    if query.as_ref().is_some_and(|q| q.len() > 3000) {
        return validation("query is longer than 3000 characters", correlation);
    }
    let properties: Vec<String> = match object.get("properties").and_then(Value::as_array) {
        None => DEFAULT_PROPERTIES.iter().map(|p| (*p).to_owned()).collect(),
        Some(list) => {
            let mut out = Vec::new();
            for p in list.iter().filter_map(Value::as_str) {
                if !PROPERTIES.contains(&p) {
                    return validation(&format!("Property \"{p}\" does not exist"), correlation);
                }
                out.push(p.to_owned());
            }
            out
        }
    };

    let mut matched: Vec<(SortValue, u64, u64)> = inner
        .contacts
        .iter()
        .filter(|(_, c)| c.archived_ms.is_none() && c.indexed)
        .filter(|(id, c)| {
            parsed.is_empty()
                || parsed
                    .iter()
                    .any(|group| group.iter().all(|f| matches_filter(**id, c, f)))
        })
        .filter(|(id, c)| {
            query.as_ref().is_none_or(|q| {
                ["email", "firstname", "lastname", "phone", "company"]
                    .iter()
                    .filter_map(|p| property_value(**id, c, p))
                    .any(|v| v.to_lowercase().contains(q.as_str()))
            })
        })
        .map(|(id, c)| {
            let key = match &sort {
                None => SortValue::Number(i64::try_from(*id).unwrap_or(i64::MAX)),
                Some((name, _)) if is_numeric(name) => {
                    numeric_value(*id, c, name).map_or(SortValue::Missing, SortValue::Number)
                }
                Some((name, _)) => property_value(*id, c, name)
                    .map_or(SortValue::Missing, |v| SortValue::Text(v.to_lowercase())),
            };
            (key, scramble(*id), *id)
        })
        .collect();
    let ascending = sort.as_ref().is_none_or(|(_, asc)| *asc);
    let order = |a: &(SortValue, u64, u64), b: &(SortValue, u64, u64)| {
        let by_value = if ascending {
            a.0.cmp(&b.0)
        } else {
            b.0.cmp(&a.0)
        };
        by_value.then(a.1.cmp(&b.1))
    };
    let total = matched.len();
    // Only the first `after + limit` in order are needed: select them, then sort them.
    let needed = after + limit;
    if needed < matched.len() {
        matched.select_nth_unstable_by(needed, order);
        matched.truncate(needed);
    }
    matched.sort_by(order);
    let names: Vec<&str> = properties.iter().map(String::as_str).collect();
    let results: Vec<Value> = matched
        .iter()
        .skip(after)
        .take(limit)
        .filter_map(|(_, _, id)| inner.contacts.get(id).map(|c| contact_json(*id, c, &names)))
        .collect();
    let mut body = json!({"total": total, "results": results});
    if after + limit < total {
        body["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    Json(body).into_response()
}

// ---------------------------------------------------------------------------------------------
// Batch writes

/// Checks a batch body: `inputs` present, 1–100 of them. Returns the inputs.
fn batch_inputs(body: Option<&Value>, correlation: &str) -> Result<Vec<Value>, Box<Response>> {
    let Some(inputs) = body.and_then(|b| b.get("inputs")).and_then(Value::as_array) else {
        return Err(Box::new(validation(
            "Invalid input JSON: inputs is required",
            correlation,
        )));
    };
    if inputs.is_empty() {
        return Err(Box::new(validation("inputs may not be empty", correlation)));
    }
    if inputs.len() > BATCH_MAX_INPUTS {
        return Err(Box::new(validation(
            &format!(
                "Batch input limit is {BATCH_MAX_INPUTS}; {} inputs were given",
                inputs.len()
            ),
            correlation,
        )));
    }
    Ok(inputs.clone())
}

/// The writable properties of one input, as strings; a 400 for unknown or read-only ones.
fn input_properties(
    input: &Value,
    correlation: &str,
) -> Result<Vec<(String, String)>, Box<Response>> {
    let Some(props) = input.get("properties").and_then(Value::as_object) else {
        return Err(Box::new(validation(
            "every input needs properties",
            correlation,
        )));
    };
    let mut out = Vec::with_capacity(props.len());
    let mut errors = Vec::new();
    for (name, value) in props {
        if !PROPERTIES.contains(&name.as_str()) {
            errors.push(json!({
                "message": format!("Property \"{name}\" does not exist"),
                "code": "PROPERTY_DOESNT_EXIST",
                "context": {"propertyName": [name]},
            }));
            continue;
        }
        if READ_ONLY.contains(&name.as_str()) {
            errors.push(json!({
                "message": format!("\"{name}\" is a read only property; its value cannot be set."),
                "code": "READ_ONLY_VALUE",
                "context": {"propertyName": [name]},
            }));
            continue;
        }
        let text = match value {
            Value::Null => String::new(),
            other => scalar(other).unwrap_or_else(|| other.to_string()),
        };
        out.push((name.clone(), text));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Box::new(
            (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "status": "error",
                    "message": "Property values were not valid",
                    "correlationId": correlation,
                    "category": "VALIDATION_ERROR",
                    "errors": errors,
                })),
            )
                .into_response(),
        ))
    }
}

fn batch_result(id: u64, contact: &Contact, written: &[(String, String)]) -> Value {
    let mut names: Vec<&str> = DEFAULT_PROPERTIES.to_vec();
    for (name, _) in written {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    contact_json(id, contact, &names)
}

async fn batch_update(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let json = parse_json(&body);
    let logged = json.clone();
    api(
        &shared,
        "POST",
        &uri,
        &headers,
        logged,
        false,
        |inner, c| update_contacts(inner, json.as_ref(), c),
    )
    .await
}

fn update_contacts(inner: &mut Inner, body: Option<&Value>, correlation: &str) -> Response {
    let inputs = match batch_inputs(body, correlation) {
        Ok(inputs) => inputs,
        Err(response) => return *response,
    };
    let mut parsed = Vec::with_capacity(inputs.len());
    let mut seen = HashSet::new();
    for input in &inputs {
        let id = input.get("id").and_then(scalar).unwrap_or_default();
        if !seen.insert(id.clone()) {
            return validation(
                &format!("Duplicate IDs found in batch input: {id}"),
                correlation,
            );
        }
        match input_properties(input, correlation) {
            Ok(props) => parsed.push((id, props)),
            Err(response) => return *response,
        }
    }
    let started = iso(inner.now_ms);
    let at = inner.write_stamp();
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for (id, props) in parsed {
        let Some(key) = id.parse::<u64>().ok().filter(|k| {
            inner
                .contacts
                .get(k)
                .is_some_and(|c| c.archived_ms.is_none())
        }) else {
            missing.push(id);
            continue;
        };
        inner.apply_edit(key, &props, at);
        if let Some(contact) = inner.contacts.get(&key) {
            results.push(batch_result(key, contact, &props));
        }
    }
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": iso(at),
    });
    if missing.is_empty() {
        return Json(body).into_response();
    }
    body["numErrors"] = json!(1);
    body["errors"] = json!([{
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some CONTACT objects, they may be deleted or not exist.",
        "context": {"ids": missing},
    }]);
    (StatusCode::MULTI_STATUS, Json(body)).into_response()
}

async fn batch_create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let json = parse_json(&body);
    let logged = json.clone();
    api(
        &shared,
        "POST",
        &uri,
        &headers,
        logged,
        false,
        |inner, c| create_contacts(inner, json.as_ref(), c),
    )
    .await
}

fn create_contacts(inner: &mut Inner, body: Option<&Value>, correlation: &str) -> Response {
    let inputs = match batch_inputs(body, correlation) {
        Ok(inputs) => inputs,
        Err(response) => return *response,
    };
    let mut parsed = Vec::with_capacity(inputs.len());
    let mut emails: HashSet<String> = HashSet::new();
    for input in &inputs {
        let props = match input_properties(input, correlation) {
            Ok(props) => props,
            Err(response) => return *response,
        };
        if let Some((_, email)) = props.iter().find(|(n, v)| n == "email" && !v.is_empty()) {
            let email = email.to_lowercase();
            if let Some(existing) = inner.email_owner(&email) {
                return error(
                    StatusCode::CONFLICT,
                    "CONFLICT",
                    &format!("Contact already exists. Existing ID: {existing}"),
                    correlation,
                );
            }
            if !emails.insert(email.clone()) {
                return error(
                    StatusCode::CONFLICT,
                    "CONFLICT",
                    &format!("Duplicate email in batch input: {email}"),
                    correlation,
                );
            }
        }
        parsed.push(props);
    }
    let started = iso(inner.now_ms);
    let at = inner.write_stamp();
    let indexed = !inner.index_lag;
    let mut results = Vec::with_capacity(parsed.len());
    for props in parsed {
        let id = inner.next_id;
        inner.next_id += 1;
        let contact = Contact {
            props: props
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .cloned()
                .collect(),
            created_ms: at,
            updated_ms: at,
            archived_ms: None,
            indexed,
        };
        results.push(batch_result(id, &contact, &props));
        inner.contacts.insert(id, contact);
    }
    (
        StatusCode::CREATED,
        Json(json!({
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso(at),
        })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// OAuth

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

fn oauth_error(error: &str, status: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "error": error,
            "error_description": description,
            "status": status,
            "message": description,
        })),
    )
        .into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    Form(form): Form<TokenForm>,
) -> Response {
    let response = {
        let mut inner = shared.lock();
        token_response(&mut inner, &form)
    };
    log(&shared, "POST", &uri, None, response.status());
    response
}

fn token_response(inner: &mut Inner, form: &TokenForm) -> Response {
    if form.client_id.as_deref() != Some(CLIENT_ID) {
        return oauth_error(
            "invalid_client",
            "BAD_CLIENT_ID",
            "missing or unknown client_id",
        );
    }
    if form.client_secret.as_deref() != Some(CLIENT_SECRET) {
        return oauth_error(
            "invalid_client",
            "BAD_CLIENT_SECRET",
            "missing or invalid client secret",
        );
    }
    match form.grant_type.as_deref() {
        Some("refresh_token") => {
            let Some(refresh) = form
                .refresh_token
                .as_ref()
                .filter(|r| inner.refresh.contains(*r))
            else {
                return oauth_error(
                    "invalid_grant",
                    "BAD_REFRESH_TOKEN",
                    "refresh token is invalid, expired or revoked",
                );
            };
            let refresh = refresh.clone();
            inner.refreshes += 1;
            inner.counter += 1;
            let access = format!("hs-test-access-{}-not-real", inner.counter);
            inner
                .access
                .insert(access.clone(), Some(Instant::now() + ACCESS_TOKEN_TTL));
            Json(json!({
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": ACCESS_TOKEN_TTL.as_secs(),
                "token_type": "bearer",
            }))
            .into_response()
        }
        _ => oauth_error(
            "unsupported_grant_type",
            "BAD_GRANT_TYPE",
            "this fake serves refresh_token grants only",
        ),
    }
}

async fn unexpected(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let response = error(
        StatusCode::NOT_FOUND,
        "OBJECT_NOT_FOUND",
        &format!("Unknown endpoint {}", uri.path()),
        "00000000-0000-4000-8000-000000000000",
    );
    log(&shared, "?", &uri, None, response.status());
    response
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use ivory_sdk::fetch::{FetchConfig, FetchError, Fetcher, RetryPolicy};
    use ivory_sdk::{Clock, Secret};

    use super::*;

    #[test]
    fn iso_has_milliseconds() {
        assert_eq!(iso(START_MS), "2026-03-01T00:00:00.000Z");
        assert_eq!(iso(START_MS + 42), "2026-03-01T00:00:00.042Z");
    }

    fn client(fake: &FakeHubSpot, token: Option<&str>) -> Fetcher {
        let mut config = FetchConfig::new(NonZeroU32::new(60_000).expect("rate"), vec![]);
        config.base_url_override = Some(fake.base_url());
        config.retry = RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        };
        if let Some(token) = token {
            config = config.with_bearer(Secret::new(token));
        }
        Fetcher::new(config, Clock::system()).expect("fetcher")
    }

    async fn search(fetcher: &Fetcher, body: Value) -> Result<Value, FetchError> {
        fetcher
            .post("/crm/v3/objects/contacts/search")
            .json(&body)
            .send()
            .await?
            .json()
    }

    fn status(result: Result<Value, FetchError>) -> u16 {
        match result {
            Ok(_) => 200,
            Err(FetchError::RateLimited { .. }) => 429,
            Err(error) => error.status().unwrap_or(0),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn search_is_strict_like_hubspot() {
        let fake = FakeHubSpot::start(Limits::OFF).await.expect("fake");
        fake.create_contacts(25, START_MS);
        let api = client(&fake, Some(ACCESS_TOKEN));
        let page = search(&api, json!({"limit": 10})).await.expect("search");
        assert_eq!(page["total"], 25);
        assert_eq!(page["paging"]["next"]["after"], "10", "an integer offset");
        assert_eq!(
            page["results"][0]["properties"]
                .as_object()
                .map(|p| p.len()),
            Some(DEFAULT_PROPERTIES.len())
        );
        let last = search(&api, json!({"limit": 10, "after": "20"}))
            .await
            .expect("last page");
        assert!(last.get("paging").is_none());
        for (body, why) in [
            (json!({"limit": 201}), "more than 200 per page"),
            (
                json!({"limit": 200, "after": "9900"}),
                "past 10,000 results",
            ),
            (json!({"after": "NTI1Cg=="}), "a non-integer after"),
            (
                json!({"sorts": [{"propertyName": "email", "direction": "ASCENDING"}, {"propertyName": "firstname", "direction": "ASCENDING"}]}),
                "two sorts",
            ),
            (
                json!({"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "2026-03-01T00:00:00Z"}]}]}),
                "a date filter not in epoch milliseconds",
            ),
            (
                json!({"filterGroups": [{"filters": [{"propertyName": "shoe_size", "operator": "EQ", "value": "42"}]}]}),
                "an unknown property",
            ),
            (
                json!({"filterGroups": (0..6).map(|_| json!({"filters": []})).collect::<Vec<_>>()}),
                "six filter groups",
            ),
        ] {
            assert_eq!(status(search(&api, body).await), 400, "{why}");
        }
        assert_eq!(
            status(search(&api, json!({"limit": 200, "after": "9800"})).await),
            200,
            "the 10,000th result can be read"
        );
        let anonymous = client(&fake, None);
        assert_eq!(status(search(&anonymous, json!({})).await), 401);
        fake.expire_access_tokens();
        let expired = search(&api, json!({})).await.expect_err("expired");
        assert!(
            expired
                .body()
                .is_some_and(|b| b.contains("EXPIRED_AUTHENTICATION")),
            "{expired}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_batches_and_limits() {
        let fake = FakeHubSpot::start(Limits::HUBSPOT).await.expect("fake");
        let ids = fake.create_contacts(150, START_MS);
        assert!(fake.archive(&ids[0], START_MS + 1));
        let api = client(&fake, Some(ACCESS_TOKEN));
        let list: Value = api
            .get("/crm/v3/objects/contacts")
            .query(&[("limit", "100")])
            .send()
            .await
            .expect("list")
            .json()
            .expect("json");
        assert_eq!(list["results"].as_array().map(Vec::len), Some(100));
        let after = list["paging"]["next"]["after"].as_str().expect("after");
        assert!(
            after.parse::<u64>().is_err(),
            "the list cursor is opaque: {after}"
        );
        let archived: Value = api
            .get("/crm/v3/objects/contacts")
            .query(&[("archived", "true")])
            .send()
            .await
            .expect("archived")
            .json()
            .expect("json");
        assert_eq!(archived["results"][0]["id"], ids[0].as_str());
        assert_eq!(archived["results"][0]["archived"], true);
        let too_many = api
            .get("/crm/v3/objects/contacts")
            .query(&[("limit", "101")])
            .send()
            .await;
        assert_eq!(too_many.err().and_then(|e| e.status()), Some(400));

        let update = |inputs: Vec<Value>| {
            api.post("/crm/v3/objects/contacts/batch/update")
                .json(&json!({"inputs": inputs}))
                .send()
        };
        let inputs = |n: usize| -> Vec<Value> {
            ids[1..=n]
                .iter()
                .map(|id| json!({"id": id, "properties": {"company": "Acme"}}))
                .collect()
        };
        assert_eq!(
            update(inputs(101)).await.err().and_then(|e| e.status()),
            Some(400)
        );
        let partial = update(vec![
            json!({"id": ids[1], "properties": {"company": "Acme"}}),
            json!({"id": ids[0], "properties": {"company": "Gone"}}),
        ])
        .await
        .expect("207");
        assert_eq!(partial.status(), 207);
        let read_only = update(vec![
            json!({"id": ids[2], "properties": {"lastmodifieddate": "1"}}),
        ])
        .await;
        assert_eq!(read_only.err().and_then(|e| e.status()), Some(400));
        let created = api
            .post("/crm/v3/objects/contacts/batch/create")
            .json(&json!({"inputs": [{"properties": {"email": "new@example.com"}}]}))
            .send()
            .await
            .expect("create");
        assert_eq!(created.status(), 201);
        let duplicate = api
            .post("/crm/v3/objects/contacts/batch/create")
            .json(&json!({"inputs": [{"properties": {"email": "NEW@example.com"}}]}))
            .send()
            .await;
        assert_eq!(duplicate.err().and_then(|e| e.status()), Some(409));

        // Five searches a second; the sixth is refused with no Retry-After.
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(status(search(&api, json!({"limit": 1})).await));
        }
        assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429]);
        let refused = fake.requests().into_iter().rev().find(|r| r.status == 429);
        assert!(refused.is_some_and(|r| r.is_search()));
    }
}
