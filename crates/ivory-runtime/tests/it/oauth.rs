//! OAuth against the testkit's strict fake authorization server on loopback: the dance with
//! PKCE and state, its negative cases, refresh (proactive, after a 401, single-flight across
//! tasks and across "processes"), rotation, `invalid_grant` → re-consent.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use ivory_runtime::oauth::{
    CallbackParams, ClientAuth, OAuthApp, OAuthEndpoints, OAuthError, OAuthTokenSource, flow,
    http::token_client,
};
use ivory_runtime::store::StoredGrant;
use ivory_runtime::{Installation, MasterKeys, Vault};
use ivory_sdk::fetch::{FetchConfig, Fetcher, HttpConfig, TokenSource};
use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::{Clock, Secret};
use ivory_testkit::oauth::{CLIENT_ID, CLIENT_SECRET, OAuthServer};
use jiff::{SignedDuration, Timestamp};
use url::Url;

use crate::support::{Env, env, t0};

const CALLBACK: &str = "http://127.0.0.1:8788/oauth/callback";

struct World {
    env: Env,
    fake: OAuthServer,
    vault: Arc<Vault>,
    app: OAuthApp,
    endpoints: OAuthEndpoints,
    installation: Installation,
}

fn manifest(fake: &OAuthServer, pkce: bool) -> Manifest {
    let json = serde_json::json!({
        "id": "oauth-example",
        "name": "OAuth example",
        "version": "0.1.0",
        "publisher": "Ivory (tests)",
        "description": "A connector authorized against the fake OAuth server.",
        "listing": {"conflictPolicy": "Inbound only (source_wins)."},
        "hosts": ["127.0.0.1"],
        "connection": {
            "type": "oauth2",
            "authorizationUrl": fake.url("/oauth2/authorize").as_str(),
            "tokenUrl": fake.url("/oauth2/token").as_str(),
            "scopes": ["data.records:read", "schema.bases:read"],
            "pkce": pkce,
            "sync": {"cursor": "none", "direction": "inbound", "conflictPolicy": "source_wins", "rateLimitPerMinute": 300}
        }
    });
    Manifest::parse(&json.to_string(), ValidationMode::Test).expect("valid test manifest")
}

fn app() -> OAuthApp {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("IVORY_OAUTH_CLIENT_ID", CLIENT_ID),
        ("IVORY_OAUTH_CLIENT_SECRET", CLIENT_SECRET),
        ("IVORY_OAUTH_CALLBACK", CALLBACK),
    ]);
    OAuthApp::from_env(|k| vars.get(k).map(|v| (*v).to_owned())).expect("app")
}

async fn world(pkce: bool, ttl: Duration) -> World {
    let env = env().await;
    let fake = OAuthServer::start(&[CALLBACK], ttl).await.expect("fake");
    let key = MasterKeys::generate_key().expect("key");
    let vault = Arc::new(Vault::new(
        MasterKeys::from_env_value(key.expose()).expect("keys"),
    ));
    let manifest = manifest(&fake, pkce);
    let endpoints = OAuthEndpoints::from_manifest(&manifest).expect("endpoints");
    let installation = env
        .store
        .ensure_installation("acme", &manifest, &Default::default(), t0())
        .await
        .expect("installation");
    World {
        env,
        fake,
        vault,
        app: app(),
        endpoints,
        installation,
    }
}

