//! # Ivory server
//!
//! `ivory serve`: the platform running. One process holds
//!
//! - the HTTP face ([`http`]): webhook ingress per installation (`POST /webhooks/{id}`,
//!   answered 2xx only once the delivery is durably stored), the OAuth callback, `GET /healthz`
//!   and Prometheus `GET /metrics` ([`metrics`]); the DSAR endpoints ([`dsar`]);
//! - the [`scheduler`], which syncs every active installation on its interval (the
//!   installation setting `schedule`, 15 minutes by default) with jitter, never two runs of one
//!   installation at once (in this process by a running set, across processes by the store's
//!   lease).
//!
//! Shutdown is graceful ([`Server::run`] with a cancellation token, cancelled on SIGTERM by the
//! CLI): the listener stops accepting, requests in flight finish, every sync stops at its next
//! page boundary (its fetcher refuses further requests) with what it committed kept, and the
//! next run resumes from the committed cursor.

pub mod dsar;
pub mod http;
pub mod metrics;
pub mod scheduler;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ivory_runtime::oauth::OAuthApp;
use ivory_runtime::{Runner, Store, Vault};
use ivory_sdk::manifest::Manifest;
use ivory_sdk::{Clock, DynConnector};
use tokio_util::sync::CancellationToken;
use url::Url;

pub use dsar::{DsarConfigError, DsarVerifier};
pub use metrics::{Metrics, Verdict};

/// A connector the server can run: its manifest and its implementation.
#[derive(Clone)]
pub struct ConnectorEntry {
    /// The manifest.
    pub manifest: Manifest,
    /// The implementation.
    pub connector: Arc<dyn DynConnector>,
}

impl std::fmt::Debug for ConnectorEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorEntry")
            .field("id", &self.manifest.id)
            .field("version", &self.manifest.version)
            .finish_non_exhaustive()
    }
}

/// The connectors a server knows, by manifest id.
#[derive(Debug, Clone, Default)]
pub struct Connectors {
    entries: BTreeMap<String, ConnectorEntry>,
}

impl Connectors {
    /// Adds (or replaces) a connector.
    pub fn add(&mut self, manifest: Manifest, connector: Arc<dyn DynConnector>) {
        self.entries.insert(
            manifest.id.clone(),
            ConnectorEntry {
                manifest,
                connector,
            },
        );
    }

    /// The connector with this id.
    pub fn get(&self, id: &str) -> Option<&ConnectorEntry> {
        self.entries.get(id)
    }

    /// The ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// An operator's OAuth app for one connector, with endpoint overrides (a local fake).
#[derive(Debug, Clone)]
pub struct OAuthSetup {
    /// The app.
    pub app: OAuthApp,
    /// Replaces the manifest's token endpoint (code exchange and refresh).
    pub token_url: Option<Url>,
}

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest webhook body accepted (bytes); larger ones get 413 before anything is read
    /// further or stored.
    pub body_limit: usize,
    /// The URL senders call this server at (scheme and host), for schemes that sign the URL
    /// (HubSpot v3). `None`: `http://` + the request's `Host` header.
    pub public_url: Option<Url>,
    /// The OAuth callback's path (the path of `IVORY_OAUTH_CALLBACK`).
    pub callback_path: String,
    /// Whether scheduled syncs run.
    pub scheduler: bool,
    /// How often the scheduler looks for due installations.
    pub tick: Duration,
    /// At most this many syncs run at once in this process.
    pub max_concurrent_syncs: usize,
    /// Base-URL overrides per connector id (local fakes; loopback is only reachable this way).
    pub upstreams: HashMap<String, Url>,
    /// OAuth apps per connector id. A connector without one reads the environment
    /// ([`OAuthApp::for_connector`]) when [`oauth_from_env`](Self::oauth_from_env) is set.
    pub oauth: HashMap<String, OAuthSetup>,
    /// Read OAuth apps of connectors not in [`oauth`](Self::oauth) from the environment.
    pub oauth_from_env: bool,
    /// How long a shutdown waits for syncs to reach their page boundary.
    pub shutdown_grace: Duration,
    /// Verifies the DSAR orchestrator's bearer tokens; `None`: `/dsar/*` answer 503.
    pub dsar: Option<Arc<DsarVerifier>>,
    /// This process's name in job claims and leases (`host:pid`).
    pub worker_id: String,
    /// A sync's lease and its job's claim; renewed every third of it while the sync runs, so a
    /// dead worker's job is taken over this long after its last heartbeat.
    pub lease: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            public_url: None,
            callback_path: "/oauth/callback".into(),
            scheduler: true,
            tick: Duration::from_secs(1),
            max_concurrent_syncs: 8,
            upstreams: HashMap::new(),
            oauth: HashMap::new(),
            oauth_from_env: true,
            shutdown_grace: Duration::from_secs(30),
            dsar: None,
            worker_id: default_worker_id(),
            lease: Duration::from_secs(60),
        }
    }
}

