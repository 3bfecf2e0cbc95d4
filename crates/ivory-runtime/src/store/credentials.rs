//! Tenant credentials, sealed by the [`Vault`] into the `credentials` table: one row per
//! installation holding its kind (`api_key` or `oauth2`, in clear), the sealed grant (JSON
//! inside the vault's envelope, bound to the installation id), a version and an update time.
//!
//! The version is the compare-and-swap token of [`Store::replace_credentials_if`], shared by
//! every process on the store: a token refresh replaces the grant only if nobody replaced it
//! since it was read. Versions are opaque: a new row starts at a random value and every write
//! adds one, so a refresher holding the version of a row that was deleted and created anew
//! (uninstall, reconnect) never matches the new row.

use std::fmt;

use chacha20poly1305::aead::Generate;
use ivory_sdk::{Credentials, Secret};
use jiff::Timestamp;
use secrecy::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::audit::{Actor, AuditAction, AuditEvent, SERVICE, emit};
use super::{Store, StoreError, query_error, to_ms};
use crate::vault::{Binding, Vault, VaultError};

/// Who writes credentials when no person is known at this layer (the callers are the connect
/// and OAuth flows, and the refresher).
fn credentials_agent() -> Actor {
    Actor::Agent(SERVICE.to_owned())
}

/// The refresher's identity in audit events.
fn refresh_agent() -> Actor {
    Actor::Agent(format!("{SERVICE}:token-refresh"))
}

/// What an audit diff says about a grant: its kind, version and (OAuth) scopes and expiry;
/// never a secret.
fn grant_summary(grant: &StoredGrant, version: i64) -> serde_json::Value {
    match grant {
        StoredGrant::ApiKey(_) => serde_json::json!({"kind": grant.kind(), "version": version}),
        StoredGrant::OAuth2(g) => serde_json::json!({
            "kind": grant.kind(),
            "version": version,
            "scopes": g.scopes,
            "expires_at": g.expires_at,
            "refresh_token": g.refresh_token.is_some(),
        }),
    }
}

/// The tenant owning `installation`, read inside the write's transaction.
async fn installation_tenant(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    installation: &str,
) -> Result<String, StoreError> {
    let tenant: Option<String> =
        sqlx::query_scalar("SELECT tenant_id FROM installations WHERE id = $1")
            .bind(installation)
            .fetch_optional(&mut **tx)
            .await
            .map_err(query_error("read installation tenant"))?;
    tenant.ok_or_else(|| StoreError::Invalid {
        what: "credentials",
        message: format!("installation {installation} does not exist"),
    })
}

/// A tenant's grant as stored: what the platform keeps, more than what a connector sees
/// ([`StoredGrant::to_credentials`]). `Debug` never shows a secret.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoredGrant {
    /// An API key the tenant gave.
    ApiKey(Secret),
    /// An OAuth 2.0 grant.
    OAuth2(OAuth2Grant),
}

/// An OAuth 2.0 grant: tokens in [`Secret`]s, so `Debug` shows none of them.
#[derive(Debug, Clone)]
pub struct OAuth2Grant {
    /// The access token.
    pub access_token: Secret,
    /// The refresh token, if the server issued one.
    pub refresh_token: Option<Secret>,
    /// When the access token expires, if known.
    pub expires_at: Option<Timestamp>,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The token type (`Bearer`).
    pub token_type: String,
}

impl StoredGrant {
    /// The value of the row's `kind` column: `api_key` or `oauth2`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoredGrant::ApiKey(_) => "api_key",
            StoredGrant::OAuth2(_) => "oauth2",
        }
    }

    /// What the runner hands the connector: the key, or the access token and its expiry.
    pub fn to_credentials(&self) -> Credentials {
        match self {
            StoredGrant::ApiKey(key) => Credentials::ApiKey(key.clone()),
            StoredGrant::OAuth2(grant) => Credentials::OAuth2 {
                access_token: grant.access_token.clone(),
                expires_at: grant.expires_at,
            },
        }
    }
}

