//! Install governance: an installation exists only after a tenant admin consented to the
//! listing's scopes and hosts; an upgrade that asks for more needs fresh consent (the diff is
//! shown), one that asks for the same or less proceeds; settings are validated against what the
//! connector declares; uninstall stops syncs and deletes credentials and the webhook secret.
//! Every change writes its audit event in the same transaction.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use ivory_sdk::Secret;
use ivory_sdk::manifest::{Manifest, WebhookScheme};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::audit::{Actor, AuditAction, AuditEvent, emit};
use super::installations::validate_tenant;
use super::{Installation, Store, StoreError, query_error, to_ms};
use crate::vault::{Binding, Vault};

/// What an admin consented to, recorded on the installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Upstream scopes.
    pub scopes: BTreeSet<String>,
    /// Upstream hosts.
    pub hosts: BTreeSet<String>,
    /// The listing version consented to.
    pub version: String,
    /// Who consented.
    pub approved_by: String,
    /// When.
    pub approved_at: Timestamp,
}

/// What a listing asks for beyond (or short of) what was consented.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsentDiff {
    /// Scopes asked for now, not consented before.
    pub added_scopes: Vec<String>,
    /// Hosts asked for now, not consented before.
    pub added_hosts: Vec<String>,
    /// Scopes no longer asked for.
    pub removed_scopes: Vec<String>,
    /// Hosts no longer asked for.
    pub removed_hosts: Vec<String>,
}

impl ConsentDiff {
    fn between(
        previous: Option<&Consent>,
        scopes: &BTreeSet<String>,
        hosts: &BTreeSet<String>,
    ) -> Self {
        let empty = BTreeSet::new();
        let (old_scopes, old_hosts) = previous.map_or((&empty, &empty), |c| (&c.scopes, &c.hosts));
        Self {
            added_scopes: scopes.difference(old_scopes).cloned().collect(),
            added_hosts: hosts.difference(old_hosts).cloned().collect(),
            removed_scopes: old_scopes.difference(scopes).cloned().collect(),
            removed_hosts: old_hosts.difference(hosts).cloned().collect(),
        }
    }

    /// True when the listing asks for something not consented to yet.
    pub fn needs_consent(&self) -> bool {
        !self.added_scopes.is_empty() || !self.added_hosts.is_empty()
    }
}

/// Whether the admin approved the listing's scopes and hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// Approved (interactively, or `--approve`).
    Approved,
    /// Not given (yet).
    NotGiven,
}

/// Where an installation's webhook secret came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookSecretSource {
    /// The tenant pasted it (Stripe's endpoint signing secret).
    Tenant,
    /// The connector obtained it when it registered the subscription (Airtable's MAC secret).
    Connector,
    /// The platform generated it and showed it once (Standard Webhooks).
    Generated,
    /// The platform's OAuth app secret is the key (HubSpot v3); nothing is stored.
    PlatformApp,
}

impl WebhookSecretSource {
    fn as_str(self) -> &'static str {
        match self {
            WebhookSecretSource::Tenant => "tenant",
            WebhookSecretSource::Connector => "connector",
            WebhookSecretSource::Generated => "generated",
            WebhookSecretSource::PlatformApp => "platform_app",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "tenant" => WebhookSecretSource::Tenant,
            "connector" => WebhookSecretSource::Connector,
            "generated" => WebhookSecretSource::Generated,
            "platform_app" => WebhookSecretSource::PlatformApp,
            _ => return None,
        })
    }
}

/// An install (or upgrade) request.
#[derive(Debug, Clone)]
pub struct InstallRequest<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The listing's manifest.
    pub manifest: &'a Manifest,
    /// Settings given by the admin (validated; defaults applied). Empty on an upgrade keeps
    /// the installation's settings.
    pub settings: BTreeMap<String, String>,
    /// Who installs.
    pub actor: &'a Actor,
    /// Whether the admin approved the listing's scopes and hosts.
    pub approval: Approval,
    /// Now.
    pub now: Timestamp,
}

/// What [`Store::install`] did.
#[derive(Debug)]
#[non_exhaustive]
pub enum InstallOutcome {
    /// A new (or re-activated) installation.
    Installed {
        /// The installation.
        installation: Installation,
        /// A webhook secret the platform generated: shown once, never again.
        generated_webhook_secret: Option<Secret>,
    },
    /// An existing installation moved to another listing version.
    Upgraded {
        /// The installation.
        installation: Installation,
        /// The version it had.
        from_version: String,
        /// What changed in scopes and hosts.
        diff: ConsentDiff,
    },
    /// Already installed at this version; settings updated if any were given.
    Unchanged {
        /// The installation.
        installation: Installation,
    },
    /// Nothing was written: the admin must approve these scopes and hosts first.
    ConsentRequired {
        /// What would be granted beyond the current consent (all of it for a new install).
        diff: ConsentDiff,
    },
}

