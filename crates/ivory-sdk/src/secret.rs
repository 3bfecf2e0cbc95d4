//! Secrets as types: a redacted `Debug`, no `PartialEq`, and an explicit accessor.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A secret string: an API key, an access or refresh token, a webhook secret.
///
/// `Debug` and `Display` print `Secret([REDACTED])`; there is no `PartialEq` (compare secrets in
/// constant time with `subtle` when you must). The only way to read the value is
/// [`Secret::expose`], which makes every read visible in review.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret value. **Security:** never log, print or store the result in plain text.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("sk_test_fake_value_for_tests");
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        assert_eq!(format!("{s}"), "[REDACTED]");
        assert_eq!(s.expose(), "sk_test_fake_value_for_tests");
    }
}