/// The tenant's browser: follows the consent URL and returns the redirect's query.
async fn consent(url: &Url) -> Result<CallbackParams, String> {
    ivory_sdk::fetch::install_tls_provider();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client.get(url.as_str()).send().await.expect("reachable");
    if !response.status().is_redirection() {
        return Err(format!(
            "{}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        ));
    }
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_owned();
    let back = Url::parse(&location).expect("redirect URL");
    assert!(back.as_str().starts_with(CALLBACK), "{back}");
    Ok(CallbackParams::from_query(back.query().unwrap_or("")))
}

async fn connect(w: &World) -> CallbackParams {
    let auth = flow::begin(
        &w.env.store,
        &w.vault,
        &w.app,
        &w.endpoints,
        &w.installation,
        t0(),
    )
    .await
    .expect("begin");
    consent(&auth.url).await.expect("approved")
}

#[tokio::test]
async fn the_dance_stores_the_tenants_grant() {
    let w = world(true, Duration::from_secs(3600)).await;
    let auth = flow::begin(
        &w.env.store,
        &w.vault,
        &w.app,
        &w.endpoints,
        &w.installation,
        t0(),
    )
    .await
    .expect("begin");
    let query: HashMap<String, String> = auth.url.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], CLIENT_ID);
    assert_eq!(query["redirect_uri"], CALLBACK);
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["scope"], "data.records:read schema.bases:read");
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(query["code_challenge"].len() >= 43);
    assert!(query["state"].len() >= 32);

    let callback = consent(&auth.url).await.expect("approved");
    let http = token_client().expect("client");
    let connected = flow::complete(&w.env.store, &w.vault, &w.app, &callback, &http, t0())
        .await
        .expect("exchange");
    assert_eq!(connected.tenant, "acme");
    assert_eq!(connected.installation, w.installation.id);
    let (grant, _) = w
        .env
        .store
        .credentials(&w.installation.id, &w.vault)
        .await
        .expect("read")
        .expect("stored");
    let StoredGrant::OAuth2(grant) = grant else {
        panic!("an OAuth grant")
    };
    assert!(grant.refresh_token.is_some());
    assert_eq!(
        grant.expires_at,
        t0().checked_add(SignedDuration::from_secs(3600)).ok()
    );
    assert!(!format!("{grant:?}").contains(grant.access_token.expose()));

    // The same callback again: the state was single use (and the code too).
    let replayed = flow::complete(&w.env.store, &w.vault, &w.app, &callback, &http, t0()).await;
    assert!(
        matches!(replayed, Err(OAuthError::BadState)),
        "{replayed:?}"
    );
    assert_eq!(w.fake.exchanges(), 1);
}

#[tokio::test]
async fn bad_states_denials_and_provider_refusals() {
    let w = world(true, Duration::from_secs(3600)).await;
    let http = token_client().expect("client");

    let mut forged = connect(&w).await;
    forged.state = Some("forged-state-value-0000000000000".into());
    let result = flow::complete(&w.env.store, &w.vault, &w.app, &forged, &http, t0()).await;
    assert!(matches!(result, Err(OAuthError::BadState)), "{result:?}");

    let late = connect(&w).await;
    let eleven_minutes = t0().checked_add(SignedDuration::from_mins(11)).expect("t");
    let result = flow::complete(&w.env.store, &w.vault, &w.app, &late, &http, eleven_minutes).await;
    assert!(
        matches!(result, Err(OAuthError::BadState)),
        "expired state: {result:?}"
    );

    w.fake.deny();
    let denied = connect(&w).await;
    let result = flow::complete(&w.env.store, &w.vault, &w.app, &denied, &http, t0()).await;
    match result {
        Err(OAuthError::Denied { error, .. }) => assert_eq!(error, "access_denied"),
        other => panic!("expected a denial, got {other:?}"),
    }
    assert_eq!(w.fake.exchanges(), 0);
    assert!(
        w.env
            .store
            .credentials(&w.installation.id, &w.vault)
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn the_server_enforces_pkce_and_the_redirect_uri() {
    // A manifest that turns PKCE off, against a provider that requires it.
    let w = world(false, Duration::from_secs(3600)).await;
    let http = token_client().expect("client");
    let callback = connect(&w).await;
    let result = flow::complete(&w.env.store, &w.vault, &w.app, &callback, &http, t0()).await;
    assert!(
        matches!(&result, Err(OAuthError::Denied { error, .. }) if error == "invalid_request"),
        "{result:?}"
    );

    // An app whose redirect URI is not registered never gets a redirect.
    let mut wrong = app();
    wrong.redirect_uri = Url::parse("http://127.0.0.1:9999/elsewhere").expect("url");
    let w = world(true, Duration::from_secs(3600)).await;
    let auth = flow::begin(
        &w.env.store,
        &w.vault,
        &wrong,
        &w.endpoints,
        &w.installation,
        t0(),
    )
    .await
    .expect("begin");
    let refused = consent(&auth.url).await.expect_err("refused");
    assert!(
        refused.contains("redirect_uri is not registered"),
        "{refused}"
    );

    // Wrong client secret at the token endpoint.
    let w = world(true, Duration::from_secs(3600)).await;
    let callback = connect(&w).await;
    let mut bad_secret = app();
    bad_secret.client_secret = Some(Secret::new("wrong-secret-fake"));
    let result = flow::complete(&w.env.store, &w.vault, &bad_secret, &callback, &http, t0()).await;
    assert!(
        matches!(&result, Err(OAuthError::TokenRefused { error, .. }) if error == "invalid_client"),
        "{result:?}"
    );
    assert!(!format!("{result:?}").contains("wrong-secret-fake"));
}

async fn connected(ttl: Duration) -> World {
    let w = world(true, ttl).await;
    let callback = connect(&w).await;
    flow::complete(
        &w.env.store,
        &w.vault,
        &w.app,
        &callback,
        &token_client().expect("client"),
        t0(),
    )
    .await
    .expect("connected");
    w
}

fn source(w: &World, clock: Clock) -> OAuthTokenSource {
    OAuthTokenSource::new(
        w.env.store.clone(),
        w.vault.clone(),
        w.app.clone(),
        w.endpoints.token_url.clone(),
        &w.installation.id,
        clock,
        token_client().expect("client"),
    )
}

fn at(offset: SignedDuration) -> Clock {
    Clock::starting_at(t0().checked_add(offset).expect("t"))
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed_once_for_fifty_concurrent_requests() {
    let w = connected(Duration::from_secs(3600)).await;
    // 59 minutes later: inside the 2-minute margin.
    let source = Arc::new(source(&w, at(SignedDuration::from_mins(59))));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.token().await })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(
            task.await
                .expect("join")
                .expect("token")
                .secret
                .expose()
                .to_owned(),
        );
    }
    assert_eq!(w.fake.refreshes(), 1);
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "everyone got the refreshed token");
}

