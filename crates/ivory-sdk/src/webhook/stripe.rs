//! Stripe: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>…][,v0=<hex>]`.
//!
//! HMAC-SHA256 over `"{t}.{body}"`, keyed with the whole endpoint secret (`whsec_` included) as
//! UTF-8, lowercase hex. Any matching `v1` accepts (several appear while a rolled secret stays
//! active); `v0` (test-mode fake signatures) and unknown schemes are ignored, so a header with
//! only `v0` is refused. Elements are separated by commas; spaces around them are tolerated.

use http::{HeaderName, HeaderValue};
use jiff::Timestamp;

use super::delivery::Delivery;
use super::error::{Rejection, SignError};
use super::parse::{
    TimeUnit, decode_hex_tag, malformed, match_candidates, parse_unix, single_header,
};
use super::replay::ReplayKey;
use super::scheme::SchemeKind;
use super::secret::MacKey;
use super::verifier::{Checked, VerifierConfig};

pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static("stripe-signature");

/// The parsed `Stripe-Signature` header.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    pub(crate) timestamp: i64,
    pub(crate) v1: Vec<&'a str>,
}

/// Parses the header value. Errors are the `MalformedHeader` reasons; an empty `v1` list is
/// returned as is (the caller reports it).
pub(crate) fn parse_header(value: &str) -> Result<Header<'_>, &'static str> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for element in value.split(',') {
        let element = element.trim_matches([' ', '\t']);
        match element.split_once('=') {
            None if element == "t" || element == "v1" => {
                return Err("an element `t` or `v1` has no value");
            }
            // Stripe's libraries skip elements they do not understand.
            None => {}
            Some(("t", raw)) => {
                if timestamp.is_some() {
                    return Err("more than one `t=` element");
                }
                timestamp = Some(parse_unix(raw).ok_or("`t=` is not a Unix timestamp in seconds")?);
            }
            Some(("v1", signature)) => v1.push(signature),
            Some(_) => {}
        }
    }
    let timestamp = timestamp.ok_or("no `t=` timestamp")?;
    Ok(Header { timestamp, v1 })
}

pub(crate) fn verify(
    key: &MacKey,
    delivery: &Delivery,
    now: Timestamp,
    config: &VerifierConfig,
) -> Result<Checked, Rejection> {
    let value = single_header(delivery, &SIGNATURE)?;
    let header = parse_header(value).map_err(|reason| malformed(&SIGNATURE, reason))?;
    if header.v1.is_empty() {
        return Err(Rejection::NoSupportedSignature {
            name: SIGNATURE,
            expected: "v1",
        });
    }
    let t = header.timestamp.to_string();
    let tag = key.tag(&[t.as_bytes(), b".", delivery.body()]);
    match_candidates(&tag, header.v1, decode_hex_tag, &SIGNATURE, "hex")?;
    Checked::timed(
        ReplayKey::digest(SchemeKind::Stripe, &tag),
        header.timestamp,
        TimeUnit::Seconds,
        now,
        config,
        event_id(delivery.body()),
    )
}

/// Stripe's event id is the body's `id`; read leniently, after verification.
fn event_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: Option<serde_json::Value>,
    }
    let parsed: IdOnly = serde_json::from_slice(body).ok()?;
    parsed.id?.as_str().map(str::to_owned)
}

pub(crate) fn sign(key: &MacKey, delivery: Delivery, at: Timestamp) -> Result<Delivery, SignError> {
    let t = at.as_second();
    if t < 0 {
        return Err(SignError::BeforeEpoch);
    }
    let t = t.to_string();
    let tag = key.tag(&[t.as_bytes(), b".", delivery.body()]);
    let value = format!("t={t},v1={}", hex::encode(tag));
    let value =
        HeaderValue::try_from(value).map_err(|_| SignError::InvalidHeaderValue(SIGNATURE))?;
    Ok(delivery.with_header(SIGNATURE, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_several_v1_and_ignores_v0_and_unknown() {
        let h = parse_header("t=12, v1=aa,v0=bb,v1=cc,x=y,junk").expect("parses");
        assert_eq!(
            h,
            Header {
                timestamp: 12,
                v1: vec!["aa", "cc"]
            }
        );
        assert_eq!(parse_header("t=12,v0=bb").map(|h| h.v1.len()), Ok(0));
    }

    #[test]
    fn refuses_broken_timestamps() {
        assert_eq!(parse_header("v1=aa"), Err("no `t=` timestamp"));
        assert_eq!(
            parse_header("t=1,t=2,v1=aa"),
            Err("more than one `t=` element")
        );
        assert_eq!(
            parse_header("t=-1,v1=aa"),
            Err("`t=` is not a Unix timestamp in seconds")
        );
        assert_eq!(
            parse_header("t,v1=aa"),
            Err("an element `t` or `v1` has no value")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_never_panics(value in ".*") {
            let _ = parse_header(&value);
        }

        #[test]
        fn parser_never_panics_on_header_like_input(
            value in "(t|v1|v0|x)?=?[0-9a-f]{0,70}(,(t|v1|v0| v1)=?[0-9a-fA-F=]{0,70}){0,5}"
        ) {
            let _ = parse_header(&value);
        }
    }
}
