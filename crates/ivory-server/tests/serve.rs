//! `ivory serve` end to end on loopback: a real listener, real HTTP, a real SQLite file, the
//! fake upstreams of the testkit. Real time throughout (the store is real IO; see
//! ECOSYSTEM.md on paused time with sockets), with short schedules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use ivory_runtime::store::{
    Actor, Approval, InstallRequest, RunStatus, StoredGrant, Tombstones, WebhookSecretSource,
};
use ivory_runtime::{MasterKeys, Runner, Store, SyncOptions, Vault};
use ivory_sdk::manifest::{CursorKind, Manifest};
use ivory_sdk::webhook::{Delivery, Scheme, Verifier};
use ivory_sdk::{Clock, Credentials, Secret};
use ivory_server::{Connectors, Server, ServerConfig};
use ivory_testkit::connectors::{ItemsConnector, items_manifest};
use ivory_testkit::items::ItemsUpstream;
use ivory_testkit::stripe::{FakeStripe, TEST_API_KEY};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

const TENANT: &str = "acme";
const WEBHOOK_SECRET: &str = "whsec_test_ivory_server_not_a_real_secret";

struct Env {
    _dir: TempDir,
    store: Store,
    vault: Arc<Vault>,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ivory.db");
    let store = Store::open(path.to_str().expect("utf-8 path"))
        .await
        .expect("store");
    let key = MasterKeys::generate_key().expect("key");
    let vault = Arc::new(Vault::new(
        MasterKeys::from_env_value(key.expose()).expect("keys"),
    ));
    Env {
        _dir: dir,
        store,
        vault,
    }
}

async fn install(env: &Env, manifest: &Manifest, settings: &[(&str, &str)]) -> String {
    let settings: BTreeMap<String, String> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.store
        .install(
            &InstallRequest {
                tenant: TENANT,
                manifest,
                settings,
                actor: &Actor::User("admin".into()),
                approval: Approval::Approved,
                now: Clock::system().now(),
            },
            &env.vault,
        )
        .await
        .expect("install");
    env.store
        .installation(TENANT, &manifest.id)
        .await
        .expect("read")
        .expect("installed")
        .id
}

struct Running {
    base: Url,
    stop: CancellationToken,
    task: JoinHandle<Result<(), ivory_server::ServerError>>,
    server: Server,
}

impl Running {
    async fn shutdown(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops within 10 s")
            .expect("join")
            .expect("clean stop");
    }
}

async fn serve(env: &Env, connectors: Connectors, config: ServerConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base =
        Url::parse(&format!("http://{}", listener.local_addr().expect("addr"))).expect("url");
    let server = Server::new(
        env.store.clone(),
        env.vault.clone(),
        connectors,
        config,
        Clock::system(),
    )
    .expect("server");
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.clone().run(listener, stop.clone()));
    Running {
        base,
        stop,
        task,
        server,
    }
}

fn stripe_connectors() -> Connectors {
    let mut connectors = Connectors::default();
    connectors.add(
        ivory_connector_stripe::manifest().clone(),
        Arc::new(ivory_connector_stripe::StripeConnector::default()),
    );
    connectors
}

