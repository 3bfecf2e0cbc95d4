//! Each dynamic check can fail: connector variants that ignore `Retry-After` (their own HTTP
//! client, unpaced), skip the last page, accept a stale webhook, or log their credential each
//! make certification fail with that check named — and the honest connector passes them all.

use std::pin::pin;
use std::sync::Arc;

use futures::TryStreamExt;
use ivory_certify::Check;
use ivory_certify::harness::{MockUpstream, Target, dynamic_checks};
use ivory_sdk::connector::BoxFuture;
use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::pagination::{PageLimits, stripe_list};
use ivory_sdk::webhook::{Delivery, Rejection, Verified, Verifier};
use ivory_sdk::{Connector, Context, DynConnector, Error, Record, Secret, SyncResult};
use ivory_testkit::items::ItemsUpstream;
use jiff::Timestamp;
use serde_json::Value;
use url::Url;

fn manifest() -> Manifest {
    let json = serde_json::json!({
        "id": "mutant-items",
        "name": "Mutant items",
        "version": "0.1.0",
        "publisher": "Ivory (certification tests)",
        "description": "Variants of a small connector, each breaking one rule.",
        "listing": {"conflictPolicy": "Inbound only: the upstream wins (source_wins)."},
        "hosts": ["api.items.example"],
        "webhooks": {"scheme": "stripe"},
        "connection": {
            "type": "api_key",
            "sync": {"cursor": "opaque_token", "direction": "inbound", "conflictPolicy": "source_wins", "rateLimitPerMinute": 1200}
        }
    });
    Manifest::parse(&json.to_string(), ValidationMode::Production).expect("valid")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mutation {
    None,
    IgnoresRetryAfter,
    SkipsLastPage,
    AcceptsStaleWebhooks,
    LogsCredential,
}

struct Items(Mutation);

fn records(items: Vec<Value>) -> Vec<Record> {
    items
        .into_iter()
        .filter_map(|item| Some(Record::new(item.get("id")?.as_str()?.to_owned(), item)))
        .collect()
}

impl Connector for Items {
    async fn sync(&self, ctx: &mut Context) -> Result<SyncResult, Error> {
        if self.0 == Mutation::LogsCredential {
            let credential = ctx
                .credentials()
                .bearer()
                .map(|s| s.expose().to_owned())
                .unwrap_or_default();
            tracing::info!(credential = %credential, "Starting with our key.");
        }
        if self.0 == Mutation::IgnoresRetryAfter {
            // Its own HTTP client: no pacing, no Retry-After (what certification must catch).
            ivory_sdk::fetch::install_tls_provider();
            let client = reqwest::Client::new();
            let base = ctx
                .fetcher()
                .base_url()
                .cloned()
                .ok_or_else(|| Error::Config("no base URL".into()))?;
            let mut after: Option<String> = None;
            loop {
                let mut url = base
                    .join("/v1/items")
                    .map_err(|e| Error::Config(e.to_string()))?;
                url.query_pairs_mut().append_pair("limit", "100");
                if let Some(after) = &after {
                    url.query_pairs_mut().append_pair("starting_after", after);
                }
                let response = client
                    .get(url.as_str())
                    .send()
                    .await
                    .map_err(|e| Error::Upstream(e.to_string()))?;
                if response.status() == 429 {
                    continue; // straight back in
                }
                let page: Value = response
                    .json()
                    .await
                    .map_err(|e| Error::Upstream(e.to_string()))?;
                let items = page["data"].as_array().cloned().unwrap_or_default();
                after = items
                    .last()
                    .and_then(|i| i["id"].as_str())
                    .map(str::to_owned);
                ctx.upsert("item", records(items)).await?;
                if page["has_more"] != true {
                    break;
                }
            }
            return Ok(SyncResult::default());
        }
        let start = ctx.opaque_cursor().map(str::to_owned);
        let mut pages = pin!(stripe_list::<Value>(
            ctx.fetcher(),
            "/v1/items".into(),
            vec![],
            100,
            start,
            PageLimits::default()
        ));
        while let Some(page) = pages.try_next().await? {
            if page.next.is_none() && self.0 == Mutation::SkipsLastPage {
                break;
            }
            ctx.upsert("item", records(page.items)).await?;
            if let Some(next) = page.next {
                ctx.set_opaque_cursor(next).await?;
            }
        }
        Ok(SyncResult::default())
    }

    fn verify_webhook(
        &self,
        delivery: &Delivery,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<Verified, Rejection> {
        if self.0 == Mutation::AcceptsStaleWebhooks {
            // "Clock skew is annoying": verifies against the delivery's own time.
            let at = delivery
                .header("stripe-signature")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.split(',').find_map(|p| p.strip_prefix("t=")))
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(|t| Timestamp::from_second(t).ok())
                .unwrap_or(now);
            return verifier.verify_at(delivery, at);
        }
        verifier.verify_at(delivery, now)
    }
}

struct Running(ItemsUpstream);

impl MockUpstream for Running {
    fn base_url(&self) -> Url {
        self.0.base_url()
    }
}

struct MutantTarget {
    manifest: Manifest,
    mutation: Mutation,
}

impl Target for MutantTarget {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    fn connector(&self) -> Arc<dyn DynConnector> {
        Arc::new(Items(self.mutation))
    }
    fn record_kind(&self) -> &str {
        "item"
    }
    fn start_upstream<'a>(
        &'a self,
        records: usize,
        _credential: &'a Secret,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<Box<dyn MockUpstream>, String>> {
        Box::pin(async move {
            let fake = ItemsUpstream::start(records as u64, 1, 16)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::new(Running(fake)) as Box<dyn MockUpstream>)
        })
    }
    fn dataset_size(&self) -> usize {
        2_350
    }
    fn webhook_body(&self) -> Option<Vec<u8>> {
        Some(
            br#"{"id":"evt_1","type":"item.updated","data":{"object":{"id":"it_0000001"}}}"#
                .to_vec(),
        )
    }
}

async fn certify(mutation: Mutation) -> Vec<Check> {
    dynamic_checks(&MutantTarget {
        manifest: manifest(),
        mutation,
    })
    .await
}

fn failed(checks: &[Check]) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_honest_connector_passes() {
    let checks = certify(Mutation::None).await;
    assert!(failed(&checks).is_empty(), "{checks:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignoring_retry_after_and_pacing_fails() {
    let checks = certify(Mutation::IgnoresRetryAfter).await;
    let failed = failed(&checks);
    assert!(failed.contains(&"Retry-After honoured"), "{checks:#?}");
    assert!(failed.contains(&"requests per minute"), "{checks:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_the_last_page_fails() {
    let checks = certify(Mutation::SkipsLastPage).await;
    assert!(failed(&checks).contains(&"pages all read"), "{checks:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_a_stale_webhook_fails() {
    let checks = certify(Mutation::AcceptsStaleWebhooks).await;
    assert_eq!(failed(&checks), vec!["webhook verification"], "{checks:#?}");
    let evidence = &checks
        .iter()
        .find(|c| c.name == "webhook verification")
        .expect("check")
        .evidence;
    assert!(evidence.contains("stale: accepted (WRONG)"), "{evidence}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_the_credential_fails() {
    let checks = certify(Mutation::LogsCredential).await;
    assert_eq!(failed(&checks), vec!["canary secrets"], "{checks:#?}");
    let evidence = &checks
        .iter()
        .find(|c| c.name == "canary secrets")
        .expect("check")
        .evidence;
    assert!(
        !evidence.contains("ivory-canary-credential-"),
        "the report never repeats the canary"
    );
}
