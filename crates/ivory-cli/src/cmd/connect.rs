//! `ivory connect`: store a tenant's own credentials for an installation.
//!
//! - `oauth2`: prints the consent URL alone on a line of stdout, serves the callback on the
//!   redirect URI's loopback address (`IVORY_OAUTH_CALLBACK`, default
//!   `http://127.0.0.1:8788/oauth/callback`), checks the state, exchanges the code, stores the
//!   grant encrypted. The operator's app: `IVORY_OAUTH_CLIENT_ID`, `IVORY_OAUTH_CLIENT_SECRET`.
//! - `api_key`: `--api-key-stdin` (or `--api-key K`, which lands in shell history).
//! - `--access-token [--refresh-token] [--expires-in]`: a grant obtained elsewhere.
//!
//! Exit codes: 0 connected; 1 consent denied, state mismatch, failed exchange, timeout;
//! 2 usage errors (unknown connector, unreadable manifest, missing configuration).

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::Html;
use ivory_runtime::oauth::{self, CallbackParams, OAuthApp, OAuthEndpoints, flow};
use ivory_runtime::store::{OAuth2Grant, StoredGrant, WebhookSecretSource};
use ivory_runtime::{Store, Vault};
use ivory_sdk::manifest::{AuthType, Manifest, ValidationMode};
use ivory_sdk::{Clock, Secret};
use jiff::SignedDuration;
use tokio::sync::{mpsc, oneshot};

use super::connectors::builtin;
use super::{actor, runtime, usage_error, vault_for};
use crate::cli::ConnectArgs;

pub(crate) fn run(db: &str, args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let manifest = match (&args.connector, &args.manifest) {
        (_, Some(path)) => match Manifest::load(path, ValidationMode::Test) {
            Ok(manifest) => manifest,
            Err(error) => return Ok(usage_error(format!("{}: {error}", path.display()))),
        },
        (Some(id), None) => match builtin(id) {
            Some(builtin) => builtin.manifest,
            None => return Ok(usage_error(format!("unknown connector {id:?}"))),
        },
        (None, None) => return Ok(usage_error("name a connector or --manifest PATH")),
    };
    let webhook_secret = if args.webhook_secret_stdin {
        let mut secret = String::new();
        std::io::stdin().read_to_string(&mut secret)?;
        let secret = secret.trim().to_owned();
        if secret.is_empty() {
            return Ok(usage_error("the webhook secret on standard input is empty"));
        }
        if manifest.webhooks.is_none() {
            return Ok(usage_error(format!(
                "connector {} receives no webhooks",
                manifest.id
            )));
        }
        Some(Secret::new(secret))
    } else {
        None
    };
    let only_webhook_secret =
        webhook_secret.is_some() && args.api_key.is_none() && args.access_token.is_none();
    let api_key = if args.api_key_stdin {
        let mut key = String::new();
        std::io::stdin().read_to_string(&mut key)?;
        Some(key.trim().to_owned())
    } else {
        if args.api_key.is_some() {
            eprintln!("warning: --api-key lands in your shell history; prefer --api-key-stdin");
        }
        args.api_key.clone()
    };
    if api_key.as_deref().is_some_and(str::is_empty) {
        return Ok(usage_error("the API key is empty"));
    }
    let grant = match (&api_key, &args.access_token, manifest.connection.auth) {
        _ if only_webhook_secret => None,
        (Some(key), _, AuthType::ApiKey) => Some(StoredGrant::ApiKey(Secret::new(key.clone()))),
        (Some(_), _, other) => {
            return Ok(usage_error(format!(
                "connector {} uses {}, not an API key",
                manifest.id,
                other.as_str()
            )));
        }
        (None, Some(token), AuthType::Oauth2) => {
            let now = Clock::system().now();
            Some(StoredGrant::OAuth2(OAuth2Grant {
                access_token: Secret::new(token.clone()),
                refresh_token: args.refresh_token.clone().map(Secret::new),
                expires_at: args
                    .expires_in
                    .and_then(|s| i64::try_from(s).ok())
                    .and_then(|s| now.checked_add(SignedDuration::from_secs(s)).ok()),
                scopes: manifest.connection.scopes.clone(),
                token_type: "Bearer".into(),
            }))
        }
        (None, Some(_), other) => {
            return Ok(usage_error(format!(
                "connector {} uses {}, not OAuth tokens",
                manifest.id,
                other.as_str()
            )));
        }
        (None, None, AuthType::Oauth2) => None,
        (None, None, AuthType::ApiKey) => {
            return Ok(usage_error(format!(
                "connector {} needs an API key: --api-key-stdin",
                manifest.id
            )));
        }
        (None, None, AuthType::None) => {
            return Ok(usage_error(format!(
                "connector {} needs no credentials",
                manifest.id
            )));
        }
    };
    let vault = vault_for(db)?;
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let clock = Clock::system();
        let Some(installation) = store
            .installation(&args.tenant, &manifest.id)
            .await?
            .filter(|i| i.status != "uninstalled")
        else {
            eprintln!(
                "error: tenant {tenant} has not installed {id}: run `ivory install {id} --tenant {tenant}` first",
                tenant = args.tenant,
                id = manifest.id
            );
            return Ok(ExitCode::from(1));
        };
        if let Some(secret) = &webhook_secret {
            store
                .set_webhook_secret(&installation, secret, WebhookSecretSource::Tenant, &vault, &actor(), clock.now())
                .await?;
            println!("webhook secret stored for installation {}", installation.id);
            if only_webhook_secret {
                store.close().await;
                return Ok(ExitCode::SUCCESS);
            }
        }
        let code = match grant {
            Some(grant) => {
                store
                    .put_credentials(&installation.id, &grant, &vault, clock.now())
                    .await?;
                store
                    .set_installation_status(&installation.id, "active", None, clock.now())
                    .await?;
                println!("connected: tenant {} installation {} ({})", args.tenant, installation.id, grant.kind());
                ExitCode::SUCCESS
            }
            None => oauth_dance(&store, &vault, &manifest, &installation, args.timeout).await?,
        };
        store.close().await;
        Ok(code)
    })
}

