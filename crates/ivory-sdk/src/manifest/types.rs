//! The manifest's data types: what `manifest.json` holds, key by key.
//!
//! Every struct denies unknown keys and uses camelCase keys; every enum has a fixed set of
//! string values. Doc comments here become the `description`s of the shipped JSON Schema
//! (`schema/manifest.schema.json`), so they are written for connector authors.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An Ivory connector manifest (`manifest.json`): identity, marketplace listing, the upstream
/// hosts the connector may call, how tenants connect, how records sync, and the optional
/// webhook, custom-object and workflow blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// Unique connector id: a lowercase slug (a-z, 0-9, `-`; 2–64 characters; starting with a
    /// letter), such as `hubspot-contacts`.
    pub id: String,
    /// Display name shown in the marketplace, such as `HubSpot Contact Sync`.
    pub name: String,
    /// Version of this connector release: a semantic version such as `1.2.0`.
    pub version: String,
    /// Who publishes and supports the connector.
    pub publisher: String,
    /// One or two sentences on what the connector syncs.
    pub description: String,
    /// Marketplace listing texts shown to tenant admins before they install.
    #[serde(default)]
    pub listing: Listing,
    /// Upstream hosts the connector may call, as bare host names (`api.stripe.com`). The SDK's
    /// `fetch` refuses any other host. Required (at least one) for `oauth2` and `api_key`
    /// connectors.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// How a tenant connects their own upstream account, and how records sync.
    pub connection: Connection,
    /// Settings a tenant admin supplies at install time (for example an Airtable `baseId`).
    #[serde(default)]
    pub settings: Vec<SettingSpec>,
    /// Inbound webhooks: the signature scheme deliveries are verified with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<WebhookSpec>,
    /// Custom object kinds the connector provisions on the platform.
    #[serde(default)]
    pub objects: Vec<ObjectSpec>,
    /// Workflows the connector installs: a trigger and the actions it runs.
    #[serde(default)]
    pub workflows: Vec<WorkflowSpec>,
}

/// Marketplace listing texts, written for tenant admins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listing {
    /// Explains the chosen conflict policy to tenants: which side wins when a record changed
    /// on both sides since the last sync. Required for bidirectional connectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_policy: Option<String>,
    /// A one-line summary for the marketplace card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Marketplace categories, such as `crm` or `billing`.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Explains why this cursor kind was chosen (what a re-sync re-reads after a crash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// How a tenant connects their own upstream account, and how records sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Connection {
    /// The credential a tenant grants: `oauth2`, `api_key` or `none`.
    #[serde(rename = "type")]
    pub auth: AuthType,
    /// OAuth 2.0 authorization endpoint (https). Required for `oauth2`, not allowed otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// OAuth 2.0 token endpoint (https) for the code exchange and refreshes. Required for
    /// `oauth2`, not allowed otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// OAuth 2.0 token revocation endpoint (https), called on uninstall. Only for `oauth2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_url: Option<String>,
    /// OAuth scopes tenants consent to. At least one for `oauth2`, not allowed otherwise.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Whether the authorization-code grant uses PKCE (S256). Defaults to `true`; only
    /// meaningful for `oauth2`.
    #[serde(default = "default_true")]
    pub pkce: bool,
    /// How records sync: cursor kind, direction, conflict policy and request pacing.
    pub sync: SyncSpec,
}

fn default_true() -> bool {
    true
}

