//! # Airtable Base Sync
//!
//! The reference connector for `oauth2` with PKCE, offset pagination, schema discovery and
//! connector-provisioned custom objects with platform-computed formulas. Read it top to
//! bottom with [`schema`] (how a table becomes an object) and [`formula`] (how an Airtable
//! formula becomes a platform formula).
//!
//! Each sync, for the installation's base (setting `baseId`) and tables (setting `tables`,
//! comma-separated names or ids; every table by default):
//!
//! 1. **Schema discovery**: `GET /v0/meta/bases/{baseId}/tables`. Each table becomes the
//!    object kind `airtable_<table name in lower snake case>`, provisioned through
//!    [`Context::provision_object`]: a new Airtable field adds a platform field; a field that
//!    disappears stays declared on the platform (no longer filled); a field retyped upstream is a
//!    breaking change the platform refuses — that table is skipped, the other tables sync, and
//!    the sync fails at the end naming the field. Formula fields that translate are computed
//!    by the platform on every write; the others are kept as Airtable's computed value and the
//!    sync's notes say why.
//! 2. **A full pass per table**: `GET /v0/{baseId}/{tableId}?pageSize=100&returnFieldsByFieldId=true`
//!    through the SDK's [`airtable_list`], one page per commit, bracketed by
//!    [`Context::begin_full_pass`] / [`Context::end_full_pass`]: records Airtable no longer
//!    returns are tombstoned once the pass completes (a pass cut short deletes nothing).
//! 3. **Expired offsets**: Airtable's offset is an iterator that expires (422
//!    `LIST_RECORDS_ITERATOR_NOT_AVAILABLE`); the table's listing and its pass restart from
//!    the beginning — records already stored are re-read and left unchanged, so nothing is
//!    duplicated.
//! 4. **Rate limits**: the manifest declares 240 requests per minute (4 per second, under
//!    Airtable's 5 per second per base), so a sync alone provokes no 429. If one comes anyway
//!    (another client of the base), Airtable refuses every request for 30 seconds and sends no
//!    `Retry-After`: after the SDK's retries give up, the connector waits those 30 seconds and
//!    restarts the table's listing.
//!
//! There is no cursor (`cursor: none`, see the listing): a stored offset would have expired
//! before the next sync, and deletions need complete passes anyway.

pub mod formula;
pub mod schema;

use std::pin::pin;
use std::sync::OnceLock;
use std::time::Duration;

use futures::TryStreamExt;
use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::pagination::{PageError, PageLimits, airtable_list};
use ivory_sdk::{Connector, Context, Error, FetchError, SinkError, SyncResult};

use schema::{AirtableRecord, BaseSchema, TablePlan, TableSchema, kinds};

/// The connector's manifest, as shipped.
pub const MANIFEST_JSON: &str = include_str!("../manifest.json");
/// How long Airtable refuses every request to a base after a 429.
pub const RATE_LIMIT_PENALTY: Duration = Duration::from_secs(30);
/// Restarts of one table's listing (expired offsets, 429 penalties) before the sync gives up.
pub const MAX_RESTARTS: u32 = 5;
/// The setting naming the base.
pub const BASE_SETTING: &str = "baseId";
/// The setting naming the tables (comma-separated).
pub const TABLES_SETTING: &str = "tables";

/// The parsed manifest.
pub fn manifest() -> &'static Manifest {
    static MANIFEST: OnceLock<Manifest> = OnceLock::new();
    MANIFEST.get_or_init(
        || match Manifest::parse(MANIFEST_JSON, ValidationMode::Production) {
            Ok(manifest) => manifest,
            Err(error) => panic!("the shipped Airtable manifest must be valid: {error}"),
        },
    )
}

/// The platform kind of an Airtable table name (`Orders` → `airtable_orders`).
pub fn kind_of(table_name: &str) -> String {
    format!("airtable_{}", schema::snake_case(table_name))
}

