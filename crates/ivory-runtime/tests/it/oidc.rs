//! The OAuth flow and refresh against a REAL authorization server: panva's `oidc-provider`
//! (OpenID Certified, from npm) started from `tests/oidc/provider.mjs` on loopback, endpoints
//! from its discovery document. What the server enforces is checked against it: PKCE (a code
//! without its verifier, a request without a challenge), single-use codes (a replay revokes
//! the grant), the exact redirect URI, rotating refresh tokens (and that two "processes"
//! refreshing at once spend the rotating token exactly once). The `ivory connect` side of the
//! same provider is `crates/ivory-cli/tests/oidc_cli.rs`.
//!
//! Needs Node.js >= 18 and `npm ci --prefix tests/oidc --no-audit --no-fund` at the workspace
//! root: without them these tests fail, saying so (they never skip).

use std::collections::HashMap;
use std::sync::Arc;

use ivory_runtime::oauth::{
    CallbackParams, ClientAuth, OAuthApp, OAuthEndpoints, OAuthError, OAuthTokenSource, flow,
    http::token_client,
};
use ivory_runtime::store::{OAuth2Grant, StoredGrant};
use ivory_runtime::vault::Binding;
use ivory_runtime::{Installation, MasterKeys, Vault};
use ivory_sdk::Clock;
use ivory_sdk::fetch::TokenSource;
use ivory_sdk::manifest::{Manifest, ValidationMode};
use jiff::SignedDuration;

use crate::support::{Env, env, t0};

#[path = "../../../../tests/oidc/harness.rs"]
mod harness;

use harness::{BASIC, Browser, OidcClient, POST, Provider};

/// Registered at the provider; nothing listens there (the browser stops at the redirect).
const CALLBACK: &str = "http://127.0.0.1:8788/oauth/callback";
const CONNECTOR: &str = "oidc-example";

struct World {
    env: Env,
    provider: Provider,
    vault: Arc<Vault>,
    endpoints: OAuthEndpoints,
    installation: Installation,
}

fn manifest(provider: &Provider, pkce: bool) -> Manifest {
    let json = serde_json::json!({
        "id": CONNECTOR,
        "name": "OIDC example",
        "version": "0.1.0",
        "publisher": "Ivory (tests)",
        "description": "A connector authorized against a real OAuth 2.0 / OIDC provider on loopback.",
        "listing": {"conflictPolicy": "Inbound only (source_wins)."},
        "hosts": ["127.0.0.1"],
        "connection": {
            "type": "oauth2",
            "authorizationUrl": provider.authorization_endpoint.as_str(),
            "tokenUrl": provider.token_endpoint.as_str(),
            "revocationUrl": provider.revocation_endpoint.as_str(),
            "scopes": ["openid", "records:read"],
            "pkce": pkce,
            "sync": {"cursor": "none", "direction": "inbound", "conflictPolicy": "source_wins", "rateLimitPerMinute": 300}
        }
    });
    Manifest::parse(&json.to_string(), ValidationMode::Test).expect("valid test manifest")
}

fn app(client: OidcClient, redirect: &str) -> OAuthApp {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("IVORY_OAUTH_CLIENT_ID", client.id),
        ("IVORY_OAUTH_CLIENT_SECRET", client.secret),
        ("IVORY_OAUTH_CALLBACK", redirect),
        (
            "IVORY_OAUTH_CLIENT_AUTH",
            if client.basic { "basic" } else { "body" },
        ),
    ]);
    OAuthApp::from_env(|k| vars.get(k).map(|v| (*v).to_owned())).expect("app")
}

async fn world(pkce: bool) -> World {
    let env = env().await;
    let provider = Provider::start(&[CALLBACK]).await;
    let key = MasterKeys::generate_key().expect("key");
    let vault = Arc::new(Vault::new(
        MasterKeys::from_env_value(key.expose()).expect("keys"),
    ));
    let manifest = manifest(&provider, pkce);
    let endpoints = OAuthEndpoints::from_manifest(&manifest).expect("endpoints");
    let installation = env
        .store
        .ensure_installation("acme", &manifest, &Default::default(), t0())
        .await
        .expect("installation");
    World {
        env,
        provider,
        vault,
        endpoints,
        installation,
    }
}