#[tokio::test]
async fn two_processes_refresh_a_rotating_token_exactly_once() {
    let w = connected(Duration::from_secs(3600)).await;
    let later = SignedDuration::from_mins(59);
    let (a, b) = (source(&w, at(later)), source(&w, at(later)));
    let (ta, tb) = tokio::join!(a.token(), b.token());
    let (ta, tb) = (ta.expect("a"), tb.expect("b"));
    assert_eq!(
        w.fake.refreshes(),
        1,
        "the rotating refresh token was spent once"
    );
    assert_eq!(ta.secret.expose(), tb.secret.expose());
    assert_eq!(ta.version, tb.version);
}

#[tokio::test]
async fn a_401_refreshes_and_the_request_goes_through() {
    let w = connected(Duration::from_secs(3600)).await;
    // The upstream forgot the access token (revoked on its side), though it is not expired.
    let fetch_source = Arc::new(source(&w, at(SignedDuration::ZERO)));
    let first = fetch_source.token().await.expect("token");
    ivory_sdk::fetch::install_tls_provider();
    let revoke = reqwest::Client::new()
        .post(w.fake.url("/oauth2/revoke").as_str())
        .form(&[("token", first.secret.expose())])
        .send()
        .await
        .expect("revoke");
    assert!(revoke.status().is_success());

    let mut config = FetchConfig::new(NonZeroU32::new(600).expect("rate"), vec![]);
    config.base_url_override = Some(w.fake.url("/"));
    config.http = HttpConfig::default();
    config.auth = Some(fetch_source.clone());
    let fetcher = Fetcher::new(config, at(SignedDuration::ZERO)).expect("fetcher");
    fetcher
        .get("/api/me")
        .send()
        .await
        .expect("ok after one refresh");
    assert_eq!(w.fake.refreshes(), 1);
    assert_eq!(fetcher.stats().requests, 2);
}

#[tokio::test]
async fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
    let w = connected(Duration::from_secs(3600)).await;
    w.fake.omit_refresh_token_on_refresh();
    let (before, _) = w
        .env
        .store
        .credentials(&w.installation.id, &w.vault)
        .await
        .expect("r")
        .expect("s");
    let source = source(&w, at(SignedDuration::from_mins(59)));
    source.token().await.expect("refreshed");
    let (after, _) = w
        .env
        .store
        .credentials(&w.installation.id, &w.vault)
        .await
        .expect("r")
        .expect("s");
    let (StoredGrant::OAuth2(before), StoredGrant::OAuth2(after)) = (before, after) else {
        panic!("OAuth grants")
    };
    assert_ne!(before.access_token.expose(), after.access_token.expose());
    assert_eq!(
        before.refresh_token.as_ref().map(Secret::expose),
        after.refresh_token.as_ref().map(Secret::expose)
    );
}

