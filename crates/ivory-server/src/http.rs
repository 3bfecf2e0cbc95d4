//! The HTTP routes.
//!
//! | route | answers |
//! |---|---|
//! | `POST /webhooks/{installation}` | 200 `accepted` (stored, processed) or `duplicate` (a legitimate upstream retry of a stored event: nothing runs twice); 409 `replayed` (the exact same delivery again); 400 `rejected` with the reason (signature, timestamp, headers); 404 unknown or inactive installation; 413 over the body limit; 422 the installation cannot verify deliveries; 500 stored but processing failed (the upstream's retry processes it again); 503 the store failed (nothing stored: the upstream retries) |
//! | `GET <callback path>` | the OAuth callback: checks the state, exchanges the code, stores the grant |
//! | `POST /dsar/export`, `POST /dsar/delete` | the platform's DSAR calls ([`crate::dsar`]): 200 with the platform's shape; 400 bad body or no `contact_id`; 401 bad token; 500 failure; 503 not configured |
//! | `GET /healthz` | 200 when the store answers, 503 otherwise |
//! | `GET /metrics` | Prometheus / OpenMetrics text |
//!
//! A 2xx to a webhook is only ever sent after the delivery is durably stored.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, RawQuery, Request, State};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Method, StatusCode, header};
use ivory_runtime::oauth::{CallbackParams, OAuthError, flow};
use ivory_runtime::webhooks::{IngestError, Ingested};
use ivory_sdk::webhook::Delivery;
use serde_json::json;

use crate::Shared;
use crate::metrics::Verdict;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.config.body_limit;
    Router::new()
        .route(
            "/webhooks/{installation}",
            post(webhook).layer(DefaultBodyLimit::max(limit)),
        )
        .route(&shared.config.callback_path, get(oauth_callback))
        .route("/dsar/export", post(crate::dsar::export))
        .route("/dsar/delete", post(crate::dsar::delete))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .with_state(shared)
}