/// The Airtable connector.
#[derive(Debug, Clone)]
pub struct AirtableConnector {
    /// Records per page (Airtable allows 1–100).
    pub page_size: u32,
    /// How long to wait after Airtable's 429 before listing again (Airtable's 30 s; tests on
    /// the real clock shorten it together with the fake's penalty).
    pub rate_limit_penalty: Duration,
}

impl Default for AirtableConnector {
    fn default() -> Self {
        Self {
            page_size: 100,
            rate_limit_penalty: RATE_LIMIT_PENALTY,
        }
    }
}

/// Why a listing should start over: an expired offset iterator, or a 429 that outlasted the
/// SDK's retries.
enum Restart {
    IteratorExpired,
    RateLimited,
}

fn fetch_error(error: &Error) -> Option<&FetchError> {
    match error {
        Error::Fetch(e) | Error::Page(PageError::Fetch(e)) => Some(e),
        _ => None,
    }
}

fn restart_reason(error: &Error) -> Option<Restart> {
    let fetch = fetch_error(error)?;
    if fetch.status() == Some(422)
        && fetch
            .body()
            .is_some_and(|b| b.contains("LIST_RECORDS_ITERATOR_NOT_AVAILABLE"))
    {
        Some(Restart::IteratorExpired)
    } else if fetch.is_rate_limited() {
        Some(Restart::RateLimited)
    } else {
        None
    }
}

fn base_id(ctx: &Context) -> Result<String, Error> {
    let base = ctx
        .setting(BASE_SETTING)
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::Config(format!("the setting {BASE_SETTING} is required")))?;
    if !base.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::Config(format!(
            "the setting {BASE_SETTING} must be an Airtable base id (appXXXXXXXXXXXXXX), not {base:?}"
        )));
    }
    Ok(base.to_owned())
}

/// The tables the installation syncs, in the base's order.
fn selected(
    ctx: &Context,
    base: &str,
    tables: Vec<TableSchema>,
) -> Result<Vec<TableSchema>, Error> {
    let Some(wanted) = ctx.setting(TABLES_SETTING) else {
        return Ok(tables);
    };
    let wanted: Vec<&str> = wanted
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(tables);
    }
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|w| !tables.iter().any(|t| t.name == *w || t.id == *w))
        .collect();
    if !missing.is_empty() {
        let known: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        return Err(Error::Config(format!(
            "the setting {TABLES_SETTING} names tables base {base} does not have: {} (its tables: {})",
            missing.join(", "),
            known.join(", ")
        )));
    }
    Ok(tables
        .into_iter()
        .filter(|t| wanted.iter().any(|w| t.name == *w || t.id == *w))
        .collect())
}

impl AirtableConnector {
    /// Waits out Airtable's penalty and says so.
    async fn penalty(&self, ctx: &Context, notes: &mut Vec<String>, what: &str) {
        tracing::warn!(
            what,
            wait_s = self.rate_limit_penalty.as_secs_f64(),
            "Airtable rate limit reached; waiting out its penalty."
        );
        notes.push(format!(
            "{what}: Airtable's rate limit was reached (another client of the base?); waited {} s and started over",
            self.rate_limit_penalty.as_secs()
        ));
        ctx.sleep(self.rate_limit_penalty).await;
    }

    /// `GET /v0/meta/bases/{base}/tables`, waiting out a 429 penalty.
    async fn base_schema(
        &self,
        ctx: &Context,
        base: &str,
        notes: &mut Vec<String>,
    ) -> Result<BaseSchema, Error> {
        let path = format!("/v0/meta/bases/{base}/tables");
        let mut restarts = 0;
        loop {
            let result = async { Ok::<_, Error>(ctx.get(&path).send().await?.json()?) }.await;
            match result {
                Err(error)
                    if restarts < MAX_RESTARTS
                        && matches!(restart_reason(&error), Some(Restart::RateLimited)) =>
                {
                    restarts += 1;
                    self.penalty(ctx, notes, "schema discovery").await;
                }
                other => return other,
            }
        }
    }

