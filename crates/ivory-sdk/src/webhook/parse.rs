//! Shared, panic-free building blocks of the scheme parsers: header lookup, Unix timestamps,
//! tag decoding, the constant-time match over candidate signatures and the time window.

use std::time::Duration;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderName;
use subtle::{Choice, ConstantTimeEq};

use super::delivery::Delivery;
use super::error::Rejection;
use super::secret::TAG_LEN;

/// Standard base64 that accepts the value with or without its `=` padding, and encodes with
/// padding.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The single value of a required header, as visible ASCII.
///
/// A header sent twice is malformed rather than "first one wins": a proxy or an attacker that
/// adds a second copy must not change which one is read.
pub(crate) fn single_header<'a>(
    delivery: &'a Delivery,
    name: &HeaderName,
) -> Result<&'a str, Rejection> {
    let mut values = delivery.headers().get_all(name).iter();
    let first = values
        .next()
        .ok_or_else(|| Rejection::MissingHeader(name.clone()))?;
    if values.next().is_some() {
        return Err(malformed(name, "sent more than once"));
    }
    first
        .to_str()
        .map_err(|_| malformed(name, "value is not visible ASCII"))
}

pub(crate) fn malformed(name: &HeaderName, reason: &'static str) -> Rejection {
    Rejection::MalformedHeader {
        name: name.clone(),
        reason,
    }
}

/// A non-negative integer written with 1 to 18 ASCII digits (so it always fits an `i64`); no
/// sign, no spaces, no fraction.
pub(crate) fn parse_unix(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decodes one encoded signature into a tag, `None` when it is not a valid encoding of 32 bytes.
pub(crate) type TagDecoder = fn(&str) -> Option<[u8; TAG_LEN]>;

/// 64 hex digits (either case) → a tag.
pub(crate) fn decode_hex_tag(s: &str) -> Option<[u8; TAG_LEN]> {
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(s, &mut tag).ok()?;
    Some(tag)
}

/// Standard base64 of exactly 32 bytes (padding optional) → a tag.
pub(crate) fn decode_base64_tag(s: &str) -> Option<[u8; TAG_LEN]> {
    // 32 bytes are 44 base64 characters with padding, 43 without; refuse anything longer
    // before decoding so a huge header costs nothing.
    if s.len() > 44 {
        return None;
    }
    let mut tag = [0u8; TAG_LEN];
    match BASE64.decode_slice(s, &mut tag) {
        Ok(TAG_LEN) => Some(tag),
        _ => None,
    }
}

/// Decodes every candidate and compares it with `expected` in constant time, without stopping
/// at the first match (the comparison time does not depend on which candidate matched).
///
/// `Ok` when one matched; otherwise [`Rejection::BadEncoding`] if some candidate did not
/// decode, else [`Rejection::NoSignatureMatched`].
pub(crate) fn match_candidates<'a>(
    expected: &[u8; TAG_LEN],
    candidates: impl IntoIterator<Item = &'a str>,
    decode: TagDecoder,
    name: &HeaderName,
    encoding: &'static str,
) -> Result<(), Rejection> {
    let mut matched = Choice::from(0);
    let mut undecodable = false;
    for candidate in candidates {
        match decode(candidate) {
            Some(tag) => matched |= tag.ct_eq(expected),
            None => undecodable = true,
        }
    }
    if bool::from(matched) {
        Ok(())
    } else if undecodable {
        Err(Rejection::BadEncoding {
            name: name.clone(),
            encoding,
        })
    } else {
        Err(Rejection::NoSignatureMatched)
    }
}

/// The unit a scheme writes its timestamp in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimeUnit {
    Seconds,
    Milliseconds,
}

impl TimeUnit {
    fn per_second(self) -> i128 {
        match self {
            Self::Seconds => 1,
            Self::Milliseconds => 1000,
        }
    }

    fn now(self, now: jiff::Timestamp) -> i128 {
        match self {
            Self::Seconds => i128::from(now.as_second()),
            Self::Milliseconds => i128::from(now.as_millisecond()),
        }
    }

    /// The timestamp as a [`jiff::Timestamp`], if it is in jiff's range.
    pub(crate) fn to_timestamp(self, value: i64) -> Option<jiff::Timestamp> {
        match self {
            Self::Seconds => jiff::Timestamp::from_second(value).ok(),
            Self::Milliseconds => jiff::Timestamp::from_millisecond(value).ok(),
        }
    }
}

/// Rejects a timestamp further than `tolerance` from `now`, in either direction. A distance of
/// exactly the tolerance is accepted (as in every official library).
pub(crate) fn check_window(
    value: i64,
    unit: TimeUnit,
    now: jiff::Timestamp,
    tolerance: Duration,
) -> Result<(), Rejection> {
    let per_second = unit.per_second();
    let tolerance_units = match unit {
        TimeUnit::Seconds => i128::from(tolerance.as_secs()),
        TimeUnit::Milliseconds => i128::try_from(tolerance.as_millis()).unwrap_or(i128::MAX),
    };
    let age = unit.now(now) - i128::from(value);
    let whole_seconds_up =
        |units: i128| u64::try_from((units + per_second - 1) / per_second).unwrap_or(u64::MAX);
    if age > tolerance_units {
        Err(Rejection::TimestampTooOld {
            age_seconds: whole_seconds_up(age),
            tolerance,
        })
    } else if -age > tolerance_units {
        Err(Rejection::TimestampInFuture {
            ahead_seconds: whole_seconds_up(-age),
            tolerance,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_accepts_digits_only() {
        assert_eq!(parse_unix("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_unix("0001"), Some(1));
        for bad in [
            "",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1.5",
            "1e9",
            "١٢",
            "9999999999999999999",
        ] {
            assert_eq!(parse_unix(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn base64_tag_needs_exactly_32_bytes() {
        let tag = [7u8; 32];
        let padded = BASE64.encode(tag);
        assert_eq!(decode_base64_tag(&padded), Some(tag));
        assert_eq!(decode_base64_tag(padded.trim_end_matches('=')), Some(tag));
        assert_eq!(decode_base64_tag(&BASE64.encode([7u8; 31])), None);
        assert_eq!(decode_base64_tag("not base64!"), None);
    }

    #[test]
    fn window_is_inclusive_and_rounds_ages_up() {
        let now = jiff::Timestamp::from_second(1_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let tol = Duration::from_secs(300);
        assert!(check_window(1_000_000 - 300, TimeUnit::Seconds, now, tol).is_ok());
        assert!(check_window(1_000_000 + 300, TimeUnit::Seconds, now, tol).is_ok());
        assert!(matches!(
            check_window(1_000_000 - 301, TimeUnit::Seconds, now, tol),
            Err(Rejection::TimestampTooOld {
                age_seconds: 301,
                ..
            })
        ));
        assert!(matches!(
            check_window(1_000_000_000 - 300_001, TimeUnit::Milliseconds, now, tol),
            Err(Rejection::TimestampTooOld {
                age_seconds: 301,
                ..
            })
        ));
        assert!(matches!(
            check_window(1_000_000_000 + 300_001, TimeUnit::Milliseconds, now, tol),
            Err(Rejection::TimestampInFuture {
                ahead_seconds: 301,
                ..
            })
        ));
        assert!(check_window(i64::MAX, TimeUnit::Milliseconds, now, Duration::MAX).is_ok());
    }
}
