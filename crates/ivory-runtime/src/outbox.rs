//! The outbox relay: ships the audit events the store wrote to its `outbox` table (in the
//! transactions of the changes they describe) to the platform's ledger, a NATS JetStream
//! stream (PLATFORM.md §1).
//!
//! # Delivery
//! - One message per row: subject = the row's event type under the configured prefix
//!   (`audit.installation.create`), payload = the envelope as written, header `Nats-Msg-Id` =
//!   the event id, header `Nats-Expected-Stream` = the stream (a subject that lands in another
//!   stream is refused instead of silently stored elsewhere).
//! - The stream is ensured at start (created when missing, with the subjects `<prefix>audit.>`
//!   and a duplicate window); an existing stream must already cover those subjects.
//! - A batch is read in write order (`created_at`, then the time-ordered id), published
//!   (pipelined), and its acknowledgements are awaited **in order**. Rows are marked sent only
//!   after their acknowledgement, and only the acknowledged prefix of a batch: the first
//!   failure stops the batch.
//!
//! # A kill mid-batch
//! Nothing is lost: a row is marked only after the stream stored it, so an unmarked row is
//! published again by the next relay. Nothing is duplicated: a row that was stored but not
//! marked (killed between the ack and the mark) is re-published with the same `Nats-Msg-Id`,
//! and JetStream drops it as a duplicate (the ack says so, the relay counts it and marks the
//! row). That holds while the restart comes within the stream's duplicate window, which is
//! why the default window is a day, not JetStream's two minutes.
//!
//! # Order
//! The stream holds events in write order, except after a failed publish in the middle of a
//! batch whose later messages were stored anyway: those are re-published (and dropped as
//! duplicates) after the failed one is, so the failed one lands after them. Consumers order
//! by `event_time` and id, which is what the ledger does.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use futures::FutureExt;
use jiff::Timestamp;

use crate::store::{PendingEvent, Store, StoreError};

/// The ledger stream's default name.
pub const DEFAULT_STREAM: &str = "IVORY_AUDIT";

/// How the relay reaches the ledger.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The NATS server (`nats://127.0.0.1:4222`). A password in it is never printed.
    pub nats_url: String,
    /// The JetStream stream (created when missing).
    pub stream: String,
    /// Put before every subject (`""`, or tokens ending in `.`: `tenant-x.`): the stream
    /// holds `<prefix>audit.>`.
    pub subject_prefix: String,
    /// Rows read, published and marked per batch (1 to 10,000).
    pub batch: u32,
    /// The stream's duplicate window when the relay creates it: a re-publish of a row stored
    /// but not marked is dropped if it comes within this window.
    pub duplicate_window: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long one publish may wait for its acknowledgement.
    pub ack_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            stream: DEFAULT_STREAM.into(),
            subject_prefix: String::new(),
            batch: 100,
            duplicate_window: Duration::from_secs(24 * 60 * 60),
            connect_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(10),
        }
    }
}

impl RelayConfig {
    /// The subjects the stream holds: `<prefix>audit.>`.
    pub fn stream_subjects(&self) -> String {
        format!("{}audit.>", self.subject_prefix)
    }

    fn validate(&self) -> Result<(), RelayError> {
        let invalid =
            |what: &'static str, message: String| Err(RelayError::InvalidConfig { what, message });
        if self.batch == 0 || self.batch > 10_000 {
            return invalid("batch", format!("{} is not within 1..=10000", self.batch));
        }
        let name_ok = !self.stream.is_empty()
            && self
                .stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return invalid(
                "stream",
                format!(
                    "{:?} must be letters, digits, `_` or `-` (a JetStream stream name)",
                    self.stream
                ),
            );
        }
        let prefix = &self.subject_prefix;
        let prefix_ok = prefix.is_empty()
            || (prefix.ends_with('.')
                && prefix[..prefix.len() - 1].split('.').all(|token| {
                    !token.is_empty()
                        && token
                            .chars()
                            .all(|c| c.is_ascii_graphic() && c != '*' && c != '>')
                }));
        if !prefix_ok {
            return invalid(
                "subject prefix",
                format!(
                    "{prefix:?} must be empty or subject tokens ending in `.` (no wildcards, no spaces)"
                ),
            );
        }
        if self.duplicate_window.is_zero() {
            return invalid(
                "duplicate window",
                "must be positive (it is what makes a re-publish harmless)".into(),
            );
        }
        Ok(())
    }
}

