//! A faithful fake of the parts of Airtable's Web API a base sync uses (upstreams.md §3), on
//! loopback:
//!
//! - `GET /v0/meta/bases/{baseId}/tables`: the base schema — tables with `id`, `name`,
//!   `primaryFieldId`, `fields` (`id`, `name`, `type`, `options`) and `views`. Formula fields
//!   carry `options.formula` with their references **by field id** (`{fldXXXXXXXXXXXXXX}`, as
//!   the API returns them, not the names the editor shows), `isValid`, `referencedFieldIds`
//!   and `result` (the computed value's field type).
//! - `GET /v0/{baseId}/{tableIdOrName}`: list records, `{records: [{id, createdTime, fields}],
//!   offset?}`. `pageSize` 1–100 (default 100; otherwise 422), an opaque `offset`
//!   (`itr…/rec…`) present only when more records exist, `returnFieldsByFieldId`, and empty
//!   fields (`""`, `[]`, `false`, null) omitted. Formula fields are computed by the fake itself
//!   (a Rust function per formula, written independently of the platform's formula engine), so
//!   tests can compare the platform's computation with "Airtable's".
//! - **Iterators**: the first page of a listing opens an iterator over a snapshot of the
//!   table's record ids; it expires after [`FakeAirtable::set_iterator_ttl`] of inactivity (5
//!   minutes by default) or when a test expires it ([`FakeAirtable::expire_offset_at_page`]):
//!   422 `{"error": {"type": "LIST_RECORDS_ITERATOR_NOT_AVAILABLE"}}`, and the client must start
//!   over.
//! - **Rate limit**: 5 requests per second per base; above that, or when a test triggers it
//!   ([`FakeAirtable::trigger_rate_limit`]), 429 `RATE_LIMIT_REACHED` and **every** request to
//!   the base is refused for the penalty (30 s, as Airtable documents; tests on the real clock
//!   may shorten it with [`FakeAirtable::set_penalty`]). No `Retry-After` header: Airtable
//!   sends none. Timed on tokio's clock, so paused-time tests run it virtually.
//! - Bearer authentication (401 `AUTHENTICATION_REQUIRED`), an unknown base or table is 403
//!   `INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND`, anything else 404 `NOT_FOUND`.
//! - Test controls: add, edit and delete records, add or retype fields, a hang at request *k*,
//!   a request log.
//!
//! [`FakeAirtable::start`] serves the standard fixture base: **Orders** (text, number,
//! currency, single select, checkbox, date, linked records, multiple selects, long text, and
//! five formula fields — four in the common formula subset, one using `SWITCH`) and
//! **Customers** (email, rating, created time, attachments, a collaborator, a field of a type
//! the connector does not know, and a formula).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use url::Url;

use crate::items::LoggedRequest;

/// The tenant's access token at the fake (an obviously fake test value).
pub const TEST_ACCESS_TOKEN: &str = "oauth_ivory_fake_airtable_token_0000";
/// The fixture base's id.
pub const BASE_ID: &str = "appIvoryFakeBase1";
/// Airtable's documented penalty after a 429: every request to the base fails for 30 s.
pub const PENALTY: Duration = Duration::from_secs(30);
/// Airtable's documented limit: 5 requests per second per base.
pub const REQUESTS_PER_SECOND: usize = 5;
/// Records are created one second apart from here (2026-03-01T00:00:00Z).
pub const START: i64 = 1_772_323_200;

/// How "Airtable" computes a formula field: from the record's cells by field name (formula
/// fields declared earlier included). `None` or an empty value leaves the cell empty.
pub type Compute = Arc<dyn Fn(&Map<String, Value>) -> Option<Value> + Send + Sync>;

/// A formula field to add with [`FakeAirtable::add_formula_field`].
#[derive(Clone)]
pub struct FormulaField {
    /// The formula as the editor shows it, with `{Field Name}` references (the metadata API
    /// returns it with field ids instead).
    pub formula: String,
    /// The result's field type (`{"type": "currency", "options": {…}}`), or `None` for an
    /// invalid formula.
    pub result: Option<Value>,
    /// Whether Airtable considers the formula valid.
    pub valid: bool,
    /// The computation.
    pub compute: Compute,
}

