//! The [`Verifier`]: built once from a scheme and a secret, then `verify` per delivery.

use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::delivery::Delivery;
use super::error::{Rejection, SecretError, SignError};
use super::parse::{BASE64, TimeUnit, check_window};
use super::replay::{Freshness, ReplayGuard, ReplayKey};
use super::scheme::{Scheme, SchemeKind};
use super::secret::MacKey;
use super::{airtable, hubspot, plain, standard, stripe};

use base64::Engine as _;

/// Limits and windows of a [`Verifier`].
///
/// ```
/// use ivory_sdk::webhook::VerifierConfig;
/// use std::time::Duration;
///
/// let config = VerifierConfig::default()
///     .with_tolerance(Duration::from_secs(120))
///     .with_body_limit(256 * 1024);
/// assert_eq!(config.tolerance(), Duration::from_secs(120));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierConfig {
    tolerance: Duration,
    body_limit: usize,
    untimed_replay_window: Duration,
}

impl VerifierConfig {
    /// Default timestamp tolerance, in both directions: 300 s.
    pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
    /// Default body limit: 1 MiB.
    pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
    /// Default replay window of schemes without a timestamp: 26 hours, longer than Airtable's
    /// retry schedule (13 tries with exponential backoff from 10 s, about a day).
    pub const DEFAULT_UNTIMED_REPLAY_WINDOW: Duration = Duration::from_secs(26 * 3600);

    /// How far a delivery's timestamp may be from now, in the past or in the future.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The largest body accepted, in bytes (checked before any hashing).
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// How long a delivery of a scheme without a timestamp (Airtable, plain `hmac-sha256`) is
    /// remembered by the replay cache after it was accepted.
    pub fn with_untimed_replay_window(mut self, window: Duration) -> Self {
        self.untimed_replay_window = window;
        self
    }

    /// The timestamp tolerance.
    pub fn tolerance(&self) -> Duration {
        self.tolerance
    }

    /// The body limit in bytes.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// The replay window of schemes without a timestamp.
    pub fn untimed_replay_window(&self) -> Duration {
        self.untimed_replay_window
    }
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            tolerance: Self::DEFAULT_TOLERANCE,
            body_limit: Self::DEFAULT_BODY_LIMIT,
            untimed_replay_window: Self::DEFAULT_UNTIMED_REPLAY_WINDOW,
        }
    }
}

/// Verifies deliveries of one scheme under one secret.
///
/// Build it once (the secret is decoded and the HMAC key schedule runs here), then call
/// [`verify`](Self::verify) per delivery; it is `Send + Sync` and cheap to share. `Debug`
/// never shows the secret.
///
/// ```
/// use ivory_sdk::webhook::{Delivery, Rejection, Scheme, Verifier};
/// use http::HeaderMap;
/// use jiff::Timestamp;
///
/// let verifier = Verifier::new(Scheme::Stripe, "whsec_test_ivory_fake_secret_0000")?;
/// let now = Timestamp::from_second(1_700_000_000)?;
///
/// // What Stripe would send (tests build it with `sign`).
/// let body = br#"{"id":"evt_test_1","type":"invoice.payment_failed"}"#;
/// let delivery = verifier.sign(Delivery::new(HeaderMap::new(), &body[..]), now)?;
///
/// let verified = verifier.verify_at(&delivery, now)?;
/// assert_eq!(verified.event_id(), Some("evt_test_1"));
///
/// // One byte changed: refused, with a reason to match on.
/// let tampered = Delivery::new(delivery.headers().clone(), &br#"{"id":"evt_test_2","type":"invoice.payment_failed"}"#[..]);
/// assert!(matches!(verifier.verify_at(&tampered, now), Err(Rejection::NoSignatureMatched)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    scheme: Scheme,
    key: MacKey,
    config: VerifierConfig,
}

impl Verifier {
    /// A verifier for `scheme`, from the secret exactly as the upstream hands it out:
    ///
    /// - Stripe: the whole `whsec_…` endpoint secret, used as the raw key (prefix included);
    /// - HubSpot v3: the app's client secret;
    /// - Airtable: the webhook's `macSecretBase64`, base64-decoded here;
    /// - Standard Webhooks: `whsec_<base64>` (the prefix is optional), decoded here;
    /// - plain `hmac-sha256`: the shared secret, used as its UTF-8 bytes.
    ///
    /// Uses [`VerifierConfig::default`]; change it with [`with_config`](Self::with_config).
    pub fn new(scheme: Scheme, secret: &str) -> Result<Self, SecretError> {
        let kind = scheme.kind();
        let decoded;
        let key_bytes: &[u8] = match kind {
            SchemeKind::Airtable => {
                decoded = decode_secret(secret.trim(), kind)?;
                &decoded
            }
            SchemeKind::StandardWebhooks => {
                let trimmed = secret.trim();
                decoded = decode_secret(trimmed.strip_prefix("whsec_").unwrap_or(trimmed), kind)?;
                &decoded
            }
            _ => secret.as_bytes(),
        };
        if key_bytes.is_empty() {
            return Err(SecretError::Empty { scheme: kind });
        }
        let key = MacKey::new(key_bytes).ok_or(SecretError::Unusable { scheme: kind })?;
        Ok(Self {
            scheme,
            key,
            config: VerifierConfig::default(),
        })
    }

