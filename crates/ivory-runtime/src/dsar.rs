//! Data subject access requests over synced records (PLATFORM.md §2): export and erasure of
//! one contact's data, and the **suppression** that keeps an erased person from coming back
//! with the next sync.
//!
//! ## Which records are a contact's
//!
//! [`RULES`] is the runtime's table of personal data per kind (connector manifests do not declare
//! it yet): how a record links to a contact and which of its fields are personal.
//!
//! | kind | linked by | personal fields | financial |
//! |---|---|---|---|
//! | `contact` (HubSpot) | its id is the contact id; or its `email` equals the contact's | `email`, `firstname`, `lastname`, `phone`, `company`, `jobtitle` | no |
//! | `stripe_invoice` | `customer_email` equals the contact's email | `customer_email`, `customer_name`, `customer_phone`, `customer_address`, `customer_shipping`, `customer_tax_ids` | yes: always anonymized |
//! | `airtable_*` | any top-level string field equals the contact's email | the fields that hold the email | no |
//!
//! The contact's email is read from its `contact` record; emails compare trimmed and
//! lowercased. Finding email-linked records filters the tenant's records with a `LIKE` on the
//! stored JSON (no index: a DSAR is rare, a sync's commit is not), then checks the rule's fields
//! exactly.
//!
//! ## Erasure
//!
//! [`Store::dsar_delete`] runs in one transaction with its audit event: `held` does nothing and
//! answers `blocked`; otherwise every linked record is hard-deleted (`delete`) or has its personal
//! fields set to `null` (`anonymize`; financial kinds whatever the mode, amounts kept). The
//! anonymization never sets `platform_updated_at`, so it is not pushed back upstream as an edit.
//! It then writes suppressions (table `dsar_suppressions`): one by the contact's id and one by
//! a hash of its email (`sha256(tenant ":" email)`, never the email itself).
//!
//! ## Suppression at commit
//!
//! The store's commit ([`crate::store::CommitScope`]) asks [`apply_suppressions`] about its
//! upserts: one indexed probe (read with the commit's other probes in one query) when the tenant
//! has no suppression (the common case); otherwise one
//! indexed `IN` lookup per 400 keys of the batch. A suppressed upsert is skipped (`delete`) or
//! stored anonymized (`anonymize`, and financial kinds always).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use ivory_sdk::Record;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::store::audit::emit;
use crate::store::{
    Actor, AuditAction, AuditEvent, Backend, SERVICE, Store, StoreError, from_ms, query_error,
    to_ms,
};

/// How one kind holds personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindRule {
    /// The kind, or a kind prefix when [`prefix`](Self::prefix).
    pub kind: &'static str,
    /// `kind` is a prefix (`airtable_` covers every Airtable table).
    pub prefix: bool,
    /// The record's id is the contact id.
    pub by_id: bool,
    /// The fields holding the contact's email; `None`: any top-level string field.
    pub email_fields: Option<&'static [&'static str]>,
    /// The personal fields an anonymization sets to `null` (besides any field holding the
    /// erased email).
    pub personal: &'static [&'static str],
    /// Kept under a statutory retention duty: anonymized, never hard-deleted.
    pub financial: bool,
}

/// The personal-data rules per kind (see the module docs).
pub const RULES: &[KindRule] = &[
    KindRule {
        kind: "contact",
        prefix: false,
        by_id: true,
        email_fields: Some(&["email"]),
        personal: &[
            "email",
            "firstname",
            "lastname",
            "phone",
            "company",
            "jobtitle",
        ],
        financial: false,
    },
    KindRule {
        kind: "stripe_invoice",
        prefix: false,
        by_id: false,
        email_fields: Some(&["customer_email"]),
        personal: &[
            "customer_email",
            "customer_name",
            "customer_phone",
            "customer_address",
            "customer_shipping",
            "customer_tax_ids",
        ],
        financial: true,
    },
    KindRule {
        kind: "airtable_",
        prefix: true,
        by_id: false,
        email_fields: None,
        personal: &[],
        financial: false,
    },
];

