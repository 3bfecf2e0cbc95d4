//! Tenants, installations and committed cursors.

use std::collections::BTreeMap;

use ivory_sdk::Cursor;
use ivory_sdk::manifest::Manifest;
use jiff::Timestamp;
use sqlx::Row;

use super::{Store, StoreError, from_ms, query_error, to_ms};

/// A connector installed for a tenant.
#[derive(Debug, Clone)]
pub struct Installation {
    /// The installation id (`inst_…`).
    pub id: String,
    /// The tenant.
    pub tenant_id: String,
    /// The connector's manifest id.
    pub connector_id: String,
    /// The installed manifest version.
    pub connector_version: String,
    /// Installation settings.
    pub settings: BTreeMap<String, String>,
    /// `active`, `needs_reconsent`, …
    pub status: String,
    /// Why the status is not `active`, when it is not.
    pub status_reason: Option<String>,
    /// When it was installed.
    pub created_at: Timestamp,
}

/// Checks a tenant id: 1–128 characters of `A-Z a-z 0-9 _ . -`.
pub(crate) fn validate_tenant(tenant: &str) -> Result<(), StoreError> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 128
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "tenant id",
            message: format!(
                "{tenant:?} must be 1–128 characters of letters, digits, '_', '.', '-'"
            ),
        })
    }
}

const INSTALLATION_COLUMNS: &str =
    "id, tenant_id, connector_id, connector_version, settings, status, status_reason, created_at";

fn installation_from_row(row: &sqlx::any::AnyRow) -> Result<Installation, StoreError> {
    let read = |e: sqlx::Error| StoreError::Corrupt {
        what: "installation",
        message: e.to_string(),
    };
    let settings: String = row.try_get("settings").map_err(read)?;
    Ok(Installation {
        id: row.try_get("id").map_err(read)?,
        tenant_id: row.try_get("tenant_id").map_err(read)?,
        connector_id: row.try_get("connector_id").map_err(read)?,
        connector_version: row.try_get("connector_version").map_err(read)?,
        settings: serde_json::from_str(&settings).map_err(|e| StoreError::Corrupt {
            what: "installation settings",
            message: e.to_string(),
        })?,
        status: row.try_get("status").map_err(read)?,
        status_reason: row.try_get("status_reason").map_err(read)?,
        created_at: from_ms(row.try_get("created_at").map_err(read)?)?,
    })
}

impl Store {
    /// Creates the tenant if it does not exist.
    pub async fn ensure_tenant(&self, tenant: &str, now: Timestamp) -> Result<(), StoreError> {
        validate_tenant(tenant)?;
        sqlx::query(
            "INSERT INTO tenants (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(tenant)
        .bind(to_ms(now))
        .execute(self.pool())
        .await
        .map_err(query_error("create tenant"))?;
        Ok(())
    }

    /// Returns the tenant's installation of `manifest.id`, creating the tenant and the
    /// installation when missing, and recording the manifest version now in use. **No consent
    /// is recorded and no audit event written**: this is for tests and internal tooling;
    /// tenants install through [`Store::install`].
    pub async fn ensure_installation(
        &self,
        tenant: &str,
        manifest: &Manifest,
        settings: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> Result<Installation, StoreError> {
        self.ensure_tenant(tenant, now).await?;
        let manifest_json = serde_json::to_string(manifest).map_err(|e| StoreError::Invalid {
            what: "manifest",
            message: e.to_string(),
        })?;
        let settings_json = serde_json::to_string(settings).map_err(|e| StoreError::Invalid {
            what: "settings",
            message: e.to_string(),
        })?;
        let id = format!("inst_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(
            "INSERT INTO installations \
             (id, tenant_id, connector_id, connector_version, manifest, settings, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7) \
             ON CONFLICT (tenant_id, connector_id) DO UPDATE SET \
             connector_version = excluded.connector_version, manifest = excluded.manifest, \
             updated_at = excluded.updated_at",
        )
        .bind(&id)
        .bind(tenant)
        .bind(&manifest.id)
        .bind(&manifest.version)
        .bind(&manifest_json)
        .bind(&settings_json)
        .bind(to_ms(now))
        .execute(self.pool())
        .await
        .map_err(query_error("create installation"))?;
        self.installation(tenant, &manifest.id)
            .await?
            .ok_or(StoreError::Corrupt {
                what: "installation",
                message: "vanished right after it was written".into(),
            })
    }

    /// An installation by id.
    pub async fn installation_by_id(&self, id: &str) -> Result<Option<Installation>, StoreError> {
        let found: Option<(String, String)> =
            sqlx::query_as("SELECT tenant_id, connector_id FROM installations WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await
                .map_err(query_error("find installation"))?;
        match found {
            Some((tenant, connector)) => self.installation(&tenant, &connector).await,
            None => Ok(None),
        }
    }

    /// The tenant's installation of a connector, if any.
    pub async fn installation(
        &self,
        tenant: &str,
        connector_id: &str,
    ) -> Result<Option<Installation>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTALLATION_COLUMNS} FROM installations \
             WHERE tenant_id = $1 AND connector_id = $2"
        )))
        .bind(tenant)
        .bind(connector_id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read installation"))?;
        row.map(|row| installation_from_row(&row)).transpose()
    }

    /// Every active installation of every tenant (what the scheduler considers), oldest first.
    pub async fn active_installations(&self) -> Result<Vec<Installation>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTALLATION_COLUMNS} FROM installations WHERE status = 'active' \
             ORDER BY created_at, id"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list active installations"))?;
        rows.iter().map(installation_from_row).collect()
    }

    /// When each installation's latest sync run started (installations never synced are
    /// absent).
    pub async fn last_run_starts(
        &self,
    ) -> Result<std::collections::HashMap<String, Timestamp>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT installation_id, MAX(started_at) FROM sync_runs GROUP BY installation_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(query_error("read the last sync starts"))?;
        rows.into_iter()
            .map(|(id, ms)| Ok((id, from_ms(ms)?)))
            .collect()
    }

    /// Sets an installation's status (`active`, `needs_reconsent`, …) and why.
    pub async fn set_installation_status(
        &self,
        installation_id: &str,
        status: &str,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE installations SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(status)
        .bind(reason)
        .bind(to_ms(now))
        .bind(installation_id)
        .execute(self.pool())
        .await
        .map_err(query_error("set installation status"))?;
        Ok(())
    }

    /// The installation's committed cursor.
    pub async fn cursor(&self, installation_id: &str) -> Result<Option<Cursor>, StoreError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT cursor FROM cursors WHERE installation_id = $1")
                .bind(installation_id)
                .fetch_optional(self.pool())
                .await
                .map_err(query_error("read cursor"))?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                what: "cursor",
                message: e.to_string(),
            })
        })
        .transpose()
    }
}
