//! OAuth 2.0 for tenant grants: the authorization-code flow with PKCE (S256) and a `state`
//! bound to tenant + installation, the code exchange, and token refresh that is single-flight
//! per installation across threads *and* processes.
//!
//! The protocol itself is the `oauth2` crate's (URL building, PKCE, token requests and
//! responses); its HTTP calls go through a reqwest client with redirects off
//! ([`http::token_client`]). What this module adds is what the crate leaves to its users:
//! persisting `state` + verifier between redirect and callback (single use, 10 minutes),
//! storing grants in the vault, computing absolute expiries, keeping the old refresh token when
//! a refresh response has none, and coordinating refreshes ([`refresh::OAuthTokenSource`]).
//!
//! The platform operator's app credentials come from the environment ([`OAuthApp::from_env`]):
//! `IVORY_OAUTH_CLIENT_ID`, `IVORY_OAUTH_CLIENT_SECRET` (never from a connector's source) and
//! `IVORY_OAUTH_CALLBACK` (default `http://127.0.0.1:8788/oauth/callback`).

pub mod flow;
pub mod http;
pub mod refresh;

use ivory_sdk::Secret;
use ivory_sdk::manifest::{AuthType, Manifest};
use url::Url;

pub use flow::{Authorization, CallbackParams, Connected};
pub use refresh::OAuthTokenSource;

/// The default redirect URI, on which `ivory connect` listens itself.
pub const DEFAULT_CALLBACK: &str = "http://127.0.0.1:8788/oauth/callback";

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (RFC 6749 §2.3.1; Airtable requires it when there is a secret).
    Basic,
    /// `client_id` / `client_secret` in the form body (HubSpot's v3 endpoint).
    RequestBody,
}

/// The platform operator's OAuth app for a connector.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret (absent for public clients).
    pub client_secret: Option<Secret>,
    /// Where the provider sends the user back.
    pub redirect_uri: Url,
    /// How the client authenticates at the token endpoint.
    pub client_auth: ClientAuth,
}

impl OAuthApp {
    /// Reads `IVORY_OAUTH_CLIENT_ID`, `IVORY_OAUTH_CLIENT_SECRET`, `IVORY_OAUTH_CALLBACK` and
    /// `IVORY_OAUTH_CLIENT_AUTH` (`basic` | `body`) through `lookup` (the process environment
    /// in the CLI; a map in tests).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, OAuthError> {
        let client_id = lookup("IVORY_OAUTH_CLIENT_ID")
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                OAuthError::Config(
                    "IVORY_OAUTH_CLIENT_ID is not set: the platform operator's OAuth app client id is required".into(),
                )
            })?;
        let client_secret = lookup("IVORY_OAUTH_CLIENT_SECRET")
            .filter(|v| !v.is_empty())
            .map(Secret::new);
        let callback =
            lookup("IVORY_OAUTH_CALLBACK").unwrap_or_else(|| DEFAULT_CALLBACK.to_owned());
        let redirect_uri = Url::parse(&callback)
            .map_err(|e| OAuthError::Config(format!("IVORY_OAUTH_CALLBACK {callback:?}: {e}")))?;
        let client_auth = match lookup("IVORY_OAUTH_CLIENT_AUTH").as_deref() {
            None | Some("basic") => ClientAuth::Basic,
            Some("body") => ClientAuth::RequestBody,
            Some(other) => {
                return Err(OAuthError::Config(format!(
                    "IVORY_OAUTH_CLIENT_AUTH must be basic or body, not {other:?}"
                )));
            }
        };
        Ok(Self {
            client_id,
            client_secret,
            redirect_uri,
            client_auth,
        })
    }
}