/// The kind whose record id is a contact id (HubSpot contacts).
const CONTACT_KIND: &str = "contact";

/// The rule of `kind`, if it holds personal data.
pub fn rule_for(kind: &str) -> Option<&'static KindRule> {
    RULES.iter().find(|rule| {
        if rule.prefix {
            kind.starts_with(rule.kind)
        } else {
            kind == rule.kind
        }
    })
}

impl KindRule {
    /// The emails (normalized) the record's data holds in this rule's email fields.
    fn emails(&self, data: &Value) -> Vec<String> {
        let Some(object) = data.as_object() else {
            return Vec::new();
        };
        let values: Vec<&Value> = match self.email_fields {
            Some(fields) => fields.iter().filter_map(|f| object.get(*f)).collect(),
            None => object.values().collect(),
        };
        values
            .into_iter()
            .filter_map(Value::as_str)
            .filter(|s| s.contains('@'))
            .map(normalize_email)
            .collect()
    }

    /// `data` with the personal fields, and every email field for which `erased` holds, set
    /// to `null`.
    fn anonymize(&self, data: &Value, erased: impl Fn(&str) -> bool) -> Value {
        let mut data = data.clone();
        let Some(object) = data.as_object_mut() else {
            return data;
        };
        for field in self.personal {
            if let Some(value) = object.get_mut(*field) {
                *value = Value::Null;
            }
        }
        let email_keys: Vec<String> = match self.email_fields {
            Some(fields) => fields.iter().map(|f| (*f).to_owned()).collect(),
            None => object.keys().cloned().collect(),
        };
        for key in email_keys {
            if let Some(value) = object.get_mut(&key)
                && value.as_str().is_some_and(|s| erased(&normalize_email(s)))
            {
                *value = Value::Null;
            }
        }
        data
    }
}

fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The suppression key of an email: never the email itself.
fn email_key(tenant: &str, email: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tenant.as_bytes());
    hasher.update(b":");
    hasher.update(email.as_bytes());
    format!("email:{}", hex::encode(hasher.finalize()))
}

fn id_key(kind: &str, id: &str) -> String {
    format!("id:{kind}:{id}")
}

/// What an erasure does to linked records that are not financial.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureMode {
    /// Hard-delete them.
    #[default]
    Delete,
    /// Strip their personal fields.
    Anonymize,
}

impl ErasureMode {
    fn as_str(self) -> &'static str {
        match self {
            ErasureMode::Delete => "delete",
            ErasureMode::Anonymize => "anonymize",
        }
    }
}

/// Who asks, from where (for the audit event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsarCaller {
    /// The acting identity (the orchestrator's service identity, or an operator).
    pub actor: Actor,
    /// The caller's address.
    pub source_ip: Option<String>,
    /// The request's trace.
    pub trace_id: Option<String>,
    /// The id of the caller's token.
    pub jti: Option<String>,
}

impl DsarCaller {
    /// A caller without request details (the CLI).
    pub fn new(actor: Actor) -> Self {
        Self {
            actor,
            source_ip: None,
            trace_id: None,
            jti: None,
        }
    }
}

/// The records of one kind in an export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slice {
    /// The kind.
    pub kind: String,
    /// The records: `{id, data, source_updated_at, synced_at, deleted_at}`.
    pub rows: Vec<Value>,
}

/// An export's answer (the platform's shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DsarExport {
    /// This service.
    pub service: String,
    /// The contact.
    pub contact_id: String,
    /// Per kind, sorted by kind; empty when nothing is held.
    pub slices: Vec<Slice>,
    /// When.
    pub generated_at: Timestamp,
}