impl From<StoredGrant> for Credentials {
    fn from(grant: StoredGrant) -> Self {
        match grant {
            StoredGrant::ApiKey(key) => Credentials::ApiKey(key),
            StoredGrant::OAuth2(grant) => Credentials::OAuth2 {
                access_token: grant.access_token,
                expires_at: grant.expires_at,
            },
        }
    }
}

/// A credentials row's version: the compare-and-swap token of
/// [`Store::replace_credentials_if`]. Opaque; compare for equality only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrantVersion(i64);

impl GrantVersion {
    /// The raw value (as stored).
    pub fn get(self) -> i64 {
        self.0
    }

    /// A version from its raw value (as returned by [`GrantVersion::get`]).
    pub fn from_raw(raw: i64) -> Self {
        Self(raw)
    }
}

impl fmt::Display for GrantVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The outcome of [`Store::replace_credentials_if`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Swap {
    /// The grant was replaced; the row now has `version`.
    Swapped {
        /// The new version.
        version: GrantVersion,
    },
    /// Someone replaced (or deleted) the grant since the expected version was read; nothing
    /// was written. Reload and decide again.
    Conflict {
        /// The row's version now (`None`: the row was deleted).
        current_version: Option<GrantVersion>,
    },
}

/// A failure storing or loading credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vault failed: a sealed row that does not open (altered, or copied from another
    /// installation), a missing master key, or the random number generator.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// A row opened but its content is not a grant this version understands, or it
    /// contradicts the row's `kind`. The reason never quotes the content.
    #[error("the stored credentials of installation {installation} are unreadable: {reason}")]
    Corrupt {
        /// The installation.
        installation: String,
        /// What is wrong.
        reason: String,
    },
}

impl CredentialsError {
    /// Whether a sealed row failed authentication (altered, or moved from another
    /// installation).
    pub fn is_authentication_failure(&self) -> bool {
        matches!(self, CredentialsError::Vault(e) if e.is_authentication_failure())
    }
}

/// The sealed JSON, written from borrowed secrets.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireOut<'a> {
    ApiKey {
        key: &'a str,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        access_token: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        refresh_token: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        expires_at_ms: Option<i64>,
        scopes: &'a [String],
        token_type: &'a str,
    },
}

/// The sealed JSON, read back. Unknown fields are ignored (a newer writer may add some).
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireIn {
    ApiKey {
        key: String,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        access_token: String,
        #[serde(default)]
        refresh_token: Option<String>,
        #[serde(default)]
        expires_at_ms: Option<i64>,
        #[serde(default)]
        scopes: Vec<String>,
        token_type: String,
    },
}

fn seal_grant(
    installation: &str,
    grant: &StoredGrant,
    vault: &Vault,
) -> Result<String, CredentialsError> {
    let wire = match grant {
        StoredGrant::ApiKey(key) => WireOut::ApiKey { key: key.expose() },
        StoredGrant::OAuth2(g) => WireOut::OAuth2 {
            access_token: g.access_token.expose(),
            refresh_token: g.refresh_token.as_ref().map(Secret::expose),
            expires_at_ms: g.expires_at.map(to_ms),
            scopes: &g.scopes,
            token_type: &g.token_type,
        },
    };
    let json = Zeroizing::new(serde_json::to_vec(&wire).map_err(|e| {
        // Serializing strings cannot fail; the message is the category only, to be sure.
        CredentialsError::Corrupt {
            installation: installation.to_owned(),
            reason: format!("cannot serialize the grant ({:?})", e.classify()),
        }
    })?);
    Ok(vault.seal(Binding::credentials(installation), &json)?)
}