    /// One full pass over a table, restarted on an expired offset or a 429 penalty. Returns
    /// how many records the pass tombstoned.
    async fn sync_table(
        &self,
        ctx: &mut Context,
        base: &str,
        plan: &TablePlan,
        notes: &mut Vec<String>,
    ) -> Result<u64, Error> {
        let path = format!("/v0/{base}/{}", plan.table_id);
        let mut restarts = 0;
        loop {
            ctx.begin_full_pass(&plan.kind).await?;
            let error = match self.list_table(ctx, &path, plan).await {
                Ok(()) => break,
                Err(error) => error,
            };
            match restart_reason(&error) {
                Some(reason) if restarts < MAX_RESTARTS => {
                    restarts += 1;
                    match reason {
                        Restart::IteratorExpired => {
                            tracing::info!(table = %plan.table_name, "Airtable offset expired; listing the table again.");
                            notes.push(format!(
                                "table {:?}: Airtable's offset expired mid-listing (LIST_RECORDS_ITERATOR_NOT_AVAILABLE); the listing restarted from the beginning",
                                plan.table_name
                            ));
                        }
                        Restart::RateLimited => {
                            self.penalty(ctx, notes, &format!("table {:?}", plan.table_name))
                                .await;
                        }
                    }
                }
                _ => return Err(error),
            }
        }
        ctx.end_full_pass(&plan.kind).await
    }

    /// Lists a table page by page, committing each page.
    async fn list_table(
        &self,
        ctx: &mut Context,
        path: &str,
        plan: &TablePlan,
    ) -> Result<(), Error> {
        let mut pages = pin!(airtable_list::<AirtableRecord>(
            ctx.fetcher(),
            path.to_owned(),
            vec![("returnFieldsByFieldId".into(), "true".into())],
            self.page_size,
            PageLimits::default(),
        ));
        while let Some(page) = pages.try_next().await? {
            let records = page.items.into_iter().map(|record| plan.record(record));
            ctx.upsert(&plan.kind, records).await?;
            ctx.flush().await?;
        }
        Ok(())
    }
}

impl Connector for AirtableConnector {
    async fn sync(&self, ctx: &mut Context) -> Result<SyncResult, Error> {
        let base = base_id(ctx)?;
        let mut notes = Vec::new();
        let schema = self.base_schema(ctx, &base, &mut notes).await?;
        let tables = selected(ctx, &base, schema.tables)?;
        let kinds = kinds(&tables);
        let mut refused = Vec::new();
        for (table, kind) in tables.iter().zip(kinds) {
            let plan = TablePlan::new(table, kind);
            let provisioned = match ctx.provision_object(&plan.spec).await {
                Ok(provisioned) => provisioned,
                Err(Error::Sink(SinkError { message })) => {
                    tracing::warn!(table = %table.name, kind = %plan.kind, %message, "The platform refused the table's schema.");
                    refused.push(format!(
                        "table {:?} ({}) was not synced: {message}",
                        table.name, plan.kind
                    ));
                    continue;
                }
                Err(other) => return Err(other),
            };
            notes.extend(plan.notes.iter().cloned());
            if !provisioned.kept_fields.is_empty() {
                notes.push(format!(
                    "table {:?}: fields no longer in Airtable stay declared on the platform but are no longer filled: {}",
                    table.name,
                    provisioned.kept_fields.join(", ")
                ));
            }
            let deleted = self.sync_table(ctx, &base, &plan, &mut notes).await?;
            tracing::info!(table = %table.name, kind = %plan.kind, deleted, "Table synced.");
        }
        if !refused.is_empty() {
            return Err(Error::Sink(SinkError::new(refused.join("; "))));
        }
        Ok(SyncResult { notes })
    }
}