impl World {
    /// `flow::begin`, then the tenant logs in and approves: the redirect's parameters.
    async fn consent(&self, app: &OAuthApp) -> Result<CallbackParams, String> {
        let auth = flow::begin(
            &self.env.store,
            &self.vault,
            app,
            &self.endpoints,
            &self.installation,
            t0(),
        )
        .await
        .expect("begin");
        let back = Browser::new()
            .authorize(&auth.url, app.redirect_uri.as_str(), "approve")
            .await?;
        let query: HashMap<String, String> = back.query_pairs().into_owned().collect();
        // RFC 9207: the provider names itself in the redirect.
        assert_eq!(
            query.get("iss").map(String::as_str),
            Some(self.provider.issuer.as_str().trim_end_matches('/'))
        );
        Ok(CallbackParams::from_query(back.query().unwrap_or("")))
    }

    async fn complete(
        &self,
        app: &OAuthApp,
        callback: &CallbackParams,
    ) -> Result<ivory_runtime::oauth::Connected, OAuthError> {
        let http = token_client().expect("client");
        flow::complete(&self.env.store, &self.vault, app, callback, &http, t0()).await
    }

    async fn grant(&self) -> Option<OAuth2Grant> {
        match self
            .env
            .store
            .credentials(&self.installation.id, &self.vault)
            .await
            .expect("read credentials")
        {
            Some((StoredGrant::OAuth2(grant), _)) => Some(grant),
            Some(_) => panic!("not an OAuth grant"),
            None => None,
        }
    }

    async fn status(&self) -> String {
        self.env
            .store
            .installation("acme", CONNECTOR)
            .await
            .expect("read")
            .expect("exists")
            .status
    }

    /// A token source as one process would build it, its clock `minutes` after t0.
    fn source(&self, app: &OAuthApp, minutes: i64) -> OAuthTokenSource {
        OAuthTokenSource::new(
            self.env.store.clone(),
            self.vault.clone(),
            app.clone(),
            self.endpoints.token_url.clone(),
            &self.installation.id,
            Clock::starting_at(
                t0().checked_add(SignedDuration::from_mins(minutes))
                    .expect("t"),
            ),
            token_client().expect("client"),
        )
    }

    /// The PKCE verifier `flow::begin` sealed for the pending state — what an attacker who
    /// also stole the verifier would hold. Read from the store's table, as a test only can.
    async fn pending_verifier(&self) -> String {
        let db = self.env.raw().await;
        let sealed: String =
            sqlx::query_scalar("SELECT pkce_verifier FROM oauth_states WHERE installation_id = $1")
                .bind(&self.installation.id)
                .fetch_one(&db)
                .await
                .expect("one pending state");
        db.close().await;
        let verifier = self
            .vault
            .open(
                Binding::new("oauth_pkce_verifier", &self.installation.id),
                &sealed,
            )
            .expect("open the verifier");
        String::from_utf8(verifier.expose().to_vec()).expect("text")
    }
}

