//! Integration tests of the runtime: real SQLite files, real HTTP fakes on loopback.

mod crash;
mod governance;
mod oauth;
mod replay;
mod support;
mod sync;
mod vault;