impl std::fmt::Debug for FormulaField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormulaField")
            .field("formula", &self.formula)
            .field("result", &self.result)
            .field("valid", &self.valid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Field {
    id: String,
    name: String,
    kind: String,
    options: Option<Value>,
    formula: Option<FormulaField>,
}

#[derive(Debug, Clone)]
struct Rec {
    id: String,
    created: String,
    /// Stored (non-computed) cells, by field id.
    cells: Map<String, Value>,
}

#[derive(Debug)]
struct Table {
    id: String,
    name: String,
    fields: Vec<Field>,
    records: Vec<Rec>,
}

#[derive(Debug)]
struct Iter {
    table: String,
    ids: Vec<String>,
    last_used: Instant,
    pages: usize,
}

#[derive(Debug)]
struct Inner {
    tables: Vec<Table>,
    iterators: HashMap<String, Iter>,
    next_id: u64,
    next_created: i64,
    window: VecDeque<Instant>,
    penalty_until: Option<Instant>,
    penalty: Duration,
    per_second: usize,
    forced_429: usize,
    limit_at: Option<usize>,
    expire_at_page: Option<usize>,
    iterator_ttl: Duration,
    log: Vec<LoggedRequest>,
    hang_at: Option<usize>,
    served: usize,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    started: Instant,
    hung: Notify,
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeAirtable {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAirtable {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A number as JavaScript's `JSON.stringify` writes it: integral values without a fraction.
pub fn js_number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)] // integral and within ±2^53
        let n = x as i64;
        json!(n)
    } else {
        json!(x)
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn airtable_time(second: i64) -> String {
    let ts = jiff::Timestamp::from_second(second).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.to_string().replace('Z', ".000Z")
}

fn num(cells: &Map<String, Value>, name: &str) -> f64 {
    cells.get(name).and_then(Value::as_f64).unwrap_or(0.0)
}

fn text(cells: &Map<String, Value>, name: &str) -> String {
    match cells.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn formula(text: &str, result: Value, compute: Compute) -> FormulaField {
    FormulaField {
        formula: text.to_owned(),
        result: Some(result),
        valid: true,
        compute,
    }
}

fn currency_result() -> Value {
    json!({"type": "currency", "options": {"precision": 2, "symbol": "$"}})
}

fn text_result() -> Value {
    json!({"type": "singleLineText"})
}

/// The fixture's Orders formulas, as "Airtable" computes them.
fn orders_formulas() -> Vec<(&'static str, FormulaField)> {
    vec![
        (
            "Total",
            formula(
                "{Qty} * {Unit Price}",
                currency_result(),
                Arc::new(|c| Some(js_number(num(c, "Qty") * num(c, "Unit Price")))),
            ),
        ),
        (
            "Total with tax",
            formula(
                "ROUND({Total} * 1.2, 2)",
                currency_result(),
                Arc::new(|c| Some(js_number((num(c, "Total") * 1.2 * 100.0).round() / 100.0))),
            ),
        ),
        (
            "Label",
            formula(
                "CONCATENATE(UPPER({Name}), \" x\", {Qty})",
                text_result(),
                Arc::new(|c| {
                    Some(json!(format!(
                        "{} x{}",
                        text(c, "Name").to_uppercase(),
                        text(c, "Qty")
                    )))
                }),
            ),
        ),
        (
            "Outstanding",
            formula(
                "IF({Paid}, 0, {Total with tax})",
                currency_result(),
                Arc::new(|c| {
                    let paid = c.get("Paid").and_then(Value::as_bool).unwrap_or(false);
                    Some(if paid {
                        json!(0)
                    } else {
                        js_number(num(c, "Total with tax"))
                    })
                }),
            ),
        ),
        (
            "Status Code",
            formula(
                "SWITCH({Status}, \"open\", \"O\", \"paid\", \"P\", \"X\")",
                text_result(),
                Arc::new(|c| {
                    Some(json!(match text(c, "Status").as_str() {
                        "open" => "O",
                        "paid" => "P",
                        _ => "X",
                    }))
                }),
            ),
        ),
    ]
}

const STATUSES: [&str; 3] = ["open", "paid", "cancelled"];

/// The fixture Orders record `n` (1-based), by field name (stored fields only).
fn order_cells(n: usize, customer: Option<&str>) -> Value {
    let status = STATUSES[n % 3];
    #[allow(clippy::cast_precision_loss)] // small fixture numbers
    let price = 4.5 + ((n % 13) as f64) * 2.25;
    json!({
        "Name": format!("Order {n:05}"),
        "Qty": 1 + n % 7,
        "Unit Price": js_number(price),
        "Status": status,
        "Paid": status == "paid",
        "Order Date": format!("2026-01-{:02}", 1 + n % 28),
        "Customer": customer.map(|c| vec![c.to_owned()]).unwrap_or_default(),
        "Tags": if n.is_multiple_of(5) { vec!["rush"] } else { Vec::new() },
        "Notes": if n.is_multiple_of(4) { format!("Call before delivery ({n}).") } else { String::new() },
    })
}

/// The fixture Customers record `n` (1-based), by field name (stored fields only).
fn customer_cells(n: usize) -> Value {
    json!({
        "Name": format!("Customer {n:03}"),
        "Email": format!("buyer{n}@example.com"),
        "Rating": 1 + n % 5,
        "Logo": if n.is_multiple_of(2) {
            json!([{"id": format!("att{n:014}"), "url": format!("https://example.com/logo-{n}.png"),
                    "filename": format!("logo-{n}.png"), "size": 1024 + n, "type": "image/png"}])
        } else {
            json!([])
        },
        "Account Manager": {"id": format!("usr{:014}", n % 3), "email": format!("am{}@example.com", n % 3), "name": format!("Manager {}", n % 3)},
        "Hologram": {"frequency": n, "phase": "stable"},
    })
}

impl Inner {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:014}", self.next_id)
    }

    fn table_mut(&mut self, name_or_id: &str) -> Option<&mut Table> {
        self.tables
            .iter_mut()
            .find(|t| t.id == name_or_id || t.name == name_or_id)
    }

    fn table(&self, name_or_id: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.id == name_or_id || t.name == name_or_id)
    }

    fn add_table(&mut self, name: &str, fields: Vec<(&str, &str, Option<Value>)>) -> String {
        let id = self.new_id("tbl");
        let mut table = Table {
            id: id.clone(),
            name: name.to_owned(),
            fields: Vec::new(),
            records: Vec::new(),
        };
        for (name, kind, options) in fields {
            let field_id = self.new_id("fld");
            table.fields.push(Field {
                id: field_id,
                name: name.to_owned(),
                kind: kind.to_owned(),
                options,
                formula: None,
            });
        }
        self.tables.push(table);
        id
    }

    fn add_record(&mut self, table: &str, cells: &Value) -> Option<String> {
        let id = self.new_id("rec");
        self.next_created += 1;
        let created = airtable_time(self.next_created);
        let table = self.table_mut(table)?;
        let mut record = Rec {
            id: id.clone(),
            created,
            cells: Map::new(),
        };
        set_cells(table, &mut record, cells);
        table.records.push(record);
        Some(id)
    }
}

