//! Webhook ingress: what happens to one inbound delivery for one installation.
//!
//! 1. The installation must exist and be active; its manifest declares the scheme and
//!    tolerance; its secret comes from the vault (or is the platform's OAuth app secret for
//!    HubSpot v3).
//! 2. The connector verifies the raw delivery ([`ivory_sdk::Connector::verify_webhook`]) at
//!    the runner's clock: a bad signature, a stale or future timestamp, a missing header is a
//!    [`IngestError::Rejected`] with its reason, and **nothing is stored**.
//! 3. The replay cache (in the store, shared by every process) refuses the exact same delivery
//!    seen before inside its window: [`Ingested::Replayed`].
//! 4. The delivery is stored durably (one row per upstream event id): a legitimate retry of an
//!    event already stored (re-signed by the upstream) is [`Ingested::Duplicate`] — answered
//!    2xx, processed no second time — unless its processing failed, in which case the retry
//!    processes it again (workflows still run at most once per delivery).
//! 5. Only then is it processed: the connector's `on_webhook` (e.g. upsert the invoice the
//!    event carries), then the workflows triggered by the event type, each at most once per
//!    delivery.

use std::sync::Arc;

use ivory_sdk::manifest::{CursorKind, Manifest};
use ivory_sdk::webhook::{Delivery, Rejection, Scheme, Verifier, VerifierConfig};
use ivory_sdk::{Context, ContextParts, Credentials, DynConnector, Secret, WebhookEvent};
use serde_json::Value;
use tracing::Instrument;

use crate::runner::{Runner, SyncOptions};
use crate::store::{InstallationSink, StoreError, WebhookSecretSource, query_error, to_ms};
use crate::vault::Vault;
use crate::workflows::WorkflowRun;

/// What became of a verified delivery.
#[derive(Debug)]
#[non_exhaustive]
pub enum Ingested {
    /// Stored and processed.
    Accepted {
        /// The stored delivery.
        delivery_id: String,
        /// The workflow runs it triggered.
        workflow_runs: Vec<WorkflowRun>,
    },
    /// The exact same delivery was accepted before, inside its window: nothing done again.
    Replayed,
    /// The same upstream event (a legitimate retry) was stored before: nothing done again.
    Duplicate {
        /// The delivery stored the first time.
        event_id: String,
    },
}

