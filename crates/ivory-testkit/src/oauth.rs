//! A fake OAuth 2.0 authorization server and protected API on loopback, strict where real
//! providers are strict (upstreams.md: Airtable and HubSpot):
//!
//! - `GET /oauth2/authorize`: checks `client_id`, the registered `redirect_uri` (exact match),
//!   `response_type=code`, a `state`, and PKCE (`code_challenge` + `S256`, required unless
//!   the fake is told otherwise); then "the user approves" and it redirects (302) to the
//!   redirect URI with `code` and `state` — or `error=access_denied` when set to deny.
//! - `POST /oauth2/token` (form): `authorization_code` (single-use code, same redirect URI,
//!   verifier matching the challenge, within 10 minutes) and `refresh_token` (rotating: each
//!   refresh invalidates the previous access *and* refresh token; a reused refresh token is
//!   `invalid_grant`). Client authentication by HTTP Basic or in the body.
//! - `POST /oauth2/revoke`: revokes a token.
//! - `GET /api/me`: 200 for a live access token, 401 otherwise.
//!
//! Time is tokio's clock, so tests on the paused clock can expire tokens.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use url::Url;

/// The fake's client registration.
pub const CLIENT_ID: &str = "ivory-test-client";
/// The fake's client secret (an obviously fake test value).
pub const CLIENT_SECRET: &str = "test-client-secret-not-real";

#[derive(Debug)]
struct Code {
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
    issued: Instant,
}

#[derive(Debug)]
struct Inner {
    redirect_uris: Vec<String>,
    require_pkce: bool,
    deny: bool,
    access_ttl: Duration,
    codes: HashMap<String, Code>,
    access: HashMap<String, Instant>,
    refresh: HashMap<String, String>,
    refreshes: u32,
    exchanges: u32,
    counter: u64,
    omit_refresh_token_on_refresh: bool,
    /// Tokens a code exchange issues instead of fresh random ones (the tokens another fake
    /// API accepts: the demo authorizes at this server and calls the fake HubSpot).
    exchange_issues: Option<(String, String)>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
}

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct OAuthServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl OAuthServer {
    /// Starts a fake that accepts `redirect_uris`, issuing access tokens valid for
    /// `access_ttl`.
    pub async fn start(redirect_uris: &[&str], access_ttl: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
                require_pkce: true,
                deny: false,
                access_ttl,
                codes: HashMap::new(),
                access: HashMap::new(),
                refresh: HashMap::new(),
                refreshes: 0,
                exchanges: 0,
                counter: 0,
                omit_refresh_token_on_refresh: false,
                exchange_issues: None,
            }),
        });
        let app = Router::new()
            .route("/oauth2/authorize", get(authorize))
            .route("/oauth2/token", post(token))
            .route("/oauth2/revoke", post(revoke))
            .route("/api/me", get(me))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> Url {
        #[allow(clippy::unwrap_used)] // A socket address and a rooted path always form a URL.
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    /// Code exchanges issue these tokens from now on (tokens another fake API accepts).
    pub fn issue_on_exchange(&self, access_token: &str, refresh_token: &str) {
        self.lock().exchange_issues = Some((access_token.to_owned(), refresh_token.to_owned()));
    }

    /// The user denies consent from now on.
    pub fn deny(&self) {
        self.lock().deny = true;
    }

    /// Refresh responses omit `refresh_token` (the old one stays valid), like some providers.
    pub fn omit_refresh_token_on_refresh(&self) {
        self.lock().omit_refresh_token_on_refresh = true;
    }

    /// Refresh-token grants served so far.
    pub fn refreshes(&self) -> u32 {
        self.lock().refreshes
    }

    /// Code exchanges served so far.
    pub fn exchanges(&self) -> u32 {
        self.lock().exchanges
    }

    /// Revokes every refresh token (the next refresh is `invalid_grant`).
    pub fn revoke_all_refresh_tokens(&self) {
        self.lock().refresh.clear();
    }
}