/// Writes `cells` (by field name; null clears) into `record`; unknown names are ignored.
fn set_cells(table: &Table, record: &mut Rec, cells: &Value) {
    let Some(cells) = cells.as_object() else {
        return;
    };
    for (name, value) in cells {
        let Some(field) = table.fields.iter().find(|f| &f.name == name) else {
            continue;
        };
        if value.is_null() {
            record.cells.remove(&field.id);
        } else {
            record.cells.insert(field.id.clone(), value.clone());
        }
    }
}

/// A record's cells by field name, formulas computed in field order, empty values included.
fn cells_by_name(table: &Table, record: &Rec) -> Map<String, Value> {
    let mut cells = Map::new();
    for field in &table.fields {
        if field.kind == "createdTime" {
            cells.insert(field.name.clone(), json!(record.created));
        } else if let Some(formula) = &field.formula {
            if formula.valid
                && let Some(value) = (formula.compute)(&cells)
            {
                cells.insert(field.name.clone(), value);
            }
        } else if let Some(value) = record.cells.get(&field.id) {
            cells.insert(field.name.clone(), value.clone());
        }
    }
    cells
}

/// A record as the list endpoint returns it (empty fields omitted).
fn record_json(table: &Table, record: &Rec, by_id: bool) -> Value {
    let cells = cells_by_name(table, record);
    let mut fields = Map::new();
    for field in &table.fields {
        if let Some(value) = cells.get(&field.name)
            && !is_empty(value)
        {
            let key = if by_id { &field.id } else { &field.name };
            fields.insert(key.clone(), value.clone());
        }
    }
    json!({"id": record.id, "createdTime": record.created, "fields": fields})
}