/// An erasure's answer (the platform's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DsarErasure {
    /// This service.
    pub service: String,
    /// The contact.
    pub contact_id: String,
    /// Records hard-deleted by this call.
    pub deleted: u64,
    /// Records anonymized by this call (already anonymized ones are not counted again).
    pub anonymized: u64,
    /// A legal hold: nothing was done.
    pub blocked: bool,
}

/// Why a DSAR failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DsarError {
    /// The request names no contact.
    #[error("a DSAR needs a non-empty contact_id")]
    MissingContact,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored record linked to the contact.
#[derive(Debug)]
struct Linked {
    kind: String,
    id: String,
    data: Value,
    source_updated_at: Option<i64>,
    synced_at: i64,
    deleted_at: Option<i64>,
    rule: &'static KindRule,
}

impl Linked {
    fn row(&self) -> Result<Value, StoreError> {
        let ts = |ms: Option<i64>| ms.map(from_ms).transpose();
        Ok(json!({
            "id": self.id,
            "data": self.data,
            "source_updated_at": ts(self.source_updated_at)?,
            "synced_at": from_ms(self.synced_at)?,
            "deleted_at": ts(self.deleted_at)?,
        }))
    }
}

const COLUMNS: &str = "kind, external_id, data, source_updated_at, synced_at, deleted_at";

/// A stored row: kind, id, data, source_updated_at, synced_at, deleted_at.
type StoredRow = (String, String, Value, Option<i64>, i64, Option<i64>);

fn decode(row: &sqlx::any::AnyRow) -> Result<StoredRow, StoreError> {
    let read = |e: sqlx::Error| StoreError::Corrupt {
        what: "record",
        message: e.to_string(),
    };
    let data: String = row.try_get("data").map_err(read)?;
    Ok((
        row.try_get("kind").map_err(read)?,
        row.try_get("external_id").map_err(read)?,
        serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
            what: "record data",
            message: e.to_string(),
        })?,
        row.try_get("source_updated_at").map_err(read)?,
        row.try_get("synced_at").map_err(read)?,
        row.try_get("deleted_at").map_err(read)?,
    ))
}

/// `LIKE` needle finding `email` inside stored JSON text (lowercased, wildcards escaped).
fn like_needle(email: &str) -> String {
    let encoded = serde_json::to_string(email).unwrap_or_default();
    let inner = encoded
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(&encoded)
        .to_ascii_lowercase();
    let mut needle = String::with_capacity(inner.len() + 2);
    needle.push('%');
    for c in inner.chars() {
        if matches!(c, '\\' | '%' | '_') {
            needle.push('\\');
        }
        needle.push(c);
    }
    needle.push('%');
    needle
}

/// The contact's email (when its record is held) and every record linked to it, sorted by
/// kind and id. Tombstoned records are included: their data is still held.
async fn linked(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    contact_id: &str,
) -> Result<(Option<String>, Vec<Linked>), StoreError> {
    let mut found: BTreeMap<(String, String), Linked> = BTreeMap::new();
    let mut email = None;
    for rule in RULES.iter().filter(|r| r.by_id && !r.prefix) {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM records WHERE tenant_id = $1 AND kind = $2 AND external_id = $3"
        )))
        .bind(tenant)
        .bind(rule.kind)
        .bind(contact_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_error("read the DSAR contact"))?;
        if let Some(row) = row {
            let (kind, id, data, source_updated_at, synced_at, deleted_at) = decode(&row)?;
            if rule.kind == CONTACT_KIND && email.is_none() {
                email = rule.emails(&data).into_iter().next();
            }
            found.insert(
                (kind.clone(), id.clone()),
                Linked {
                    kind,
                    id,
                    data,
                    source_updated_at,
                    synced_at,
                    deleted_at,
                    rule,
                },
            );
        }
    }
    if let Some(email) = &email {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM records WHERE tenant_id = $1 AND LOWER(data) LIKE $2 ESCAPE '\\'"
        )))
        .bind(tenant)
        .bind(like_needle(email))
        .fetch_all(&mut *conn)
        .await
        .map_err(query_error("find a contact's records by email"))?;
        for row in &rows {
            let (kind, id, data, source_updated_at, synced_at, deleted_at) = decode(row)?;
            let Some(rule) = rule_for(&kind) else {
                continue;
            };
            if !rule.emails(&data).iter().any(|e| e == email) {
                continue;
            }
            found.entry((kind.clone(), id.clone())).or_insert(Linked {
                kind,
                id,
                data,
                source_updated_at,
                synced_at,
                deleted_at,
                rule,
            });
        }
    }
    Ok((email, found.into_values().collect()))
}

