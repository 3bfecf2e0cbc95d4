//! `ivory serve [--bind 127.0.0.1:8787] [--upstream CONNECTOR=URL]… [--no-scheduler]`.
//!
//! The built-in connectors behind [`ivory_server::Server`]: webhook ingress at each
//! installation's `webhook_path`, the OAuth callback (the path of `IVORY_OAUTH_CALLBACK`),
//! `/healthz`, `/metrics`, and scheduled syncs. Prints `listening on http://ADDR` on stdout
//! once bound (with `--bind 127.0.0.1:0`, scripts read the port from it). SIGTERM or ctrl-c
//! shuts down gracefully; exit 0 then. Exit 1 when the address cannot be bound or the store
//! cannot be opened, 2 for bad flags.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ivory_runtime::Store;
use ivory_runtime::oauth::DEFAULT_CALLBACK;
use ivory_sdk::Clock;
use ivory_server::{Connectors, Server, ServerConfig};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::connectors::{BUILTIN_IDS, builtin};
use super::{runtime, usage_error, vault_for};
use crate::cli::ServeArgs;

pub(crate) fn run(db: &str, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let upstreams = match parse_upstreams(&args.upstreams) {
        Ok(upstreams) => upstreams,
        Err(message) => return Ok(usage_error(message)),
    };
    let public_url = match args.public_url.as_deref().map(Url::parse).transpose() {
        Ok(url) => url,
        Err(e) => return Ok(usage_error(format!("--public-url: {e}"))),
    };
    let callback =
        std::env::var("IVORY_OAUTH_CALLBACK").unwrap_or_else(|_| DEFAULT_CALLBACK.into());
    let callback_path = match Url::parse(&callback) {
        Ok(url) => url.path().to_owned(),
        Err(e) => {
            return Ok(usage_error(format!(
                "IVORY_OAUTH_CALLBACK {callback:?}: {e}"
            )));
        }
    };
    if args.max_concurrent_syncs == 0 {
        return Ok(usage_error("--max-concurrent-syncs must be at least 1"));
    }
    // DSAR endpoints: IVORY_DSAR_JWT_SECRET (HS256) or IVORY_DSAR_JWT_PUBLIC_KEY (RS256 /
    // EdDSA); neither set, they answer 503.
    let dsar = match ivory_server::DsarVerifier::from_env(|k| std::env::var(k).ok()) {
        Ok(verifier) => verifier.map(Arc::new),
        Err(e) => return Ok(usage_error(e)),
    };
    let config = ServerConfig {
        body_limit: args.body_limit,
        public_url,
        callback_path,
        scheduler: !args.no_scheduler,
        max_concurrent_syncs: args.max_concurrent_syncs,
        upstreams,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        dsar,
        ..ServerConfig::default()
    };
    let connectors = builtin_connectors();
    let vault = Arc::new(vault_for(db)?);
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let listener = match tokio::net::TcpListener::bind(&args.bind).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("error: cannot listen on {}: {error}", args.bind);
                return Ok(ExitCode::from(1));
            }
        };
        let server = match Server::new(store.clone(), vault, connectors, config, Clock::system()) {
            Ok(server) => server,
            Err(error) => return Ok(usage_error(error)),
        };
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{}", listener.local_addr()?)?;
            out.flush()?;
        }
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        let served = server.run(listener, shutdown).await;
        store.close().await;
        served?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `CONNECTOR=URL` pairs of `--upstream`, checked: a usage message when one is malformed.
pub(crate) fn parse_upstreams(pairs: &[String]) -> Result<HashMap<String, Url>, String> {
    let mut upstreams = HashMap::new();
    for pair in pairs {
        let Some((id, url)) = pair.split_once('=') else {
            return Err(format!("--upstream {pair:?}: expected CONNECTOR=URL"));
        };
        if builtin(id).is_none() {
            return Err(format!(
                "--upstream {pair:?}: unknown connector {id:?} (built-in: {})",
                BUILTIN_IDS.join(", ")
            ));
        }
        let url = Url::parse(url).map_err(|e| format!("--upstream {pair:?}: {e}"))?;
        upstreams.insert(id.to_owned(), url);
    }
    Ok(upstreams)
}

/// Every built-in connector, for a server or a worker.
pub(crate) fn builtin_connectors() -> Connectors {
    let mut connectors = Connectors::default();
    for id in BUILTIN_IDS {
        if let Some(builtin) = builtin(id) {
            connectors.add(builtin.manifest, builtin.connector);
        }
    }
    connectors
}

/// Cancels `shutdown` on SIGTERM or ctrl-c.
pub(crate) async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down."),
                    _ = tokio::signal::ctrl_c() => tracing::info!("Interrupted: shutting down."),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM; ctrl-c still stops the server.");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}
