//! The authorization-code flow: [`begin`] builds the consent URL and remembers `state` (hashed)
//! with the sealed PKCE verifier, bound to the tenant's installation, for 10 minutes, single
//! use; [`complete`] consumes the state, exchanges the code, and stores the grant in the vault.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ivory_sdk::Secret;
use jiff::{SignedDuration, Timestamp};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use sha2::{Digest, Sha256};
use sqlx::Row;
use url::Url;

use super::http::send;
use super::{ClientAuth, OAuthApp, OAuthEndpoints, OAuthError};
use crate::store::{Installation, OAuth2Grant, Store, StoredGrant, from_ms, query_error, to_ms};
use crate::vault::{Binding, Vault};

/// How long a consent URL stays valid.
pub const STATE_TTL: SignedDuration = SignedDuration::from_secs(600);

/// A consent URL to send the tenant to.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// The URL (with `client_id`, `redirect_uri`, `scope`, `state`, and the S256 challenge).
    pub url: Url,
    /// When its state expires.
    pub expires_at: Timestamp,
}

/// The query of the provider's redirect back to us.
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    /// The authorization code.
    pub code: Option<String>,
    /// The state we sent.
    pub state: Option<String>,
    /// An OAuth error (`access_denied`, …).
    pub error: Option<String>,
    /// Its description.
    pub error_description: Option<String>,
}

impl CallbackParams {
    /// Reads the parameters from a callback URL's query string.
    pub fn from_query(query: &str) -> Self {
        let mut params = Self::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "code" => &mut params.code,
                "state" => &mut params.state,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        params
    }
}

/// A completed connection.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The tenant.
    pub tenant: String,
    /// The installation.
    pub installation: String,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// When the access token expires.
    pub expires_at: Option<Timestamp>,
}

fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

fn pkce_binding(installation: &str) -> Binding<'_> {
    Binding::new("oauth_pkce_verifier", installation)
}