impl OAuthApp {
    /// The app for one connector: `IVORY_OAUTH_<ID>_CLIENT_ID` (the id upper-cased, `-` as
    /// `_`; likewise `_CLIENT_SECRET`, `_CLIENT_AUTH`) when set — a server syncing HubSpot and
    /// Airtable needs one app at each provider — otherwise the global variables of
    /// [`from_env`](Self::from_env). The redirect URI is always the global `IVORY_OAUTH_CALLBACK`.
    pub fn for_connector(
        connector_id: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, OAuthError> {
        let prefix = format!(
            "IVORY_OAUTH_{}_",
            connector_id.to_ascii_uppercase().replace('-', "_")
        );
        let own = lookup(&format!("{prefix}CLIENT_ID")).is_some_and(|v| !v.trim().is_empty());
        if !own {
            return Self::from_env(lookup);
        }
        Self::from_env(|key| match key.strip_prefix("IVORY_OAUTH_") {
            Some(rest @ ("CLIENT_ID" | "CLIENT_SECRET" | "CLIENT_AUTH")) => {
                lookup(&format!("{prefix}{rest}"))
            }
            _ => lookup(key),
        })
    }
}

/// A connector's OAuth endpoints and scopes (from its manifest, optionally overridden).
#[derive(Debug, Clone)]
pub struct OAuthEndpoints {
    /// Where the tenant consents.
    pub authorization_url: Url,
    /// Where codes and refresh tokens are exchanged.
    pub token_url: Url,
    /// Where tokens are revoked on uninstall, if the upstream has one.
    pub revocation_url: Option<Url>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// Whether PKCE (S256) is sent (always, unless the manifest says `pkce: false`).
    pub pkce: bool,
}

impl OAuthEndpoints {
    /// The endpoints a manifest declares. Fails for a connector that is not `oauth2`.
    pub fn from_manifest(manifest: &Manifest) -> Result<Self, OAuthError> {
        let connection = &manifest.connection;
        if connection.auth != AuthType::Oauth2 {
            return Err(OAuthError::Config(format!(
                "connector {} does not use oauth2 (connection.type is {})",
                manifest.id,
                connection.auth.as_str()
            )));
        }
        let parse = |what: &str, value: Option<&String>| -> Result<Url, OAuthError> {
            let value =
                value.ok_or_else(|| OAuthError::Config(format!("the manifest has no {what}")))?;
            Url::parse(value).map_err(|e| OAuthError::Config(format!("{what} {value:?}: {e}")))
        };
        Ok(Self {
            authorization_url: parse("authorizationUrl", connection.authorization_url.as_ref())?,
            token_url: parse("tokenUrl", connection.token_url.as_ref())?,
            revocation_url: connection
                .revocation_url
                .as_ref()
                .map(|u| parse("revocationUrl", Some(u)))
                .transpose()?,
            scopes: connection.scopes.clone(),
            pkce: connection.pkce,
        })
    }
}

/// Why an OAuth step failed. Messages never contain a token, code or secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// Missing or malformed configuration.
    #[error("OAuth configuration: {0}")]
    Config(String),
    /// The callback's `state` is unknown, already used, or expired.
    #[error("the OAuth state is unknown, already used or expired: start the connection again")]
    BadState,
    /// The tenant declined consent (`error=access_denied`), or the provider refused the request.
    #[error("the provider returned {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Denied {
        /// The OAuth error code.
        error: String,
        /// The provider's description.
        description: Option<String>,
    },
    /// The callback carried neither a code nor an error.
    #[error("the OAuth callback has no code")]
    NoCode,
    /// The token endpoint refused the exchange or the refresh.
    #[error("the token endpoint refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    TokenRefused {
        /// The OAuth error code (`invalid_grant`, `invalid_client`, …).
        error: String,
        /// The provider's description.
        description: Option<String>,
    },
    /// The token endpoint could not be reached or answered something unusable.
    #[error("the token endpoint failed: {0}")]
    TokenEndpoint(String),
    /// The store or the vault failed.
    #[error(transparent)]
    Credentials(#[from] crate::store::CredentialsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The vault failed.
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
}

impl OAuthError {
    /// True when the refresh token is dead (`invalid_grant`): the tenant must connect again.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, OAuthError::TokenRefused { error, .. } if error == "invalid_grant")
    }
}