fn check_contact(contact_id: &str) -> Result<(), DsarError> {
    if contact_id.trim().is_empty() {
        return Err(DsarError::MissingContact);
    }
    Ok(())
}

impl Store {
    /// Every record of `tenant` linked to `contact_id`, per kind; audited (`export`).
    pub async fn dsar_export(
        &self,
        tenant: &str,
        contact_id: &str,
        caller: &DsarCaller,
        now: Timestamp,
    ) -> Result<DsarExport, DsarError> {
        check_contact(contact_id)?;
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(query_error("acquire a connection"))?;
        let (_, records) = linked(&mut conn, tenant, contact_id).await?;
        drop(conn);
        let mut slices: Vec<Slice> = Vec::new();
        for record in &records {
            let row = record.row()?;
            match slices.last_mut() {
                Some(slice) if slice.kind == record.kind => slice.rows.push(row),
                _ => slices.push(Slice {
                    kind: record.kind.clone(),
                    rows: vec![row],
                }),
            }
        }
        let counts: BTreeMap<&str, usize> = slices
            .iter()
            .map(|s| (s.kind.as_str(), s.rows.len()))
            .collect();
        let event = AuditEvent::new(
            tenant,
            &caller.actor,
            AuditAction::Export,
            "contact",
            Some(contact_id),
            now,
        )
        .with_diff(json!({"after": {"dsar": "export", "rows_per_kind": counts}}))
        .with_request(
            caller.source_ip.as_deref(),
            caller.trace_id.as_deref(),
            caller.jti.as_deref(),
        );
        self.record_audit_event(&event).await?;
        Ok(DsarExport {
            service: SERVICE.to_owned(),
            contact_id: contact_id.to_owned(),
            slices,
            generated_at: now,
        })
    }