fn items_connectors(rate_per_minute: u32) -> Connectors {
    let mut connectors = Connectors::default();
    connectors.add(
        items_manifest("example-items", CursorKind::OpaqueToken, rate_per_minute),
        Arc::new(ItemsConnector {
            page_size: 100,
            kind: "item",
        }),
    );
    connectors
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn post(client: &reqwest::Client, url: &Url, delivery: &Delivery) -> (u16, Value) {
    let mut request = client.post(url.clone());
    for (name, value) in delivery.headers() {
        request = request.header(name, value);
    }
    let response = request
        .body(delivery.body().to_vec())
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_ingress_accepts_once_and_refuses_replays_tampering_and_oversize() {
    let env = env().await;
    let manifest = ivory_connector_stripe::manifest().clone();
    let installation = install(&env, &manifest, &[("schedule", "off")]).await;
    let now = Clock::system().now();
    env.store
        .put_credentials(
            &installation,
            &StoredGrant::ApiKey(Secret::new(TEST_API_KEY)),
            &env.vault,
            now,
        )
        .await
        .expect("credentials");
    let record = env
        .store
        .installation_by_id(&installation)
        .await
        .expect("read")
        .expect("exists");
    env.store
        .set_webhook_secret(
            &record,
            &Secret::new(WEBHOOK_SECRET),
            WebhookSecretSource::Tenant,
            &env.vault,
            &Actor::User("admin".into()),
            now,
        )
        .await
        .expect("secret");
    // The mirror first, so the workflow has an invoice to mark.
    let fake = FakeStripe::start_with_key(30, now.as_second(), TEST_API_KEY)
        .await
        .expect("fake stripe");
    Runner::new(env.store.clone(), Clock::system())
        .sync(
            TENANT,
            &manifest,
            &ivory_connector_stripe::StripeConnector::default(),
            Credentials::ApiKey(Secret::new(TEST_API_KEY)),
            SyncOptions {
                base_url: Some(fake.base_url()),
                ..SyncOptions::default()
            },
        )
        .await
        .expect("sync");

    let config = ServerConfig {
        body_limit: 16 * 1024,
        scheduler: false,
        oauth_from_env: false,
        ..ServerConfig::default()
    };
    let server = serve(&env, stripe_connectors(), config).await;
    let client = reqwest::Client::new();
    let url = server
        .base
        .join(&format!("/webhooks/{installation}"))
        .expect("url");
    let verifier = Verifier::new(Scheme::Stripe, WEBHOOK_SECRET).expect("verifier");
    let event = fake.fail_payment("in_00000007").expect("invoice exists");
    let body = serde_json::to_vec(&event).expect("json");
    let signed = verifier
        .sign(
            Delivery::new(Default::default(), body.clone()),
            Clock::system().now(),
        )
        .expect("sign");

    let (status, answer) = post(&client, &url, &signed).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "accepted");
    assert_eq!(
        answer["workflow_runs"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );

    // The exact same bytes again: a replay, refused.
    let (status, answer) = post(&client, &url, &signed).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (409, Some("replayed")),
        "{answer}"
    );

    // Stripe retrying the same event (re-signed later): 2xx, and nothing runs twice.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let retry = verifier
        .sign(
            Delivery::new(Default::default(), body.clone()),
            Clock::system().now(),
        )
        .expect("sign");
    let (status, answer) = post(&client, &url, &retry).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate")),
        "{answer}"
    );
    let runs = env.store.workflow_runs(TENANT).await.expect("runs");
    assert_eq!(runs.len(), 1, "the workflow ran once: {runs:?}");
    let tasks: Vec<_> = env
        .store
        .export_records(TENANT, "task", Tombstones::Exclude)
        .try_collect()
        .await
        .expect("tasks");
    assert_eq!(tasks.len(), 1, "one follow-up task");

    // Tampered: one byte of the body changed, the signature kept.
    let mut tampered = body.clone();
    let last_digit = tampered
        .iter()
        .rposition(u8::is_ascii_digit)
        .expect("a digit");
    tampered[last_digit] = if tampered[last_digit] == b'9' {
        b'1'
    } else {
        tampered[last_digit] + 1
    };
    let tampered = Delivery::new(signed.headers().clone(), tampered);
    let (status, answer) = post(&client, &url, &tampered).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (400, Some("rejected")),
        "{answer}"
    );
    assert!(
        answer["reason"]
            .as_str()
            .is_some_and(|r| r.contains("signature")),
        "the reason names the signature: {answer}"
    );

    // Wrong secret, unsigned, unknown installation, oversize.
    let wrong = Verifier::new(Scheme::Stripe, "whsec_test_some_other_secret_not_real")
        .expect("verifier")
        .sign(
            Delivery::new(Default::default(), body.clone()),
            Clock::system().now(),
        )
        .expect("sign");
    assert_eq!(post(&client, &url, &wrong).await.0, 400);
    let unsigned = Delivery::new(Default::default(), body.clone());
    let (status, answer) = post(&client, &url, &unsigned).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = post(
        &client,
        &server.base.join("/webhooks/inst_nope").expect("url"),
        &signed,
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (404, Some("unknown_installation"))
    );
    let huge = verifier
        .sign(
            Delivery::new(Default::default(), vec![b' '; 64 * 1024]),
            Clock::system().now(),
        )
        .expect("sign");
    let (status, answer) = post(&client, &url, &huge).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["reason"]
            .as_str()
            .is_some_and(|r| r.contains("16384")),
        "{answer}"
    );

    // Health and metrics, on a new connection (the server closes one whose body it refused
    // to read).
    let client = reqwest::Client::new();
    let health = client
        .get(server.base.join("/healthz").expect("url"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let text = client
        .get(server.base.join("/metrics").expect("url"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for (series, value) in [
        (
            r#"ivory_webhook_deliveries_total{connector="stripe",outcome="accepted"}"#,
            1.0,
        ),
        (
            r#"ivory_webhook_deliveries_total{connector="stripe",outcome="replayed"}"#,
            1.0,
        ),
        (
            r#"ivory_webhook_deliveries_total{connector="stripe",outcome="duplicate"}"#,
            1.0,
        ),
        (
            r#"ivory_webhook_deliveries_total{connector="stripe",outcome="rejected"}"#,
            3.0,
        ),
        (
            r#"ivory_webhook_deliveries_total{connector="stripe",outcome="too_large"}"#,
            1.0,
        ),
        (
            r#"ivory_webhook_deliveries_total{connector="unknown",outcome="unknown_installation"}"#,
            1.0,
        ),
    ] {
        assert_eq!(metric(&text, series), Some(value), "{series} in:\n{text}");
    }
    assert!(
        text.contains(r#"ivory_http_requests_total{route="/webhooks/{installation}",method="POST",status="200"} 2"#),
        "requests are labelled by route template, not by installation:\n{text}"
    );
    assert!(
        !text.contains(&installation),
        "no installation id in any label"
    );
    assert!(!text.contains(TENANT), "no tenant in any label");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_syncs_each_installation_on_its_interval() {
    let env = env().await;
    let upstream = ItemsUpstream::start(250, 3, 50).await.expect("upstream");
    let manifest = items_manifest("example-items", CursorKind::OpaqueToken, 60_000);
    let installation = install(&env, &manifest, &[("schedule", "1s")]).await;
    // Installed but never connected: refused once per interval, not on every tick.
    let stripe = install(
        &env,
        ivory_connector_stripe::manifest(),
        &[("schedule", "1s")],
    )
    .await;
    let mut connectors = items_connectors(60_000);
    connectors.add(
        ivory_connector_stripe::manifest().clone(),
        Arc::new(ivory_connector_stripe::StripeConnector::default()),
    );
    let config = ServerConfig {
        tick: Duration::from_millis(50),
        upstreams: [("example-items".to_owned(), upstream.base_url())].into(),
        oauth_from_env: false,
        ..ServerConfig::default()
    };
    let server = serve(&env, connectors, config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let runs = env.store.runs_of(&installation).await.expect("runs");
        if runs
            .iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count()
            >= 3
        {
            break runs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "3 runs within 10 s: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = server.server.metrics().render().expect("render");
    server.shutdown().await;
    assert_eq!(runs[0].totals.records_created, 250, "{runs:?}");
    assert!(
        runs[1..].iter().all(|r| r.totals.records_created == 0),
        "later runs resume from the cursor: {runs:?}"
    );
    assert!(env.store.runs_of(&stripe).await.expect("runs").is_empty());
    let refused = metric(
        &text,
        r#"ivory_syncs_total{connector="stripe",outcome="refused"}"#,
    )
    .expect("the refusal is counted");
    assert!(
        refused <= 5.0,
        "an unconnected installation is tried once per interval, not per 50 ms tick ({refused})"
    );
    assert!(
        metric(
            &text,
            r#"ivory_records_total{connector="example-items",outcome="created"}"#
        ) == Some(250.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_sync_at_a_page_boundary_and_the_next_run_completes_it_exactly() {
    const ITEMS: u64 = 20_000;
    let env = env().await;
    let upstream = ItemsUpstream::start_generated(ITEMS, 3, 50)
        .await
        .expect("upstream");
    // 100 items a page at 3000 pages a minute: 200 pages take about 4 s.
    let manifest = items_manifest("example-items", CursorKind::OpaqueToken, 3000);
    // A short interval: the first start's jitter is at most a tenth of it.
    let installation = install(&env, &manifest, &[("schedule", "10s")]).await;
    let config = ServerConfig {
        tick: Duration::from_millis(50),
        upstreams: [("example-items".to_owned(), upstream.base_url())].into(),
        oauth_from_env: false,
        ..ServerConfig::default()
    };
    let server = serve(&env, items_connectors(3000), config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while upstream.requests().len() < 30 {
        assert!(tokio::time::Instant::now() < deadline, "the sync started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = tokio::time::Instant::now();
    server.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopped at the next page boundary, not at the end ({:?})",
        stopping.elapsed()
    );
    let runs = env.store.runs_of(&installation).await.expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let interrupted = &runs[0];
    assert_eq!(
        interrupted.status,
        RunStatus::Interrupted,
        "{interrupted:?}"
    );
    let kept = interrupted.totals.records_created;
    assert!(kept > 0 && kept < ITEMS, "{interrupted:?}");
    let stored: Vec<_> = env
        .store
        .export_records(TENANT, "item", Tombstones::Exclude)
        .try_collect()
        .await
        .expect("records");
    assert_eq!(
        stored.len() as u64,
        kept,
        "what the run recorded is what is stored"
    );

    // The next run resumes from the committed cursor; the result is exactly a clean run's.
    let summary = Runner::new(env.store.clone(), Clock::system())
        .sync(
            TENANT,
            &manifest,
            &ItemsConnector {
                page_size: 100,
                kind: "item",
            },
            Credentials::None,
            SyncOptions {
                base_url: Some(upstream.base_url()),
                ..SyncOptions::default()
            },
        )
        .await
        .expect("resumed sync");
    assert_eq!(summary.totals.records_created, ITEMS - kept);
    let stored: Vec<_> = env
        .store
        .export_records(TENANT, "item", Tombstones::Exclude)
        .try_collect()
        .await
        .expect("records");
    assert_eq!(stored.len() as u64, ITEMS, "nothing lost, nothing twice");
    assert!(
        stored.iter().all(|r| r.version == 1),
        "no record written twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_postgres_store_process_an_event_once() {
    let url = ivory_testkit::pg::fresh_database().await;
    let key = MasterKeys::generate_key().expect("key");
    let open = || async {
        let store = Store::open(&url).await.expect("store");
        let vault = Arc::new(Vault::new(
            MasterKeys::from_env_value(key.expose()).expect("keys"),
        ));
        (store, vault)
    };
    let dir = tempfile::tempdir().expect("dir");
    let (store_a, vault_a) = open().await;
    let env_a = Env {
        _dir: dir,
        store: store_a,
        vault: vault_a,
    };
    let manifest = ivory_connector_stripe::manifest().clone();
    let installation = install(&env_a, &manifest, &[("schedule", "off")]).await;
    let record = env_a
        .store
        .installation_by_id(&installation)
        .await
        .expect("read")
        .expect("exists");
    env_a
        .store
        .set_webhook_secret(
            &record,
            &Secret::new(WEBHOOK_SECRET),
            WebhookSecretSource::Tenant,
            &env_a.vault,
            &Actor::User("admin".into()),
            Clock::system().now(),
        )
        .await
        .expect("secret");
    // A second process: its own pool on the same database.
    let (store_b, vault_b) = open().await;
    let env_b = Env {
        _dir: tempfile::tempdir().expect("dir"),
        store: store_b,
        vault: vault_b,
    };
    let config = || ServerConfig {
        scheduler: false,
        oauth_from_env: false,
        ..ServerConfig::default()
    };
    let a = serve(&env_a, stripe_connectors(), config()).await;
    let b = serve(&env_b, stripe_connectors(), config()).await;
    let fake = FakeStripe::start_with_key(10, Clock::system().now().as_second(), TEST_API_KEY)
        .await
        .expect("fake");
    let body =
        serde_json::to_vec(&fake.fail_payment("in_00000003").expect("invoice")).expect("json");
    let verifier = Verifier::new(Scheme::Stripe, WEBHOOK_SECRET).expect("verifier");
    let client = reqwest::Client::new();
    let path = format!("/webhooks/{installation}");
    let (url_a, url_b) = (
        a.base.join(&path).expect("url"),
        b.base.join(&path).expect("url"),
    );

    // The same bytes to both at once: one accepts, the other sees a replay.
    let signed = verifier
        .sign(
            Delivery::new(Default::default(), body.clone()),
            Clock::system().now(),
        )
        .expect("sign");
    let (first, second) = tokio::join!(
        post(&client, &url_a, &signed),
        post(&client, &url_b, &signed),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{first:?} {second:?}");

    // The upstream's retry of the same event, re-signed, to both at once: both 2xx, nothing
    // runs twice.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let retry = verifier
        .sign(
            Delivery::new(Default::default(), body),
            Clock::system().now(),
        )
        .expect("sign");
    let (first, second) =
        tokio::join!(post(&client, &url_a, &retry), post(&client, &url_b, &retry),);
    let mut answers = [
        (first.0, first.1["status"].as_str().unwrap_or("").to_owned()),
        (
            second.0,
            second.1["status"].as_str().unwrap_or("").to_owned(),
        ),
    ];
    answers.sort();
    assert_eq!(
        answers,
        [(200, "duplicate".to_owned()), (409, "replayed".to_owned())],
        "{first:?} {second:?}"
    );
    let runs = env_a.store.workflow_runs(TENANT).await.expect("runs");
    assert_eq!(
        runs.len(),
        1,
        "the workflow ran once across both servers: {runs:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}