/// `host:pid`, as the runner names lease holders.
pub fn default_worker_id() -> String {
    ivory_runtime::runner::process_holder()
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listener failed.
    #[error("the HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

/// What every handler and the scheduler share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) runner: Runner,
    pub(crate) vault: Arc<Vault>,
    pub(crate) connectors: Connectors,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Metrics,
    /// The client of OAuth code exchanges.
    pub(crate) http: reqwest::Client,
}

impl Shared {
    pub(crate) fn store(&self) -> &Store {
        self.runner.store()
    }

    pub(crate) fn clock(&self) -> &Clock {
        self.runner.clock()
    }

    /// The operator's OAuth app for a connector.
    pub(crate) fn oauth_app(&self, connector: &str) -> Result<OAuthApp, String> {
        if let Some(setup) = self.config.oauth.get(connector) {
            return Ok(setup.app.clone());
        }
        if self.config.oauth_from_env {
            return OAuthApp::for_connector(connector, |k| std::env::var(k).ok())
                .map_err(|e| e.to_string());
        }
        Err(format!("no OAuth app is configured for {connector}"))
    }
}

/// A configured server; [`run`](Self::run) it on a listener.
#[derive(Debug, Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    /// A server over `store`, sealing and opening secrets with `vault`, running `connectors`.
    pub fn new(
        store: Store,
        vault: Arc<Vault>,
        connectors: Connectors,
        config: ServerConfig,
        clock: Clock,
    ) -> Result<Self, ServerError> {
        if config.body_limit == 0 {
            return Err(ServerError::Config(
                "the body limit must be above zero".into(),
            ));
        }
        if config.lease < Duration::from_secs(3) {
            return Err(ServerError::Config(
                "the lease must be at least 3 seconds (it is renewed every third of it)".into(),
            ));
        }
        if !config.callback_path.starts_with('/') {
            return Err(ServerError::Config(format!(
                "the OAuth callback path {:?} must start with /",
                config.callback_path
            )));
        }
        let http = ivory_runtime::oauth::http::token_client()
            .map_err(|e| ServerError::Config(e.to_string()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                runner: Runner::new(store, clock),
                vault,
                connectors,
                config,
                metrics: Metrics::new(),
                http,
            }),
        })
    }

    /// The HTTP routes (for tests that drive them without a socket, or to nest them).
    pub fn router(&self) -> axum::Router {
        http::router(self.shared.clone())
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Runs the scheduler alone (`ivory worker`: no HTTP) until `shutdown` is cancelled, then
    /// waits for the running syncs to stop at a page boundary.
    pub async fn run_worker(self, shutdown: CancellationToken) {
        tracing::info!(worker = %self.shared.config.worker_id, concurrency = self.shared.config.max_concurrent_syncs, "Working.");
        scheduler::run(self.shared.clone(), shutdown).await;
        tracing::info!("Stopped.");
    }

    /// Serves on `listener` and runs the scheduler until `shutdown` is cancelled, then shuts
    /// down gracefully (see the crate docs). Returns once every sync stopped (or the grace
    /// period ran out, logged).
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), ServerError> {
        let addr: SocketAddr = listener.local_addr()?;
        tracing::info!(%addr, connectors = ?self.shared.connectors.ids().collect::<Vec<_>>(), "Serving.");
        let scheduler = self
            .shared
            .config
            .scheduler
            .then(|| tokio::spawn(scheduler::run(self.shared.clone(), shutdown.clone())));
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let stop = shutdown.clone();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        // The listener stopped (shutdown, or an error): stop the syncs too.
        shutdown.cancel();
        if let Some(scheduler) = scheduler
            && let Err(error) = scheduler.await
        {
            tracing::error!(%error, "The scheduler task failed.");
        }
        tracing::info!("Stopped.");
        served.map_err(ServerError::Io)
    }
}
