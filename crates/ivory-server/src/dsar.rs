//! `POST /dsar/export` and `POST /dsar/delete` (PLATFORM.md §2): the compliance orchestrator's
//! calls, authenticated by a short-lived bearer JWT it mints per call.
//!
//! - No [`DsarVerifier`] configured: 503 `DSAR not configured` (never open).
//! - A missing, expired, unsigned (`alg: none`), wrongly signed or otherwise invalid token: 401.
//! - The tenant is the token's `tenant_id` claim; the body's `tenant_id` is ignored.
//! - An unparsable body or a missing `contact_id`: 400; a store failure: 500 (the orchestrator
//!   retries; both operations are idempotent).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use ivory_runtime::dsar::{DsarCaller, DsarError, ErasureMode};
use ivory_runtime::store::Actor;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;

use crate::Shared;

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECONDS: u64 = 5;

/// Verifies the orchestrator's tokens: HS256 with a shared secret, or RS256 / EdDSA with a
/// public key.
#[derive(Clone)]
pub struct DsarVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for DsarVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DsarVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// Why a verifier could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DsarConfigError {
    /// The HS256 secret is empty.
    #[error("IVORY_DSAR_JWT_SECRET is empty")]
    EmptySecret,
    /// The public key is neither an RSA nor an Ed25519 public key in PEM.
    #[error("IVORY_DSAR_JWT_PUBLIC_KEY is not an RSA or Ed25519 public key in PEM: {0}")]
    PublicKey(String),
    /// Both variables are set.
    #[error("set IVORY_DSAR_JWT_SECRET or IVORY_DSAR_JWT_PUBLIC_KEY, not both")]
    Both,
}

/// The claims the endpoints read.
#[derive(Debug, Clone, Deserialize)]
struct Claims {
    tenant_id: String,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    jti: Option<String>,
}

impl DsarVerifier {
    fn with(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        // No audience is configured; `exp` is required (short-lived tokens only).
        validation.validate_aud = false;
        Self { key, validation }
    }

    /// HS256 with `secret`.
    pub fn hs256(secret: &[u8]) -> Result<Self, DsarConfigError> {
        if secret.is_empty() {
            return Err(DsarConfigError::EmptySecret);
        }
        Ok(Self::with(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// RS256 with an RSA public key, or EdDSA with an Ed25519 one (PEM).
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, DsarConfigError> {
        match DecodingKey::from_rsa_pem(pem) {
            Ok(key) => Ok(Self::with(key, Algorithm::RS256)),
            Err(rsa) => match DecodingKey::from_ed_pem(pem) {
                Ok(key) => Ok(Self::with(key, Algorithm::EdDSA)),
                Err(ed) => Err(DsarConfigError::PublicKey(format!(
                    "RSA: {rsa}; Ed25519: {ed}"
                ))),
            },
        }
    }

    /// From `IVORY_DSAR_JWT_SECRET` or `IVORY_DSAR_JWT_PUBLIC_KEY` as `var` reads them;
    /// `None` when neither is set (the endpoints then answer 503).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, DsarConfigError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        match (
            set("IVORY_DSAR_JWT_SECRET"),
            set("IVORY_DSAR_JWT_PUBLIC_KEY"),
        ) {
            (Some(_), Some(_)) => Err(DsarConfigError::Both),
            (Some(secret), None) => Self::hs256(secret.as_bytes()).map(Some),
            (None, Some(pem)) => Self::public_key_pem(pem.as_bytes()).map(Some),
            (None, None) => Ok(None),
        }
    }

    fn verify(&self, token: &str) -> Result<Claims, String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| e.to_string())?;
        if data.claims.tenant_id.trim().is_empty() {
            return Err("the token's tenant_id is empty".into());
        }
        Ok(data.claims)
    }
}

