//! Audit events in the Ivorycom platform's envelope, written to the transactional outbox **in
//! the same transaction as the write they describe** (PLATFORM.md §1): a rolled-back write
//! leaves no event, a committed one always has its event.
//!
//! How to audit a new kind of write (DSAR erasure, say):
//!
//! ```ignore
//! let mut tx = store.begin_write().await?;
//! // … the domain write, on `tx` …
//! emit(&mut tx, &AuditEvent::new(tenant, &actor, AuditAction::Delete, "contact", Some(id), now)
//!     .with_diff(json!({"before": {"fields": ["email"]}, "after": null}))).await?;
//! tx.commit().await.map_err(query_error("commit erasure"))?;
//! ```
//!
//! An action that writes nothing else (a DSAR *export* reads only) records its event alone with
//! [`Store::record_audit_event`]. Payloads never carry secret values: diffs name what changed
//! (a credential's kind and version, a setting's key), never a token, key or webhook secret.
//!
//! The relay (`ivory_runtime::outbox`) reads pending rows in `(created_at, id)` order and marks them
//! sent after the ledger acknowledged them; rows are never updated otherwise or deleted.

use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, from_ms, query_error, to_ms};

/// The service name in every envelope.
pub const SERVICE: &str = "ivory-connector-runtime";

/// The platform's canonical audit actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Something was created.
    Create,
    /// Something was changed.
    Update,
    /// Something was removed.
    Delete,
    /// A tool (an agent's) was called.
    ToolCall,
    /// A sync ran.
    Sync,
    /// A workflow ran.
    WorkflowRun,
    /// Someone acted as someone else.
    Impersonate,
    /// Access was granted or changed (consent to scopes and hosts).
    PermissionChange,
    /// A billing event.
    Billing,
    /// Data left the platform.
    Export,
}

impl AuditAction {
    /// The action's name in event types.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::ToolCall => "tool_call",
            AuditAction::Sync => "sync",
            AuditAction::WorkflowRun => "workflow_run",
            AuditAction::Impersonate => "impersonate",
            AuditAction::PermissionChange => "permission_change",
            AuditAction::Billing => "billing",
            AuditAction::Export => "export",
        }
    }

    /// Every canonical action (PLATFORM.md §1).
    pub const ALL: [AuditAction; 10] = [
        AuditAction::Create,
        AuditAction::Update,
        AuditAction::Delete,
        AuditAction::ToolCall,
        AuditAction::Sync,
        AuditAction::WorkflowRun,
        AuditAction::Impersonate,
        AuditAction::PermissionChange,
        AuditAction::Billing,
        AuditAction::Export,
    ];
}

/// One audit event (the platform's envelope, snake_case).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// Event id (UUID).
    pub id: String,
    /// The tenant (required).
    pub tenant_id: String,
    /// The acting user, when a person acted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The acting agent (a process, a connector), when no person did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The canonical action.
    pub action: AuditAction,
    /// What kind of thing was acted on (`installation`, `credentials`, …).
    pub object_type: String,
    /// Which one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// A before/after diff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_json: Option<serde_json::Value>,
    /// The caller's address, when the change came over the network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The trace the change happened in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The emitting service.
    pub service: String,
    /// The id of the token the caller authenticated with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// When (UTC).
    pub event_time: Timestamp,
}

/// Who acts: a person or an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person (`user_id`).
    User(String),
    /// A process or connector (`agent_id`).
    Agent(String),
}

impl AuditEvent {
    /// An event by `actor` on one object.
    pub fn new(
        tenant: &str,
        actor: &Actor,
        action: AuditAction,
        object_type: &str,
        object_id: Option<&str>,
        at: Timestamp,
    ) -> Self {
        let (user_id, agent_id) = match actor {
            Actor::User(user) => (Some(user.clone()), None),
            Actor::Agent(agent) => (None, Some(agent.clone())),
        };
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant.to_owned(),
            user_id,
            agent_id,
            action,
            object_type: object_type.to_owned(),
            object_id: object_id.map(str::to_owned),
            diff_json: None,
            source_ip: None,
            trace_id: None,
            service: SERVICE.to_owned(),
            jti: None,
            event_time: at,
        }
    }

    /// Adds a before/after diff.
    #[must_use]
    pub fn with_diff(mut self, diff: serde_json::Value) -> Self {
        self.diff_json = Some(diff);
        self
    }

    /// Adds the request's origin: the caller's address, its trace and its token id (`jti`).
    #[must_use]
    pub fn with_request(
        mut self,
        source_ip: Option<&str>,
        trace_id: Option<&str>,
        jti: Option<&str>,
    ) -> Self {
        self.source_ip = source_ip.map(str::to_owned);
        self.trace_id = trace_id.map(str::to_owned);
        self.jti = jti.map(str::to_owned);
        self
    }

    /// `audit.<object_type>.<action>`.
    pub fn event_type(&self) -> String {
        format!("audit.{}.{}", self.object_type, self.action.as_str())
    }

    /// Why the event cannot be attributed (a required field missing, or an object type that
    /// would not make a single subject token), if so.
    fn refusal(&self) -> Option<String> {
        let mut missing = Vec::new();
        if self.tenant_id.trim().is_empty() {
            missing.push("tenant_id");
        }
        if self.object_type.trim().is_empty() {
            missing.push("object_type");
        }
        if self.service.trim().is_empty() {
            missing.push("service");
        }
        if !missing.is_empty() {
            return Some(format!(
                "{} required (tenant_id, action, object_type and service are)",
                missing.join(", ")
            ));
        }
        if !self
            .object_type
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Some(format!(
                "object_type {:?} must be snake_case (it is a token of the event type)",
                self.object_type
            ));
        }
        None
    }
}