#[tokio::test]
async fn a_revoked_refresh_token_marks_the_installation_for_reconsent() {
    let w = connected(Duration::from_secs(3600)).await;
    w.fake.revoke_all_refresh_tokens();
    let source = source(&w, at(SignedDuration::from_mins(59)));
    let error = source.token().await.expect_err("invalid_grant");
    assert!(error.needs_reconsent, "{error}");
    assert!(error.message.contains("must connect again"), "{error}");
    let installation = w
        .env
        .store
        .installation("acme", "oauth-example")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(installation.status, "needs_reconsent");
    // A later try does not hammer the endpoint with the dead token forever: the claim is
    // released and the same answer comes back.
    assert!(source.token().await.is_err());
}

#[tokio::test]
async fn client_auth_in_the_body_works_too() {
    let w = world(true, Duration::from_secs(3600)).await;
    let mut body_app = app();
    body_app.client_auth = ClientAuth::RequestBody;
    let auth = flow::begin(
        &w.env.store,
        &w.vault,
        &body_app,
        &w.endpoints,
        &w.installation,
        t0(),
    )
    .await
    .expect("begin");
    let callback = consent(&auth.url).await.expect("approved");
    flow::complete(
        &w.env.store,
        &w.vault,
        &body_app,
        &callback,
        &token_client().expect("c"),
        t0(),
    )
    .await
    .expect("exchange with client_secret in the body");
    let _ = Timestamp::now();
}

/// Calls the fake's protected API once: a connector using the tenant's OAuth grant.
struct CallsMe;

impl ivory_sdk::Connector for CallsMe {
    async fn sync(
        &self,
        ctx: &mut ivory_sdk::Context,
    ) -> Result<ivory_sdk::SyncResult, ivory_sdk::Error> {
        let me: serde_json::Value = ctx.get("/api/me").send().await?.json()?;
        tracing::info!(?me, "Called the API.");
        Ok(ivory_sdk::SyncResult::default())
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of a sync that refreshes its token (at trace level, dependencies
/// included) and its JSON summary: neither the old nor the new tokens appear.
#[tokio::test(flavor = "current_thread")]
async fn no_token_reaches_logs_or_json_output() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let w = connected(Duration::from_secs(3600)).await;
    let (before, _) = w
        .env
        .store
        .credentials(&w.installation.id, &w.vault)
        .await
        .expect("r")
        .expect("s");
    let StoredGrant::OAuth2(before) = before else {
        panic!("oauth grant")
    };
    let clock = at(SignedDuration::from_mins(59));
    let source = Arc::new(source(&w, clock.clone()));
    let runner = ivory_runtime::Runner::new(w.env.store.clone(), clock);
    let summary = runner
        .sync(
            "acme",
            &manifest(&w.fake, true),
            &CallsMe,
            ivory_sdk::Credentials::None,
            ivory_runtime::SyncOptions {
                base_url: Some(w.fake.url("/")),
                token_source: Some(source),
                ..Default::default()
            },
        )
        .await
        .expect("sync");
    assert_eq!(w.fake.refreshes(), 1, "the sync refreshed the token");
    let (after, _) = w
        .env
        .store
        .credentials(&w.installation.id, &w.vault)
        .await
        .expect("r")
        .expect("s");
    let StoredGrant::OAuth2(after) = after else {
        panic!("oauth grant")
    };

    let logs = String::from_utf8_lossy(&captured.0.lock().expect("lock")).into_owned();
    let json = serde_json::to_string(&summary).expect("json");
    assert!(logs.contains("Called the API"), "the capture works");
    for secret in [&before.access_token, &after.access_token]
        .into_iter()
        .chain(before.refresh_token.iter())
        .chain(after.refresh_token.iter())
    {
        assert!(
            !logs.contains(secret.expose()),
            "a token leaked into the logs"
        );
        assert!(
            !json.contains(secret.expose()),
            "a token leaked into the JSON summary"
        );
    }
}
