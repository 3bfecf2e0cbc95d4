//! Webhook verification: Stripe, HubSpot v3, Airtable, Standard Webhooks, plain HMAC.
//!
//! Every inbound delivery of the platform, and every connector's `verify_webhook`, goes through
//! a [`Verifier`]: built once from a [`Scheme`] and the secret exactly as the upstream hands it
//! out, then asked to [`verify`](Verifier::verify) the raw request ([`Delivery`]). The answer
//! is [`Verified`] (with the event id and timestamp where the scheme has them) or a
//! [`Rejection`] that says precisely what is wrong. Nothing here panics on any input.
//!
//! # The schemes
//!
//! All five are HMAC-SHA256, compared in constant time (`subtle`), never with `==`.
//!
//! | scheme | headers | signed content | key | encoding |
//! |---|---|---|---|---|
//! | `stripe` | `Stripe-Signature: t=<s>,v1=<sig>[,v1=…]` | `"{t}.{body}"` | the whole `whsec_…` secret as UTF-8 | hex |
//! | `hubspot-v3` | `X-HubSpot-Signature-v3`, `X-HubSpot-Request-Timestamp` (ms) | method + URI + body + timestamp | client secret as UTF-8 | base64 |
//! | `airtable` | `X-Airtable-Content-MAC: hmac-sha256=<sig>` | body | base64-decoded `macSecretBase64` | hex |
//! | `standard-webhooks` | `webhook-id`, `webhook-timestamp` (s), `webhook-signature: v1,<sig> …` | `"{id}.{t}.{body}"` | base64-decoded `whsec_<base64>` | base64 |
//! | `hmac-sha256` | one configured header, optional prefix such as `sha256=` | body | secret as UTF-8 | hex or base64 |
//!
//! - **Several signatures.** Stripe (several `v1=`) and Standard Webhooks (several `v1,`)
//!   send more than one signature while a secret is being rotated: any match accepts. Other
//!   versions (Stripe's test-mode `v0`, Standard Webhooks' asymmetric `v1a`) are ignored, so a
//!   header carrying only those is refused ([`Rejection::NoSupportedSignature`]): no downgrade.
//! - **HubSpot's URI.** The URI is the full URL HubSpot called (scheme and host as HubSpot saw
//!   them: mind proxies), with only `%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B` decoded.
//!   Set it with [`Delivery::with_url`].
//! - **Headers** are looked up case-insensitively; a required header sent twice, or with bytes
//!   that are not visible ASCII, is malformed.
//! - **Bodies** are verified byte for byte, before any parsing. An empty body, or one larger
//!   than the limit ([`VerifierConfig::with_body_limit`], 1 MiB by default), is refused before
//!   hashing.
//!
//! # Replay policy
//!
//! 1. **Time window.** A signed timestamp more than the tolerance (default 300 s) in the past
//!    *or in the future* is refused, with [`Rejection::TimestampTooOld`] or
//!    [`Rejection::TimestampInFuture`]. We are stricter than Stripe's and HubSpot's own
//!    libraries, which accept any future timestamp. A distance of exactly the tolerance is
//!    accepted. The window is checked after the signature, so these two reasons only ever
//!    describe authentic deliveries (clock skew, or a replay), never forgeries.
//! 2. **Replay cache.** A [`ReplayGuard`] remembers every accepted delivery per installation,
//!    keyed by a [`ReplayKey`] (a digest of the `webhook-id` for Standard Webhooks, of the
//!    verified signature, hence of exactly the signed content, for the others), until the
//!    window has closed for it ([`Verified::replay_expires_at`]): the same delivery accepted
//!    twice inside its window is [`Rejection::Replayed`]. Answer a replay with 2xx: it is
//!    authentic and was already processed. [`InMemoryReplayGuard`] is the bounded in-process
//!    implementation; the runtime persists the same trait in its store. The cache stops
//!    replays of *one delivery*; it does not merge the sender's own retries when the sender
//!    re-signs them (Stripe and HubSpot sign each retry with a new timestamp): those are
//!    deduplicated by event id ([`Verified::event_id`]) and idempotent upserts. Standard
//!    Webhooks keeps its `webhook-id` across retries, so there the cache catches both.
//! 3. **Schemes without a timestamp.** Airtable pings carry no timestamp header, no data, and
//!    are retried for about a day (Airtable disables notifications after 13 failures), so an
//!    authentic Airtable ping is accepted **whatever its age** and deduplicated on its content
//!    for [`VerifierConfig::untimed_replay_window`] (26 h by default). The plain `hmac-sha256`
//!    scheme has no timestamp either and gets the same treatment: prefer a scheme with a
//!    timestamp when you control the sender.
//!
//! # Example
//!
//! ```
//! use ivory_sdk::webhook::{Delivery, InMemoryReplayGuard, Rejection, Scheme, Verifier};
//! use http::HeaderMap;
//! use jiff::Timestamp;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> { futures::executor::block_on(handler()) }
//! # async fn handler() -> Result<(), Box<dyn std::error::Error>> {
//! // Once, when the installation is loaded.
//! let verifier = Verifier::new(Scheme::Stripe, "whsec_test_ivory_fake_secret_0000")?;
//! let guard = InMemoryReplayGuard::default();
//!
//! // Per request: the raw body and headers as received (here signed by the test generator).
//! let now = Timestamp::now();
//! let body = br#"{"id":"evt_test_1","object":"event","type":"invoice.payment_failed"}"#;
//! let delivery = verifier.sign(Delivery::new(HeaderMap::new(), &body[..]), now)?;
//!
//! match verifier.verify_at(&delivery, now)?.remember(&guard, "installation-1", now).await {
//!     Ok(verified) => assert_eq!(verified.event_id(), Some("evt_test_1")),
//!     Err(rejection) if rejection.is_replay() => { /* answer 200, do nothing */ }
//!     Err(rejection) => return Err(rejection.into()),
//! }
//! # Ok(()) }
//! ```
//!
//! # Testing
//!
//! [`Verifier::sign`] adds a scheme's signature headers to a delivery, as the upstream would:
//! fakes, fixtures and certification use it. `verify_at` takes the time explicitly.

mod airtable;
mod delivery;
mod error;
mod hubspot;
mod parse;
mod plain;
mod replay;
mod scheme;
mod secret;
mod standard;
mod stripe;
mod verifier;

pub use delivery::Delivery;
pub use error::{Rejection, SecretError, SignError};
pub use replay::{
    Freshness, InMemoryReplayGuard, ReplayError, ReplayFuture, ReplayGuard, ReplayKey,
};
pub use scheme::{HmacSha256Config, Scheme, SchemeKind, SignatureEncoding, UnknownScheme};
pub use verifier::{Verified, Verifier, VerifierConfig};