    /// Erases `contact_id`'s records of `tenant` (see the module docs): nothing when `held`;
    /// idempotent; audited (`delete`) in the same transaction; suppresses the contact for later
    /// syncs.
    pub async fn dsar_delete(
        &self,
        tenant: &str,
        contact_id: &str,
        mode: ErasureMode,
        held: bool,
        caller: &DsarCaller,
        now: Timestamp,
    ) -> Result<DsarErasure, DsarError> {
        check_contact(contact_id)?;
        let mut answer = DsarErasure {
            service: SERVICE.to_owned(),
            contact_id: contact_id.to_owned(),
            deleted: 0,
            anonymized: 0,
            blocked: held,
        };
        if held {
            return Ok(answer);
        }
        let mut tx = self.begin_write().await?;
        let (email, records) = linked(&mut tx, tenant, contact_id).await?;
        let mut kinds: Vec<&str> = Vec::new();
        for record in &records {
            if record.rule.financial || mode == ErasureMode::Anonymize {
                let stripped = record
                    .rule
                    .anonymize(&record.data, |e| email.as_deref() == Some(e));
                if stripped == record.data {
                    continue;
                }
                let text = serde_json::to_string(&stripped).map_err(|e| StoreError::Invalid {
                    what: "record data",
                    message: e.to_string(),
                })?;
                sqlx::query(
                    "UPDATE records SET data = $1, version = version + 1 \
                     WHERE tenant_id = $2 AND kind = $3 AND external_id = $4",
                )
                .bind(text)
                .bind(tenant)
                .bind(&record.kind)
                .bind(&record.id)
                .execute(&mut *tx)
                .await
                .map_err(query_error("anonymize a record"))?;
                answer.anonymized += 1;
            } else {
                sqlx::query(
                    "DELETE FROM records WHERE tenant_id = $1 AND kind = $2 AND external_id = $3",
                )
                .bind(tenant)
                .bind(&record.kind)
                .bind(&record.id)
                .execute(&mut *tx)
                .await
                .map_err(query_error("delete a record"))?;
                answer.deleted += 1;
            }
            if !kinds.contains(&record.kind.as_str()) {
                kinds.push(&record.kind);
            }
        }
        let mut keys = vec![id_key(CONTACT_KIND, contact_id)];
        if let Some(email) = &email {
            keys.push(email_key(tenant, email));
        }
        for key in &keys {
            // A later `delete` hardens an earlier `anonymize`; never the reverse.
            sqlx::query(
                "INSERT INTO dsar_suppressions (tenant_id, match_key, mode, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, match_key) DO UPDATE \
                 SET mode = 'delete' WHERE excluded.mode = 'delete'",
            )
            .bind(tenant)
            .bind(key)
            .bind(mode.as_str())
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await
            .map_err(query_error("record a DSAR suppression"))?;
        }
        let event = AuditEvent::new(
            tenant,
            &caller.actor,
            AuditAction::Delete,
            "contact",
            Some(contact_id),
            now,
        )
        .with_diff(json!({
            "before": {"kinds": kinds},
            "after": {"dsar": "erasure", "mode": mode.as_str(), "deleted": answer.deleted,
                      "anonymized": answer.anonymized, "suppressed": true},
        }))
        .with_request(
            caller.source_ip.as_deref(),
            caller.trace_id.as_deref(),
            caller.jti.as_deref(),
        );
        emit(&mut tx, &event).await?;
        tx.commit()
            .await
            .map_err(query_error("commit a DSAR erasure"))?;
        Ok(answer)
    }
}

/// Keys per `IN` lookup of suppressions.
const KEY_CHUNK: usize = 400;

/// A scalar subquery, for a caller's combined probe query, that is 1 when the tenant whose id is
/// bound at the placeholder `tenant` has any DSAR suppression, else 0 (a BIGINT on both
/// backends).
pub(crate) fn any_suppression_sql(tenant: &str) -> String {
    format!(
        "(SELECT COUNT(*) FROM (SELECT 1 FROM dsar_suppressions WHERE tenant_id = {tenant} \
         LIMIT 1) s)"
    )
}

/// Whether the tenant has any DSAR suppression, as probed by the caller in the commit's
/// transaction ([`any_suppression_sql`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suppressions {
    /// None: every upsert passes unchanged.
    None,
    /// Some: the upserts are checked against them.
    Some,
}