    /// Replaces the configuration (tolerance, body limit, untimed replay window).
    pub fn with_config(mut self, config: VerifierConfig) -> Self {
        self.config = config;
        self
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verifies a delivery against the system clock. See [`verify_at`](Self::verify_at).
    pub fn verify(&self, delivery: &Delivery) -> Result<Verified, Rejection> {
        self.verify_at(delivery, Timestamp::now())
    }

    /// Verifies a delivery as of `now`.
    ///
    /// Order of checks: body size and emptiness, header presence and grammar, signature
    /// (constant-time), then the timestamp window. The window is checked last on purpose: a
    /// [`Rejection::TimestampTooOld`] or [`Rejection::TimestampInFuture`] is only ever
    /// reported for an authentic delivery, so it points at clock skew or a replay, never at a
    /// forgery. The replay cache is not consulted here: see [`Verified::remember`].
    pub fn verify_at(&self, delivery: &Delivery, now: Timestamp) -> Result<Verified, Rejection> {
        let size = delivery.body().len();
        if size > self.config.body_limit {
            return Err(Rejection::BodyTooLarge {
                size,
                limit: self.config.body_limit,
            });
        }
        if size == 0 {
            return Err(Rejection::EmptyBody);
        }
        let checked = match &self.scheme {
            Scheme::Stripe => stripe::verify(&self.key, delivery, now, &self.config),
            Scheme::HubSpotV3 => hubspot::verify(&self.key, delivery, now, &self.config),
            Scheme::Airtable => airtable::verify(&self.key, delivery),
            Scheme::StandardWebhooks => standard::verify(&self.key, delivery, now, &self.config),
            Scheme::HmacSha256(config) => plain::verify(&self.key, config, delivery),
        }?;
        let replay_expires_at = checked
            .expires_at
            .unwrap_or_else(|| add_saturating(now, self.config.untimed_replay_window));
        Ok(Verified {
            scheme: self.scheme.kind(),
            event_id: checked.event_id,
            timestamp: checked.timestamp,
            replay_key: checked.replay_key,
            replay_expires_at,
        })
    }

    /// Adds this scheme's signature headers to `delivery`, as the upstream would sign it at
    /// `at`: a test-header generator for fixtures, fakes and certification. Headers the scheme
    /// owns are replaced; others are kept.
    ///
    /// - HubSpot v3 needs [`Delivery::with_url`] (and signs the delivery's method).
    /// - Standard Webhooks keeps a `webhook-id` header already on the delivery, or sets
    ///   `msg_<24 hex digits of SHA-256(body)>`.
    ///
    /// ```
    /// use ivory_sdk::webhook::{Delivery, Scheme, Verifier};
    /// use http::HeaderMap;
    /// use jiff::Timestamp;
    ///
    /// let verifier = Verifier::new(Scheme::Airtable, "ivoryFakeAirtableMacSecret000000")?;
    /// let signed = verifier.sign(Delivery::new(HeaderMap::new(), &b"{}"[..]), Timestamp::UNIX_EPOCH)?;
    /// assert!(signed.header("x-airtable-content-mac").is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sign(&self, delivery: Delivery, at: Timestamp) -> Result<Delivery, SignError> {
        match &self.scheme {
            Scheme::Stripe => stripe::sign(&self.key, delivery, at),
            Scheme::HubSpotV3 => hubspot::sign(&self.key, delivery, at),
            Scheme::Airtable => Ok(airtable::sign(&self.key, delivery)),
            Scheme::StandardWebhooks => standard::sign(&self.key, delivery, at),
            Scheme::HmacSha256(config) => plain::sign(&self.key, config, delivery),
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme)
            .field("key", &self.key)
            .field("config", &self.config)
            .finish()
    }
}

fn decode_secret(secret: &str, scheme: SchemeKind) -> Result<Vec<u8>, SecretError> {
    if secret.is_empty() {
        return Err(SecretError::Empty { scheme });
    }
    BASE64
        .decode(secret)
        .map_err(|_| SecretError::NotBase64 { scheme })
}