/// How records sync: cursor kind, direction, conflict policy and request pacing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncSpec {
    /// What the connector persists to resume: `updated_at`, `opaque_token` or `none`.
    pub cursor: CursorKind,
    /// Which way records flow: `inbound`, `outbound` or `bidirectional`.
    pub direction: Direction,
    /// Which side wins when a record changed on both sides since the last sync. Inbound
    /// connectors must use `source_wins`, outbound ones `platform_wins`.
    pub conflict_policy: ConflictPolicy,
    /// Requests per minute that every request of one installation is paced to (greater than 0,
    /// at most 100000).
    #[schemars(range(min = 1, max = 100_000))]
    pub rate_limit_per_minute: u32,
    /// Requests that may go out back to back before pacing applies (greater than 0, at most
    /// `rateLimitPerMinute`). Defaults to the SDK's pacing default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub burst: Option<u32>,
    /// For `updated_at` cursors: how many seconds before the stored watermark each window
    /// starts, to catch records whose timestamps land late upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 604_800))]
    pub lookback_seconds: Option<u32>,
}

/// The credential a tenant grants the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// OAuth 2.0 authorization-code grant (with PKCE where declared).
    Oauth2,
    /// A key the tenant pastes at connect time.
    ApiKey,
    /// No credential.
    None,
}

/// What the connector persists to resume a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CursorKind {
    /// A timestamp watermark, persisted once a window has completed.
    UpdatedAt,
    /// An upstream-issued token, persisted with each page.
    OpaqueToken,
    /// No cursor: every sync reads everything.
    None,
}

/// Which way records flow between the upstream and the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Upstream to platform only.
    Inbound,
    /// Platform to upstream only.
    Outbound,
    /// Both ways.
    Bidirectional,
}

/// Which side wins when a record changed on both sides since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// The upstream's version wins.
    SourceWins,
    /// The platform's version wins.
    PlatformWins,
    /// The most recently changed version wins.
    NewestWins,
}

/// A setting a tenant admin supplies at install time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingSpec {
    /// The setting's key, a camelCase identifier such as `baseId`.
    pub key: String,
    /// What the setting is for, shown at install time.
    pub description: String,
    /// Whether the install is refused without a value.
    #[serde(default)]
    pub required: bool,
    /// The value used when the admin gives none (not allowed on a required setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Inbound webhooks and how deliveries are verified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// The signature scheme deliveries are verified with.
    pub scheme: WebhookScheme,
    /// Replay window in seconds, in the past and in the future (1 to 3600; default 300).
    #[serde(default = "default_tolerance")]
    #[schemars(range(min = 1, max = 3600))]
    pub tolerance_seconds: u32,
    /// Event types the connector subscribes to, such as `invoice.payment_failed`.
    #[serde(default)]
    pub events: Vec<String>,
}

fn default_tolerance() -> u32 {
    300
}

/// A webhook signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum WebhookScheme {
    /// Stripe: `Stripe-Signature: t=…,v1=…`.
    #[serde(rename = "stripe")]
    Stripe,
    /// HubSpot v3: `X-HubSpot-Signature-v3` with `X-HubSpot-Request-Timestamp`.
    #[serde(rename = "hubspot-v3")]
    HubspotV3,
    /// Airtable: `X-Airtable-Content-MAC: hmac-sha256=…`.
    #[serde(rename = "airtable")]
    Airtable,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    #[serde(rename = "standard-webhooks")]
    StandardWebhooks,
    /// A plain HMAC-SHA256 of the body.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

/// A custom object kind the connector provisions on the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectSpec {
    /// The kind's slug (`^[a-z][a-z0-9_]*$`), such as `invoice`.
    pub kind: String,
    /// Display name, such as `Invoice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The kind's fields (at least one).
    pub fields: Vec<FieldSpec>,
}

/// A field of a custom object kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldSpec {
    /// The field's name, unique in its object; formulas refer to it as `{Name}`.
    pub name: String,
    /// The field's type.
    pub r#type: FieldType,
    /// For `formula` fields: the formula the platform computes on every write, such as
    /// `ROUND({Amount Due} / 100, 2)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
    /// For `reference` fields: the object kind referenced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
    /// Whether every record must have a value (not allowed on formula fields).
    #[serde(default)]
    pub required: bool,
}

