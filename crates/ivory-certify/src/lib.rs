//! The static half of `ivory certify`.
