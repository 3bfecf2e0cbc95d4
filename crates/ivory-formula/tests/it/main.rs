//! The formula language: parse errors, type errors, Airtable-compatible evaluation, JSON
//! values, and property tests (round trip, totality, algebraic laws).

mod check;
mod eval;
mod json;
mod parse;
mod props;
mod support;