/// A formula's text with `{Field Name}` references replaced by `{fldId}`, and the ids.
fn formula_by_ids(table: &Table, text: &str) -> (String, Vec<String>) {
    let mut out = text.to_owned();
    let mut referenced = Vec::new();
    for field in &table.fields {
        let reference = format!("{{{}}}", field.name);
        if out.contains(&reference) {
            out = out.replace(&reference, &format!("{{{}}}", field.id));
            referenced.push(field.id.clone());
        }
    }
    (out, referenced)
}

fn field_json(table: &Table, field: &Field) -> Value {
    let mut json = json!({"id": field.id, "name": field.name, "type": field.kind});
    if let Some(formula) = &field.formula {
        let (text, referenced) = formula_by_ids(table, &formula.formula);
        json["options"] = json!({
            "formula": text,
            "isValid": formula.valid,
            "referencedFieldIds": referenced,
            "result": formula.result,
        });
    } else if let Some(options) = &field.options {
        json["options"] = options.clone();
    }
    json
}

fn table_json(table: &Table) -> Value {
    json!({
        "id": table.id,
        "name": table.name,
        "primaryFieldId": table.fields.first().map(|f| f.id.clone()),
        "fields": table.fields.iter().map(|f| field_json(table, f)).collect::<Vec<_>>(),
        "views": [{"id": format!("viw{}", &table.id[3..]), "name": "Grid view", "type": "grid"}],
    })
}

fn airtable_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": kind, "message": message}})),
    )
        .into_response()
}

fn not_found_model() -> Response {
    airtable_error(
        StatusCode::FORBIDDEN,
        "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
        "Invalid permissions, or the requested model was not found. Check that both your user and your token have the required permissions, and that the model names and/or ids are correct.",
    )
}

