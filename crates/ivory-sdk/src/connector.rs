//! The `Connector` contract.

use std::future::Future;
use std::pin::Pin;

use crate::context::Context;
use crate::error::Error;
use crate::secret::Secret;
use crate::webhook::{Delivery, Rejection, Scheme, Verified, Verifier};

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

    /// Verifies an inbound webhook delivery with the installation's secret. The default
    /// verifies with the manifest's declared `scheme` and default tolerance; override it only
    /// for an upstream whose scheme needs connector knowledge. The platform then applies the
    /// replay cache.
    fn verify_webhook(
        &self,
        delivery: &Delivery,
        scheme: &Scheme,
        secret: &Secret,
    ) -> Result<Verified, Rejection> {
        verify_with(delivery, scheme, secret)
    }
}

/// The default webhook verification: `scheme` with `secret`, at the system time.
fn verify_with(
    delivery: &Delivery,
    scheme: &Scheme,
    secret: &Secret,
) -> Result<Verified, Rejection> {
    match Verifier::new(scheme.clone(), secret.expose()) {
        Ok(verifier) => verifier.verify(delivery),
        // A secret the scheme cannot use verifies nothing.
        Err(_) => Err(Rejection::NoSignatureMatched),
    }
}

/// A boxed future, as returned by [`DynConnector`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Connector`], for registries of connectors chosen at run time.
/// Every `Connector` is a `DynConnector`.
pub trait DynConnector: Send + Sync {
    /// [`Connector::sync`], boxed.
    fn sync_boxed<'a>(&'a self, ctx: &'a mut Context) -> BoxFuture<'a, Result<SyncResult, Error>>;

    /// [`Connector::verify_webhook`].
    fn verify_webhook_dyn(
        &self,
        delivery: &Delivery,
        scheme: &Scheme,
        secret: &Secret,
    ) -> Result<Verified, Rejection>;
}

impl<C: Connector> DynConnector for C {
    fn sync_boxed<'a>(&'a self, ctx: &'a mut Context) -> BoxFuture<'a, Result<SyncResult, Error>> {
        Box::pin(self.sync(ctx))
    }

    fn verify_webhook_dyn(
        &self,
        delivery: &Delivery,
        scheme: &Scheme,
        secret: &Secret,
    ) -> Result<Verified, Rejection> {
        self.verify_webhook(delivery, scheme, secret)
    }
}

/// Compile-time check that `DynConnector` stays object safe.
fn _assert_dyn_compatible(_: &dyn DynConnector) {}
