//! # Ivory Connector SDK
//!
//! The contract third parties build certified Ivorycom integrations against. A connector
//! implements [`Connector`]; the platform runs it with a [`Context`] that gives it the tenant's
//! own credentials, a paced and retrying [`Fetcher`], lazy [`pagination`] helpers, and
//! `upsert`/cursor methods whose ordering guarantees are enforced by the SDK, not left to the
//! author.
//!
//! - [`manifest`]: the `manifest.json` types, strict validation, JSON Schema.
//! - [`fetch`]: pacing (GCRA at `rateLimitPerMinute`), `Retry-After`, backoff, host allow-list.
//! - [`pagination`]: Stripe, HubSpot, Airtable and `Link`-header listings as streams.
//! - [`context`]: the cursor discipline and outbound sync (see its module doc).
//! - [`conflict`]: `source_wins` / `platform_wins` / `newest_wins`, the tie rule.
//! - [`webhook`]: webhook signature verification.
//!
//! See ARCHITECTURE.md at the repository root for the map of the workspace.

pub mod clock;
pub mod conflict;
pub mod connector;
pub mod context;
pub mod error;
pub mod fetch;
pub mod manifest;
pub mod pagination;
pub mod record;
pub mod secret;
pub mod webhook;

pub use clock::Clock;
pub use connector::{Connector, DynConnector, SyncResult, WebhookEvent};
pub use context::{
    CommitReceipt, Context, ContextParts, Credentials, Progress, ProgressSnapshot, RecordSink,
};
pub use error::{CursorError, Error, SinkError};
pub use fetch::{FetchConfig, FetchError, FetchStats, Fetcher, HttpConfig};
pub use manifest::{Manifest, ValidationMode};
pub use record::{Cursor, Record, RecordOp};
pub use secret::Secret;