/// Builds the consent URL for `installation` and remembers its state.
pub async fn begin(
    store: &Store,
    vault: &Vault,
    app: &OAuthApp,
    endpoints: &OAuthEndpoints,
    installation: &Installation,
    now: Timestamp,
) -> Result<Authorization, OAuthError> {
    let state = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let client = BasicClient::new(ClientId::new(app.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(endpoints.authorization_url.clone()))
        .set_redirect_uri(RedirectUrl::from_url(app.redirect_uri.clone()));
    let csrf = CsrfToken::new(state.clone());
    let mut request = client
        .authorize_url(move || csrf)
        .add_scopes(endpoints.scopes.iter().cloned().map(Scope::new));
    let mut sealed_verifier = None;
    if endpoints.pkce {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        request = request.set_pkce_challenge(challenge);
        sealed_verifier =
            Some(vault.seal(pkce_binding(&installation.id), verifier.secret().as_bytes())?);
    }
    let (url, _) = request.url();
    let expires_at = now.checked_add(STATE_TTL).unwrap_or(Timestamp::MAX);
    sqlx::query(
        "INSERT INTO oauth_states (state_hash, tenant_id, installation_id, pkce_verifier, \
         redirect_uri, token_url, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(state_hash(&state))
    .bind(&installation.tenant_id)
    .bind(&installation.id)
    .bind(sealed_verifier)
    .bind(app.redirect_uri.as_str())
    .bind(endpoints.token_url.as_str())
    .bind(to_ms(now))
    .bind(to_ms(expires_at))
    .execute(store.pool())
    .await
    .map_err(query_error("remember OAuth state"))?;
    // Expired states of anyone are dropped as they pass.
    let _ = sqlx::query("DELETE FROM oauth_states WHERE expires_at < $1")
        .bind(to_ms(now))
        .execute(store.pool())
        .await;
    Ok(Authorization { url, expires_at })
}

struct PendingState {
    tenant: String,
    installation: String,
    verifier: Option<String>,
    redirect_uri: String,
    token_url: String,
    expires_at: Timestamp,
}

async fn take_state(store: &Store, state: &str) -> Result<Option<PendingState>, OAuthError> {
    let row = sqlx::query(
        "DELETE FROM oauth_states WHERE state_hash = $1 RETURNING tenant_id, installation_id, \
         pkce_verifier, redirect_uri, token_url, expires_at",
    )
    .bind(state_hash(state))
    .fetch_optional(store.pool())
    .await
    .map_err(query_error("consume OAuth state"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let read = |e: sqlx::Error| {
        OAuthError::Store(crate::store::StoreError::Corrupt {
            what: "OAuth state",
            message: e.to_string(),
        })
    };
    Ok(Some(PendingState {
        tenant: row.try_get("tenant_id").map_err(read)?,
        installation: row.try_get("installation_id").map_err(read)?,
        verifier: row.try_get("pkce_verifier").map_err(read)?,
        redirect_uri: row.try_get("redirect_uri").map_err(read)?,
        token_url: row.try_get("token_url").map_err(read)?,
        expires_at: from_ms(row.try_get("expires_at").map_err(read)?)?,
    }))
}

/// Handles the provider's redirect: consumes the state (single use, even on failure), then
/// exchanges the code (with the PKCE verifier) and stores the grant.
pub async fn complete(
    store: &Store,
    vault: &Vault,
    app: &OAuthApp,
    callback: &CallbackParams,
    http: &reqwest::Client,
    now: Timestamp,
) -> Result<Connected, OAuthError> {
    complete_with(store, vault, |_| Ok(app.clone()), callback, http, now).await
}

/// [`complete`] for a server with one OAuth app per connector: `app_for` gets the connector
/// id of the installation the `state` was issued for.
pub async fn complete_with(
    store: &Store,
    vault: &Vault,
    app_for: impl Fn(&str) -> Result<OAuthApp, OAuthError>,
    callback: &CallbackParams,
    http: &reqwest::Client,
    now: Timestamp,
) -> Result<Connected, OAuthError> {
    let state = callback.state.as_deref().ok_or(OAuthError::BadState)?;
    let pending = take_state(store, state)
        .await?
        .ok_or(OAuthError::BadState)?;
    if pending.expires_at < now {
        return Err(OAuthError::BadState);
    }
    let installation = store
        .installation_by_id(&pending.installation)
        .await?
        .ok_or(OAuthError::BadState)?;
    let app = &app_for(&installation.connector_id)?;
    if let Some(error) = &callback.error {
        return Err(OAuthError::Denied {
            error: error.clone(),
            description: callback.error_description.clone(),
        });
    }
    let code = callback.code.clone().ok_or(OAuthError::NoCode)?;
    let token_url = Url::parse(&pending.token_url)
        .map_err(|e| OAuthError::Config(format!("stored token URL: {e}")))?;
    let redirect = Url::parse(&pending.redirect_uri)
        .map_err(|e| OAuthError::Config(format!("stored redirect URI: {e}")))?;
    let mut client = BasicClient::new(ClientId::new(app.client_id.clone()))
        .set_token_uri(TokenUrl::from_url(token_url))
        .set_redirect_uri(RedirectUrl::from_url(redirect));
    if let Some(secret) = &app.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
    }
    if app.client_auth == ClientAuth::RequestBody {
        client = client.set_auth_type(oauth2::AuthType::RequestBody);
    }
    let mut exchange = client.exchange_code(AuthorizationCode::new(code));
    if let Some(sealed) = &pending.verifier {
        let verifier = vault.open(pkce_binding(&pending.installation), sealed)?;
        let verifier = String::from_utf8(verifier.expose().to_vec())
            .map_err(|_| OAuthError::Config("stored PKCE verifier is not text".into()))?;
        exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(verifier));
    }
    let owned_client = http.clone();
    let http_client = move |request| {
        let client = owned_client.clone();
        async move { send(&client, request).await }
    };
    let token = exchange
        .request_async(&http_client)
        .await
        .map_err(token_error)?;
    let expires_at = token
        .expires_in()
        .and_then(|d| SignedDuration::try_from(d).ok())
        .and_then(|d| now.checked_add(d).ok());
    let scopes: Vec<String> = token
        .scopes()
        .map(|s| s.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    let grant = StoredGrant::OAuth2(OAuth2Grant {
        access_token: Secret::new(token.access_token().secret().clone()),
        refresh_token: token
            .refresh_token()
            .map(|r| Secret::new(r.secret().clone())),
        expires_at,
        scopes: scopes.clone(),
        token_type: "Bearer".into(),
    });
    store
        .put_credentials(&pending.installation, &grant, vault, now)
        .await?;
    store
        .set_installation_status(&pending.installation, "active", None, now)
        .await?;
    tracing::info!(tenant = %pending.tenant, installation = %pending.installation, "OAuth grant stored.");
    Ok(Connected {
        tenant: pending.tenant,
        installation: pending.installation,
        scopes,
        expires_at,
    })
}

/// Maps the crate's token error without ever including a token.
pub(crate) fn token_error<RE: std::error::Error + 'static>(
    error: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> OAuthError {
    match error {
        RequestTokenError::ServerResponse(response) => OAuthError::TokenRefused {
            error: response.error().to_string(),
            description: response.error_description().cloned(),
        },
        RequestTokenError::Request(e) => OAuthError::TokenEndpoint(e.to_string()),
        RequestTokenError::Parse(e, _body) => {
            OAuthError::TokenEndpoint(format!("unexpected token response at {}", e.path()))
        }
        RequestTokenError::Other(message) => OAuthError::TokenEndpoint(message),
    }
}
