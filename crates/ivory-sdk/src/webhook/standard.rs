//! Standard Webhooks (v1.0.0): `webhook-id`, `webhook-timestamp` (unix s) and
//! `webhook-signature: v1,<base64>[ v1,<base64>…]`.
//!
//! HMAC-SHA256 over `"{webhook-id}.{timestamp}.{body}"`, keyed with the base64-decoded secret
//! (`whsec_` stripped), standard base64. Entries are space-separated; any matching `v1`
//! accepts (zero-downtime rotation); other versions (`v1a`, ed25519) are ignored. The
//! `webhook-id` is stable across retries: it is the event id and the replay key.

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::delivery::Delivery;
use super::error::{Rejection, SignError};
use super::parse::{
    BASE64, TimeUnit, decode_base64_tag, malformed, match_candidates, parse_unix, single_header,
};
use super::replay::ReplayKey;
use super::scheme::SchemeKind;
use super::secret::MacKey;
use super::verifier::{Checked, VerifierConfig};

pub(crate) const ID: HeaderName = HeaderName::from_static("webhook-id");
pub(crate) const TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// The `v1` signatures of a `webhook-signature` value (possibly none).
pub(crate) fn parse_signatures(value: &str) -> Result<Vec<&str>, &'static str> {
    let mut v1 = Vec::new();
    for entry in value.split_ascii_whitespace() {
        let (version, signature) = entry
            .split_once(',')
            .ok_or("an entry has no version (expected `v1,<base64>`)")?;
        if version == "v1" {
            v1.push(signature);
        }
    }
    Ok(v1)
}

pub(crate) fn verify(
    key: &MacKey,
    delivery: &Delivery,
    now: Timestamp,
    config: &VerifierConfig,
) -> Result<Checked, Rejection> {
    let id = single_header(delivery, &ID)?;
    let raw_timestamp = single_header(delivery, &TIMESTAMP)?;
    let signatures = single_header(delivery, &SIGNATURE)?;
    if id.is_empty() {
        return Err(malformed(&ID, "empty value"));
    }
    let timestamp = parse_unix(raw_timestamp)
        .ok_or_else(|| malformed(&TIMESTAMP, "not a Unix timestamp in seconds"))?;
    let v1 = parse_signatures(signatures).map_err(|reason| malformed(&SIGNATURE, reason))?;
    if v1.is_empty() {
        return Err(Rejection::NoSupportedSignature {
            name: SIGNATURE,
            expected: "v1",
        });
    }
    let t = timestamp.to_string();
    let tag = key.tag(&[id.as_bytes(), b".", t.as_bytes(), b".", delivery.body()]);
    match_candidates(&tag, v1, decode_base64_tag, &SIGNATURE, "base64")?;
    Checked::timed(
        ReplayKey::digest(SchemeKind::StandardWebhooks, id.as_bytes()),
        timestamp,
        TimeUnit::Seconds,
        now,
        config,
        Some(id.to_owned()),
    )
}

pub(crate) fn sign(key: &MacKey, delivery: Delivery, at: Timestamp) -> Result<Delivery, SignError> {
    let t = at.as_second();
    if t < 0 {
        return Err(SignError::BeforeEpoch);
    }
    let t = t.to_string();
    let id = match delivery.headers().get(&ID).map(HeaderValue::to_str) {
        Some(Ok(id)) if !id.is_empty() => id.to_owned(),
        Some(_) => return Err(SignError::InvalidHeaderValue(ID)),
        None => {
            let digest = Sha256::digest(delivery.body());
            format!("msg_{}", hex::encode(&digest[..12]))
        }
    };
    let tag = key.tag(&[id.as_bytes(), b".", t.as_bytes(), b".", delivery.body()]);
    let signature = HeaderValue::try_from(format!("v1,{}", BASE64.encode(tag)))
        .map_err(|_| SignError::InvalidHeaderValue(SIGNATURE))?;
    let id = HeaderValue::try_from(id).map_err(|_| SignError::InvalidHeaderValue(ID))?;
    let t = HeaderValue::try_from(t).map_err(|_| SignError::InvalidHeaderValue(TIMESTAMP))?;
    Ok(delivery
        .with_header(ID, id)
        .with_header(TIMESTAMP, t)
        .with_header(SIGNATURE, signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_v1_entries_only() {
        assert_eq!(
            parse_signatures("v1,aa v1a,bb  v2,cc v1,dd"),
            Ok(vec!["aa", "dd"])
        );
        assert_eq!(parse_signatures("v1a,bb"), Ok(vec![]));
        assert!(parse_signatures("v1,aa garbage").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_never_panics(value in ".*") {
            let _ = parse_signatures(&value);
        }
    }
}