/// The commit's upserts with suppressed ones dropped or anonymized (module docs). No query when
/// the probe found no suppression for the tenant.
pub(crate) async fn apply_suppressions<'r>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    tenant: &str,
    probed: Suppressions,
    upserts: Vec<(&'r str, &'r Record)>,
) -> Result<Vec<(&'r str, Cow<'r, Record>)>, StoreError> {
    let borrowed = |upserts: Vec<(&'r str, &'r Record)>| {
        upserts
            .into_iter()
            .map(|(kind, record)| (kind, Cow::Borrowed(record)))
            .collect()
    };
    if upserts.is_empty() {
        return Ok(Vec::new());
    }
    if probed == Suppressions::None {
        return Ok(borrowed(upserts));
    }

    // Each upsert's candidate keys: its id (for kinds linked by id) and its emails' hashes.
    let mut candidates: Vec<Vec<String>> = Vec::with_capacity(upserts.len());
    let mut all: HashSet<String> = HashSet::new();
    for (kind, record) in &upserts {
        let mut keys = Vec::new();
        if let Some(rule) = rule_for(kind) {
            if rule.by_id {
                keys.push(id_key(kind, &record.id));
            }
            for email in rule.emails(&record.data) {
                keys.push(email_key(tenant, &email));
            }
        }
        all.extend(keys.iter().cloned());
        candidates.push(keys);
    }
    let all: Vec<String> = all.into_iter().collect();
    let mut modes: HashMap<String, String> = HashMap::new();
    for chunk in all.chunks(KEY_CHUNK) {
        let mut sql =
            String::from("SELECT match_key, mode FROM dsar_suppressions WHERE tenant_id = ");
        push_placeholder(&mut sql, backend, 1);
        sql.push_str(" AND match_key IN (");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            push_placeholder(&mut sql, backend, i + 2);
        }
        sql.push(')');
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
        for key in chunk {
            query = query.bind(key.as_str());
        }
        for row in query
            .fetch_all(&mut **tx)
            .await
            .map_err(query_error("read DSAR suppressions"))?
        {
            let read = |e: sqlx::Error| StoreError::Corrupt {
                what: "DSAR suppression",
                message: e.to_string(),
            };
            modes.insert(
                row.try_get("match_key").map_err(read)?,
                row.try_get("mode").map_err(read)?,
            );
        }
    }
    if modes.is_empty() {
        return Ok(borrowed(upserts));
    }

    let mut kept = Vec::with_capacity(upserts.len());
    for ((kind, record), keys) in upserts.into_iter().zip(candidates) {
        let matched: Vec<&str> = keys
            .iter()
            .filter_map(|k| modes.get(k).map(String::as_str))
            .collect();
        let Some(rule) = rule_for(kind).filter(|_| !matched.is_empty()) else {
            kept.push((kind, Cow::Borrowed(record)));
            continue;
        };
        let delete = matched.contains(&"delete");
        if delete && !rule.financial {
            tracing::debug!(kind, "A DSAR-suppressed record was not stored.");
            continue;
        }
        let erased = |email: &str| modes.contains_key(&email_key(tenant, email));
        let mut record = record.clone();
        record.data = rule.anonymize(&record.data, erased);
        kept.push((kind, Cow::Owned(record)));
    }
    Ok(kept)
}

fn push_placeholder(sql: &mut String, backend: Backend, n: usize) {
    match backend {
        Backend::Sqlite => sql.push('?'),
        Backend::Postgres => {
            let _ = write!(sql, "${n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cover_the_synced_kinds() {
        assert_eq!(rule_for("contact").map(|r| r.kind), Some("contact"));
        assert!(rule_for("stripe_invoice").is_some_and(|r| r.financial));
        assert_eq!(
            rule_for("airtable_orders").map(|r| r.kind),
            Some("airtable_")
        );
        assert!(rule_for("something_else").is_none());
    }

    #[test]
    fn anonymize_strips_personal_and_email_fields_only() {
        let rule = rule_for("airtable_people").expect("rule");
        let data = json!({"Email": " Fake.Person@Example.test ", "Total": 12, "Note": "x"});
        let out = rule.anonymize(&data, |e| e == "fake.person@example.test");
        assert_eq!(out, json!({"Email": null, "Total": 12, "Note": "x"}));
        let invoice = rule_for("stripe_invoice").expect("rule");
        let data = json!({"customer_email": "a@fake.test", "customer_name": "Fake", "total": 500});
        assert_eq!(
            invoice.anonymize(&data, |_| false),
            json!({"customer_email": null, "customer_name": null, "total": 500})
        );
    }

    #[test]
    fn like_needle_escapes_wildcards() {
        assert_eq!(like_needle("A_b%@x.test"), "%a\\_b\\%@x.test%");
    }

    #[test]
    fn email_key_hides_the_email_and_depends_on_the_tenant() {
        let key = email_key("t1", "fake@example.test");
        assert!(key.starts_with("email:") && !key.contains("fake"));
        assert_ne!(key, email_key("t2", "fake@example.test"));
    }
}
