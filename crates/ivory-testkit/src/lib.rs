//! # Ivory testkit
//!
//! Test support shared by the workspace's tests, the CLI's demo and the benchmarks: fake
//! upstreams that run as real HTTP servers on loopback, and small connectors written against
//! them. Nothing here is a mock of our own store: tests run the real store on real files.

pub mod airtable;
pub mod connectors;
pub mod hubspot;
pub mod items;
pub mod oauth;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "pg")]
pub mod pg;
pub mod stripe;