/// A relay failure. Messages name the NATS address (without a password) and never quote a
/// payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The configuration is unusable (nothing was contacted).
    #[error("invalid relay {what}: {message}")]
    InvalidConfig {
        /// Which setting.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The NATS server could not be reached (down, wrong address, refused the connection).
    #[error("cannot reach NATS at {address}: {message}")]
    Connect {
        /// The server's address.
        address: String,
        /// Why.
        message: String,
    },
    /// The stream could not be created or read, or it does not hold the relay's subjects
    /// (JetStream disabled on the server, or a stream of that name made for something else).
    #[error("JetStream stream {stream} at {address}: {message}")]
    Stream {
        /// The stream.
        stream: String,
        /// The server's address.
        address: String,
        /// Why.
        message: String,
    },
    /// A publish was not acknowledged (timeout, no stream for the subject, server error).
    /// The row and every row after it stay pending.
    #[error("publishing event {event_id} to {subject} at {address} failed: {message}")]
    Publish {
        /// The event (outbox row) id.
        event_id: String,
        /// The subject.
        subject: String,
        /// The server's address.
        address: String,
        /// Why.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RelayError {
    /// Whether trying again later may succeed (the server or the network), as opposed to a
    /// configuration or store problem.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RelayError::Connect { .. } | RelayError::Publish { .. } | RelayError::Stream { .. }
        )
    }
}

/// What one batch (or a drain) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayTotals {
    /// Rows acknowledged by the stream and marked sent.
    pub sent: u64,
    /// Of those, rows the stream already held (re-published after a relay stopped between
    /// the acknowledgement and the mark): dropped by the stream, marked now.
    pub duplicates: u64,
    /// Batches read.
    pub batches: u64,
}

impl RelayTotals {
    fn add(&mut self, other: RelayTotals) {
        self.sent += other.sent;
        self.duplicates += other.duplicates;
        self.batches += other.batches;
    }
}

/// A connected relay from one store to one stream.
#[derive(Debug)]
pub struct Relay {
    store: Store,
    jetstream: jetstream::Context,
    config: RelayConfig,
    address: String,
}

impl Relay {
    /// Connects to NATS and ensures the stream.
    pub async fn connect(store: Store, config: RelayConfig) -> Result<Self, RelayError> {
        config.validate()?;
        let address = redact(&config.nats_url);
        let client = async_nats::ConnectOptions::new()
            .name("ivory-outbox-relay")
            .connection_timeout(config.connect_timeout)
            .connect(config.nats_url.as_str())
            .await
            .map_err(|e| RelayError::Connect {
                address: address.clone(),
                message: e.to_string(),
            })?;
        let mut jetstream = jetstream::new(client);
        jetstream.set_timeout(config.ack_timeout);
        let relay = Self {
            store,
            jetstream,
            config,
            address,
        };
        relay.ensure_stream().await?;
        Ok(relay)
    }

    /// The subject of an event type.
    pub fn subject(&self, event_type: &str) -> String {
        format!("{}{event_type}", self.config.subject_prefix)
    }

    async fn ensure_stream(&self) -> Result<(), RelayError> {
        let subjects = self.config.stream_subjects();
        let stream_error = |message: String| RelayError::Stream {
            stream: self.config.stream.clone(),
            address: self.address.clone(),
            message,
        };
        let mut stream = self
            .jetstream
            .get_or_create_stream(StreamConfig {
                name: self.config.stream.clone(),
                subjects: vec![subjects.clone()],
                storage: StorageType::File,
                duplicate_window: self.config.duplicate_window,
                description: Some(
                    "Ivory connector runtime audit events (from the transactional outbox)".into(),
                ),
                ..StreamConfig::default()
            })
            .await
            .map_err(|e| stream_error(e.to_string()))?;
        let info = stream
            .info()
            .await
            .map_err(|e| stream_error(e.to_string()))?;
        let covered = info
            .config
            .subjects
            .iter()
            .any(|s| s == &subjects || s == ">");
        if !covered {
            return Err(stream_error(format!(
                "it exists with subjects {:?}, which do not include {subjects:?}",
                info.config.subjects
            )));
        }
        if info.config.duplicate_window < self.config.duplicate_window {
            tracing::warn!(
                stream = %self.config.stream,
                window_s = info.config.duplicate_window.as_secs(),
                "The existing stream's duplicate window is shorter than configured; a relay restarted after it may duplicate the rows it had published but not marked."
            );
        }
        Ok(())
    }