type CallbackMessage = (CallbackParams, oneshot::Sender<Result<(), String>>);

async fn oauth_dance(
    store: &Store,
    vault: &Vault,
    manifest: &Manifest,
    installation: &ivory_runtime::Installation,
    timeout: u64,
) -> anyhow::Result<ExitCode> {
    let app = match OAuthApp::from_env(|k| std::env::var(k).ok()) {
        Ok(app) => app,
        Err(error) => return Ok(usage_error(error)),
    };
    let endpoints = match OAuthEndpoints::from_manifest(manifest) {
        Ok(endpoints) => endpoints,
        Err(error) => return Ok(usage_error(error)),
    };
    let host = app
        .redirect_uri
        .host_str()
        .unwrap_or("127.0.0.1")
        .to_owned();
    let port = app.redirect_uri.port_or_known_default().unwrap_or(8788);
    let path = app.redirect_uri.path().to_owned();
    let listener = match tokio::net::TcpListener::bind((host.as_str(), port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen for the OAuth callback on {host}:{port}: {error}");
            return Ok(ExitCode::from(1));
        }
    };
    let (sender, mut receiver) = mpsc::channel::<CallbackMessage>(4);
    let router = axum::Router::new()
        .route(&path, axum::routing::get(callback))
        .with_state(sender);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let clock = Clock::system();
    let authorization =
        flow::begin(store, vault, &app, &endpoints, installation, clock.now()).await?;
    // The URL alone on its line: scripts read it.
    println!("{}", authorization.url);
    eprintln!(
        "Open the URL above to connect tenant {}'s account; waiting for the callback on {}",
        installation.tenant_id, app.redirect_uri
    );

    let http = oauth::http::token_client()?;
    let outcome = tokio::time::timeout(Duration::from_secs(timeout), async {
        let (params, reply) = receiver.recv().await?;
        let result = flow::complete(store, vault, &app, &params, &http, clock.now()).await;
        let shown = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        let _ = reply.send(shown);
        Some(result)
    })
    .await;
    server.abort();
    match outcome {
        Ok(Some(Ok(connected))) => {
            println!(
                "connected: tenant {} installation {} (oauth2, scopes: {})",
                connected.tenant,
                connected.installation,
                connected.scopes.join(" ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(Some(Err(error))) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(1))
        }
        Ok(None) => {
            eprintln!("error: the callback server stopped");
            Ok(ExitCode::from(1))
        }
        Err(_) => {
            eprintln!("error: no OAuth callback within {timeout} s");
            Ok(ExitCode::from(1))
        }
    }
}

async fn callback(
    State(sender): State<mpsc::Sender<CallbackMessage>>,
    RawQuery(query): RawQuery,
) -> Html<String> {
    let params = CallbackParams::from_query(query.as_deref().unwrap_or(""));
    let (reply, answer) = oneshot::channel();
    if sender.send((params, reply)).await.is_err() {
        return Html(
            "<p>This connection attempt is over. Start again with <code>ivory connect</code>.</p>"
                .into(),
        );
    }
    match answer.await {
        Ok(Ok(())) => Html("<p>Connected. You can close this window.</p>".into()),
        Ok(Err(error)) => Html(format!("<p>Not connected: {}</p>", html_escape(&error))),
        Err(_) => Html("<p>Not connected.</p>".into()),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
