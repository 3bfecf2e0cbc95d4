//! Where a request's credential comes from: a [`TokenSource`] asked before **every attempt**
//! (so a token refreshed during a long backoff is the one sent, and an expired one never is),
//! and told when the upstream answered 401, once per request.
//!
//! [`StaticToken`] serves an API key or a token that never changes. The runtime's OAuth source
//! refreshes proactively before expiry and on 401, single-flight per installation and
//! compare-and-swap across processes.

use std::fmt;

use http::HeaderValue;

use crate::connector::BoxFuture;
use crate::secret::Secret;

/// A bearer credential and the version it was read at (the credential row's version for
/// stored grants; 0 for static tokens).
#[derive(Debug, Clone)]
pub struct Token {
    /// The credential.
    pub secret: Secret,
    /// Its version.
    pub version: u64,
}

/// Why no usable credential could be obtained.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    /// What went wrong (never contains a token).
    pub message: String,
    /// True when the tenant must connect again (e.g. `invalid_grant` on refresh).
    pub needs_reconsent: bool,
}

impl AuthError {
    /// A credential failure that a retry may fix.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            needs_reconsent: false,
        }
    }

    /// The tenant's grant is no longer valid: they must connect again.
    pub fn reconsent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            needs_reconsent: true,
        }
    }
}

/// Supplies the credential of an installation's requests.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// The token to send now; refreshes first when it is about to expire.
    fn token(&self) -> BoxFuture<'_, Result<Token, AuthError>>;

    /// The upstream answered 401 to `rejected`. Refresh (or, when another holder already
    /// rotated it past that version, just reload) and return `true` when a different token
    /// is now available, `false` when there is nothing better to try.
    fn unauthorized<'a>(&'a self, rejected: &'a Token) -> BoxFuture<'a, Result<bool, AuthError>>;
}

/// A credential that never changes (an API key).
#[derive(Debug, Clone)]
pub struct StaticToken(Secret);

impl StaticToken {
    /// Wraps `secret`.
    pub fn new(secret: Secret) -> Self {
        Self(secret)
    }
}

impl TokenSource for StaticToken {
    fn token(&self) -> BoxFuture<'_, Result<Token, AuthError>> {
        Box::pin(async move {
            Ok(Token {
                secret: self.0.clone(),
                version: 0,
            })
        })
    }

    fn unauthorized<'a>(&'a self, _rejected: &'a Token) -> BoxFuture<'a, Result<bool, AuthError>> {
        Box::pin(async { Ok(false) })
    }
}

/// `Authorization: Bearer …`, marked sensitive.
pub(crate) fn bearer_header(token: &Token) -> Result<HeaderValue, AuthError> {
    let mut value =
        HeaderValue::from_str(&format!("Bearer {}", token.secret.expose())).map_err(|_| {
            AuthError::new("the credential contains characters not allowed in a header")
        })?;
    value.set_sensitive(true);
    Ok(value)
}
