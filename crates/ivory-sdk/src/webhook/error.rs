//! Why a delivery was refused ([`Rejection`]), why a verifier could not be built
//! ([`SecretError`]) and why a test signature could not be produced ([`SignError`]).
//!
//! No message ever contains the secret, a signature or the body: only header names, sizes,
//! ages and static reasons.

use std::time::Duration;

use http::HeaderName;

use super::replay::ReplayError;
use super::scheme::SchemeKind;

/// Why a delivery was not accepted. Match on it, or print it: every message names what is
/// wrong.
///
/// | variant | typical HTTP answer |
/// |---|---|
/// | [`Replayed`](Self::Replayed) | 2xx: the delivery is authentic and was already accepted |
/// | [`ReplayCheckFailed`](Self::ReplayCheckFailed) | 503: our store failed, let the sender retry |
/// | [`BodyTooLarge`](Self::BodyTooLarge) | 413 |
/// | anything else | 400 or 401 |
///
/// ```
/// use ivory_sdk::webhook::Rejection;
/// use http::HeaderName;
///
/// let rejection = Rejection::MissingHeader(HeaderName::from_static("stripe-signature"));
/// assert_eq!(rejection.to_string(), "missing header `stripe-signature`");
/// assert!(!rejection.is_replay());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// A header the scheme requires is absent.
    #[error("missing header `{0}`")]
    MissingHeader(HeaderName),
    /// A header is present but does not follow the scheme's grammar (not visible ASCII, sent
    /// twice, no timestamp, a timestamp that is not an integer, an entry without `=`, …).
    #[error("malformed header `{name}`: {reason}")]
    MalformedHeader {
        /// The offending header.
        name: HeaderName,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No signature matched, and at least one of them was not valid hex/base64 of a 32-byte
    /// tag.
    #[error("header `{name}`: signature is not {encoding} of a 32-byte HMAC-SHA256 tag")]
    BadEncoding {
        /// The header carrying the signature.
        name: HeaderName,
        /// The expected encoding: `hex` or `base64`.
        encoding: &'static str,
    },
    /// The signature header carries no signature of a version we verify (Stripe: only `v0`;
    /// Standard Webhooks: only `v1a`). Such signatures are never used, to prevent downgrades.
    #[error("header `{name}` carries no `{expected}` signature (other versions are ignored)")]
    NoSupportedSignature {
        /// The signature header.
        name: HeaderName,
        /// The version we verify, such as `v1`.
        expected: &'static str,
    },
    /// The body is empty: every scheme we verify signs a non-empty payload.
    #[error("empty body")]
    EmptyBody,
    /// The body is larger than the configured limit (checked before any hashing).
    #[error("body of {size} bytes is larger than the {limit}-byte limit")]
    BodyTooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// HubSpot v3 signs the full request URL, and the delivery carries none.
    #[error("no request URL given: HubSpot v3 signs the full URL HubSpot called")]
    MissingUrl,
    /// Well-formed signatures, none of which is the HMAC of this delivery under this secret:
    /// a tampered body, a wrong secret, or a forgery.
    #[error("no signature matched: tampered delivery or wrong secret")]
    NoSignatureMatched,
    /// The delivery is authentic but its timestamp is older than the tolerance.
    #[error("timestamp is {age_seconds} s old, beyond the {} s tolerance", tolerance.as_secs())]
    TimestampTooOld {
        /// How old the timestamp is, in seconds (rounded up).
        age_seconds: u64,
        /// The configured tolerance.
        tolerance: Duration,
    },
    /// The delivery is authentic but its timestamp is further in the future than the
    /// tolerance (we are stricter than Stripe's and HubSpot's own libraries here).
    #[error("timestamp is {ahead_seconds} s in the future, beyond the {} s tolerance", tolerance.as_secs())]
    TimestampInFuture {
        /// How far ahead the timestamp is, in seconds (rounded up).
        ahead_seconds: u64,
        /// The configured tolerance.
        tolerance: Duration,
    },
    /// The delivery is authentic and was already accepted for this installation inside its
    /// replay window. Answer 2xx without processing it again.
    #[error("delivery already accepted (replay)")]
    Replayed,
    /// The replay store could not answer; the delivery was neither accepted nor remembered.
    #[error("replay check failed: {0}")]
    ReplayCheckFailed(#[source] ReplayError),
}

impl Rejection {
    /// Whether this is an authentic duplicate of an already accepted delivery (answer 2xx so
    /// the sender stops retrying; Airtable disables notifications after repeated failures).
    pub fn is_replay(&self) -> bool {
        matches!(self, Self::Replayed)
    }

    /// Whether the failure is ours rather than the delivery's (a replay store error): answer
    /// 5xx so the sender retries later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::ReplayCheckFailed(_))
    }

    /// Whether the delivery was shown to be authentic before being refused (too old, too new,
    /// or replayed): useful to tell clock skew from forgeries in logs.
    pub fn is_authentic(&self) -> bool {
        matches!(
            self,
            Self::TimestampTooOld { .. } | Self::TimestampInFuture { .. } | Self::Replayed
        )
    }
}

/// Why a [`Verifier`](super::Verifier) could not be built from a secret. Messages never
/// contain the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret (after any `whsec_` prefix) is empty.
    #[error("the {scheme} webhook secret is empty")]
    Empty {
        /// The scheme the secret was for.
        scheme: SchemeKind,
    },
    /// The scheme expects a base64 secret (Airtable's `macSecretBase64`, Standard Webhooks'
    /// `whsec_<base64>`) and this one does not decode.
    #[error("the {scheme} webhook secret is not valid base64")]
    NotBase64 {
        /// The scheme the secret was for.
        scheme: SchemeKind,
    },
    /// The HMAC implementation refused the key (not expected: HMAC takes keys of any length).
    #[error("the {scheme} webhook secret cannot key HMAC-SHA256")]
    Unusable {
        /// The scheme the secret was for.
        scheme: SchemeKind,
    },
}

/// Why [`Verifier::sign`](super::Verifier::sign) could not produce test headers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// HubSpot v3 signs the full URL: set it with [`Delivery::with_url`](super::Delivery::with_url).
    #[error("HubSpot v3 signs the full request URL: set one on the delivery")]
    MissingUrl,
    /// The signing time is before the Unix epoch, which no scheme can express.
    #[error("signing time is before the Unix epoch")]
    BeforeEpoch,
    /// A produced header value was not a valid HTTP header value (a `webhook-id` taken from
    /// the delivery that is not visible ASCII).
    #[error("header `{0}` would not be a valid header value")]
    InvalidHeaderValue(HeaderName),
}
