//! The `Connector` contract.

use std::future::Future;
use std::pin::Pin;

use crate::context::Context;
use crate::error::Error;
use jiff::Timestamp;

use crate::webhook::{Delivery, Rejection, Verified, Verifier};

/// A verified webhook delivery, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// The delivery's event id, where the scheme or payload has one (`evt_…`, `webhook-id`).
    pub id: Option<String>,
    /// The event type, where the payload has one (`invoice.payment_failed`).
    pub event_type: Option<String>,
    /// The body, as JSON (`Value::Null` when it is not JSON).
    pub payload: serde_json::Value,
}

/// What a connector reports at the end of a sync, beyond the counts the runtime keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncResult {
    /// Notes for the operator, e.g. "cursor older than the upstream's retention: full re-pull".
    pub notes: Vec<String>,
}

/// A connector: moves records between one upstream and the platform, for one tenant at a time.
///
/// Implement it with a plain `async fn`:
///
/// ```no_run
/// use ivory_sdk::{Connector, Context, Error, Record, SyncResult};
/// use ivory_sdk::pagination::{stripe_list, PageLimits};
/// use futures::TryStreamExt;
///
/// struct Invoices;
///
/// impl Connector for Invoices {
///     async fn sync(&self, ctx: &mut Context) -> Result<SyncResult, Error> {
///         let start = ctx.opaque_cursor().map(str::to_owned);
///         let mut pages = std::pin::pin!(stripe_list::<serde_json::Value>(
///             ctx.fetcher(), "/v1/invoices".into(), vec![], 100, start, PageLimits::default(),
///         ));
///         while let Some(page) = pages.try_next().await? {
///             let records = page.items.into_iter().filter_map(|item| {
///                 let id = item.get("id")?.as_str()?.to_owned();
///                 Some(Record::new(id, item))
///             });
///             ctx.upsert("invoice", records).await?;
///             if let Some(next) = page.next {
///                 ctx.set_opaque_cursor(next).await?; // same transaction as the page's records
///             }
///         }
///         Ok(SyncResult::default())
///     }
/// }
/// ```
pub trait Connector: Send + Sync {
    /// Runs one sync for the installation the context belongs to.
    fn sync(&self, ctx: &mut Context) -> impl Future<Output = Result<SyncResult, Error>> + Send;

    /// Handles a verified, de-duplicated webhook delivery, with the same context as a sync
    /// (upserts here commit like a sync's). Typically upserts the object the event carries,
    /// so the mirror is fresh between syncs. The default does nothing.
    fn on_webhook(
        &self,
        ctx: &mut Context,
        event: &WebhookEvent,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = (ctx, event);
        async { Ok(()) }
    }

    /// Verifies an inbound webhook delivery at `now`. The platform builds `verifier` from the
    /// manifest's `webhooks` block (scheme, tolerance) and the installation's secret; the
    /// default simply uses it. Override only for an upstream whose scheme needs connector
    /// knowledge. The platform applies the replay cache afterwards.
    fn verify_webhook(
        &self,
        delivery: &Delivery,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<Verified, Rejection> {
        verifier.verify_at(delivery, now)
    }
}

/// A boxed future, as returned by [`DynConnector`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Connector`], for registries of connectors chosen at run time.
/// Every `Connector` is a `DynConnector`.
pub trait DynConnector: Send + Sync {
    /// [`Connector::sync`], boxed.
    fn sync_boxed<'a>(&'a self, ctx: &'a mut Context) -> BoxFuture<'a, Result<SyncResult, Error>>;

    /// [`Connector::on_webhook`], boxed.
    fn on_webhook_boxed<'a>(
        &'a self,
        ctx: &'a mut Context,
        event: &'a WebhookEvent,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// [`Connector::verify_webhook`].
    fn verify_webhook_dyn(
        &self,
        delivery: &Delivery,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<Verified, Rejection>;
}

impl<C: Connector> DynConnector for C {
    fn sync_boxed<'a>(&'a self, ctx: &'a mut Context) -> BoxFuture<'a, Result<SyncResult, Error>> {
        Box::pin(self.sync(ctx))
    }

    fn on_webhook_boxed<'a>(
        &'a self,
        ctx: &'a mut Context,
        event: &'a WebhookEvent,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.on_webhook(ctx, event))
    }

    fn verify_webhook_dyn(
        &self,
        delivery: &Delivery,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<Verified, Rejection> {
        self.verify_webhook(delivery, verifier, now)
    }
}

/// Compile-time check that `DynConnector` stays object safe.
fn _assert_dyn_compatible(_: &dyn DynConnector) {}
