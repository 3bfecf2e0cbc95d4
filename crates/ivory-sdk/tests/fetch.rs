//! The paced, resilient fetch and the pagination helpers against real HTTP servers on loopback
//! (wiremock), on tokio's paused clock: minutes of pacing and `Retry-After` run in
//! milliseconds and are measured exactly.

use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use ivory_sdk::Clock;
use ivory_sdk::fetch::{FetchConfig, FetchError, Fetcher, HttpConfig, RetryPolicy};
use ivory_sdk::pagination::{
    PageError, PageLimits, airtable_list, hubspot_list, link_header_list, stripe_list,
};
use jiff::Timestamp;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn origin() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("timestamp")
}

fn fetcher_for(server: &MockServer, per_minute: u32) -> Fetcher {
    let mut config = FetchConfig::new(
        NonZeroU32::new(per_minute).expect("rate"),
        vec!["api.example.com".into()],
    );
    config.base_url_override = Some(Url::parse(&server.uri()).expect("uri"));
    config.http = HttpConfig::virtual_time();
    config.jitter_seed = Some(7);
    Fetcher::new(config, Clock::starting_at(origin())).expect("fetcher")
}

async fn ok_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ping"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&server)
        .await;
    server
}

/// 600 requests at a declared 300/min take 2 virtual minutes (±2%), and no 60-second window
/// ever holds more than 300 of them.
#[tokio::test(start_paused = true)]
async fn pacing_holds_the_declared_rate() {
    let server = ok_server().await;
    let fetcher = fetcher_for(&server, 300);
    let clock = fetcher.clock().clone();
    let start = clock.elapsed();
    let mut sent = Vec::with_capacity(600);
    for _ in 0..600 {
        fetcher.get("/ping").send().await.expect("ok");
        sent.push(clock.elapsed() - start);
    }
    let total = sent.last().copied().expect("600 requests");
    let two_minutes = Duration::from_secs(120);
    assert!(
        total >= two_minutes.mul_f64(0.98) && total <= two_minutes.mul_f64(1.02),
        "600 requests took {total:?}, expected 120 s ± 2%"
    );
    let window = Duration::from_secs(60);
    let busiest = (0..sent.len())
        .map(|i| {
            sent[i..]
                .iter()
                .take_while(|t| **t < sent[i] + window)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(busiest <= 300, "{busiest} requests in one 60 s window");
    let stats = fetcher.stats();
    assert_eq!(stats.requests, 600);
    assert_eq!(stats.responses_429, 0);
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(600));
}

/// Answers 429 (with the given Retry-After) `times` times, then 200.
struct RateLimitedThenOk {
    hits: Arc<AtomicUsize>,
    times: usize,
    retry_after: Option<String>,
}

impl Respond for RateLimitedThenOk {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let n = self.hits.fetch_add(1, Ordering::SeqCst);
        if n < self.times {
            let mut response =
                ResponseTemplate::new(429).set_body_json(json!({"error": {"code": "rate_limit"}}));
            if let Some(value) = &self.retry_after {
                response = response.insert_header("Retry-After", value.as_str());
            }
            response
        } else {
            ResponseTemplate::new(200).set_body_json(json!({"ok": true}))
        }
    }
}

