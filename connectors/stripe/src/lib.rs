//! # Stripe Revenue Sync
//!
//! The reference connector for `api_key` auth, an opaque cursor, `source_wins`, webhooks and a
//! workflow. Read it top to bottom: it is what a connector written against the Ivory SDK looks
//! like.
//!
//! - **Backfill**: `GET /v1/invoices` newest first, paged with `starting_after`; each page's
//!   invoices commit together with the cursor that resumes after them.
//! - **Incremental**: `GET /v1/events?type=invoice.*` from the newest event seen before the
//!   backfill started, forward in time (`ending_before`), each page applied oldest first and
//!   committed with its cursor. `invoice.deleted` tombstones the mirror; voided invoices stay,
//!   with `status: void`.
//! - **Retention**: Stripe lists events for 30 days. A cursor older than that (or an event
//!   Stripe no longer knows) falls back to a full re-pull, and the sync says so.
//! - **Webhooks**: a verified event carries the invoice; [`Connector::on_webhook`] upserts it
//!   so the mirror is fresh between syncs (the platform verifies, de-duplicates and runs the
//!   `payment-failed-follow-up` workflow declared in `manifest.json`).
//!
//! All I/O goes through the context's paced fetcher: the manifest's `rateLimitPerMinute`,
//! `Retry-After`, retries and the host allow-list are the SDK's job.

mod cursor;

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;

use futures::TryStreamExt;
use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::pagination::{PageError, PageLimits, paginate, stripe_list};
use ivory_sdk::{Connector, Context, Error, FetchError, Fetcher, Record, SyncResult, WebhookEvent};
use serde::Deserialize;
use serde_json::Value;

pub use cursor::{EventMark, StripeCursor};

/// The kind of the invoice mirror.
pub const INVOICE_KIND: &str = "stripe_invoice";
/// Stripe keeps events listable for 30 days.
pub const EVENT_RETENTION_SECONDS: i64 = 30 * 24 * 3600;
/// The connector's manifest, as shipped.
pub const MANIFEST_JSON: &str = include_str!("../manifest.json");

/// The parsed manifest.
pub fn manifest() -> &'static Manifest {
    static MANIFEST: OnceLock<Manifest> = OnceLock::new();
    MANIFEST.get_or_init(
        || match Manifest::parse(MANIFEST_JSON, ValidationMode::Production) {
            Ok(manifest) => manifest,
            Err(error) => panic!("the shipped Stripe manifest must be valid: {error}"),
        },
    )
}

/// The Stripe connector.
#[derive(Debug, Clone)]
pub struct StripeConnector {
    /// Objects per page (Stripe allows 1–100).
    pub page_size: u32,
}

impl Default for StripeConnector {
    fn default() -> Self {
        Self { page_size: 100 }
    }
}

#[derive(Debug, Deserialize)]
struct EventList {
    data: Vec<Value>,
    has_more: bool,
}

fn invoice_record(invoice: Value) -> Result<Record, Error> {
    let id = invoice
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Upstream(format!("an invoice without an id: {invoice}")))?
        .to_owned();
    Ok(Record::new(id, invoice))
}

fn mark(event: &Value) -> Option<EventMark> {
    Some(EventMark {
        id: event.get("id")?.as_str()?.to_owned(),
        created: event.get("created")?.as_i64()?,
    })
}

impl StripeConnector {
    /// The newest invoice event Stripe has now (where the events phase will start).
    async fn newest_event(&self, fetcher: &Fetcher) -> Result<Option<EventMark>, Error> {
        let list: EventList = fetcher
            .get("/v1/events")
            .query(&[("type", "invoice.*"), ("limit", "1")])
            .send()
            .await?
            .json()?;
        Ok(list.data.first().and_then(mark))
    }

    async fn backfill(
        &self,
        ctx: &mut Context,
        after: Option<String>,
        since: Option<EventMark>,
    ) -> Result<(), Error> {
        let since = match (after.is_some(), since) {
            (_, Some(since)) => Some(since),
            // A fresh backfill: remember where the events phase starts *before* reading.
            (false, None) => self.newest_event(&ctx.fetcher()).await?,
            (true, None) => None,
        };
        let mut pages = pin!(stripe_list::<Value>(
            ctx.fetcher(),
            "/v1/invoices".into(),
            Vec::new(),
            self.page_size,
            after,
            PageLimits::default(),
        ));
        while let Some(page) = pages.try_next().await? {
            let records = page
                .items
                .into_iter()
                .map(invoice_record)
                .collect::<Result<Vec<_>, _>>()?;
            ctx.upsert(INVOICE_KIND, records).await?;
            let next = match page.next {
                Some(after) => StripeCursor::Backfill {
                    after: Some(after),
                    since_event: since.clone(),
                },
                None => StripeCursor::Events {
                    last: since.clone(),
                },
            };
            ctx.set_opaque_cursor(next.encode()).await?;
        }
        Ok(())
    }

