//! Audit events in the Ivorycom platform's envelope, written to the transactional outbox **in
//! the same transaction as the write they describe** (PLATFORM.md §1): a rolled-back write
//! leaves no event, a committed one always has its event.

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
    /// A sync ran.
    Sync,
    /// A workflow ran.
    WorkflowRun,
    /// Access was granted or changed (consent to scopes and hosts).
    PermissionChange,
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
            AuditAction::Sync => "sync",
            AuditAction::WorkflowRun => "workflow_run",
            AuditAction::PermissionChange => "permission_change",
            AuditAction::Export => "export",
        }
    }
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
    /// The emitting service.
    pub service: String,
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
            service: SERVICE.to_owned(),
            event_time: at,
        }
    }

    /// Adds a before/after diff.
    #[must_use]
    pub fn with_diff(mut self, diff: serde_json::Value) -> Self {
        self.diff_json = Some(diff);
        self
    }

    /// `audit.<object_type>.<action>`.
    pub fn event_type(&self) -> String {
        format!("audit.{}.{}", self.object_type, self.action.as_str())
    }
}

/// Writes `event` to the outbox inside the caller's transaction. Refuses an event that cannot
/// be attributed (the platform's required fields).
pub(crate) async fn emit(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    if event.tenant_id.is_empty() || event.object_type.is_empty() {
        return Err(StoreError::Invalid {
            what: "audit event",
            message: "tenant_id, action, object_type and service are required".into(),
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
