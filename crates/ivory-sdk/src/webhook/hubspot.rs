//! HubSpot v3: `X-HubSpot-Signature-v3: <base64>` and `X-HubSpot-Request-Timestamp: <unix ms>`.
//!
//! HMAC-SHA256 keyed with the app's client secret over `method + URI + body + timestamp`,
//! where the timestamp is the header's text and the URI is the full URL HubSpot called with
//! only these escapes decoded: `%3A : %2F / %3F ? %40 @ %21 ! %24 $ %27 ' %28 ( %29 ) %2A *
//! %2C , %3B ;` (either hex case). Every other escape (`%20`, `%26`, `%3D`, …) stays as sent.

use std::borrow::Cow;

use http::{HeaderName, HeaderValue};
use jiff::Timestamp;

use super::delivery::Delivery;
use super::error::{Rejection, SignError};
use super::parse::{
    BASE64, TimeUnit, decode_base64_tag, malformed, match_candidates, parse_unix, single_header,
};
use super::replay::ReplayKey;
use super::scheme::SchemeKind;
use super::secret::MacKey;
use super::verifier::{Checked, VerifierConfig};

use base64::Engine as _;

pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("x-hubspot-signature-v3");
pub(crate) const TIMESTAMP: HeaderName = HeaderName::from_static("x-hubspot-request-timestamp");

/// Decodes the escapes HubSpot documents (and only those) in a request URI.
pub(crate) fn decode_uri(uri: &str) -> Cow<'_, str> {
    if !uri.contains('%') {
        return Cow::Borrowed(uri);
    }
    let bytes = uri.as_bytes();
    let mut out = String::with_capacity(uri.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let decoded = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .filter(|byte| b":/?@!$'()*,;".contains(byte));
            if let Some(byte) = decoded {
                out.push_str(&uri[copied..i]);
                out.push(char::from(byte));
                i += 3;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&uri[copied..]);
    Cow::Owned(out)
}

fn signed_tag(key: &MacKey, delivery: &Delivery, url: &str, timestamp: &str) -> [u8; 32] {
    let uri = decode_uri(url);
    key.tag(&[
        delivery.method().as_str().as_bytes(),
        uri.as_bytes(),
        delivery.body(),
        timestamp.as_bytes(),
    ])
}

pub(crate) fn verify(
    key: &MacKey,
    delivery: &Delivery,
    now: Timestamp,
    config: &VerifierConfig,
) -> Result<Checked, Rejection> {
    let signature = single_header(delivery, &SIGNATURE)?;
    let raw_timestamp = single_header(delivery, &TIMESTAMP)?;
    let timestamp = parse_unix(raw_timestamp)
        .ok_or_else(|| malformed(&TIMESTAMP, "not a Unix timestamp in milliseconds"))?;
    let signature = signature.trim_matches([' ', '\t']);
    if signature.is_empty() {
        return Err(malformed(&SIGNATURE, "empty value"));
    }
    let url = delivery.url().ok_or(Rejection::MissingUrl)?;
    let tag = signed_tag(key, delivery, url, raw_timestamp);
    match_candidates(&tag, [signature], decode_base64_tag, &SIGNATURE, "base64")?;
    Checked::timed(
        ReplayKey::digest(SchemeKind::HubSpotV3, &tag),
        timestamp,
        TimeUnit::Milliseconds,
        now,
        config,
        None,
    )
}

pub(crate) fn sign(key: &MacKey, delivery: Delivery, at: Timestamp) -> Result<Delivery, SignError> {
    let millis = at.as_millisecond();
    if millis < 0 {
        return Err(SignError::BeforeEpoch);
    }
    let millis = millis.to_string();
    let url = delivery.url().ok_or(SignError::MissingUrl)?;
    let tag = signed_tag(key, &delivery, url, &millis);
    let signature = HeaderValue::try_from(BASE64.encode(tag))
        .map_err(|_| SignError::InvalidHeaderValue(SIGNATURE))?;
    let timestamp =
        HeaderValue::try_from(millis).map_err(|_| SignError::InvalidHeaderValue(TIMESTAMP))?;
    Ok(delivery
        .with_header(SIGNATURE, signature)
        .with_header(TIMESTAMP, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_only_the_documented_escapes() {
        assert_eq!(
            decode_uri("https://h.example/a%3Ab%2Fc%3Fd%40e%21f%24g%27h%28i%29j%2Ak%2Cl%3Bm"),
            "https://h.example/a:b/c?d@e!f$g'h(i)j*k,l;m"
        );
        assert_eq!(
            decode_uri("https://h.example/x%3ay"),
            "https://h.example/x:y"
        );
        assert_eq!(
            decode_uri("https://h.example/p?q=a%20b%26c%3Dd%25e"),
            "https://h.example/p?q=a%20b%26c%3Dd%25e"
        );
        // `%253A` is an encoded `%` followed by `3A`: it stays as sent.
        assert_eq!(
            decode_uri("https://h.example/%253A"),
            "https://h.example/%253A"
        );
        assert_eq!(decode_uri("%"), "%");
        assert_eq!(decode_uri("%3"), "%3");
        assert_eq!(decode_uri("%é3A%3A"), "%é3A:");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn uri_decoding_never_panics_and_only_shrinks(uri in ".*") {
            let decoded = decode_uri(&uri);
            prop_assert!(decoded.len() <= uri.len());
        }

        #[test]
        fn uri_decoding_never_panics_on_escapes(uri in "([a-z/:?]|%[0-9a-fA-F]{0,2}|é)*") {
            let _ = decode_uri(&uri);
        }
    }
}
