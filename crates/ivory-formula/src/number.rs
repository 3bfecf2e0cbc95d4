//! Number formatting and rounding.

/// A number as text: the shortest decimal that reads back as the same `f64`, without
/// exponent and without a trailing `.0`; negative zero prints as `0`.
///
/// `1` → `"1"`, `3.5` → `"3.5"`, `0.1 + 0.2` → `"0.30000000000000004"`, `1e21` →
/// `"1000000000000000000000"`.
pub(crate) fn format_number(x: f64) -> String {
    if x == 0.0 {
        // Both zeros.
        return "0".to_owned();
    }
    format!("{x}")
}

/// Rounds `x` to `digits` decimal places (negative: to tens, hundreds…), half away from
/// zero, on the number's shortest decimal representation: `1.005` rounds to `1.01` at two
/// digits even though the nearest `f64` is slightly below 1.005, because that is the number
/// the user wrote and sees.
pub(crate) fn round_half_away(x: f64, digits: i64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // `{:e}` is the shortest round-trip representation: "1.005e0", "2.5e-1", "1e2".
    let scientific = format!("{:e}", x.abs());
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return x;
    };
    let Ok(exponent) = exponent.parse::<i64>() else {
        return x;
    };
    let significant: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    // The first significant digit has place value 10^exponent; keep the digits whose place
    // value is at least 10^-digits.
    let keep = exponent + 1 + digits.clamp(-1000, 1000);
    let Ok(keep_len) = usize::try_from(keep) else {
        // Every digit is below the rounding position, and the first is at most half of it.
        return 0.0;
    };
    if keep_len >= significant.len() {
        return x;
    }
    let mut kept: Vec<u8> = significant[..keep_len].to_vec();
    if significant[keep_len] >= b'5' {
        // Add one at the last kept position, carrying.
        let mut carry = true;
        for digit in kept.iter_mut().rev() {
            if *digit == b'9' {
                *digit = b'0';
            } else {
                *digit += 1;
                carry = false;
                break;
            }
        }
        if carry {
            // A new leading digit: the magnitude grows, the last digit's position stays.
            kept.insert(0, b'1');
        }
    }
    if kept.iter().all(|d| *d == b'0') {
        return 0.0;
    }
    // The last kept digit has place value 10^-digits.
    let digits_text = String::from_utf8_lossy(&kept);
    let text = format!("{digits_text}e{}", -digits.clamp(-1000, 1000));
    let magnitude = text.parse::<f64>().unwrap_or(x.abs());
    if x.is_sign_negative() {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_away_from_zero_on_the_decimal_representation() {
        let cases = [
            (2.5, 0, 3.0),
            (-2.5, 0, -3.0),
            (0.5, 0, 1.0),
            (0.4, 0, 0.0),
            (1.005, 2, 1.01),
            (1234.5678, 2, 1234.57),
            (16.8, -1, 20.0),
            (999.5, 0, 1000.0),
            (9.99, 1, 10.0),
            (0.0004, 3, 0.0),
            (0.0005, 3, 0.001),
            (4.0, -1, 0.0),
            (5.0, -1, 10.0),
            (44.0, -2, 0.0),
            (50.0, -2, 100.0),
            (1.25, 5, 1.25),
            (123.0, 400, 123.0),
            (123.0, -400, 0.0),
        ];
        for (x, digits, expected) in cases {
            assert_eq!(round_half_away(x, digits), expected, "ROUND({x}, {digits})");
        }
    }

    #[test]
    fn formats_without_exponent_or_trailing_zero() {
        assert_eq!(format_number(1.0), "1");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(3.5), "3.5");
        assert_eq!(format_number(1e21), "1000000000000000000000");
        assert_eq!(format_number(1e-7), "0.0000001");
    }
}