/// Checks `given` against the settings the manifest declares; applies defaults.
pub fn validate_settings(
    manifest: &Manifest,
    given: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut errors = Vec::new();
    for key in given.keys() {
        if crate::schedule::PLATFORM_SETTINGS.contains(&key.as_str()) {
            continue;
        }
        if !manifest.settings.iter().any(|s| &s.key == key) {
            let known: Vec<&str> = manifest.settings.iter().map(|s| s.key.as_str()).collect();
            errors.push(format!(
                "unknown setting {key:?} (connector {} declares: {})",
                manifest.id,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    let mut settings = BTreeMap::new();
    for spec in &manifest.settings {
        match (given.get(&spec.key), &spec.default) {
            (Some(value), _) if value.trim().is_empty() => {
                errors.push(format!("setting {:?} must not be empty", spec.key));
            }
            (Some(value), _) => {
                settings.insert(spec.key.clone(), value.clone());
            }
            (None, Some(default)) => {
                settings.insert(spec.key.clone(), default.clone());
            }
            (None, None) if spec.required => {
                errors.push(format!(
                    "setting {:?} is required: {}",
                    spec.key, spec.description
                ));
            }
            (None, None) => {}
        }
    }
    if let Some(schedule) = given.get(crate::schedule::SCHEDULE_SETTING) {
        match crate::schedule::parse_schedule(schedule) {
            Ok(_) => {
                settings.insert(
                    crate::schedule::SCHEDULE_SETTING.to_owned(),
                    schedule.trim().to_owned(),
                );
            }
            Err(error) => errors.push(format!(
                "setting {:?}: {error}",
                crate::schedule::SCHEDULE_SETTING
            )),
        }
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}

fn webhook_binding(installation: &str) -> Binding<'_> {
    Binding::new("webhook_secret", installation)
}

fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::User(user) | Actor::Agent(user) => user.clone(),
    }
}

impl Store {
    /// Installs (or upgrades) `request.manifest` for the tenant, if consent allows.
    pub async fn install(
        &self,
        request: &InstallRequest<'_>,
        vault: &Vault,
    ) -> Result<InstallOutcome, StoreError> {
        validate_tenant(request.tenant)?;
        let manifest = request.manifest;
        let scopes: BTreeSet<String> = manifest.connection.scopes.iter().cloned().collect();
        let hosts: BTreeSet<String> = manifest.hosts.iter().cloned().collect();
        let existing = self.installation(request.tenant, &manifest.id).await?;
        let live = existing.as_ref().filter(|i| i.status != "uninstalled");
        let previous = match live {
            Some(installation) => self.consent(&installation.id).await?,
            None => None,
        };
        let diff = ConsentDiff::between(previous.as_ref(), &scopes, &hosts);
        let fresh_install = live.is_none();
        // An upgrade without settings keeps the installation's; anything else is validated.
        let settings = match live {
            Some(installation) if request.settings.is_empty() => installation.settings.clone(),
            _ => validate_settings(manifest, &request.settings).map_err(|errors| {
                StoreError::Invalid {
                    what: "settings",
                    message: errors.join("; "),
                }
            })?,
        };
        if (fresh_install || diff.needs_consent()) && request.approval == Approval::NotGiven {
            return Ok(InstallOutcome::ConsentRequired { diff });
        }
        let consent = if request.approval == Approval::Approved || previous.is_none() {
            Consent {
                scopes,
                hosts,
                version: manifest.version.clone(),
                approved_by: actor_name(request.actor),
                approved_at: request.now,
            }
        } else {
            // Fewer or equal scopes and hosts: the earlier consent still covers them.
            previous.clone().unwrap_or_else(|| Consent {
                scopes: BTreeSet::new(),
                hosts: BTreeSet::new(),
                version: manifest.version.clone(),
                approved_by: actor_name(request.actor),
                approved_at: request.now,
            })
        };
        let manifest_json = serde_json::to_string(manifest).map_err(|e| StoreError::Invalid {
            what: "manifest",
            message: e.to_string(),
        })?;
        let consent_json = serde_json::to_string(&consent).map_err(|e| StoreError::Invalid {
            what: "consent",
            message: e.to_string(),
        })?;
        let settings_json = serde_json::to_string(&settings).map_err(|e| StoreError::Invalid {
            what: "settings",
            message: e.to_string(),
        })?;
        let now = to_ms(request.now);
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO tenants (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(request.tenant)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(query_error("create tenant"))?;
        let id = existing.as_ref().map_or_else(
            || format!("inst_{}", uuid::Uuid::now_v7().simple()),
            |i| i.id.clone(),
        );
        let mut generated = None;
        let (secret_sealed, secret_source) = match manifest.webhooks.as_ref().map(|w| w.scheme) {
            Some(WebhookScheme::StandardWebhooks) if fresh_install => {
                let secret = Secret::new(format!(
                    "whsec_{}",
                    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
                ));
                let sealed = vault.seal(webhook_binding(&id), secret.expose().as_bytes())?;
                generated = Some(secret);
                (Some(sealed), Some(WebhookSecretSource::Generated))
            }
            Some(WebhookScheme::HubspotV3) => (None, Some(WebhookSecretSource::PlatformApp)),
            _ => (None, None),
        };
        sqlx::query(
            "INSERT INTO installations (id, tenant_id, connector_id, connector_version, manifest, \
             settings, status, created_at, updated_at, consent, webhook_secret, webhook_secret_source) \
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7, $8, $9, $10) \
             ON CONFLICT (tenant_id, connector_id) DO UPDATE SET \
             connector_version = excluded.connector_version, manifest = excluded.manifest, \
             settings = excluded.settings, status = 'active', status_reason = NULL, \
             updated_at = excluded.updated_at, consent = excluded.consent, \
             webhook_secret = COALESCE(excluded.webhook_secret, installations.webhook_secret), \
             webhook_secret_source = COALESCE(excluded.webhook_secret_source, installations.webhook_secret_source)",
        )
        .bind(&id)
        .bind(request.tenant)
        .bind(&manifest.id)
        .bind(&manifest.version)
        .bind(&manifest_json)
        .bind(&settings_json)
        .bind(now)
        .bind(&consent_json)
        .bind(secret_sealed)
        .bind(secret_source.map(WebhookSecretSource::as_str))
        .execute(&mut *tx)
        .await
        .map_err(query_error("write installation"))?;
        let from_version = live.map(|i| i.connector_version.clone());
        let action = if fresh_install {
            AuditAction::Create
        } else {
            AuditAction::Update
        };
        let diff_json = serde_json::json!({
            "before": from_version.as_ref().map(|v| serde_json::json!({"version": v})),
            "after": {"version": manifest.version, "connector": manifest.id, "settings": settings.keys().collect::<Vec<_>>()},
        });
        emit(
            &mut tx,
            &AuditEvent::new(
                request.tenant,
                request.actor,
                action,
                "installation",
                Some(&id),
                request.now,
            )
            .with_diff(diff_json),
        )
        .await?;
        if request.approval == Approval::Approved
            && (fresh_install || diff.needs_consent() || previous.is_none())
        {
            emit(
                &mut tx,
                &AuditEvent::new(request.tenant, request.actor, AuditAction::PermissionChange, "installation_consent", Some(&id), request.now)
                    .with_diff(serde_json::json!({"granted": {"scopes": consent.scopes, "hosts": consent.hosts}, "added": &diff})),
            )
            .await?;
        }
        tx.commit().await.map_err(query_error("commit install"))?;
        // The listing's custom objects and workflows (additive changes only: a breaking change
        // of an object is refused, naming the field).
        if !manifest.objects.is_empty() || !manifest.workflows.is_empty() {
            self.provision(
                &id,
                manifest,
                crate::objects::ChangePolicy::AdditiveOnly,
                request.actor,
                request.now,
            )
            .await?;
        }
        let installation = self
            .installation(request.tenant, &manifest.id)
            .await?
            .ok_or(StoreError::Corrupt {
                what: "installation",
                message: "vanished after install".into(),
            })?;
        Ok(match (fresh_install, from_version) {
            (true, _) => InstallOutcome::Installed {
                installation,
                generated_webhook_secret: generated,
            },
            (false, Some(from)) if from != manifest.version => InstallOutcome::Upgraded {
                installation,
                from_version: from,
                diff,
            },
            _ => InstallOutcome::Unchanged { installation },
        })
    }

    /// The consent recorded on an installation.
    pub async fn consent(&self, installation_id: &str) -> Result<Option<Consent>, StoreError> {
        let text: Option<Option<String>> =
            sqlx::query_scalar("SELECT consent FROM installations WHERE id = $1")
                .bind(installation_id)
                .fetch_optional(self.pool())
                .await
                .map_err(query_error("read consent"))?;
        text.flatten()
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                    what: "consent",
                    message: e.to_string(),
                })
            })
            .transpose()
    }

    /// Uninstalls: status `uninstalled` (syncs refuse to run), credentials and webhook secret
    /// deleted, the event recorded. Records synced so far stay the tenant's. Returns the
    /// installation as it was, or `None` when it was not installed.
    pub async fn uninstall(
        &self,
        tenant: &str,
        connector_id: &str,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<Option<Installation>, StoreError> {
        let Some(installation) = self.installation(tenant, connector_id).await? else {
            return Ok(None);
        };
        if installation.status == "uninstalled" {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM credentials WHERE installation_id = $1")
            .bind(&installation.id)
            .execute(&mut *tx)
            .await
            .map_err(query_error("delete credentials"))?;
        sqlx::query(
            "UPDATE installations SET status = 'uninstalled', status_reason = NULL, consent = NULL, \
             webhook_secret = NULL, updated_at = $1 WHERE id = $2",
        )
        .bind(to_ms(now))
        .bind(&installation.id)
        .execute(&mut *tx)
        .await
        .map_err(query_error("uninstall"))?;
        emit(
            &mut tx,
            &AuditEvent::new(
                tenant,
                actor,
                AuditAction::Delete,
                "installation",
                Some(&installation.id),
                now,
            ),
        )
        .await?;
        emit(
            &mut tx,
            &AuditEvent::new(
                tenant,
                actor,
                AuditAction::Delete,
                "credentials",
                Some(&installation.id),
                now,
            ),
        )
        .await?;
        tx.commit().await.map_err(query_error("commit uninstall"))?;
        // Its workflows stop triggering (and the tenant's cached catalog is refreshed).
        self.disable_workflows(&installation.id, now).await?;
        Ok(Some(installation))
    }

    /// The tenant's installations (uninstalled ones included, with that status).
    pub async fn installations(&self, tenant: &str) -> Result<Vec<Installation>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT connector_id FROM installations WHERE tenant_id = $1 ORDER BY connector_id",
        )
        .bind(tenant)
        .fetch_all(self.pool())
        .await
        .map_err(query_error("list installations"))?;
        let mut list = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(installation) = self.installation(tenant, &id).await? {
                list.push(installation);
            }
        }
        Ok(list)
    }

    /// Stores an installation's webhook secret (sealed), recording the change.
    pub async fn set_webhook_secret(
        &self,
        installation: &Installation,
        secret: &Secret,
        source: WebhookSecretSource,
        vault: &Vault,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let sealed = vault.seal(
            webhook_binding(&installation.id),
            secret.expose().as_bytes(),
        )?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE installations SET webhook_secret = $1, webhook_secret_source = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(sealed)
        .bind(source.as_str())
        .bind(to_ms(now))
        .bind(&installation.id)
        .execute(&mut *tx)
        .await
        .map_err(query_error("store webhook secret"))?;
        emit(
            &mut tx,
            &AuditEvent::new(
                &installation.tenant_id,
                actor,
                AuditAction::Update,
                "webhook_secret",
                Some(&installation.id),
                now,
            ),
        )
        .await?;
        tx.commit()
            .await
            .map_err(query_error("commit webhook secret"))?;
        Ok(())
    }

    /// An installation's webhook secret and where it came from.
    pub async fn webhook_secret(
        &self,
        installation_id: &str,
        vault: &Vault,
    ) -> Result<Option<(Option<Secret>, WebhookSecretSource)>, StoreError> {
        let row = sqlx::query(
            "SELECT webhook_secret, webhook_secret_source FROM installations WHERE id = $1",
        )
        .bind(installation_id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_error("read webhook secret"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = |e: sqlx::Error| StoreError::Corrupt {
            what: "webhook secret",
            message: e.to_string(),
        };
        let sealed: Option<String> = row.try_get("webhook_secret").map_err(read)?;
        let source: Option<String> = row.try_get("webhook_secret_source").map_err(read)?;
        let Some(source) = source.as_deref().and_then(WebhookSecretSource::parse) else {
            return Ok(None);
        };
        let secret = match sealed {
            Some(sealed) => {
                let plain = vault.open(webhook_binding(installation_id), &sealed)?;
                Some(Secret::new(
                    String::from_utf8_lossy(plain.expose()).into_owned(),
                ))
            }
            None => None,
        };
        Ok(Some((secret, source)))
    }
}