/// RED metrics of every request, by route template (never the raw path: installation ids
/// would be unbounded labels).
async fn observe(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let response = next.run(request).await;
    shared.metrics.http_request(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn webhook(
    State(shared): State<Arc<Shared>>,
    Path(installation_id): Path<String>,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let installation = match shared.store().installation_by_id(&installation_id).await {
        Ok(found) => found.filter(|i| i.status == "active"),
        Err(error) => {
            tracing::error!(%error, "Reading the installation of a webhook failed.");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "error", "reason": "the store is unavailable; retry later"}),
            );
        }
    };
    let connector_label = installation
        .as_ref()
        .map_or("unknown", |i| i.connector_id.as_str())
        .to_owned();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            shared.metrics.webhook(&connector_label, Verdict::TooLarge);
            let status = rejection.status();
            let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "the body is larger than the limit of {} bytes",
                    shared.config.body_limit
                )
            } else {
                rejection.body_text()
            };
            return answer(status, json!({"status": "rejected", "reason": reason}));
        }
    };
    let unknown = || {
        shared
            .metrics
            .webhook(&connector_label, Verdict::UnknownInstallation);
        answer(
            StatusCode::NOT_FOUND,
            json!({"status": "unknown_installation", "reason": format!("no active installation {installation_id}")}),
        )
    };
    let Some(installation) = installation else {
        return unknown();
    };
    let Some(entry) = shared.connectors.get(&installation.connector_id) else {
        return unknown();
    };

    let url = match &shared.config.public_url {
        Some(base) => base.join(&uri.to_string()).map(String::from).ok(),
        None => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|host| format!("http://{host}{uri}")),
    };
    let mut delivery = Delivery::new(headers, body).with_method(method);
    if let Some(url) = url {
        delivery = delivery.with_url(url);
    }
    // HubSpot v3 signs with the platform's OAuth app secret, not a per-installation one.
    let app_secret = shared
        .oauth_app(&installation.connector_id)
        .ok()
        .and_then(|app| app.client_secret);
    let outcome = shared
        .runner
        .ingest_webhook(
            &installation.id,
            &entry.manifest,
            entry.connector.as_ref(),
            &delivery,
            &shared.vault,
            app_secret.as_ref(),
        )
        .await;
    let (verdict, response) = match outcome {
        Ok(Ingested::Accepted {
            delivery_id,
            workflow_runs,
        }) => {
            let runs: Vec<_> = workflow_runs
                .iter()
                .map(|run| json!({"id": run.id, "workflow": run.workflow, "status": run.status.as_str()}))
                .collect();
            (
                Verdict::Accepted,
                answer(
                    StatusCode::OK,
                    json!({"status": "accepted", "delivery_id": delivery_id, "workflow_runs": runs}),
                ),
            )
        }
        Ok(Ingested::Duplicate { event_id }) => (
            Verdict::Duplicate,
            answer(
                StatusCode::OK,
                json!({"status": "duplicate", "event_id": event_id, "reason": "this event was already received and processed; nothing runs twice"}),
            ),
        ),
        Ok(Ingested::Replayed) => (
            Verdict::Replayed,
            answer(
                StatusCode::CONFLICT,
                json!({"status": "replayed", "reason": "this exact delivery was already received"}),
            ),
        ),
        Ok(other) => {
            tracing::warn!(?other, "An ingest outcome this server does not know.");
            (
                Verdict::Accepted,
                answer(StatusCode::OK, json!({"status": "accepted"})),
            )
        }
        Err(IngestError::Rejected(reason)) => (
            Verdict::Rejected,
            answer(
                StatusCode::BAD_REQUEST,
                json!({"status": "rejected", "reason": reason.to_string()}),
            ),
        ),
        Err(IngestError::UnknownInstallation(_)) => return unknown(),
        Err(error @ IngestError::NotConfigured { .. }) => (
            Verdict::NotConfigured,
            answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"status": "not_configured", "reason": error.to_string()}),
            ),
        ),
        Err(IngestError::Processing(reason)) => {
            tracing::warn!(installation = %installation.id, %reason, "A stored webhook delivery failed to process.");
            (
                Verdict::Failed,
                answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"status": "failed", "reason": "stored, but processing failed; a retry of this event processes it again"}),
                ),
            )
        }
        Err(error) => {
            tracing::error!(installation = %installation.id, %error, "Storing a webhook delivery failed.");
            (
                Verdict::Failed,
                answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"status": "error", "reason": "not stored; retry later"}),
                ),
            )
        }
    };
    shared.metrics.webhook(&connector_label, verdict);
    response
}

async fn oauth_callback(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let params = CallbackParams::from_query(query.as_deref().unwrap_or(""));
    let outcome = flow::complete_with(
        shared.store(),
        &shared.vault,
        |connector| shared.oauth_app(connector).map_err(OAuthError::Config),
        &params,
        &shared.http,
        shared.clock().now(),
    )
    .await;
    match outcome {
        Ok(connected) => {
            tracing::info!(tenant = %connected.tenant, installation = %connected.installation, "Connected through the OAuth callback.");
            Html(format!(
                "<!doctype html><title>Connected</title><p>Connected installation {} of tenant {}. You can close this window.</p>",
                html_escape(&connected.installation),
                html_escape(&connected.tenant)
            ))
            .into_response()
        }
        Err(error) => {
            let status = match &error {
                OAuthError::Store(_) | OAuthError::Credentials(_) | OAuthError::Vault(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                OAuthError::TokenEndpoint(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::BAD_REQUEST,
            };
            tracing::warn!(%error, "OAuth callback refused.");
            (
                status,
                Html(format!(
                    "<!doctype html><title>Not connected</title><p>Not connected: {}</p>",
                    html_escape(&error.to_string())
                )),
            )
                .into_response()
        }
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    match shared.store().ping().await {
        Ok(()) => answer(StatusCode::OK, json!({"status": "ok"})),
        Err(error) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "reason": error.to_string()}),
        ),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    match shared.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
