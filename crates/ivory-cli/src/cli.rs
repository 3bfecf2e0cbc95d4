//! Raw command-line arguments (clap derive). Validation beyond what clap does happens in the
//! command modules, which lower these into typed configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The Ivory Connector SDK: build, certify and run certified integrations.
#[derive(Debug, Parser)]
#[command(name = "ivory", version, about)]
pub(crate) struct Cli {
    /// The store: a SQLite file path (default `ivory.db`).
    #[arg(long, global = true, env = "IVORY_DB", default_value = "ivory.db")]
    pub(crate) db: String,
    /// More logging on stderr (-v info, -vv debug); `IVORY_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate connector manifests.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Verify webhook deliveries.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Install a listing for a tenant: review and consent to its scopes and hosts.
    Install(InstallArgs),
    /// Uninstall: stop syncs, revoke and delete the tenant's credentials and webhook secret.
    Uninstall(UninstallArgs),
    /// Certify a connector: static checks, then its sync and webhooks under a fault-injecting
    /// harness; exit 0 only when every check passes (with `TOKEN`, the report is submitted).
    Certify(CertifyArgs),
    /// Create a new connector crate (manifest, connector, mocked upstream, tests, README,
    /// certification harness) that builds, passes its tests and passes `ivory certify`.
    Scaffold(crate::cmd::scaffold::ScaffoldArgs),
    /// Publish a certified connector to the marketplace (`TOKEN`: your publisher token).
    Publish(PublishArgs),
    /// Marketplace publishers (platform operators).
    #[command(subcommand)]
    Publisher(PublisherCommand),
    /// List or inspect installations.
    #[command(subcommand)]
    Installations(InstallationsCommand),
    /// Connect a tenant's own upstream account: the OAuth dance, an API key, or a grant
    /// obtained elsewhere.
    Connect(ConnectArgs),
    /// Run a connector's sync for one tenant.
    Sync(SyncArgs),
    /// Read and edit a tenant's records.
    #[command(subcommand)]
    Records(RecordsCommand),
    /// Workflow runs.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// The platform running: webhook ingress, the OAuth callback, health, metrics, and every
    /// installation's sync on its schedule; SIGTERM stops it gracefully.
    Serve(ServeArgs),
    /// A sync worker (scale-out, typically on PostgreSQL): claims due scheduled syncs from the
    /// shared store with leases, heart-beats while running, takes over the jobs of dead
    /// workers; SIGTERM stops it gracefully.
    Worker(WorkerArgs),
    /// The main job with zero setup: a local fake upstream, a tenant, a full and an
    /// incremental sync, and a report.
    Demo(DemoArgs),
    /// The transactional outbox of audit events.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Data subject access requests: export or erase one contact's synced data.
    #[command(subcommand)]
    Dsar(crate::cmd::dsar::DsarCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCommand {
    /// Publish pending audit events to the ledger on NATS JetStream (subject = event type,
    /// message id = event id), marking each sent once the stream acknowledged it.
    Relay(RelayArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    #[arg(long, env = "IVORY_NATS_URL")]
    pub(crate) nats: String,
    /// Events read, published and marked per batch.
    #[arg(long, default_value_t = 100)]
    pub(crate) batch: u32,
    /// Drain what is pending and exit (otherwise keep polling until SIGTERM or ctrl-c).
    #[arg(long)]
    pub(crate) once: bool,
    /// The JetStream stream (created when missing, subjects `<prefix>audit.>`).
    #[arg(long, default_value = ivory_runtime::outbox::DEFAULT_STREAM)]
    pub(crate) stream: String,
    /// Put before every subject: empty, or tokens ending in `.` (`staging.`).
    #[arg(long, default_value = "")]
    pub(crate) subject_prefix: String,
    /// How often to look for new events when not `--once` (milliseconds).
    #[arg(long, default_value_t = 1000)]
    pub(crate) poll_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on.
    #[arg(long, env = "IVORY_BIND", default_value = "127.0.0.1:8787")]
    pub(crate) bind: String,
    /// The URL upstreams call this server at (scheme and host; HubSpot v3 signs it). Default:
    /// `http://` + the request's Host header.
    #[arg(long, env = "IVORY_PUBLIC_URL")]
    pub(crate) public_url: Option<String>,
    /// Route a connector's API calls to another base URL (`stripe=http://127.0.0.1:12111`):
    /// a local fake or a proxy. Repeatable.
    #[arg(long = "upstream", value_name = "CONNECTOR=URL")]
    pub(crate) upstreams: Vec<String>,
    /// The largest webhook body accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub(crate) body_limit: usize,
    /// At most this many syncs at once.
    #[arg(long, default_value_t = 8)]
    pub(crate) max_concurrent_syncs: usize,
    /// Serve HTTP only: run no scheduled syncs.
    #[arg(long)]
    pub(crate) no_scheduler: bool,
    /// Seconds a shutdown waits for syncs to reach their page boundary.
    #[arg(long, default_value_t = 30)]
    pub(crate) shutdown_grace: u64,
}

#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// At most this many syncs at once in this worker.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// Route a connector's API calls to another base URL (`stripe=http://127.0.0.1:12111`).
    /// Repeatable.
    #[arg(long = "upstream", value_name = "CONNECTOR=URL")]
    pub(crate) upstreams: Vec<String>,
    /// Seconds of a sync's lease and its job's claim (renewed every third of it): a killed
    /// worker's job is taken over this long after its last heartbeat.
    #[arg(long, default_value_t = 60)]
    pub(crate) lease_seconds: u64,
    /// Milliseconds between looks for due jobs.
    #[arg(long, default_value_t = 1000)]
    pub(crate) tick_ms: u64,
    /// Seconds a shutdown waits for syncs to reach their page boundary.
    #[arg(long, default_value_t = 30)]
    pub(crate) shutdown_grace: u64,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Invoices the fake Stripe serves.
    #[arg(long, default_value_t = 1500)]
    pub(crate) invoices: u64,
    /// Contacts the fake HubSpot serves.
    #[arg(long, default_value_t = 600)]
    pub(crate) contacts: usize,
    /// Orders in the fake Airtable base.
    #[arg(long, default_value_t = 300)]
    pub(crate) orders: usize,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ManifestCommand {
    /// Validate a manifest: exit 0 when valid, 1 with one `path: message` line per error,
    /// 2 when the file is missing, unreadable or not JSON.
    Check {
        /// Path to `manifest.json` (or the directory holding it).
        path: PathBuf,
        /// Allow http and loopback URLs and hosts (a connector under local test).
        #[arg(long)]
        test_mode: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WebhookCommand {
    /// Verify one delivery: exit 0 and print `valid`, 1 with the reason on stderr, 2 on usage errors.
    Verify(crate::cmd::webhook::VerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// The connector: a built-in connector id, or a path to a manifest.json.
    pub(crate) connector: String,
    /// The tenant whose installation is synced.
    #[arg(long)]
    pub(crate) tenant: String,
    /// Override the upstream base URL (a local fake in tests and the demo).
    #[arg(long)]
    pub(crate) base_url: Option<String>,
    /// Ignore the stored cursor and pull everything again.
    #[arg(long)]
    pub(crate) full_refresh: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Retries per request after the first attempt (429, 5xx, connection errors).
    #[arg(long, default_value_t = 6)]
    pub(crate) max_retries: u32,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RecordsCommand {
    /// Print a tenant's records of one kind as JSON Lines.
    Export {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The record kind, e.g. `stripe_invoice`.
        #[arg(long)]
        kind: String,
        /// Include records deleted upstream (tombstones).
        #[arg(long)]
        include_deleted: bool,
    },
    /// Edit fields of one record as a tenant user would (formulas recompute, record-condition
    /// workflows react, an audit event is written).
    Update {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The record kind.
        #[arg(long)]
        kind: String,
        /// The record's external id.
        #[arg(long)]
        id: String,
        /// `field=value` (repeatable); the value is read by the field's declared type.
        #[arg(long = "set", value_name = "FIELD=VALUE", required = true)]
        sets: Vec<String>,
        /// Print the updated record as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// A built-in connector id (or use --manifest).
    #[arg(required_unless_present = "manifest", conflicts_with = "manifest")]
    pub(crate) connector: Option<String>,
    /// Any connector's manifest.json (a connector author testing locally: http and loopback
    /// URLs are allowed).
    #[arg(long)]
    pub(crate) manifest: Option<PathBuf>,
    /// The tenant whose account is connected.
    #[arg(long)]
    pub(crate) tenant: String,
    /// Read the tenant's API key from standard input (api_key connectors).
    #[arg(long, conflicts_with_all = ["api_key", "access_token"])]
    pub(crate) api_key_stdin: bool,
    /// The tenant's API key (lands in your shell history: prefer --api-key-stdin).
    #[arg(long, conflicts_with = "access_token")]
    pub(crate) api_key: Option<String>,
    /// Store an OAuth access token obtained elsewhere (tests, migrations).
    #[arg(long)]
    pub(crate) access_token: Option<String>,
    /// With --access-token: its refresh token.
    #[arg(long, requires = "access_token")]
    pub(crate) refresh_token: Option<String>,
    /// With --access-token: seconds until it expires.
    #[arg(long, requires = "access_token")]
    pub(crate) expires_in: Option<u64>,
    /// Read the installation's webhook signing secret from standard input (Stripe's endpoint
    /// secret): stored encrypted, used to verify deliveries.
    #[arg(long, conflicts_with = "api_key_stdin")]
    pub(crate) webhook_secret_stdin: bool,
    /// How long to wait for the OAuth callback, in seconds.
    #[arg(long, default_value_t = 600)]
    pub(crate) timeout: u64,
}

#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// The listing: a built-in connector id (or use --manifest).
    #[arg(required_unless_present = "manifest", conflicts_with = "manifest")]
    pub(crate) listing: Option<String>,
    /// Any connector's manifest.json (a connector author testing locally).
    #[arg(long)]
    pub(crate) manifest: Option<PathBuf>,
    /// The tenant.
    #[arg(long)]
    pub(crate) tenant: String,
    /// Consent to the listing's scopes and hosts without a prompt (scripts).
    #[arg(long)]
    pub(crate) approve: bool,
    /// An installation setting, `KEY=VALUE` (repeatable), validated against the listing.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    pub(crate) settings: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UninstallArgs {
    /// The listing (connector id).
    pub(crate) listing: String,
    /// The tenant.
    #[arg(long)]
    pub(crate) tenant: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum InstallationsCommand {
    /// The tenant's installations.
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// An array of objects with id, connector, version, status, webhook_path, settings.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The connector's manifest.json (its directory is the source that was certified).
    pub(crate) manifest: PathBuf,
    /// The publisher token.
    #[arg(long, env = "TOKEN", hide_env_values = true)]
    pub(crate) token: String,
    /// Print the listing as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PublisherCommand {
    /// Register a publisher and print its token once.
    Create {
        /// The publisher's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum WorkflowsCommand {
    /// Run a failed workflow run again (idempotent: a succeeded run is left alone).
    Retry {
        /// The run id (`wfr_…`).
        run: String,
    },
    /// The tenant's workflow runs.
    Runs {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// As a JSON array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CertifyArgs {
    /// The connector's manifest.json (its directory is the source that is certified).
    pub(crate) manifest: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// A publisher token: submit a passing report to the marketplace registry.
    #[arg(long, env = "TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}
