//! The platform's store: one implementation over sqlx's `Any` driver with portable SQL, so
//! the embedded SQLite file and (later) PostgreSQL run the same code and the same tests; the
//! few dialect differences branch on [`Backend`].
//!
//! Times are stored as BIGINT epoch milliseconds, JSON as TEXT (the `Any` driver has neither
//! timestamp nor JSON types). Every record query is keyed by tenant first.

pub(crate) mod audit;
mod connector_objects;
mod credentials;
mod full_pass;
mod governance;
mod installations;
mod jobs;
mod outbound;
mod rate_limits;
mod records;
mod replay;
mod runs;

use std::path::Path;
use std::str::FromStr;
use std::sync::Once;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use audit::{Actor, AuditAction, AuditEvent, OutboxRow, PendingEvent, SERVICE};
pub use credentials::{CredentialsError, GrantVersion, OAuth2Grant, StoredGrant, Swap};
pub use governance::{
    Approval, Consent, ConsentDiff, InstallOutcome, InstallRequest, WebhookSecretSource,
    validate_settings,
};
pub use installations::Installation;
pub(crate) use installations::validate_tenant;
pub use outbound::RunOutbound;
pub use rate_limits::StoreRateLimit;
pub use records::{CommitScope, ExportedRecord, Fence, InstallationSink, Tombstones};
pub use runs::{LockHolder, NewRun, RunRecord, RunStatus, RunTotals};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (WAL).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A store failure, normalized across backends.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open the store {location}: {message}")]
    Open {
        /// Path or URL (without password).
        location: String,
        /// Why.
        message: String,
    },
    /// A query failed.
    #[error("store query failed ({context}): {source}")]
    Query {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Stored data could not be decoded (a corrupt row or a newer schema).
    #[error("stored {what} is unreadable: {message}")]
    Corrupt {
        /// What was being read.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A value could not be stored.
    #[error("cannot store {what}: {message}")]
    Invalid {
        /// What.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The vault could not seal or open a secret.
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    /// This sync no longer holds the installation's lease (another run took it over after it
    /// expired); the commit was refused and nothing of it was stored.
    #[error("run {run_id} lost its lease on installation {installation}; commit refused")]
    LeaseLost {
        /// The installation.
        installation: String,
        /// The run that lost the lease.
        run_id: String,
    },
}

pub(crate) fn query_error(context: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy {
    move |source| StoreError::Query { context, source }
}

/// The platform's store. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Opens (creating when missing) and migrates the store at `location`: a SQLite file path,
    /// a `sqlite:` URL, or a `postgres://` URL.
    pub async fn open(location: &str) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let (backend, url) =
            if location.starts_with("postgres://") || location.starts_with("postgresql://") {
                (Backend::Postgres, location.to_owned())
            } else {
                let path = location.strip_prefix("sqlite://").unwrap_or(location);
                let path = path.strip_prefix("sqlite:").unwrap_or(path);
                if path.is_empty() {
                    return Err(StoreError::Open {
                        location: location.to_owned(),
                        message: "empty path".into(),
                    });
                }
                if let Some(parent) = Path::new(path).parent()
                    && !parent.as_os_str().is_empty()
                    && !parent.exists()
                {
                    return Err(StoreError::Open {
                        location: location.to_owned(),
                        message: format!("directory {} does not exist", parent.display()),
                    });
                }
                (
                    Backend::Sqlite,
                    format!("sqlite://{}?mode=rwc", encode_path(path)),
                )
            };
        let shown = redact_url(location);
        let open_error = |message: String| StoreError::Open {
            location: shown.clone(),
            message,
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| open_error(e.to_string()))?;
        let pool_options = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 8,
            })
            // Idle reaping and connection tests arm timers that distort tokio's paused clock in
            // tests; neither is needed for a local file.
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(backend == Backend::Postgres);
        let pool_options = if backend == Backend::Sqlite {
            pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            })
        } else {
            // Statements are prepared once per connection; after five runs PostgreSQL may switch
            // to a generic plan, and for the commit's `external_id IN (…100 parameters…)` probe
            // that plan scanned the whole table (≈ 350 ms per commit at 100k records, measured
            // by `ivory-bench store --pg`). Planning each run with its values keeps the primary
            // key lookups (a fraction of a millisecond of planning).
            pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET plan_cache_mode = force_custom_plan")
                        .await?;
                    Ok(())
                })
            })
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|e| open_error(e.to_string()))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| open_error(format!("migration failed: {e}")))?;
        Ok(Self { pool, backend })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite, so writers queue on the busy
    /// timeout instead of failing on lock upgrade).
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(query_error("begin transaction"))
    }

    /// Checks the store answers (a health check).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(query_error("ping the store"))?;
        Ok(())
    }

    /// Closes the pool (flushes the WAL on SQLite).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn encode_path(path: &str) -> String {
    path.replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23")
}

fn redact_url(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => location.to_owned(),
    }
}

/// Epoch milliseconds of a timestamp.
pub(crate) fn to_ms(at: jiff::Timestamp) -> i64 {
    at.as_millisecond()
}

/// A timestamp from epoch milliseconds.
pub(crate) fn from_ms(ms: i64) -> Result<jiff::Timestamp, StoreError> {
    jiff::Timestamp::from_millisecond(ms).map_err(|e| StoreError::Corrupt {
        what: "timestamp",
        message: e.to_string(),
    })
}
