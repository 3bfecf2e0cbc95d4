//! # Ivory runtime
//!
//! The platform side of the Ivory Connector SDK: the [`store`] (embedded SQLite by default,
//! PostgreSQL for scale-out, one code path over sqlx `Any`) and the sync [`runner`], which owns
//! the ordering guarantees connectors rely on (records durably stored before the cursor moves,
//! one run at a time per installation).

pub mod connection;
pub mod dsar;
pub mod marketplace;
pub mod oauth;
pub mod objects;
pub mod outbox;
pub mod runner;
pub mod schedule;
pub mod store;
pub mod vault;
pub mod webhooks;
pub mod workflows;

pub use runner::{RunError, Runner, SinkWrapper, SyncOptions, SyncSummary};
pub use store::{Backend, Installation, Store, StoreError};
pub use vault::{MasterKeys, Vault, VaultError};