impl FakeAirtable {
    /// Starts the fixture base with `orders` Orders records and `customers` Customers records
    /// (orders link to customers round-robin).
    pub async fn start(orders: usize, customers: usize) -> std::io::Result<Self> {
        let mut inner = Inner {
            tables: Vec::new(),
            iterators: HashMap::new(),
            next_id: 0,
            next_created: START,
            window: VecDeque::new(),
            penalty_until: None,
            penalty: PENALTY,
            per_second: REQUESTS_PER_SECOND,
            forced_429: 0,
            limit_at: None,
            expire_at_page: None,
            iterator_ttl: Duration::from_secs(300),
            log: Vec::new(),
            hang_at: None,
            served: 0,
        };
        let customers_id = inner.add_table(
            "Customers",
            vec![
                ("Name", "singleLineText", None),
                ("Email", "email", None),
                (
                    "Rating",
                    "rating",
                    Some(json!({"max": 5, "icon": "star", "color": "yellowBright"})),
                ),
                (
                    "Created",
                    "createdTime",
                    Some(json!({"result": {"type": "dateTime", "options": {"timeZone": "utc"}}})),
                ),
                (
                    "Logo",
                    "multipleAttachments",
                    Some(json!({"isReversed": false})),
                ),
                ("Account Manager", "singleCollaborator", Some(json!({}))),
                ("Hologram", "hologram", None),
            ],
        );
        let _orders_id = inner.add_table(
            "Orders",
            vec![
                ("Name", "singleLineText", None),
                ("Qty", "number", Some(json!({"precision": 0}))),
                (
                    "Unit Price",
                    "currency",
                    Some(json!({"precision": 2, "symbol": "$"})),
                ),
                (
                    "Status",
                    "singleSelect",
                    Some(json!({"choices": STATUSES.iter().enumerate().map(|(i, s)| json!({"id": format!("sel{i:014}"), "name": s, "color": "blueLight2"})).collect::<Vec<_>>()})),
                ),
                (
                    "Paid",
                    "checkbox",
                    Some(json!({"icon": "check", "color": "greenBright"})),
                ),
                (
                    "Order Date",
                    "date",
                    Some(json!({"dateFormat": {"name": "iso", "format": "YYYY-MM-DD"}})),
                ),
                (
                    "Customer",
                    "multipleRecordLinks",
                    Some(
                        json!({"linkedTableId": customers_id, "isReversed": false, "prefersSingleRecordLink": true}),
                    ),
                ),
                (
                    "Tags",
                    "multipleSelects",
                    Some(json!({"choices": [{"id": "selrush0000000001", "name": "rush", "color": "redLight2"}]})),
                ),
                ("Notes", "multilineText", None),
            ],
        );
        // Formula fields, after the fields they read.
        for (name, field) in orders_formulas() {
            let id = inner.new_id("fld");
            if let Some(table) = inner.table_mut("Orders") {
                table.fields.push(Field {
                    id,
                    name: name.to_owned(),
                    kind: "formula".into(),
                    options: None,
                    formula: Some(field),
                });
            }
        }
        let id = inner.new_id("fld");
        if let Some(table) = inner.table_mut("Customers") {
            table.fields.push(Field {
                id,
                name: "Tier".into(),
                kind: "formula".into(),
                options: None,
                formula: Some(formula(
                    "IF({Rating} >= 4, \"VIP\", \"regular\")",
                    text_result(),
                    Arc::new(|c| {
                        Some(json!(if num(c, "Rating") >= 4.0 {
                            "VIP"
                        } else {
                            "regular"
                        }))
                    }),
                )),
            });
        }
        let mut customer_ids = Vec::new();
        for n in 1..=customers {
            if let Some(id) = inner.add_record("Customers", &customer_cells(n)) {
                customer_ids.push(id);
            }
        }
        for n in 1..=orders {
            let customer =
                (!customer_ids.is_empty()).then(|| &customer_ids[n % customer_ids.len()]);
            inner.add_record("Orders", &order_cells(n, customer.map(String::as_str)));
        }

        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            started: Instant::now(),
            hung: Notify::new(),
        });
        let app = Router::new()
            .route("/v0/meta/bases/{base}/tables", get(base_schema))
            .route("/v0/{base}/{table}", get(list_records))
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

    /// Every request served (refused ones included), in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    /// Request `k` (1-based) never gets an answer; [`FakeAirtable::hung`] resolves when it came.
    pub fn hang_at_request(&self, k: usize) {
        self.lock().hang_at = Some(k);
    }

    /// Resolves once the request set by [`FakeAirtable::hang_at_request`] arrived.
    pub async fn hung(&self) {
        self.shared.hung.notified().await;
    }

    /// The next request is answered 429 `RATE_LIMIT_REACHED` and starts the base's penalty.
    pub fn trigger_rate_limit(&self) {
        self.lock().forced_429 += 1;
    }

    /// Request `k` (1-based, counting every request the fake received) is answered 429
    /// `RATE_LIMIT_REACHED` and starts the base's penalty.
    pub fn rate_limit_at_request(&self, k: usize) {
        self.lock().limit_at = Some(k);
    }

    /// How long the base refuses every request after a 429 (default [`PENALTY`], 30 s).
    /// Shorten it only in tests that run on the real clock.
    pub fn set_penalty(&self, penalty: Duration) {
        self.lock().penalty = penalty;
    }

    /// Requests per second per base before a 429 (default [`REQUESTS_PER_SECOND`]).
    pub fn set_rate_limit(&self, per_second: usize) {
        self.lock().per_second = per_second;
    }

    /// Iterators (offsets) expire after this long without a request (default 5 minutes).
    pub fn set_iterator_ttl(&self, ttl: Duration) {
        self.lock().iterator_ttl = ttl;
    }

    /// The next request for page `page` (≥ 2) of any listing finds its iterator gone: 422
    /// `LIST_RECORDS_ITERATOR_NOT_AVAILABLE`, every open iterator dropped (once).
    pub fn expire_offset_at_page(&self, page: usize) {
        self.lock().expire_at_page = Some(page);
    }

    /// The records of `table` as Airtable returns them with field names (formulas computed by
    /// the fake, empty fields omitted), in listing order.
    pub fn records(&self, table: &str) -> Vec<Value> {
        let inner = self.lock();
        let Some(table) = inner.table(table) else {
            return Vec::new();
        };
        table
            .records
            .iter()
            .map(|r| record_json(table, r, false))
            .collect()
    }

    /// The ids of `table`'s fields, by name.
    pub fn field_ids(&self, table: &str) -> HashMap<String, String> {
        let inner = self.lock();
        inner
            .table(table)
            .map(|t| {
                t.fields
                    .iter()
                    .map(|f| (f.name.clone(), f.id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The id of a table, by name.
    pub fn table_id(&self, name: &str) -> Option<String> {
        self.lock().table(name).map(|t| t.id.clone())
    }

    /// Adds a record to `table` (cells by field name); returns its id.
    pub fn add_record(&self, table: &str, cells: Value) -> Option<String> {
        self.lock().add_record(table, &cells)
    }

    /// Changes cells of a record (by field name; null clears a cell). False when unknown.
    pub fn edit_record(&self, table: &str, id: &str, cells: Value) -> bool {
        let mut inner = self.lock();
        let Some(table) = inner.table_mut(table) else {
            return false;
        };
        let Some(index) = table.records.iter().position(|r| r.id == id) else {
            return false;
        };
        let mut record = table.records[index].clone();
        set_cells(table, &mut record, &cells);
        table.records[index] = record;
        true
    }

    /// Deletes a record. False when unknown.
    pub fn delete_record(&self, table: &str, id: &str) -> bool {
        let mut inner = self.lock();
        let Some(table) = inner.table_mut(table) else {
            return false;
        };
        let before = table.records.len();
        table.records.retain(|r| r.id != id);
        table.records.len() != before
    }

    /// Adds a (non-formula) field at the end of `table`; returns its id.
    pub fn add_field(
        &self,
        table: &str,
        name: &str,
        kind: &str,
        options: Option<Value>,
    ) -> Option<String> {
        let mut inner = self.lock();
        let id = inner.new_id("fld");
        let table = inner.table_mut(table)?;
        table.fields.push(Field {
            id: id.clone(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            options,
            formula: None,
        });
        Some(id)
    }

    /// Adds a formula field at the end of `table`; returns its id.
    pub fn add_formula_field(
        &self,
        table: &str,
        name: &str,
        formula: FormulaField,
    ) -> Option<String> {
        let mut inner = self.lock();
        let id = inner.new_id("fld");
        let table = inner.table_mut(table)?;
        table.fields.push(Field {
            id: id.clone(),
            name: name.to_owned(),
            kind: "formula".into(),
            options: None,
            formula: Some(formula),
        });
        Some(id)
    }

    /// Changes a field's type (and options), keeping its id and cells. False when unknown.
    pub fn retype_field(
        &self,
        table: &str,
        name: &str,
        kind: &str,
        options: Option<Value>,
    ) -> bool {
        let mut inner = self.lock();
        let Some(table) = inner.table_mut(table) else {
            return false;
        };
        let Some(field) = table.fields.iter_mut().find(|f| f.name == name) else {
            return false;
        };
        field.kind = kind.to_owned();
        field.options = options;
        field.formula = None;
        true
    }
}

/// Bearer auth, the per-base rate limit and its penalty, the hang. `Err` is the response to
/// send instead of serving the request.
async fn gate(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let (hang, forced) = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.served += 1;
        (
            inner.hang_at == Some(inner.served),
            inner.limit_at == Some(inner.served),
        )
    };
    if hang {
        shared.hung.notify_one();
        std::future::pending::<()>().await;
    }
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TEST_ACCESS_TOKEN}"));
    if !authorized {
        return Err(airtable_error(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_REQUIRED",
            "Authentication required",
        ));
    }
    let now = Instant::now();
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let limited = if forced || inner.penalty_until.is_some_and(|until| now < until) {
        true
    } else if inner.forced_429 > 0 {
        inner.forced_429 -= 1;
        true
    } else {
        inner
            .window
            .retain(|t| now.duration_since(*t) < Duration::from_secs(1));
        inner.window.len() >= inner.per_second
    };
    if limited {
        if inner.penalty_until.is_none_or(|until| now >= until) {
            inner.penalty_until = Some(now + inner.penalty);
        }
        return Err(airtable_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_REACHED",
            "Rate limit exceeded. Please try again later",
        ));
    }
    inner.window.push_back(now);
    Ok(())
}

fn log(shared: &Shared, uri: &Uri, response: &Response) {
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.log.push(LoggedRequest {
        at: shared.started.elapsed(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        status: response.status().as_u16(),
    });
}

async fn base_schema(
    State(shared): State<Arc<Shared>>,
    Path(base): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let response = match gate(&shared, &headers).await {
        Err(refused) => refused,
        Ok(()) if base != BASE_ID => not_found_model(),
        Ok(()) => {
            let inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
            Json(json!({"tables": inner.tables.iter().map(table_json).collect::<Vec<_>>()}))
                .into_response()
        }
    };
    log(&shared, &uri, &response);
    response
}

fn invalid_request(message: &str) -> Response {
    airtable_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "INVALID_REQUEST_UNKNOWN",
        message,
    )
}

fn iterator_gone() -> Response {
    airtable_error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
        "The list records iterator is no longer available; restart the listing from the beginning.",
    )
}

fn list_page(inner: &mut Inner, table: &str, query: &str) -> Response {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let page_size = match get("pageSize").map(|s| s.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return invalid_request("pageSize must be an integer from 1 to 100"),
    };
    if get("cellFormat").is_some_and(|f| f != "json") {
        return invalid_request("only cellFormat=json is supported by this fake");
    }
    let by_id = get("returnFieldsByFieldId").is_some_and(|v| v == "true" || v == "1");
    let Some(table_id) = inner.table(table).map(|t| t.id.clone()) else {
        return not_found_model();
    };
    let now = Instant::now();
    let (iterator, position) = match get("offset") {
        None => {
            let ids = inner
                .table(&table_id)
                .map(|t| t.records.iter().map(|r| r.id.clone()).collect())
                .unwrap_or_default();
            let id = inner.new_id("itr");
            inner.iterators.insert(
                id.clone(),
                Iter {
                    table: table_id.clone(),
                    ids,
                    last_used: now,
                    pages: 0,
                },
            );
            (id, 0)
        }
        Some(offset) => {
            let Some((itr, next)) = offset.split_once('/') else {
                return iterator_gone();
            };
            let ttl = inner.iterator_ttl;
            let expire_at = inner.expire_at_page;
            let Some(iter) = inner.iterators.get(itr) else {
                return iterator_gone();
            };
            if iter.table != table_id || now.duration_since(iter.last_used) > ttl {
                inner.iterators.remove(itr);
                return iterator_gone();
            }
            if expire_at == Some(iter.pages + 1) {
                inner.expire_at_page = None;
                inner.iterators.clear();
                return iterator_gone();
            }
            let Some(position) = iter.ids.iter().position(|id| id == next) else {
                return iterator_gone();
            };
            (itr.to_owned(), position)
        }
    };
    let Some(iter) = inner.iterators.get(&iterator) else {
        return iterator_gone();
    };
    let Some(table) = inner.table(&table_id) else {
        return not_found_model();
    };
    // The snapshot's ids still present, from `position`.
    let mut records = Vec::with_capacity(page_size);
    let mut next = None;
    for id in &iter.ids[position..] {
        let Some(record) = table.records.iter().find(|r| &r.id == id) else {
            continue; // deleted since the listing began
        };
        if records.len() == page_size {
            next = Some(id.clone());
            break;
        }
        records.push(record_json(table, record, by_id));
    }
    let mut body = json!({"records": records});
    match next {
        Some(next) => {
            body["offset"] = json!(format!("{iterator}/{next}"));
            if let Some(iter) = inner.iterators.get_mut(&iterator) {
                iter.last_used = now;
                iter.pages += 1;
            }
        }
        None => {
            inner.iterators.remove(&iterator);
        }
    }
    Json(body).into_response()
}

async fn list_records(
    State(shared): State<Arc<Shared>>,
    Path((base, table)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let response = match gate(&shared, &headers).await {
        Err(refused) => refused,
        Ok(()) if base != BASE_ID => not_found_model(),
        Ok(()) => {
            let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
            list_page(&mut inner, &table, &query.unwrap_or_default())
        }
    };
    log(&shared, &uri, &response);
    response
}

async fn unexpected(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "NOT_FOUND", "path": uri.path()})),
    )
        .into_response()
}