#[derive(Debug, Deserialize)]
struct ExportBody {
    #[serde(default)]
    contact_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeleteBody {
    #[serde(default)]
    contact_id: Option<String>,
    #[serde(default)]
    mode: Option<ErasureMode>,
    #[serde(default)]
    held: Option<bool>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

/// Why a call is refused before its body is read.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// No verifier: 503.
    NotConfigured,
    /// 401, with the public reason.
    Unauthorized(&'static str),
}

impl Refusal {
    fn response(self) -> Response {
        match self {
            Refusal::NotConfigured => error(StatusCode::SERVICE_UNAVAILABLE, "DSAR not configured"),
            Refusal::Unauthorized(reason) => error(StatusCode::UNAUTHORIZED, reason),
        }
    }
}

/// The verified tenant and caller.
fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(String, DsarCaller), Refusal> {
    let Some(verifier) = shared.config.dsar.as_ref() else {
        return Err(Refusal::NotConfigured);
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(Refusal::Unauthorized("a bearer token is required"));
    };
    let claims = verifier.verify(token).map_err(|reason| {
        tracing::warn!(%reason, "A DSAR call was refused.");
        Refusal::Unauthorized("invalid token")
    })?;
    // `traceparent: 00-<trace id>-<span id>-<flags>`.
    let trace_id = headers
        .get("traceparent")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.split('-').nth(1))
        .filter(|t| t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned);
    let caller = DsarCaller {
        actor: Actor::Agent(format!(
            "dsar:{}",
            claims.sub.as_deref().unwrap_or("orchestrator")
        )),
        source_ip: peer.map(|p| p.ip().to_string()),
        trace_id,
        jti: claims.jti,
    };
    Ok((claims.tenant_id, caller))
}

/// A DSAR body: the contact it is about.
trait DsarBody: serde::de::DeserializeOwned {
    fn contact_id(&self) -> Option<&str>;
}

impl DsarBody for ExportBody {
    fn contact_id(&self) -> Option<&str> {
        self.contact_id.as_deref()
    }
}

impl DsarBody for DeleteBody {
    fn contact_id(&self) -> Option<&str> {
        self.contact_id.as_deref()
    }
}

/// Authenticates the call and reads its body: the token's tenant, the caller, the body and
/// its contact id — or the response that refuses it (503, 401, 400).
fn admit<B: DsarBody>(
    shared: &Shared,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    body: &Bytes,
) -> Result<(String, DsarCaller, B, String), Box<Response>> {
    let (tenant, caller) =
        authenticate(shared, headers, peer).map_err(|r| Box::new(r.response()))?;
    let body: B = serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("unparsable body: {e}"),
        ))
    })?;
    let contact_id = body
        .contact_id()
        .filter(|c| !c.trim().is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Box::new(error(StatusCode::BAD_REQUEST, "contact_id is required")))?;
    Ok((tenant, caller, body, contact_id))
}

fn failure(e: &DsarError) -> Response {
    match e {
        DsarError::MissingContact => error(StatusCode::BAD_REQUEST, "contact_id is required"),
        other => {
            tracing::error!(error = %other, "A DSAR failed.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request failed; retry",
            )
        }
    }
}

fn peer(connect: Option<&ConnectInfo<SocketAddr>>) -> Option<SocketAddr> {
    connect.map(|c| c.0)
}

pub(crate) async fn export(
    State(shared): State<Arc<Shared>>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (tenant, caller, _body, contact_id) =
        match admit::<ExportBody>(&shared, &headers, peer(connect.as_deref()), &body) {
            Ok(admitted) => admitted,
            Err(refusal) => return *refusal,
        };
    let now = shared.clock().now();
    match shared
        .store()
        .dsar_export(&tenant, &contact_id, &caller, now)
        .await
    {
        Ok(export) => (StatusCode::OK, axum::Json(export)).into_response(),
        Err(e) => failure(&e),
    }
}

pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    connect: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (tenant, caller, body, contact_id) =
        match admit::<DeleteBody>(&shared, &headers, peer(connect.as_deref()), &body) {
            Ok(admitted) => admitted,
            Err(refusal) => return *refusal,
        };
    let now = shared.clock().now();
    match shared
        .store()
        .dsar_delete(
            &tenant,
            &contact_id,
            body.mode.unwrap_or_default(),
            body.held.unwrap_or(false),
            &caller,
            now,
        )
        .await
    {
        Ok(erasure) => (StatusCode::OK, axum::Json(erasure)).into_response(),
        Err(e) => failure(&e),
    }
}
