//! The decoded, keyed HMAC state a [`Verifier`](super::Verifier) keeps: [`MacKey`].
//!
//! It does not implement `PartialEq` (comparing secrets with `==` is how timing leaks are
//! written) and prints `MacKey([redacted])` under `Debug`.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Length of an HMAC-SHA256 tag in bytes.
pub(crate) const TAG_LEN: usize = 32;

/// An HMAC-SHA256 state already keyed with the decoded secret: the key schedule runs once, when
/// the verifier is built, and each verification clones the state.
#[derive(Clone)]
pub(crate) struct MacKey(Hmac<Sha256>);

impl MacKey {
    /// Keys the state. HMAC accepts keys of any length (a long key is hashed first), so `None`
    /// is not expected; it is still handled rather than unwrapped.
    pub(crate) fn new(key: &[u8]) -> Option<Self> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .ok()
            .map(Self)
    }

    /// The tag over the concatenation of `parts`.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}
