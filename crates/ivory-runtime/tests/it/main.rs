//! Integration tests of the runtime: real SQLite files, real HTTP fakes on loopback.

mod audit;
mod crash;
mod dsar;
mod governance;
mod marketplace;
mod oauth;
mod objects;
mod oidc;
mod outbox;
mod replay;
mod shared_rate;
mod support;
mod sync;
mod vault;
mod workflows;