fn next(inner: &mut Inner, prefix: &str) -> String {
    inner.counter += 1;
    format!("{prefix}-{}-{}", inner.counter, rand::random::<u32>())
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Query(p): Query<AuthorizeParams>,
) -> Response {
    let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
    if p.client_id.as_deref() != Some(CLIENT_ID) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "unknown client_id",
        );
    }
    let Some(redirect) = p.redirect_uri.filter(|r| inner.redirect_uris.contains(r)) else {
        // Never redirect to an unregistered URI.
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is not registered",
        );
    };
    let Ok(mut back) = Url::parse(&redirect) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "bad redirect_uri",
        );
    };
    let state = p.state.unwrap_or_default();
    let fail = |mut back: Url, error: &str| {
        back.query_pairs_mut()
            .append_pair("error", error)
            .append_pair("state", &state);
        Redirect::to(back.as_str()).into_response()
    };
    if p.response_type.as_deref() != Some("code") {
        return fail(back, "unsupported_response_type");
    }
    if state.len() < 16 {
        return fail(back, "invalid_request");
    }
    let challenge = match (p.code_challenge, p.code_challenge_method.as_deref()) {
        (Some(c), Some("S256")) => Some(c),
        (None, None) if !inner.require_pkce => None,
        _ => return fail(back, "invalid_request"),
    };
    if inner.deny {
        return fail(back, "access_denied");
    }
    let code = next(&mut inner, "code");
    inner.codes.insert(
        code.clone(),
        Code {
            redirect_uri: redirect,
            challenge,
            scope: p.scope.unwrap_or_default(),
            issued: Instant::now(),
        },
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    Redirect::to(back.as_str()).into_response()
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn client_authenticated(headers: &HeaderMap, form: &TokenForm) -> bool {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let expected = format!("{CLIENT_ID}:{CLIENT_SECRET}");
    basic.as_deref() == Some(expected.as_str())
        || (form.client_id.as_deref() == Some(CLIENT_ID)
            && form.client_secret.as_deref() == Some(CLIENT_SECRET))
}

fn issue(inner: &mut Inner, scope: &str, refresh: Option<String>) -> serde_json::Value {
    let access = next(inner, "access");
    inner
        .access
        .insert(access.clone(), Instant::now() + inner.access_ttl);
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": inner.access_ttl.as_secs(),
        "scope": scope,
    });
    if let Some(refresh) = refresh {
        inner.refresh.insert(refresh.clone(), access);
        body["refresh_token"] = json!(refresh);
    }
    body
}

async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
    if !client_authenticated(&headers, &form) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    match form.grant_type.as_deref() {
        Some("authorization_code") => {
            // Single use, even when the exchange fails.
            let Some(code) = form.code.as_ref().and_then(|c| inner.codes.remove(c)) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or used code",
                );
            };
            if code.issued.elapsed() > Duration::from_secs(600) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "code expired");
            }
            if form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri mismatch",
                );
            }
            if let Some(challenge) = &code.challenge {
                let Some(verifier) = &form.code_verifier else {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "code_verifier missing",
                    );
                };
                let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
                if &computed != challenge {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "code_verifier mismatch",
                    );
                }
            }
            inner.exchanges += 1;
            if let Some((access, refresh)) = inner.exchange_issues.clone() {
                let ttl = inner.access_ttl;
                inner.access.insert(access.clone(), Instant::now() + ttl);
                inner.refresh.insert(refresh.clone(), access.clone());
                return Json(json!({
                    "access_token": access,
                    "refresh_token": refresh,
                    "token_type": "Bearer",
                    "expires_in": ttl.as_secs(),
                    "scope": code.scope,
                }))
                .into_response();
            }
            let refresh = next(&mut inner, "refresh");
            Json(issue(&mut inner, &code.scope, Some(refresh))).into_response()
        }
        Some("refresh_token") => {
            let Some(old) = form.refresh_token.as_ref() else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token missing",
                );
            };
            let Some(old_access) = inner.refresh.remove(old) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "refresh token is invalid, expired or revoked",
                );
            };
            inner.refreshes += 1;
            inner.access.remove(&old_access);
            if inner.omit_refresh_token_on_refresh {
                let body = issue(&mut inner, "", None);
                let access = body["access_token"].as_str().unwrap_or_default().to_owned();
                inner.refresh.insert(old.clone(), access);
                return Json(body).into_response();
            }
            let refresh = next(&mut inner, "refresh");
            Json(issue(&mut inner, "", Some(refresh))).into_response()
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported grant_type",
        ),
    }
}

#[derive(Debug, Deserialize)]
struct RevokeForm {
    token: Option<String>,
}

async fn revoke(State(shared): State<Arc<Shared>>, Form(form): Form<RevokeForm>) -> Response {
    let mut inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(token) = form.token {
        if let Some(access) = inner.refresh.remove(&token) {
            inner.access.remove(&access);
        }
        inner.access.remove(&token);
    }
    StatusCode::OK.into_response()
}

async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| inner.access.get(t)) {
        Some(expires) if Instant::now() < *expires => Json(json!({"ok": true})).into_response(),
        _ => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "expired or unknown token",
        ),
    }
}