/// The type of a custom object field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text.
    String,
    /// A number.
    Number,
    /// An amount of money.
    Currency,
    /// True or false.
    Boolean,
    /// An RFC 3339 timestamp.
    Datetime,
    /// The id of a record of the kind named by `references`.
    Reference,
    /// Any JSON value.
    Json,
    /// Computed by the platform from `formula` on every write.
    Formula,
}

/// A workflow: a trigger and the actions it runs, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowSpec {
    /// The workflow's name, unique in the manifest.
    pub name: String,
    /// What starts a run.
    pub trigger: Trigger,
    /// What a run does, in order (at least one action).
    pub actions: Vec<Action>,
}

/// What starts a workflow run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// A verified webhook delivery of this event type, such as `invoice.payment_failed`.
    /// Requires a `webhooks` block.
    WebhookEvent(String),
    /// A record write after which a formula condition holds.
    RecordCondition(RecordCondition),
}

/// A record condition trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordCondition {
    /// The object kind watched: a declared object kind or a platform kind.
    pub kind: String,
    /// A formula that is true for records that start a run, such as `{Status} = "overdue"`.
    pub condition: String,
}

/// One step of a workflow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Set a field of the record the run is about.
    SetField(SetField),
    /// Create a record, such as a follow-up `task`.
    CreateRecord(CreateRecord),
    /// Write a line to the run history.
    Log(LogAction),
}

/// Set a field of the record the run is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetField {
    /// The kind of the record changed. Defaults to the trigger's kind for record-condition
    /// triggers; required for webhook triggers (the record whose external id the event names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The field to set (not a formula field).
    pub field: String,
    /// The value to set.
    pub value: serde_json::Value,
}

/// Create a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRecord {
    /// The kind of the new record: a declared object kind or a platform kind (`task`).
    pub kind: String,
    /// The new record's field values, by field name.
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// Write a line to the run history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogAction {
    /// The line written.
    pub message: String,
}

/// How strictly URLs are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidationMode {
    /// Every URL must be https and no host may be a loopback address.
    #[default]
    Production,
    /// Also allows `http://127.0.0.1`, `http://localhost` and `http://[::1]` URLs and loopback
    /// hosts, for local fakes in tests.
    Test,
}

/// Object kinds the platform provides without a declaration.
pub const PLATFORM_KINDS: &[&str] = &["task"];

impl AuthType {
    /// The manifest spelling: `oauth2`, `api_key` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Oauth2 => "oauth2",
            AuthType::ApiKey => "api_key",
            AuthType::None => "none",
        }
    }
}

impl CursorKind {
    /// The manifest spelling: `updated_at`, `opaque_token` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            CursorKind::UpdatedAt => "updated_at",
            CursorKind::OpaqueToken => "opaque_token",
            CursorKind::None => "none",
        }
    }
}

impl Direction {
    /// The manifest spelling: `inbound`, `outbound` or `bidirectional`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Bidirectional => "bidirectional",
        }
    }
}

impl ConflictPolicy {
    /// The manifest spelling: `source_wins`, `platform_wins` or `newest_wins`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::SourceWins => "source_wins",
            ConflictPolicy::PlatformWins => "platform_wins",
            ConflictPolicy::NewestWins => "newest_wins",
        }
    }
}

impl WebhookScheme {
    /// The manifest spelling, such as `hubspot-v3`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookScheme::Stripe => "stripe",
            WebhookScheme::HubspotV3 => "hubspot-v3",
            WebhookScheme::Airtable => "airtable",
            WebhookScheme::StandardWebhooks => "standard-webhooks",
            WebhookScheme::HmacSha256 => "hmac-sha256",
        }
    }
}

impl FieldType {
    /// The manifest spelling, such as `datetime`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Currency => "currency",
            FieldType::Boolean => "boolean",
            FieldType::Datetime => "datetime",
            FieldType::Reference => "reference",
            FieldType::Json => "json",
            FieldType::Formula => "formula",
        }
    }
}
