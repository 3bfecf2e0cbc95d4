//! Integration tests of the runtime: real SQLite files, real HTTP fakes on loopback.

mod crash;
mod support;
mod sync;