/// Writes `event` to the outbox inside the caller's transaction. Refuses an event that cannot
/// be attributed (the platform's required fields).
pub(crate) async fn emit(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    if let Some(message) = event.refusal() {
        return Err(StoreError::Invalid {
            what: "audit event",
            message,
        });
    }
    let payload = serde_json::to_string(event).map_err(|e| StoreError::Invalid {
        what: "audit event",
        message: e.to_string(),
    })?;
    sqlx::query(
        "INSERT INTO outbox (id, topic, event_type, tenant_id, payload, created_at) \
         VALUES ($1, 'audit', $2, $3, $4, $5)",
    )
    .bind(&event.id)
    .bind(event.event_type())
    .bind(&event.tenant_id)
    .bind(payload)
    .bind(to_ms(event.event_time))
    .execute(&mut **tx)
    .await
    .map_err(query_error("write audit event"))?;
    Ok(())
}

/// An outbox row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// The event id.
    pub id: String,
    /// `audit.<object_type>.<action>`.
    pub event_type: String,
    /// The tenant.
    pub tenant_id: String,
    /// The envelope.
    pub payload: serde_json::Value,
    /// When it was written.
    pub created_at: Timestamp,
}

impl Store {
    /// Records an event for an action that writes nothing else (a DSAR export, which only
    /// reads), in its own transaction. A write's event goes through `emit` inside the write's
    /// transaction instead.
    pub async fn record_audit_event(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        emit(&mut tx, event).await?;
        tx.commit().await.map_err(query_error("commit audit event"))
    }

    /// The tenant's audit events, oldest first.
    pub async fn audit_events(&self, tenant: &str) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event_type, tenant_id, payload, created_at FROM outbox \
             WHERE topic = 'audit' AND tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("read audit events"))?;
        rows.iter()
            .map(|row| {
                let read = |e: sqlx::Error| StoreError::Corrupt {
                    what: "outbox row",
                    message: e.to_string(),
                };
                let payload: String = row.try_get("payload").map_err(read)?;
                Ok(OutboxRow {
                    id: row.try_get("id").map_err(read)?,
                    event_type: row.try_get("event_type").map_err(read)?,
                    tenant_id: row.try_get("tenant_id").map_err(read)?,
                    payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt {
                        what: "outbox payload",
                        message: e.to_string(),
                    })?,
                    created_at: from_ms(row.try_get("created_at").map_err(read)?)?,
                })
            })
            .collect()
    }
}

/// An outbox row the relay has not shipped yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    /// The event id (the message id on the ledger, which deduplicates by it).
    pub id: String,
    /// `audit.<object_type>.<action>` (the subject, under the relay's prefix).
    pub event_type: String,
    /// The envelope, exactly as written in the transaction.
    pub payload: String,
}

impl Store {
    /// Up to `limit` audit rows not yet sent, in the order they were written.
    pub async fn pending_audit_events(&self, limit: u32) -> Result<Vec<PendingEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, event_type, payload FROM outbox \
             WHERE sent_at IS NULL AND topic = 'audit' ORDER BY created_at, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("read pending outbox rows"))?;
        rows.iter()
            .map(|row| {
                let read = |e: sqlx::Error| StoreError::Corrupt {
                    what: "outbox row",
                    message: e.to_string(),
                };
                Ok(PendingEvent {
                    id: row.try_get("id").map_err(read)?,
                    event_type: row.try_get("event_type").map_err(read)?,
                    payload: row.try_get("payload").map_err(read)?,
                })
            })
            .collect()
    }

    /// Marks the rows `ids` sent at `now` (one transaction); a row already marked keeps its
    /// time. Returns how many rows this call marked.
    pub async fn mark_audit_events_sent(
        &self,
        ids: &[&str],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut marked = 0;
        for id in ids {
            marked +=
                sqlx::query("UPDATE outbox SET sent_at = $1 WHERE id = $2 AND sent_at IS NULL")
                    .bind(to_ms(now))
                    .bind(*id)
                    .execute(&mut *tx)
                    .await
                    .map_err(query_error("mark outbox row sent"))?
                    .rows_affected();
        }
        tx.commit()
            .await
            .map_err(query_error("commit outbox marks"))?;
        Ok(marked)
    }

    /// How many audit rows wait for the relay.
    pub async fn pending_audit_count(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL AND topic = 'audit'",
        )
        .fetch_one(self.pool())
        .await
        .map_err(query_error("count pending outbox rows"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
