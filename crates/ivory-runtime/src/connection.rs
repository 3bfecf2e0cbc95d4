//! What a sync of an installation authenticates with: the tenant's stored grant, decrypted, and
//! for OAuth a token source that refreshes it (single-flight, see [`crate::oauth::refresh`]).
//! `ivory sync`, the scheduler of `ivory serve` and `ivory worker` all load credentials here.

use std::sync::Arc;

use ivory_sdk::fetch::TokenSource;
use ivory_sdk::manifest::{AuthType, Manifest};
use ivory_sdk::{Clock, Credentials};
use url::Url;

use crate::oauth::{OAuthApp, OAuthEndpoints, OAuthTokenSource};
use crate::store::{CredentialsError, Installation, Store, StoredGrant};
use crate::vault::Vault;

/// The credentials of one sync.
#[derive(Clone, Default)]
pub struct SyncCredentials {
    /// What the connector sees (and, without a token source, the static bearer).
    pub credentials: Credentials,
    /// Where the bearer of each request comes from, for OAuth grants that can be refreshed.
    pub token_source: Option<Arc<dyn TokenSource>>,
}

impl std::fmt::Debug for SyncCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncCredentials")
            .field("credentials", &self.credentials)
            .field("refreshes", &self.token_source.is_some())
            .finish()
    }
}

/// Why an installation's credentials cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The tenant never connected (or the grant was deleted).
    #[error(
        "tenant {tenant} has not connected {connector}: run `ivory connect {connector} --tenant {tenant}` first"
    )]
    NotConnected {
        /// The tenant.
        tenant: String,
        /// The connector.
        connector: String,
    },
    /// A refreshable OAuth grant but no usable OAuth app configuration.
    #[error("{0}")]
    OAuthApp(String),
    /// The store or the vault failed.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

/// Loads the credentials of `installation` (of `manifest`'s connector). `app` is the operator's
/// OAuth app for the connector (`None`: not configured — fine for API keys and for grants
/// without a refresh token, whose access token is sent as it is until the upstream refuses
/// it); `token_url` overrides the manifest's token endpoint (a local fake).
pub async fn load_sync_credentials(
    store: &Store,
    vault: Arc<Vault>,
    manifest: &Manifest,
    installation: &Installation,
    app: Result<OAuthApp, String>,
    token_url: Option<Url>,
    clock: &Clock,
) -> Result<SyncCredentials, ConnectionError> {
    if manifest.connection.auth == AuthType::None {
        return Ok(SyncCredentials::default());
    }
    let Some((grant, _)) = store.credentials(&installation.id, &vault).await? else {
        return Err(ConnectionError::NotConnected {
            tenant: installation.tenant_id.clone(),
            connector: manifest.id.clone(),
        });
    };
    let credentials = grant.to_credentials();
    let StoredGrant::OAuth2(oauth) = &grant else {
        return Ok(SyncCredentials {
            credentials,
            token_source: None,
        });
    };
    let endpoints = match OAuthEndpoints::from_manifest(manifest) {
        Ok(endpoints) => endpoints,
        Err(error) => return Err(ConnectionError::OAuthApp(error.to_string())),
    };
    let app = match app {
        Ok(app) => app,
        Err(_) if oauth.refresh_token.is_none() => {
            return Ok(SyncCredentials {
                credentials,
                token_source: None,
            });
        }
        Err(error) => return Err(ConnectionError::OAuthApp(error)),
    };
    let http =
        crate::oauth::http::token_client().map_err(|e| ConnectionError::OAuthApp(e.to_string()))?;
    Ok(SyncCredentials {
        credentials,
        token_source: Some(Arc::new(OAuthTokenSource::new(
            store.clone(),
            vault,
            app,
            token_url.unwrap_or(endpoints.token_url),
            &installation.id,
            clock.clone(),
            http,
        ))),
    })
}