    /// Applies invoice events newer than `last`, oldest first, a page per commit. Returns
    /// `Err(None)`-like signal through `Ok(false)` when Stripe no longer knows `last`.
    async fn follow_events(
        &self,
        ctx: &mut Context,
        last: Option<EventMark>,
    ) -> Result<bool, Error> {
        let fetcher = ctx.fetcher();
        let limit = self.page_size.clamp(1, 100).to_string();
        let start = last.as_ref().map(|m| m.id.clone());
        let mut pages = pin!(paginate(
            start,
            PageLimits::default(),
            move |before: Option<String>| {
                let mut request = fetcher
                    .get("/v1/events")
                    .query(&[("type", "invoice.*"), ("limit", limit.as_str())]);
                if let Some(before) = &before {
                    request = request.query(&[("ending_before", before.as_str())]);
                }
                let fetcher = fetcher.clone();
                async move {
                    let list: EventList = request.send().await?.json()?;
                    fetcher.count_page();
                    // Newest first: the next (newer) page ends before this page's first event.
                    let next = if list.has_more {
                        list.data
                            .first()
                            .and_then(|e| e.get("id")?.as_str().map(str::to_owned))
                    } else {
                        None
                    };
                    Ok::<_, PageError>((list.data, next))
                }
            }
        ));
        loop {
            let page = match pages.try_next().await {
                Ok(Some(page)) => page,
                Ok(None) => return Ok(true),
                Err(PageError::Fetch(FetchError::Status {
                    status: 404,
                    ref body,
                    ..
                })) if body.contains("resource_missing") => {
                    return Ok(false);
                }
                Err(error) => return Err(error.into()),
            };
            let Some(newest) = page.items.first().and_then(mark) else {
                continue;
            };
            for event in page.items.into_iter().rev() {
                self.apply_event(ctx, &event).await?;
            }
            ctx.set_opaque_cursor(StripeCursor::Events { last: Some(newest) }.encode())
                .await?;
        }
    }

    async fn apply_event(&self, ctx: &mut Context, event: &Value) -> Result<(), Error> {
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(invoice) = event.pointer("/data/object").cloned() else {
            return Err(Error::Upstream(format!(
                "event {} has no data.object",
                event["id"]
            )));
        };
        if kind == "invoice.deleted" {
            let id = invoice
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            ctx.delete(INVOICE_KIND, [id]).await
        } else {
            ctx.upsert(INVOICE_KIND, [invoice_record(invoice)?]).await
        }
    }
}

impl Connector for StripeConnector {
    async fn sync(&self, ctx: &mut Context) -> Result<SyncResult, Error> {
        {
            let mut notes = Vec::new();
            let cursor = match ctx.opaque_cursor() {
                None => None,
                Some(text) => match StripeCursor::decode(text) {
                    Some(cursor) => Some(cursor),
                    None => {
                        notes.push("the stored cursor was unreadable: full re-pull".to_owned());
                        None
                    }
                },
            };
            let now = ctx.clock().now().as_second();
            match cursor {
                None => self.backfill(ctx, None, None).await?,
                Some(StripeCursor::Backfill { after, since_event }) => {
                    self.backfill(ctx, after, since_event).await?;
                }
                Some(StripeCursor::Events { last }) => {
                    let expired = last
                        .as_ref()
                        .is_some_and(|m| now - m.created > EVENT_RETENTION_SECONDS);
                    if expired || !self.follow_events(ctx, last).await? {
                        notes.push(
                            "the cursor is older than Stripe's 30-day event retention: full re-pull of invoices".to_owned(),
                        );
                        self.backfill(ctx, None, None).await?;
                        return Ok(SyncResult { notes });
                    }
                    return Ok(SyncResult { notes });
                }
            }
            // Right after a backfill, apply what happened while it ran.
            if let Some(StripeCursor::Events { last }) =
                ctx.opaque_cursor().and_then(StripeCursor::decode)
            {
                self.follow_events(ctx, last).await?;
            }
            Ok(SyncResult { notes })
        }
    }

    fn on_webhook(
        &self,
        ctx: &mut Context,
        event: &WebhookEvent,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let payload = event.payload.clone();
        async move {
            let kind = payload
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !kind.starts_with("invoice.") {
                return Ok(());
            }
            self.apply_event(ctx, &payload).await?;
            ctx.flush().await
        }
    }
}