async fn rate_limited_server(
    times: usize,
    retry_after: Option<&str>,
) -> (MockServer, Arc<AtomicUsize>) {
    let server = MockServer::start().await;
    let hits = Arc::new(AtomicUsize::new(0));
    Mock::given(method("GET"))
        .and(path("/limited"))
        .respond_with(RateLimitedThenOk {
            hits: hits.clone(),
            times,
            retry_after: retry_after.map(str::to_owned),
        })
        .mount(&server)
        .await;
    (server, hits)
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_is_honoured() {
    let (server, hits) = rate_limited_server(1, Some("7")).await;
    let fetcher = fetcher_for(&server, 6000);
    let clock = fetcher.clock().clone();
    let response = fetcher
        .get("/limited")
        .send()
        .await
        .expect("succeeds after the wait");
    assert_eq!(response.status(), 200);
    let waited = clock.elapsed();
    assert!(waited >= Duration::from_secs(7), "waited only {waited:?}");
    assert!(waited < Duration::from_secs(8), "waited {waited:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let stats = fetcher.stats();
    assert_eq!(
        (stats.requests, stats.retries, stats.responses_429),
        (2, 1, 1)
    );
    assert!(stats.slept_ms >= 7000);
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date_is_honoured() {
    // 30 s after the clock's origin.
    let (server, hits) = rate_limited_server(1, Some("Thu, 01 Jan 2026 00:00:30 GMT")).await;
    let fetcher = fetcher_for(&server, 6000);
    let clock = fetcher.clock().clone();
    fetcher.get("/limited").send().await.expect("succeeds");
    let waited = clock.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "waited {waited:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_429_holds_back_every_request_of_the_installation() {
    let (server, _) = rate_limited_server(1, Some("5")).await;
    Mock::given(method("GET"))
        .and(path("/other"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let fetcher = fetcher_for(&server, 6000);
    let clock = fetcher.clock().clone();
    let first = fetcher.get("/limited").send();
    let second = async {
        // Starts once the 429 has been seen. (No timer here: a timer armed while a real socket
        // is awaited would make the paused clock jump past the answer.)
        while fetcher.stats().responses_429 == 0 {
            tokio::task::yield_now().await;
        }
        let started = clock.elapsed();
        fetcher.get("/other").send().await.expect("ok");
        (started, clock.elapsed())
    };
    let (first, (started, second_at)) = tokio::join!(first, second);
    first.expect("ok");
    assert!(started < Duration::from_secs(1), "{started:?}");
    assert!(
        second_at >= Duration::from_secs(5),
        "the other request went out at {second_at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_run_out_into_a_typed_error() {
    let (server, hits) = rate_limited_server(usize::MAX, Some("1")).await;
    let fetcher = fetcher_for(&server, 6000);
    let error = fetcher.get("/limited").send().await.expect_err("gives up");
    let max = RetryPolicy::default().max_retries;
    match &error {
        FetchError::RateLimited {
            attempts, retries, ..
        } => {
            assert_eq!(*retries, max);
            assert_eq!(*attempts, max + 1);
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(error.is_rate_limited());
    assert_eq!(hits.load(Ordering::SeqCst), max as usize + 1);
    let text = error.to_string();
    assert!(text.contains("rate limited (429) 7 times"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_policy_fails_at_once() {
    let (server, hits) = rate_limited_server(1, Some("86400")).await;
    let fetcher = fetcher_for(&server, 6000);
    let error = fetcher
        .get("/limited")
        .send()
        .await
        .expect_err("refuses to wait a day");
    assert!(
        matches!(error, FetchError::RetryAfterTooLong { status: 429, .. }),
        "{error}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_backs_off() {
    let (server, hits) = rate_limited_server(2, None).await;
    let fetcher = fetcher_for(&server, 6000);
    fetcher.get("/limited").send().await.expect("succeeds");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(fetcher.stats().retries, 2);
}

struct FailThenOk {
    hits: Arc<AtomicUsize>,
    failures: usize,
    status: u16,
}

impl Respond for FailThenOk {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        if self.hits.fetch_add(1, Ordering::SeqCst) < self.failures {
            ResponseTemplate::new(self.status)
        } else {
            ResponseTemplate::new(200).set_body_json(json!({"ok": true}))
        }
    }
}

#[tokio::test(start_paused = true)]
async fn server_errors_are_retried_only_when_idempotent() {
    let server = MockServer::start().await;
    let hits = Arc::new(AtomicUsize::new(0));
    Mock::given(path("/flaky"))
        .respond_with(FailThenOk {
            hits: hits.clone(),
            failures: 2,
            status: 503,
        })
        .mount(&server)
        .await;
    let fetcher = fetcher_for(&server, 6000);
    fetcher.get("/flaky").send().await.expect("GET is retried");
    assert_eq!(hits.swap(0, Ordering::SeqCst), 3);

    let error = fetcher
        .post("/flaky")
        .json(&json!({}))
        .send()
        .await
        .expect_err("POST is not");
    assert_eq!(error.status(), Some(503));
    assert_eq!(hits.swap(0, Ordering::SeqCst), 1);

    fetcher
        .post("/flaky")
        .idempotency_key("6f1c9a8e-test-key")
        .send()
        .await
        .expect("POST with an idempotency key is retried");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let with_key = server.received_requests().await.expect("recorded");
    assert!(
        with_key
            .last()
            .is_some_and(|r| r.headers.get("idempotency-key").is_some())
    );
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_final_and_keep_the_body() {
    let server = MockServer::start().await;
    Mock::given(path("/missing"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"error": {"message": "No such invoice"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let fetcher = fetcher_for(&server, 6000);
    let error = fetcher.get("/missing").send().await.expect_err("404");
    assert_eq!(error.status(), Some(404));
    assert!(error.body().is_some_and(|b| b.contains("No such invoice")));
}

#[tokio::test(start_paused = true)]
async fn a_dead_upstream_fails_in_bounded_time() {
    // Nothing listens on this port (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut config = FetchConfig::new(NonZeroU32::new(6000).expect("rate"), vec![]);
    config.base_url_override = Some(Url::parse(&format!("http://127.0.0.1:{port}")).expect("url"));
    config.http = HttpConfig::virtual_time();
    let fetcher = Fetcher::new(config, Clock::system()).expect("fetcher");
    let clock = fetcher.clock().clone();
    let error = fetcher.get("/x").send().await.expect_err("nothing answers");
    assert!(error.is_transport(), "{error}");
    assert_eq!(
        fetcher.stats().requests,
        u64::from(RetryPolicy::default().max_retries) + 1
    );
    // Backoff is bounded: at most the sum of the capped steps.
    assert!(clock.elapsed() <= Duration::from_secs(6 * 60));
}

#[tokio::test(start_paused = true)]
async fn undeclared_hosts_are_refused_before_any_request() {
    let server = ok_server().await;
    let fetcher = fetcher_for(&server, 6000);
    let error = fetcher
        .get("https://evil.example.org/steal")
        .send()
        .await
        .expect_err("refused");
    assert!(
        matches!(error, FetchError::HostNotAllowed { .. }),
        "{error}"
    );
    assert_eq!(fetcher.stats().requests, 0);
}

/// A Stripe-shaped list of `total` items served in pages, newest-first ids irrelevant here.
struct StripeLike {
    total: usize,
}

impl Respond for StripeLike {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let pairs: Vec<(String, String)> = request.url.query_pairs().into_owned().collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let limit: usize = get("limit").and_then(|v| v.parse().ok()).unwrap_or(10);
        let start = get("starting_after")
            .and_then(|id| id.trim_start_matches("in_").parse::<usize>().ok())
            .unwrap_or(0);
        let end = (start + limit).min(self.total);
        let data: Vec<Value> = (start + 1..=end)
            .map(|n| json!({"id": format!("in_{n}")}))
            .collect();
        ResponseTemplate::new(200)
            .set_body_json(json!({"object": "list", "data": data, "has_more": end < self.total}))
    }
}

#[tokio::test(start_paused = true)]
async fn stripe_pages_stream_lazily_and_resume_after_a_token() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/invoices"))
        .respond_with(StripeLike { total: 250 })
        .mount(&server)
        .await;
    let fetcher = fetcher_for(&server, 6000);
    let mut pages = pin!(stripe_list::<Value>(
        fetcher.clone(),
        "/v1/invoices".into(),
        vec![("status".into(), "open".into())],
        100,
        None,
        PageLimits::default(),
    ));
    let first = pages.try_next().await.expect("ok").expect("a page");
    assert_eq!(first.items.len(), 100);
    assert_eq!(first.next.as_deref(), Some("in_100"));
    // Lazy: one request per page pulled, no read-ahead.
    assert_eq!(fetcher.stats().requests, 1);
    let rest: Vec<_> = pages.try_collect().await.expect("ok");
    assert_eq!(
        rest.iter().map(|p| p.items.len()).collect::<Vec<_>>(),
        vec![100, 50]
    );
    assert_eq!(rest.last().and_then(|p| p.next.clone()), None);
    assert_eq!(fetcher.stats().pages, 3);

    let resumed: Vec<_> = stripe_list::<Value>(
        fetcher.clone(),
        "/v1/invoices".into(),
        vec![],
        100,
        Some("in_200".into()),
        PageLimits::default(),
    )
    .try_collect()
    .await
    .expect("ok");
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].items[0]["id"], "in_201");
    let sent = server.received_requests().await.expect("recorded");
    assert!(
        sent[0]
            .url
            .query()
            .is_some_and(|q| q.contains("status=open") && q.contains("limit=100"))
    );
}

#[tokio::test(start_paused = true)]
async fn hubspot_after_and_airtable_offset() {
    let server = MockServer::start().await;
    Mock::given(path("/crm/v3/objects/contacts"))
        .and(query_param_is_missing("after"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [{"id": "1"}, {"id": "2"}],
            "paging": {"next": {"after": "NTI1Cg%3D%3D", "link": "?after=NTI1Cg%3D%3D"}}
        })))
        .mount(&server)
        .await;
    Mock::given(path("/crm/v3/objects/contacts"))
        .and(query_param("after", "NTI1Cg%3D%3D"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": [{"id": "3"}]})))
        .mount(&server)
        .await;
    Mock::given(path("/v0/appX/Orders"))
        .and(query_param_is_missing("offset"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "records": [{"id": "recA", "fields": {}}], "offset": "itrX/recA"
        })))
        .mount(&server)
        .await;
    Mock::given(path("/v0/appX/Orders"))
        .and(query_param("offset", "itrX/recA"))
        .and(query_param("pageSize", "100"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"records": [{"id": "recB", "fields": {}}]})),
        )
        .mount(&server)
        .await;
    let fetcher = fetcher_for(&server, 6000);
    let contacts: Vec<_> = hubspot_list::<Value>(
        fetcher.clone(),
        "/crm/v3/objects/contacts".into(),
        vec![],
        100,
        None,
        PageLimits::default(),
    )
    .try_collect()
    .await
    .expect("ok");
    assert_eq!(contacts.iter().map(|p| p.items.len()).sum::<usize>(), 3);
    let records: Vec<_> = airtable_list::<Value>(
        fetcher.clone(),
        "/v0/appX/Orders".into(),
        vec![],
        500,
        PageLimits::default(),
    )
    .try_collect()
    .await
    .expect("ok");
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].items[0]["id"], "recB");
}

#[tokio::test(start_paused = true)]
async fn link_headers_are_followed_and_loops_stop() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(path("/items"))
        .and(query_param_is_missing("page"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "Link",
                    format!("<{base}/items?page=2>; rel=\"next\"").as_str(),
                )
                .set_body_json(json!([{"id": 1}])),
        )
        .mount(&server)
        .await;
    Mock::given(path("/items"))
        .and(query_param("page", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "Link",
                    format!("<{base}/items?page=2>; rel=\"next\"").as_str(),
                )
                .set_body_json(json!([{"id": 2}])),
        )
        .mount(&server)
        .await;
    let fetcher = fetcher_for(&server, 6000);
    let result: Result<Vec<_>, _> =
        link_header_list::<Value>(fetcher, "/items".into(), PageLimits::default())
            .try_collect()
            .await;
    match result {
        Err(PageError::RepeatedToken { page, .. }) => assert_eq!(page, 2),
        other => panic!("expected a paging loop error, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn has_more_without_items_is_an_error_not_a_spin() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/invoices"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": [], "has_more": true})),
        )
        .mount(&server)
        .await;
    let fetcher = fetcher_for(&server, 6000);
    let result: Result<Vec<_>, _> = stripe_list::<Value>(
        fetcher,
        "/v1/invoices".into(),
        vec![],
        10,
        None,
        PageLimits::default(),
    )
    .try_collect()
    .await;
    assert!(
        matches!(result, Err(PageError::MoreWithoutToken { page: 1 })),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn undecodable_pages_name_the_json_path() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/invoices"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": [], "has_more": "yes"})),
        )
        .mount(&server)
        .await;
    let fetcher = fetcher_for(&server, 6000);
    let result: Result<Vec<_>, _> = stripe_list::<Value>(
        fetcher,
        "/v1/invoices".into(),
        vec![],
        10,
        None,
        PageLimits::default(),
    )
    .try_collect()
    .await;
    match result {
        Err(PageError::Fetch(FetchError::Decode { path, .. })) => assert_eq!(path, "has_more"),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

mod credentials {
    use std::sync::Mutex;

    use ivory_sdk::Secret;
    use ivory_sdk::connector::BoxFuture;
    use ivory_sdk::fetch::{AuthError, Token, TokenSource};
    use wiremock::matchers::header;

    use super::*;

    /// A token source whose token can be rotated; counts refreshes.
    #[derive(Debug)]
    struct Rotating {
        current: Mutex<(String, u64)>,
        next: Option<String>,
        refreshes: AtomicUsize,
        fail: Option<AuthError>,
    }

    impl Rotating {
        fn new(token: &str, next: Option<&str>) -> Self {
            Self {
                current: Mutex::new((token.to_owned(), 1)),
                next: next.map(str::to_owned),
                refreshes: AtomicUsize::new(0),
                fail: None,
            }
        }

        fn set(&self, token: &str) {
            let mut current = self.current.lock().expect("lock");
            *current = (token.to_owned(), current.1 + 1);
        }
    }

    impl TokenSource for Rotating {
        fn token(&self) -> BoxFuture<'_, Result<Token, AuthError>> {
            Box::pin(async move {
                if let Some(error) = &self.fail {
                    return Err(error.clone());
                }
                let current = self.current.lock().expect("lock").clone();
                Ok(Token {
                    secret: Secret::new(current.0),
                    version: current.1,
                })
            })
        }

        fn unauthorized<'a>(
            &'a self,
            rejected: &'a Token,
        ) -> BoxFuture<'a, Result<bool, AuthError>> {
            Box::pin(async move {
                self.refreshes.fetch_add(1, Ordering::SeqCst);
                let mut current = self.current.lock().expect("lock");
                if current.1 != rejected.version {
                    return Ok(true); // someone else already rotated it: reload
                }
                match &self.next {
                    Some(next) => {
                        *current = (next.clone(), current.1 + 1);
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
        }
    }

    fn fetcher_with(server: &MockServer, source: Arc<dyn TokenSource>) -> Fetcher {
        let mut config = FetchConfig::new(NonZeroU32::new(6000).expect("rate"), vec![]);
        config.base_url_override = Some(Url::parse(&server.uri()).expect("uri"));
        config.http = HttpConfig::virtual_time();
        config.auth = Some(source);
        Fetcher::new(config, Clock::starting_at(origin())).expect("fetcher")
    }

    async fn server_accepting(token: &str) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(path("/me"))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(path("/me"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "expired"})))
            .with_priority(2)
            .mount(&server)
            .await;
        server
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_refreshes_once_and_sends_again() {
        let server = server_accepting("fresh-token-fake").await;
        let source = Arc::new(Rotating::new("stale-token-fake", Some("fresh-token-fake")));
        let fetcher = fetcher_with(&server, source.clone());
        fetcher
            .get("/me")
            .send()
            .await
            .expect("ok after the refresh");
        assert_eq!(source.refreshes.load(Ordering::SeqCst), 1);
        assert_eq!(fetcher.stats().requests, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_401_is_final_not_a_loop() {
        let server = server_accepting("never-issued").await;
        let source = Arc::new(Rotating::new("stale-token-fake", Some("also-wrong-fake")));
        let fetcher = fetcher_with(&server, source.clone());
        let error = fetcher.get("/me").send().await.expect_err("401");
        assert_eq!(error.status(), Some(401));
        assert_eq!(source.refreshes.load(Ordering::SeqCst), 1);
        assert_eq!(fetcher.stats().requests, 2);
        // The error never carries the token.
        assert!(!error.to_string().contains("wrong-fake"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_token_is_read_again_after_a_backoff() {
        let server = MockServer::start().await;
        let hits = Arc::new(AtomicUsize::new(0));
        Mock::given(path("/me"))
            .respond_with(RateLimitedThenOk {
                hits: hits.clone(),
                times: 1,
                retry_after: Some("30".into()),
            })
            .mount(&server)
            .await;
        let source = Arc::new(Rotating::new("before-fake", None));
        let fetcher = fetcher_with(&server, source.clone());
        let request = fetcher.get("/me").send();
        let rotate = async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            source.set("after-fake");
        };
        let (result, ()) = tokio::join!(request, rotate);
        result.expect("ok");
        let sent = server.received_requests().await.expect("recorded");
        let auth: Vec<_> = sent
            .iter()
            .map(|r| {
                r.headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(auth, vec!["Bearer before-fake", "Bearer after-fake"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_grant_is_a_typed_reconsent_error_before_any_request() {
        let server = server_accepting("x").await;
        let mut source = Rotating::new("x", None);
        source.fail = Some(AuthError::reconsent(
            "the refresh token was revoked (invalid_grant); connect again",
        ));
        let fetcher = fetcher_with(&server, Arc::new(source));
        let error = fetcher.get("/me").send().await.expect_err("no credential");
        assert!(error.needs_reconsent(), "{error}");
        assert!(error.to_string().contains("connect again"));
        assert_eq!(fetcher.stats().requests, 0);
    }
}
