//! A variant of the testkit's `ItemsConnector` that fetches page *k + 1* while page *k* is
//! being committed (the listing is driven by a spawned task, one page ahead, through a
//! channel of one). It measures what overlapping the upstream with the store would give; the
//! headline numbers use the testkit's plain connector, which fetches, then commits, then
//! fetches.

use futures::StreamExt;
use ivory_sdk::pagination::{PageLimits, stripe_list};
use ivory_sdk::{Connector, Context, Error, Record, SyncResult};
use jiff::Timestamp;
use serde_json::Value;

/// `opaque_token` over `/v1/items`, one page fetched ahead.
#[derive(Debug, Clone)]
pub(crate) struct PrefetchingItemsConnector {
    /// Items per page.
    pub(crate) page_size: u32,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn to_record(item: Value) -> Result<Record, Error> {
    let id = item
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Upstream(format!("item without an id: {item}")))?
        .to_owned();
    let updated = item.get("updated").and_then(Value::as_i64);
    let mut record = Record::new(id, item);
    if let Some(updated) = updated {
        let at = Timestamp::from_second(updated)
            .map_err(|e| Error::Upstream(format!("item {}: bad updated time: {e}", record.id)))?;
        record = record.updated_at(at);
    }
    Ok(record)
}

impl Connector for PrefetchingItemsConnector {
    async fn sync(&self, ctx: &mut Context) -> Result<SyncResult, Error> {
        let start = ctx.opaque_cursor().map(str::to_owned);
        let pages = stripe_list::<Value>(
            ctx.fetcher(),
            "/v1/items".into(),
            Vec::new(),
            self.page_size,
            start,
            PageLimits::default(),
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let _pump = AbortOnDrop(tokio::spawn(async move {
            let mut pages = std::pin::pin!(pages);
            while let Some(page) = pages.next().await {
                let failed = page.is_err();
                if tx.send(page).await.is_err() || failed {
                    break;
                }
            }
        }));
        while let Some(page) = rx.recv().await {
            let page = page?;
            let records = page
                .items
                .into_iter()
                .map(to_record)
                .collect::<Result<Vec<_>, _>>()?;
            ctx.upsert("item", records).await?;
            if let Some(next) = page.next {
                ctx.set_opaque_cursor(next).await?;
            }
        }
        Ok(SyncResult::default())
    }
}
