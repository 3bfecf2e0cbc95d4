//! Plain `hmac-sha256`: one configurable header carrying `[prefix]<hex|base64>` of
//! HMAC-SHA256 over the raw body, keyed with the secret's UTF-8 bytes (GitHub's
//! `X-Hub-Signature-256: sha256=<hex>` is an instance). No timestamp: like Airtable, accepted
//! whatever its age and deduplicated on its content.

use base64::Engine as _;
use http::HeaderValue;

use super::delivery::Delivery;
use super::error::{Rejection, SignError};
use super::parse::{
    BASE64, TagDecoder, decode_base64_tag, decode_hex_tag, malformed, match_candidates,
    single_header,
};
use super::replay::ReplayKey;
use super::scheme::{HmacSha256Config, SchemeKind, SignatureEncoding};
use super::secret::MacKey;
use super::verifier::Checked;

/// The encoded tag after the configured prefix.
pub(crate) fn parse_header<'a>(
    config: &HmacSha256Config,
    value: &'a str,
) -> Result<&'a str, &'static str> {
    let value = value.trim_matches([' ', '\t']);
    match config.prefix() {
        Some(prefix) => value
            .strip_prefix(prefix)
            .ok_or("does not start with the configured prefix"),
        None => Ok(value),
    }
}

pub(crate) fn verify(
    key: &MacKey,
    config: &HmacSha256Config,
    delivery: &Delivery,
) -> Result<Checked, Rejection> {
    let name = config.header();
    let value = single_header(delivery, name)?;
    let encoded = parse_header(config, value).map_err(|reason| malformed(name, reason))?;
    if encoded.is_empty() {
        return Err(malformed(name, "no signature after the prefix"));
    }
    let tag = key.tag(&[delivery.body()]);
    let (decode, encoding): (TagDecoder, _) = match config.encoding() {
        SignatureEncoding::Hex => (decode_hex_tag, "hex"),
        SignatureEncoding::Base64 => (decode_base64_tag, "base64"),
    };
    match_candidates(&tag, [encoded], decode, name, encoding)?;
    Ok(Checked::untimed(ReplayKey::digest(
        SchemeKind::HmacSha256,
        &tag,
    )))
}

pub(crate) fn sign(
    key: &MacKey,
    config: &HmacSha256Config,
    delivery: Delivery,
) -> Result<Delivery, SignError> {
    let tag = key.tag(&[delivery.body()]);
    let encoded = match config.encoding() {
        SignatureEncoding::Hex => hex::encode(tag),
        SignatureEncoding::Base64 => BASE64.encode(tag),
    };
    let value = format!("{}{encoded}", config.prefix().unwrap_or(""));
    let value = HeaderValue::try_from(value)
        .map_err(|_| SignError::InvalidHeaderValue(config.header().clone()))?;
    Ok(delivery.with_header(config.header().clone(), value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_never_panics(value in ".*", prefix in ".{0,8}") {
            let config = HmacSha256Config::new(HeaderName::from_static("x-signature"), SignatureEncoding::Hex)
                .with_prefix(prefix);
            let _ = parse_header(&config, &value);
        }
    }
}