fn add_saturating(at: Timestamp, duration: Duration) -> Timestamp {
    SignedDuration::try_from(duration)
        .ok()
        .and_then(|duration| at.checked_add(duration).ok())
        .unwrap_or(Timestamp::MAX)
}

/// What a scheme module hands back once the signature matched.
#[derive(Debug)]
pub(crate) struct Checked {
    replay_key: ReplayKey,
    timestamp: Option<Timestamp>,
    /// `None` for schemes without a timestamp: the verifier applies the untimed window.
    expires_at: Option<Timestamp>,
    event_id: Option<String>,
}

impl Checked {
    /// A delivery without a timestamp: accepted whatever its age.
    pub(crate) fn untimed(replay_key: ReplayKey) -> Self {
        Self {
            replay_key,
            timestamp: None,
            expires_at: None,
            event_id: None,
        }
    }

    /// A delivery whose timestamp must fall inside the window; remembered until the window
    /// closes for it (`timestamp + tolerance`).
    pub(crate) fn timed(
        replay_key: ReplayKey,
        value: i64,
        unit: TimeUnit,
        now: Timestamp,
        config: &VerifierConfig,
        event_id: Option<String>,
    ) -> Result<Self, Rejection> {
        check_window(value, unit, now, config.tolerance)?;
        // Inside the window, so near `now` and inside jiff's range; fall back to `now` anyway.
        let timestamp = unit.to_timestamp(value).unwrap_or(now);
        Ok(Self {
            replay_key,
            timestamp: Some(timestamp),
            expires_at: Some(add_saturating(timestamp, config.tolerance)),
            event_id,
        })
    }
}

/// An authentic delivery: what the scheme told us about it, and how to recognise it again.
///
/// ```
/// use ivory_sdk::webhook::{Delivery, InMemoryReplayGuard, Rejection, Scheme, Verifier};
/// use http::HeaderMap;
/// use jiff::Timestamp;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> { futures::executor::block_on(demo()) }
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = Verifier::new(Scheme::StandardWebhooks, "whsec_ivoryFakeTestSecret0000000000000")?;
/// let guard = InMemoryReplayGuard::default();
/// let now = Timestamp::from_second(1_700_000_000)?;
/// let delivery = verifier.sign(Delivery::new(HeaderMap::new(), &b"{}"[..]), now)?;
///
/// let verified = verifier.verify_at(&delivery, now)?.remember(&guard, "installation-1", now).await?;
/// assert!(verified.event_id().is_some_and(|id| id.starts_with("msg_")));
///
/// // The same delivery again, inside its window.
/// let again = verifier.verify_at(&delivery, now)?.remember(&guard, "installation-1", now).await;
/// assert!(matches!(again, Err(Rejection::Replayed)));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Verified {
    scheme: SchemeKind,
    event_id: Option<String>,
    timestamp: Option<Timestamp>,
    replay_key: ReplayKey,
    replay_expires_at: Timestamp,
}

impl Verified {
    /// The scheme that verified the delivery.
    pub fn scheme(&self) -> SchemeKind {
        self.scheme
    }

    /// The event id where the scheme has one: Standard Webhooks' `webhook-id`; Stripe's body
    /// `id` (read leniently after verification: `None` if the body has none). HubSpot v3,
    /// Airtable and plain HMAC have none.
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    /// The signed timestamp where the scheme has one (Stripe, HubSpot v3, Standard Webhooks).
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }

    /// The digest that identifies this delivery in a replay cache.
    pub fn replay_key(&self) -> ReplayKey {
        self.replay_key
    }

    /// Until when the replay cache must remember this delivery: its timestamp plus the
    /// tolerance (after that the window refuses it anyway), or for schemes without a timestamp
    /// the verification time plus the untimed replay window.
    pub fn replay_expires_at(&self) -> Timestamp {
        self.replay_expires_at
    }

    /// Checks the delivery against the replay cache of `installation` and remembers it:
    /// `Ok(self)` the first time, [`Rejection::Replayed`] for an authentic duplicate inside its
    /// window, [`Rejection::ReplayCheckFailed`] when the guard could not answer.
    pub async fn remember(
        self,
        guard: &dyn ReplayGuard,
        installation: &str,
        now: Timestamp,
    ) -> Result<Self, Rejection> {
        match guard
            .check_and_remember(installation, self.replay_key, self.replay_expires_at, now)
            .await
        {
            Ok(Freshness::Fresh) => Ok(self),
            Ok(Freshness::Replayed) => Err(Rejection::Replayed),
            Err(error) => Err(Rejection::ReplayCheckFailed(error)),
        }
    }
}
