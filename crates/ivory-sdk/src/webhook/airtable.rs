//! Airtable: `X-Airtable-Content-MAC: hmac-sha256=<hex>`.
//!
//! HMAC-SHA256 over the raw body, keyed with the base64-decoded `macSecretBase64` returned when
//! the webhook was created. There is no timestamp header: an authentic ping is accepted
//! whatever its age (Airtable retries for about a day and disables notifications after 13
//! failures), and deduplicated on its content by the replay cache.

use http::{HeaderName, HeaderValue};

use super::delivery::Delivery;
use super::error::Rejection;
use super::parse::{decode_hex_tag, malformed, match_candidates, single_header};
use super::replay::ReplayKey;
use super::scheme::SchemeKind;
use super::secret::MacKey;
use super::verifier::Checked;

pub(crate) const MAC: HeaderName = HeaderName::from_static("x-airtable-content-mac");
const PREFIX: &str = "hmac-sha256=";

/// The hex tag after the `hmac-sha256=` prefix.
pub(crate) fn parse_header(value: &str) -> Result<&str, &'static str> {
    value
        .trim_matches([' ', '\t'])
        .strip_prefix(PREFIX)
        .ok_or("expected `hmac-sha256=<hex>`")
}

pub(crate) fn verify(key: &MacKey, delivery: &Delivery) -> Result<Checked, Rejection> {
    let value = single_header(delivery, &MAC)?;
    let hex_tag = parse_header(value).map_err(|reason| malformed(&MAC, reason))?;
    let tag = key.tag(&[delivery.body()]);
    match_candidates(&tag, [hex_tag], decode_hex_tag, &MAC, "hex")?;
    Ok(Checked::untimed(ReplayKey::digest(
        SchemeKind::Airtable,
        &tag,
    )))
}

pub(crate) fn sign(key: &MacKey, delivery: Delivery) -> Delivery {
    let tag = key.tag(&[delivery.body()]);
    let mut value = String::with_capacity(PREFIX.len() + 64);
    value.push_str(PREFIX);
    value.push_str(&hex::encode(tag));
    match HeaderValue::try_from(value) {
        Ok(value) => delivery.with_header(MAC, value),
        // A fixed ASCII prefix plus hex digits is always a valid header value.
        Err(_) => delivery,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn needs_the_prefix() {
        assert_eq!(parse_header("hmac-sha256=ab"), Ok("ab"));
        assert!(parse_header("sha256=ab").is_err());
        assert!(parse_header("HMAC-SHA256=ab").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_never_panics(value in ".*") {
            let _ = parse_header(&value);
        }
    }
}