fn open_grant(
    installation: &str,
    kind: &str,
    sealed: &str,
    vault: &Vault,
) -> Result<StoredGrant, CredentialsError> {
    let corrupt = |reason: String| CredentialsError::Corrupt {
        installation: installation.to_owned(),
        reason,
    };
    let plaintext = vault.open(Binding::credentials(installation), sealed)?;
    // serde_json's messages may quote the input (a token): keep only category and position.
    let wire: WireIn = serde_json::from_slice(plaintext.expose()).map_err(|e| {
        corrupt(format!(
            "the sealed grant is not valid ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let grant = match wire {
        WireIn::ApiKey { key } => StoredGrant::ApiKey(Secret::new(key)),
        WireIn::OAuth2 {
            access_token,
            refresh_token,
            expires_at_ms,
            scopes,
            token_type,
        } => StoredGrant::OAuth2(OAuth2Grant {
            access_token: Secret::new(access_token),
            refresh_token: refresh_token.map(Secret::new),
            expires_at: expires_at_ms
                .map(|ms| {
                    Timestamp::from_millisecond(ms)
                        .map_err(|_| corrupt("its expiry is out of range".into()))
                })
                .transpose()?,
            scopes,
            token_type,
        }),
    };
    if grant.kind() != kind {
        return Err(corrupt(format!(
            "the row says {kind:?} but the sealed grant is {:?}",
            grant.kind()
        )));
    }
    Ok(grant)
}

/// A random first version in `1..=2^52` (exact in a JSON number anywhere).
fn initial_version() -> Result<i64, CredentialsError> {
    let random = u64::try_generate().map_err(|_| VaultError::Random)?;
    Ok(i64::try_from(random >> 12).unwrap_or(0) + 1)
}

impl Store {
    /// Seals `grant` and stores it as the installation's credentials, replacing any (the
    /// version moves on either way). Returns the row's new version. The installation must
    /// exist.
    pub async fn put_credentials(
        &self,
        installation: &str,
        grant: &StoredGrant,
        vault: &Vault,
        now: Timestamp,
    ) -> Result<GrantVersion, CredentialsError> {
        let sealed = seal_grant(installation, grant, vault)?;
        let mut tx = self.begin_write().await?;
        let tenant = installation_tenant(&mut tx, installation).await?;
        let before =
            sqlx::query("SELECT kind, version FROM credentials WHERE installation_id = $1")
                .bind(installation)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_error("read credentials version"))?
                .map(|row| -> Result<serde_json::Value, StoreError> {
                    let read = |e: sqlx::Error| StoreError::Corrupt {
                        what: "credentials",
                        message: e.to_string(),
                    };
                    let kind: String = row.try_get("kind").map_err(read)?;
                    let version: i64 = row.try_get("version").map_err(read)?;
                    Ok(serde_json::json!({"kind": kind, "version": version}))
                })
                .transpose()?;
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO credentials (installation_id, kind, payload, version, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (installation_id) DO UPDATE SET kind = excluded.kind, \
             payload = excluded.payload, version = credentials.version + 1, \
             updated_at = excluded.updated_at \
             RETURNING version",
        )
        .bind(installation)
        .bind(grant.kind())
        .bind(sealed)
        .bind(initial_version()?)
        .bind(to_ms(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(query_error("store credentials"))?;
        let action = if before.is_some() {
            AuditAction::Update
        } else {
            AuditAction::Create
        };
        emit(
            &mut tx,
            &AuditEvent::new(
                &tenant,
                &credentials_agent(),
                action,
                "credentials",
                Some(installation),
                now,
            )
            .with_diff(
                serde_json::json!({"before": before, "after": grant_summary(grant, version)}),
            ),
        )
        .await?;
        tx.commit()
            .await
            .map_err(query_error("commit credentials"))?;
        tracing::debug!(
            installation,
            kind = grant.kind(),
            version,
            "Stored credentials."
        );
        Ok(GrantVersion(version))
    }

    /// The installation's credentials, opened, with the row's version; `None` when it has
    /// none. Fails with [`CredentialsError::Vault`] when the row does not open (altered,
    /// copied from another installation, or sealed under a key not loaded).
    pub async fn credentials(
        &self,
        installation: &str,
        vault: &Vault,
    ) -> Result<Option<(StoredGrant, GrantVersion)>, CredentialsError> {
        let row = sqlx::query(
            "SELECT kind, payload, version FROM credentials WHERE installation_id = $1",
        )
        .bind(installation)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read credentials"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = |e: sqlx::Error| StoreError::Corrupt {
            what: "credentials",
            message: e.to_string(),
        };
        let kind: String = row.try_get("kind").map_err(read)?;
        let payload: String = row.try_get("payload").map_err(read)?;
        let version: i64 = row.try_get("version").map_err(read)?;
        let grant = open_grant(installation, &kind, &payload, vault)?;
        Ok(Some((grant, GrantVersion(version))))
    }

    /// Compare-and-swap: replaces the installation's grant with `grant` only if the row is
    /// still at `expected` (the version read with it). Exactly one of several concurrent
    /// replacements from the same version wins, across processes; the others get
    /// [`Swap::Conflict`] and nothing of theirs is written.
    pub async fn replace_credentials_if(
        &self,
        installation: &str,
        expected: GrantVersion,
        grant: &StoredGrant,
        vault: &Vault,
        now: Timestamp,
    ) -> Result<Swap, CredentialsError> {
        let sealed = seal_grant(installation, grant, vault)?;
        let mut tx = self.begin_write().await?;
        let swapped: Option<i64> = sqlx::query_scalar(
            "UPDATE credentials SET kind = $1, payload = $2, version = version + 1, \
             updated_at = $3 WHERE installation_id = $4 AND version = $5 RETURNING version",
        )
        .bind(grant.kind())
        .bind(sealed)
        .bind(to_ms(now))
        .bind(installation)
        .bind(expected.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("replace credentials"))?;
        let outcome = match swapped {
            Some(version) => {
                let tenant = installation_tenant(&mut tx, installation).await?;
                emit(
                    &mut tx,
                    &AuditEvent::new(
                        &tenant,
                        &refresh_agent(),
                        AuditAction::Update,
                        "credentials",
                        Some(installation),
                        now,
                    )
                    .with_diff(serde_json::json!({
                        "before": {"version": expected.0},
                        "after": grant_summary(grant, version),
                    })),
                )
                .await?;
                Swap::Swapped {
                    version: GrantVersion(version),
                }
            }
            None => {
                let current: Option<i64> = sqlx::query_scalar(
                    "SELECT version FROM credentials WHERE installation_id = $1",
                )
                .bind(installation)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_error("read credentials version"))?;
                Swap::Conflict {
                    current_version: current.map(GrantVersion),
                }
            }
        };
        tx.commit()
            .await
            .map_err(query_error("commit credentials"))?;
        tracing::debug!(
            installation,
            expected = expected.0,
            swapped = matches!(outcome, Swap::Swapped { .. }),
            "Replaced credentials if unchanged."
        );
        Ok(outcome)
    }

    /// Deletes the installation's credentials; returns whether there were any (a deletion is
    /// audited; deleting nothing writes nothing).
    pub async fn delete_credentials(&self, installation: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted: Option<String> =
            sqlx::query_scalar("DELETE FROM credentials WHERE installation_id = $1 RETURNING kind")
                .bind(installation)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_error("delete credentials"))?;
        let Some(kind) = deleted else {
            tx.rollback().await.map_err(query_error("rollback"))?;
            return Ok(false);
        };
        let tenant = installation_tenant(&mut tx, installation).await?;
        emit(
            &mut tx,
            &AuditEvent::new(
                &tenant,
                &credentials_agent(),
                AuditAction::Delete,
                "credentials",
                Some(installation),
                jiff::Timestamp::now(),
            )
            .with_diff(serde_json::json!({"before": {"kind": kind}, "after": null})),
        )
        .await?;
        tx.commit()
            .await
            .map_err(query_error("commit credentials deletion"))?;
        Ok(true)
    }
}