/// Why a delivery was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// No such installation, or it is not active.
    #[error("no active installation {0}")]
    UnknownInstallation(String),
    /// The connector receives no webhooks, or with a scheme the platform cannot configure.
    #[error("installation {installation} does not receive webhooks: {reason}")]
    NotConfigured {
        /// The installation.
        installation: String,
        /// Why.
        reason: String,
    },
    /// The delivery failed verification.
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// The connector failed to process a stored delivery (it stays stored, marked failed).
    #[error("processing failed: {0}")]
    Processing(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Runner {
    /// Ingests one delivery for `installation_id` (see the module doc). `platform_app_secret`
    /// is the OAuth app's secret, the key of HubSpot v3 signatures.
    pub async fn ingest_webhook(
        &self,
        installation_id: &str,
        manifest: &Manifest,
        connector: &dyn DynConnector,
        delivery: &Delivery,
        vault: &Vault,
        platform_app_secret: Option<&Secret>,
    ) -> Result<Ingested, IngestError> {
        // One span per delivery (traces and the webhook RED metrics, see ivory-telemetry).
        let span = tracing::info_span!(
            "webhook",
            otel.kind = "server",
            connector = %manifest.id,
            installation = %installation_id,
            tenant_id = tracing::field::Empty,
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result = self
            .ingest_webhook_in_span(
                installation_id,
                manifest,
                connector,
                delivery,
                vault,
                platform_app_secret,
            )
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(Ingested::Accepted { .. }) => "accepted",
            Ok(Ingested::Replayed) => "replayed",
            Ok(Ingested::Duplicate { .. }) => "duplicate",
            Err(IngestError::Rejected(_)) => "rejected",
            Err(IngestError::UnknownInstallation(_) | IngestError::NotConfigured { .. }) => {
                "refused"
            }
            Err(_) => "failed",
        };
        span.record("outcome", outcome);
        if outcome == "failed" {
            span.record("otel.status_code", "error");
        }
        result
    }

    async fn ingest_webhook_in_span(
        &self,
        installation_id: &str,
        manifest: &Manifest,
        connector: &dyn DynConnector,
        delivery: &Delivery,
        vault: &Vault,
        platform_app_secret: Option<&Secret>,
    ) -> Result<Ingested, IngestError> {
        let store = self.store();
        let now = self.clock().now();
        let installation = store
            .installation_by_id(installation_id)
            .await?
            .filter(|i| i.status == "active" && i.connector_id == manifest.id)
            .ok_or_else(|| IngestError::UnknownInstallation(installation_id.to_owned()))?;
        tracing::Span::current().record("tenant_id", installation.tenant_id.as_str());
        let not_configured = |reason: &str| IngestError::NotConfigured {
            installation: installation.id.clone(),
            reason: reason.to_owned(),
        };
        let spec = manifest
            .webhooks
            .as_ref()
            .ok_or_else(|| not_configured("the manifest declares no webhooks"))?;
        let scheme = Scheme::from_manifest(spec.scheme).ok_or_else(|| {
            not_configured("this scheme needs configuration the manifest cannot give yet")
        })?;
        let secret = match store.webhook_secret(&installation.id, vault).await? {
            Some((_, WebhookSecretSource::PlatformApp)) => platform_app_secret.cloned(),
            Some((secret, _)) => secret,
            None => None,
        }
        .ok_or_else(|| {
            not_configured("no webhook secret is stored (ivory connect … --webhook-secret-stdin)")
        })?;
        let verifier =
            Verifier::new(scheme, secret.expose())
                .map_err(|e| not_configured(&format!("the stored secret is unusable: {e}")))?
                .with_config(VerifierConfig::default().with_tolerance(
                    std::time::Duration::from_secs(u64::from(spec.tolerance_seconds)),
                ));
        let verified = connector
            .verify_webhook_dyn(delivery, &verifier, now)
            .map_err(IngestError::Rejected)?;
        let verified = match verified.remember(store, &installation.id, now).await {
            Ok(verified) => verified,
            Err(Rejection::Replayed) => return Ok(Ingested::Replayed),
            Err(other) => return Err(IngestError::Rejected(other)),
        };

        let payload: Value = serde_json::from_slice(delivery.body()).unwrap_or(Value::Null);
        let event_type = payload
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let event_id = verified
            .event_id()
            .map(str::to_owned)
            .or_else(|| payload.get("id").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| verified.replay_key().to_string());
        let delivery_id = format!("whd_{}", uuid::Uuid::now_v7().simple());
        let stored = sqlx::query(
            "INSERT INTO webhook_deliveries (id, installation_id, tenant_id, event_id, event_type, \
             payload, status, received_at) VALUES ($1, $2, $3, $4, $5, $6, 'received', $7) \
             ON CONFLICT (installation_id, event_id) DO NOTHING",
        )
        .bind(&delivery_id)
        .bind(&installation.id)
        .bind(&installation.tenant_id)
        .bind(&event_id)
        .bind(event_type.as_deref())
        .bind(String::from_utf8_lossy(delivery.body()).into_owned())
        .bind(to_ms(now))
        .execute(store.pool())
        .await
        .map_err(query_error("store webhook delivery"))?;
        let delivery_id = if stored.rows_affected() == 1 {
            delivery_id
        } else {
            // Stored before. Processed (or being processed): a legitimate retry, done nothing
            // again. Failed: this retry claims it (one claimant wins) and processes it again;
            // workflows run at most once per delivery whatever happens.
            let claimed: Option<String> = sqlx::query_scalar(
                "UPDATE webhook_deliveries SET status = 'received', error = NULL \
                 WHERE installation_id = $1 AND event_id = $2 AND status = 'failed' RETURNING id",
            )
            .bind(&installation.id)
            .bind(&event_id)
            .fetch_optional(store.pool())
            .await
            .map_err(query_error("claim failed webhook delivery"))?;
            match claimed {
                Some(id) => id,
                None => return Ok(Ingested::Duplicate { event_id }),
            }
        };
        tracing::info!(installation = %installation.id, event_id = %event_id, event_type = ?event_type, "Webhook delivery stored.");

        let result = self
            .process(
                &installation,
                manifest,
                connector,
                &event_id,
                event_type.as_deref(),
                &payload,
                &delivery_id,
            )
            .await;
        let (status, error) = match &result {
            Ok(_) => ("processed", None),
            Err(e) => ("failed", Some(e.to_string())),
        };
        sqlx::query("UPDATE webhook_deliveries SET status = $1, error = $2 WHERE id = $3")
            .bind(status)
            .bind(error)
            .bind(&delivery_id)
            .execute(store.pool())
            .await
            .map_err(query_error("mark webhook delivery"))?;
        let workflow_runs = result?;
        Ok(Ingested::Accepted {
            delivery_id,
            workflow_runs,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn process(
        &self,
        installation: &crate::store::Installation,
        manifest: &Manifest,
        connector: &dyn DynConnector,
        event_id: &str,
        event_type: Option<&str>,
        payload: &Value,
        delivery_id: &str,
    ) -> Result<Vec<WorkflowRun>, IngestError> {
        let store = self.store();
        let fetcher = self
            .fetcher_for(
                manifest,
                &installation.id,
                &Credentials::None,
                &SyncOptions {
                    shared_rate_limit: true,
                    ..SyncOptions::default()
                },
            )
            .map_err(|e| IngestError::Processing(e.to_string()))?;
        let sink = InstallationSink::new(
            store.clone(),
            &installation.tenant_id,
            &installation.id,
            None,
            self.clock().clone(),
            std::time::Duration::ZERO,
        );
        let mut ctx = Context::new(ContextParts {
            tenant: installation.tenant_id.clone(),
            installation: installation.id.clone(),
            connector: manifest.id.clone(),
            // A webhook never moves the sync cursor.
            cursor_kind: CursorKind::None,
            cursor: None,
            lookback: std::time::Duration::ZERO,
            credentials: Credentials::None,
            settings: installation.settings.clone(),
            fetcher,
            sink: Arc::new(sink),
            progress: None,
            flush_threshold: 1000,
        });
        let event = WebhookEvent {
            id: Some(event_id.to_owned()),
            event_type: event_type.map(str::to_owned),
            payload: payload.clone(),
        };
        connector
            .on_webhook_boxed(&mut ctx, &event)
            .await
            .map_err(|e| IngestError::Processing(e.to_string()))?;
        ctx.finish()
            .await
            .map_err(|e| IngestError::Processing(e.to_string()))?;
        match event_type {
            Some(event_type) => store
                .run_webhook_workflows(
                    &installation.id,
                    delivery_id,
                    event_type,
                    payload,
                    self.clock().now(),
                )
                .await
                .map_err(|e| IngestError::Processing(e.to_string())),
            None => Ok(Vec::new()),
        }
    }
}