#[tokio::test]
async fn pkce_and_single_use_codes_are_enforced_by_the_real_provider() {
    // The client_secret_post client this time (`IVORY_OAUTH_CLIENT_AUTH=body`).
    let w = world(true).await;
    let app = app(POST, CALLBACK);
    assert_eq!(app.client_auth, ClientAuth::RequestBody);
    let callback = w.consent(&app).await.expect("approved");
    let code = callback.code.clone().expect("a code");

    // The code without its verifier (an intercepted code): refused.
    let (status, body) = w
        .provider
        .token_request(
            POST,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        w.provider.saw("PKCE verification failed").await,
        "{:?}",
        w.provider.log()
    );

    // Our exchange, with the verifier: the grant is stored, refresh token included.
    let verifier = w.pending_verifier().await;
    let connected = w.complete(&app, &callback).await.expect("exchanged");
    assert_eq!(connected.installation, w.installation.id);
    assert_eq!(connected.scopes, ["openid", "records:read"]);
    let grant = w.grant().await.expect("stored");
    assert!(grant.refresh_token.is_some());
    assert_eq!(
        grant.expires_at,
        t0().checked_add(SignedDuration::from_secs(3600)).ok()
    );
    assert_eq!(w.status().await, "active");

    // The same code again, even with the right verifier: refused, and the provider revokes
    // everything issued from it…
    let (status, body) = w
        .provider
        .token_request(
            POST,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(
        w.provider.saw("authorization code already consumed").await,
        "{:?}",
        w.provider.log()
    );
    assert!(w.provider.saw("grant.revoked").await);
    // …so our next refresh meets invalid_grant and asks the tenant to connect again.
    let error = w
        .source(&app, 59)
        .token()
        .await
        .expect_err("the grant was revoked");
    assert!(error.needs_reconsent, "{error}");
    assert_eq!(w.status().await, "needs_reconsent");
}

#[tokio::test]
async fn two_processes_spend_the_rotating_refresh_token_once() {
    let w = world(true).await;
    let app = app(BASIC, CALLBACK);
    let callback = w.consent(&app).await.expect("approved");
    w.complete(&app, &callback).await.expect("exchanged");
    let before = w.grant().await.expect("stored");

    // Two token sources (two processes) 59 minutes later, inside the refresh margin. Were the
    // rotating refresh token spent twice, the provider would see a reuse and revoke the grant.
    let (a, b) = (w.source(&app, 59), w.source(&app, 59));
    let (ta, tb) = tokio::join!(a.token(), b.token());
    let (ta, tb) = (ta.expect("a"), tb.expect("b"));
    assert_eq!(ta.secret.expose(), tb.secret.expose());
    assert_eq!(ta.version, tb.version);
    assert_eq!(
        w.provider.count(r#""grant_type":"refresh_token""#).await,
        1,
        "{:?}",
        w.provider.log()
    );
    assert!(!w.provider.log().iter().any(|l| l.contains("grant.error")));
    let after = w.grant().await.expect("stored");
    let (old, new) = (
        before.refresh_token.expect("old"),
        after.refresh_token.expect("new"),
    );
    assert_ne!(old.expose(), new.expose(), "rotated");
    assert_eq!(after.access_token.expose(), ta.secret.expose());

    // The new refresh token works (a forced refresh, as after a 401)…
    let renewed = a.unauthorized(&ta).await.expect("refreshed again");
    assert!(renewed);
    // …the rotated-out one does not.
    let (status, body) = w
        .provider
        .token_request(
            BASIC,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", old.expose()),
            ],
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(w.provider.saw("refresh token already used").await);
}

#[tokio::test]
async fn redirect_uri_pkce_policy_state_and_denial() {
    let w = world(true).await;

    // A redirect URI the provider does not have: it stops the tenant on its own page.
    let wrong = app(BASIC, "http://127.0.0.1:8788/elsewhere");
    let refused = w.consent(&wrong).await.expect_err("refused");
    assert!(refused.starts_with("400"), "{refused}");
    assert!(refused.contains("invalid_redirect_uri"), "{refused}");

    // A bad state in the callback: refused by us before anything reaches the provider.
    let app = app(BASIC, CALLBACK);
    let mut forged = w.consent(&app).await.expect("approved");
    forged.state = Some("forged-state-value-00000000000000".into());
    let result = w.complete(&app, &forged).await;
    assert!(matches!(result, Err(OAuthError::BadState)), "{result:?}");

    // The tenant declines.
    let auth = flow::begin(
        &w.env.store,
        &w.vault,
        &app,
        &w.endpoints,
        &w.installation,
        t0(),
    )
    .await
    .expect("begin");
    let back = Browser::new()
        .authorize(&auth.url, CALLBACK, "deny")
        .await
        .expect("redirected back");
    let denied = CallbackParams::from_query(back.query().unwrap_or(""));
    match w.complete(&app, &denied).await {
        Err(OAuthError::Denied { error, .. }) => assert_eq!(error, "access_denied"),
        other => panic!("expected a denial, got {other:?}"),
    }
    assert!(
        !w.provider.log().iter().any(|l| l.contains(r#""grant."#)),
        "no token request was made: {:?}",
        w.provider.log()
    );
    assert!(w.grant().await.is_none());

    // A manifest with `pkce: false`, against a provider whose policy requires PKCE.
    let w = world(false).await;
    let callback = w
        .consent(&app)
        .await
        .expect("redirected back with an error");
    match w.complete(&app, &callback).await {
        Err(OAuthError::Denied { error, description }) => {
            assert_eq!(error, "invalid_request");
            assert!(
                description.as_deref().unwrap_or("").contains("PKCE"),
                "{description:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(w.grant().await.is_none());
}