    /// Relays one batch: reads up to `batch` pending rows, publishes them, awaits the
    /// acknowledgements in order and marks the acknowledged ones sent. On a failure the rows
    /// acknowledged before it are marked, then the error is returned.
    pub async fn relay_batch(&self) -> Result<RelayTotals, RelayError> {
        let rows = self.store.pending_audit_events(self.config.batch).await?;
        if rows.is_empty() {
            return Ok(RelayTotals::default());
        }
        let mut in_flight = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            let subject = self.subject(&row.event_type);
            let publish = PublishMessage::build()
                .payload(row.payload.clone().into())
                .message_id(&row.id)
                .expected_stream(&self.config.stream);
            match self.jetstream.send_publish(subject.clone(), publish).await {
                Ok(ack) => in_flight.push((row, subject, ack)),
                Err(e) => {
                    // Rows already sent are still acknowledged (and marked) below.
                    failure = Some(self.publish_error(row, &subject, &e));
                    break;
                }
            }
        }
        let mut acked: Vec<&str> = Vec::with_capacity(in_flight.len());
        let mut totals = RelayTotals {
            batches: 1,
            ..RelayTotals::default()
        };
        for (row, subject, ack) in in_flight {
            match ack.await {
                Ok(ack) => {
                    if ack.duplicate {
                        totals.duplicates += 1;
                    }
                    acked.push(&row.id);
                }
                Err(e) => {
                    // The first unacknowledged row ends the batch: it and every later row stay
                    // pending (a later one the stream stored anyway is dropped as a duplicate
                    // when re-published).
                    failure = Some(self.publish_error(row, &subject, &e));
                    break;
                }
            }
        }
        let marked = self
            .store
            .mark_audit_events_sent(&acked, Timestamp::now())
            .await?;
        totals.sent = u64::try_from(acked.len()).unwrap_or(u64::MAX);
        tracing::debug!(
            acknowledged = acked.len(),
            marked,
            duplicates = totals.duplicates,
            "Relayed an outbox batch."
        );
        match failure {
            Some(error) => Err(error),
            None => Ok(totals),
        }
    }

    fn publish_error(
        &self,
        row: &PendingEvent,
        subject: &str,
        error: &dyn std::fmt::Display,
    ) -> RelayError {
        RelayError::Publish {
            event_id: row.id.clone(),
            subject: subject.to_owned(),
            address: self.address.clone(),
            message: error.to_string(),
        }
    }

    /// Relays batches until no row is pending (rows written meanwhile included).
    pub async fn drain(&self) -> Result<RelayTotals, RelayError> {
        self.drain_until(std::future::pending::<()>()).await
    }

    async fn drain_until(&self, stop: impl Future<Output = ()>) -> Result<RelayTotals, RelayError> {
        let mut stop = pin!(stop);
        let mut totals = RelayTotals::default();
        loop {
            if stop.as_mut().now_or_never().is_some() {
                return Ok(totals);
            }
            let batch = self.relay_batch().await?;
            totals.add(batch);
            if batch.sent < u64::from(self.config.batch) {
                return Ok(totals);
            }
        }
    }

    /// Relays until `shutdown` completes: drains, then polls every `poll`. A batch in
    /// progress finishes (its acknowledged rows are marked) before the relay stops. A
    /// transient failure (the server went away) is logged and retried at the next poll; a
    /// store failure ends the loop.
    pub async fn run_until(
        &self,
        poll: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RelayTotals, RelayError> {
        let shutdown = shutdown.shared();
        let mut totals = RelayTotals::default();
        loop {
            match self.drain_until(shutdown.clone()).await {
                Ok(done) => totals.add(done),
                Err(error) if error.is_transient() => {
                    tracing::warn!(%error, "Outbox relay failed; retrying at the next poll.");
                }
                Err(error) => return Err(error),
            }
            tokio::select! {
                () = shutdown.clone() => return Ok(totals),
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

/// `url` without its password (and without a token or user in place of one).
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() || !parsed.username().is_empty() => {
            let _ = parsed.set_password(None);
            let _ = parsed.set_username("***");
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        // Not a URL (`127.0.0.1:4222`): shown as given unless it carries credentials.
        Err(_) => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_never_show_credentials() {
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact("nats://relay:s3cret@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
        assert_eq!(redact("tok3n@127.0.0.1:4222"), "***@127.0.0.1:4222");
    }

    #[test]
    fn configuration_is_checked_before_anything_is_contacted() {
        let ok = RelayConfig::default();
        assert!(ok.validate().is_ok());
        for bad in [
            RelayConfig {
                batch: 0,
                ..RelayConfig::default()
            },
            RelayConfig {
                stream: "AUDIT.X".into(),
                ..RelayConfig::default()
            },
            RelayConfig {
                subject_prefix: "test".into(),
                ..RelayConfig::default()
            },
            RelayConfig {
                subject_prefix: "a.*.".into(),
                ..RelayConfig::default()
            },
            RelayConfig {
                subject_prefix: "a..".into(),
                ..RelayConfig::default()
            },
            RelayConfig {
                duplicate_window: Duration::ZERO,
                ..RelayConfig::default()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(RelayError::InvalidConfig { .. })),
                "{bad:?}"
            );
        }
        let prefixed = RelayConfig {
            subject_prefix: "t-1.x.".into(),
            ..RelayConfig::default()
        };
        assert!(prefixed.validate().is_ok());
        assert_eq!(prefixed.stream_subjects(), "t-1.x.audit.>");
    }
}
