//! Token refresh for one installation: proactive shortly before expiry, and once after a 401;
//! at most one refresh in flight per installation — across tasks (a mutex) and across
//! processes (a claim on the credential row) — so a rotating refresh token is never spent
//! twice.
//!
//! A refresh:
//! 1. claims the row (`refresh_claim_until`, only for the version it read, only if no live
//!    claim exists); a loser waits for the winner's new version and uses it;
//! 2. calls the token endpoint with the refresh token (a response without a refresh token
//!    keeps the old one);
//! 3. stores the new grant with a compare-and-swap on the version it read — the rotated
//!    refresh token is durable **before** the new access token is used;
//! 4. on `invalid_grant`, marks the installation `needs_reconsent` and fails with an error that
//!    says so: its syncs stop until the tenant connects again.
//!
//! After a 401, a version newer than the rejected one means another holder already rotated:
//! reload, do not refresh.

use std::sync::Arc;
use std::time::Duration;

use ivory_sdk::connector::BoxFuture;
use ivory_sdk::fetch::{AuthError, Token, TokenSource};
use ivory_sdk::{Clock, Secret};
use jiff::{SignedDuration, Timestamp};
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, RefreshToken, TokenResponse, TokenUrl};
use url::Url;

use super::flow::token_error;
use super::http::send;
use super::{ClientAuth, OAuthApp, OAuthError};
use crate::store::{GrantVersion, OAuth2Grant, Store, StoredGrant, Swap, query_error, to_ms};
use crate::vault::Vault;

/// Refresh when the access token expires within this margin.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(120);
/// How long a process may hold the refresh claim of an installation.
const CLAIM: SignedDuration = SignedDuration::from_secs(30);
/// How often a waiting process looks for the winner's new token.
const POLL: Duration = Duration::from_millis(100);

struct Cached {
    grant: OAuth2Grant,
    version: GrantVersion,
}

