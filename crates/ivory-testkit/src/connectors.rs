//! Tiny connectors over the fake [`crate::items`] upstream, one per cursor kind, used by the
//! runtime's tests, the CLI and the benchmarks. They are written exactly as a connector author
//! would write them: all I/O through the context's fetcher, pages streamed, cursor committed
//! through the context.

use std::pin::pin;

use futures::TryStreamExt;
use ivory_sdk::manifest::{CursorKind, Manifest, ValidationMode};
use ivory_sdk::pagination::{PageLimits, hubspot_list, stripe_list};
use ivory_sdk::{Connector, Context, Error, Record, SyncResult};
use jiff::Timestamp;
use serde_json::Value;

/// The record kind the example connectors write by default.
pub const ITEM_KIND: &str = "item";

/// The manifest of an items connector with this cursor kind and rate.
pub fn items_manifest(id: &str, cursor: CursorKind, rate_per_minute: u32) -> Manifest {
    let cursor = match cursor {
        CursorKind::UpdatedAt => "updated_at",
        CursorKind::OpaqueToken => "opaque_token",
        CursorKind::None => "none",
    };
    let json = serde_json::json!({
        "id": id,
        "name": "Example Items",
        "version": "0.1.0",
        "publisher": "Ivory (examples)",
        "description": "Pulls items from the example items API; used by tests, the CLI and the benchmarks.",
        "listing": {
            "conflictPolicy": "Inbound only: the upstream is the source of truth (source_wins)."
        },
        "hosts": ["api.items.example"],
        "connection": {
            "type": "none",
            "sync": {
                "cursor": cursor,
                "direction": "inbound",
                "conflictPolicy": "source_wins",
                "rateLimitPerMinute": rate_per_minute
            }
        }
    });
    match Manifest::parse(&json.to_string(), ValidationMode::Production) {
        Ok(manifest) => manifest,
        Err(error) => panic!("the example manifest must be valid: {error}"),
    }
}

fn to_record(item: Value) -> Result<Record, Error> {
    let id = item
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Upstream(format!("item without an id: {item}")))?
        .to_owned();
    let mut record = Record::new(id, Value::Null);
    if let Some(updated) = item.get("updated").and_then(Value::as_i64) {
        let at = Timestamp::from_second(updated)
            .map_err(|e| Error::Upstream(format!("item {}: bad updated time: {e}", record.id)))?;
        record = record.updated_at(at);
    }
    record.data = item;
    Ok(record)
}

/// `opaque_token`: pages `/v1/items` with `starting_after`; the token of each page is
/// committed with that page's records.
#[derive(Debug, Clone)]
pub struct ItemsConnector {
    /// Items per page.
    pub page_size: u32,
    /// The record kind written (usually [`ITEM_KIND`]).
    pub kind: &'static str,
}

impl Connector for ItemsConnector {
    async fn sync(&self, ctx: &mut Context) -> Result<SyncResult, Error> {
        let start = ctx.opaque_cursor().map(str::to_owned);
        let mut pages = pin!(stripe_list::<Value>(
            ctx.fetcher(),
            "/v1/items".into(),
            Vec::new(),
            self.page_size,
            start,
            PageLimits::default(),
        ));
        while let Some(page) = pages.try_next().await? {
            let records = page
                .items
                .into_iter()
                .map(to_record)
                .collect::<Result<Vec<_>, _>>()?;
            ctx.upsert(self.kind, records).await?;
            if let Some(next) = page.next {
                ctx.set_opaque_cursor(next).await?;
            }
        }
        Ok(SyncResult::default())
    }
}

/// `updated_at`: reads `/v1/items/changes?since=<watermark>` (inclusive) in one window and
/// completes the window at the end.
#[derive(Debug, Clone)]
pub struct ChangesConnector {
    /// Items per page.
    pub page_size: u32,
    /// The record kind written (usually [`ITEM_KIND`]).
    pub kind: &'static str,
}

impl Connector for ChangesConnector {
    async fn sync(&self, ctx: &mut Context) -> Result<SyncResult, Error> {
        let mut params = Vec::new();
        if let Some(since) = ctx.watermark() {
            params.push(("since".to_owned(), since.as_second().to_string()));
        }
        let mut pages = pin!(hubspot_list::<Value>(
            ctx.fetcher(),
            "/v1/items/changes".into(),
            params,
            self.page_size,
            None,
            PageLimits::default(),
        ));
        while let Some(page) = pages.try_next().await? {
            let records = page
                .items
                .into_iter()
                .map(to_record)
                .collect::<Result<Vec<_>, _>>()?;
            ctx.upsert(self.kind, records).await?;
        }
        ctx.complete_window().await?;
        Ok(SyncResult::default())
    }
}

impl ItemsConnector {
    /// Pages of `page_size`, records of kind [`ITEM_KIND`].
    pub fn new(page_size: u32) -> Self {
        Self {
            page_size,
            kind: ITEM_KIND,
        }
    }
}

impl ChangesConnector {
    /// Pages of `page_size`, records of kind [`ITEM_KIND`].
    pub fn new(page_size: u32) -> Self {
        Self {
            page_size,
            kind: ITEM_KIND,
        }
    }
}