/// The OAuth [`TokenSource`] of one installation.
pub struct OAuthTokenSource {
    store: Store,
    vault: Arc<Vault>,
    app: OAuthApp,
    token_url: Url,
    installation: String,
    clock: Clock,
    http: reqwest::Client,
    margin: Duration,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for OAuthTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthTokenSource")
            .field("installation", &self.installation)
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

fn version_u64(version: GrantVersion) -> u64 {
    u64::try_from(version.get()).unwrap_or(0)
}

fn auth_error(error: &OAuthError) -> AuthError {
    AuthError::new(error.to_string())
}

impl OAuthTokenSource {
    /// A token source for `installation`, refreshing at `token_url` with `app`.
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        app: OAuthApp,
        token_url: Url,
        installation: &str,
        clock: Clock,
        http: reqwest::Client,
    ) -> Self {
        Self {
            store,
            vault,
            app,
            token_url,
            installation: installation.to_owned(),
            clock,
            http,
            margin: DEFAULT_MARGIN,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Refresh this long before expiry (default [`DEFAULT_MARGIN`]).
    #[must_use]
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    async fn load(&self) -> Result<Cached, AuthError> {
        match self
            .store
            .credentials(&self.installation, &self.vault)
            .await
            .map_err(|e| AuthError::new(format!("cannot read the stored grant: {e}")))?
        {
            Some((StoredGrant::OAuth2(grant), version)) => Ok(Cached { grant, version }),
            Some(_) => Err(AuthError::reconsent(
                "the stored credential is not an OAuth grant; connect again",
            )),
            None => Err(AuthError::reconsent(format!(
                "installation {} has no OAuth grant; connect it first (ivory connect)",
                self.installation
            ))),
        }
    }

    fn expiring(&self, grant: &OAuth2Grant) -> bool {
        let Some(expires_at) = grant.expires_at else {
            return false;
        };
        let margin = SignedDuration::try_from(self.margin).unwrap_or(SignedDuration::ZERO);
        self.clock.now() >= expires_at.checked_sub(margin).unwrap_or(Timestamp::MIN)
    }

    /// Claims the right to refresh `version`; false when another holder has a live claim or
    /// the version moved on.
    async fn claim(&self, version: GrantVersion) -> Result<bool, AuthError> {
        let now = self.clock.now();
        let until = now.checked_add(CLAIM).unwrap_or(Timestamp::MAX);
        let done = sqlx::query(
            "UPDATE credentials SET refresh_claim_until = $1 WHERE installation_id = $2 \
             AND version = $3 AND (refresh_claim_until IS NULL OR refresh_claim_until <= $4)",
        )
        .bind(to_ms(until))
        .bind(&self.installation)
        .bind(version.get())
        .bind(to_ms(now))
        .execute(self.store.pool())
        .await
        .map_err(|e| AuthError::new(query_error("claim token refresh")(e).to_string()))?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self) {
        let _ = sqlx::query(
            "UPDATE credentials SET refresh_claim_until = NULL WHERE installation_id = $1",
        )
        .bind(&self.installation)
        .execute(self.store.pool())
        .await;
    }

    /// Refreshes `current` (held under the mutex) and returns the grant to use.
    async fn refresh(&self, current: Cached) -> Result<Cached, AuthError> {
        let deadline = self.clock.elapsed() + Duration::from_secs(45);
        loop {
            if self.claim(current.version).await? {
                break;
            }
            // Someone else is refreshing (or has): wait for a newer version.
            let latest = self.load().await?;
            if latest.version != current.version {
                return Ok(latest);
            }
            if self.clock.elapsed() > deadline {
                return Err(AuthError::new(
                    "another process has been refreshing this installation's token for too long",
                ));
            }
            self.clock.sleep(POLL).await;
        }
        let result = self.call_token_endpoint(&current.grant).await;
        let grant = match result {
            Ok(grant) => grant,
            Err(error) => {
                self.release().await;
                if error.is_invalid_grant() {
                    let reason = format!(
                        "the upstream refused the refresh token ({error}); the tenant must connect again"
                    );
                    let _ = self
                        .store
                        .set_installation_status(
                            &self.installation,
                            "needs_reconsent",
                            Some(&reason),
                            self.clock.now(),
                        )
                        .await;
                    tracing::warn!(installation = %self.installation, "OAuth grant revoked; installation needs re-consent.");
                    return Err(AuthError::reconsent(reason));
                }
                return Err(auth_error(&error));
            }
        };
        let stored = StoredGrant::OAuth2(grant.clone());
        let swap = self
            .store
            .replace_credentials_if(
                &self.installation,
                current.version,
                &stored,
                &self.vault,
                self.clock.now(),
            )
            .await
            .map_err(|e| AuthError::new(format!("cannot store the refreshed grant: {e}")))?;
        match swap {
            Swap::Swapped { version } => {
                self.release().await;
                tracing::info!(installation = %self.installation, "OAuth token refreshed.");
                Ok(Cached { grant, version })
            }
            // Only possible if the claim lapsed while the endpoint was slow.
            Swap::Conflict { .. } => self.load().await,
        }
    }

    async fn call_token_endpoint(&self, grant: &OAuth2Grant) -> Result<OAuth2Grant, OAuthError> {
        let refresh_token =
            grant
                .refresh_token
                .as_ref()
                .ok_or_else(|| OAuthError::TokenRefused {
                    error: "invalid_grant".into(),
                    description: Some("no refresh token was issued".into()),
                })?;
        let mut client = BasicClient::new(ClientId::new(self.app.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(self.token_url.clone()));
        if let Some(secret) = &self.app.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        if self.app.client_auth == ClientAuth::RequestBody {
            client = client.set_auth_type(oauth2::AuthType::RequestBody);
        }
        let owned_client = self.http.clone();
        let http = move |request| {
            let client = owned_client.clone();
            async move { send(&client, request).await }
        };
        let token = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.expose().to_owned()))
            .request_async(&http)
            .await
            .map_err(token_error)?;
        let now = self.clock.now();
        Ok(OAuth2Grant {
            access_token: Secret::new(token.access_token().secret().clone()),
            // A response without a refresh token keeps the old one.
            refresh_token: token
                .refresh_token()
                .map(|r| Secret::new(r.secret().clone()))
                .or_else(|| grant.refresh_token.clone()),
            expires_at: token
                .expires_in()
                .and_then(|d| SignedDuration::try_from(d).ok())
                .and_then(|d| now.checked_add(d).ok()),
            scopes: token
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect())
                .unwrap_or_else(|| grant.scopes.clone()),
            token_type: grant.token_type.clone(),
        })
    }

    fn token_of(cached: &Cached) -> Token {
        Token {
            secret: cached.grant.access_token.clone(),
            version: version_u64(cached.version),
        }
    }
}

impl TokenSource for OAuthTokenSource {
    fn token(&self) -> BoxFuture<'_, Result<Token, AuthError>> {
        Box::pin(async move {
            let mut cached = self.cached.lock().await;
            let current = match cached.take() {
                Some(current) => current,
                None => self.load().await?,
            };
            let current = if self.expiring(&current.grant) {
                // Another process may have refreshed already.
                let latest = self.load().await?;
                if latest.version != current.version && !self.expiring(&latest.grant) {
                    latest
                } else {
                    self.refresh(latest).await?
                }
            } else {
                current
            };
            let token = Self::token_of(&current);
            *cached = Some(current);
            Ok(token)
        })
    }

    fn unauthorized<'a>(&'a self, rejected: &'a Token) -> BoxFuture<'a, Result<bool, AuthError>> {
        Box::pin(async move {
            let mut cached = self.cached.lock().await;
            let latest = self.load().await?;
            let renewed = if version_u64(latest.version) != rejected.version {
                // Already rotated by someone else: reload, do not refresh.
                latest
            } else {
                self.refresh(latest).await?
            };
            let changed = version_u64(renewed.version) != rejected.version;
            *cached = Some(renewed);
            Ok(changed)
        })
    }
}
