//! `ivory sync CONNECTOR --tenant T [--base-url URL] [--full-refresh] [--json]`.
//!
//! Exit codes: 0 the sync succeeded; 1 it failed (the reason on stderr; with `--json` the run's
//! summary is still printed on stdout); 2 usage errors (unknown connector, bad URL or tenant).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use ivory_runtime::connection::{ConnectionError, SyncCredentials, load_sync_credentials};
use ivory_runtime::oauth::OAuthApp;
use ivory_runtime::{RunError, Runner, Store, StoreError, SyncOptions, SyncSummary};
use ivory_sdk::fetch::RetryPolicy;
use ivory_sdk::manifest::{AuthType, Manifest};
use ivory_sdk::{Clock, Progress, ProgressSnapshot};

use super::connectors::{BUILTIN_IDS, builtin};
use super::{runtime, usage_error, vault_for};
use crate::cli::SyncArgs;

pub(crate) fn run(db: &str, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let Some(builtin) = builtin(&args.connector) else {
        return Ok(usage_error(format!(
            "unknown connector {:?} (built-in: {})",
            args.connector,
            BUILTIN_IDS.join(", ")
        )));
    };
    let base_url = match args.base_url.as_deref().map(url::Url::parse).transpose() {
        Ok(url) => url,
        Err(e) => return Ok(usage_error(format!("--base-url: {e}"))),
    };
    let progress = (!args.json && std::io::stderr().is_terminal()).then(TerminalProgress::new);
    let mut options = SyncOptions {
        full_refresh: args.full_refresh,
        base_url,
        retry: RetryPolicy {
            max_retries: args.max_retries,
            ..RetryPolicy::default()
        },
        progress: progress.clone().map(|p| Arc::new(p) as Arc<dyn Progress>),
        // Share the installation's rate limit with workers and servers on the same store.
        shared_rate_limit: true,
        ..SyncOptions::default()
    };
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let clock = Clock::system();
        let credentials =
            match credentials_for(db, &store, &args.tenant, &builtin.manifest, &clock).await? {
                Ok(loaded) => {
                    options.token_source = loaded.token_source;
                    loaded.credentials
                }
                Err(message) => {
                    eprintln!("error: {message}");
                    return Ok(ExitCode::from(1));
                }
            };
        let runner = Runner::new(store.clone(), clock);
        let result = runner
            .sync(
                &args.tenant,
                &builtin.manifest,
                builtin.connector.as_ref(),
                credentials,
                options,
            )
            .await;
        if let Some(progress) = &progress {
            progress.bar.finish_and_clear();
        }
        store.close().await;
        let code = match result {
            Ok(summary) => {
                print_summary(&summary, args.json)?;
                ExitCode::SUCCESS
            }
            Err(RunError::Failed { summary, error }) => {
                if args.json {
                    print_summary(&summary, true)?;
                }
                eprintln!(
                    "error: sync of {} for tenant {} failed: {error}",
                    summary.connector, summary.tenant
                );
                ExitCode::from(1)
            }
            Err(error @ RunError::NeedsReconsent { .. }) => {
                eprintln!("error: {error}");
                ExitCode::from(1)
            }
            Err(RunError::Store(StoreError::Invalid { what, message })) => {
                usage_error(format!("{what}: {message}"))
            }
            Err(other) => {
                eprintln!("error: {other}");
                ExitCode::from(1)
            }
        };
        Ok(code)
    })
}

/// The tenant's stored credentials for the connector; `Err` with a message telling the user
/// what to do when they are missing or unusable.
async fn credentials_for(
    db: &str,
    store: &Store,
    tenant: &str,
    manifest: &Manifest,
    clock: &Clock,
) -> anyhow::Result<Result<SyncCredentials, String>> {
    if manifest.connection.auth == AuthType::None {
        return Ok(Ok(SyncCredentials::default()));
    }
    let Some(installation) = store.installation(tenant, &manifest.id).await? else {
        return Ok(Err(ConnectionError::NotConnected {
            tenant: tenant.to_owned(),
            connector: manifest.id.clone(),
        }
        .to_string()));
    };
    let vault = Arc::new(vault_for(db)?);
    let app =
        OAuthApp::for_connector(&manifest.id, |k| std::env::var(k).ok()).map_err(|e| e.to_string());
    match load_sync_credentials(store, vault, manifest, &installation, app, None, clock).await {
        Ok(loaded) => Ok(Ok(loaded)),
        Err(error @ (ConnectionError::NotConnected { .. } | ConnectionError::OAuthApp(_))) => {
            Ok(Err(error.to_string()))
        }
        Err(other) => Err(other.into()),
    }
}

fn print_summary(summary: &SyncSummary, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, summary)?;
        writeln!(out)?;
        return Ok(());
    }
    let t = &summary.totals;
    writeln!(
        out,
        "Synced {} for tenant {} ({}): {:?} in {:.1} s",
        summary.connector,
        summary.tenant,
        summary.run_id,
        summary.status,
        Duration::from_millis(summary.duration_ms).as_secs_f64()
    )?;
    writeln!(
        out,
        "  records   {} upserted ({} created, {} updated, {} unchanged), {} deleted",
        summary.records_upserted,
        t.records_created,
        t.records_updated,
        t.records_unchanged,
        t.records_deleted
    )?;
    writeln!(out, "  pages     {}", t.pages)?;
    writeln!(
        out,
        "  requests  {} ({} retries, {} × 429, {} ms waiting)",
        t.requests, t.retries, t.responses_429, t.slept_ms
    )?;
    writeln!(
        out,
        "  cursor    {}",
        summary.cursor.as_deref().unwrap_or("none")
    )?;
    let (c, o) = (&summary.conflicts, &summary.outbound);
    if o.pushed + o.created + o.superseded > 0 {
        writeln!(
            out,
            "  pushed    {} platform edits upstream ({} created there), {} superseded by the upstream",
            o.pushed, o.created, o.superseded
        )?;
    }
    if c.source_wins + c.platform_wins > 0 {
        writeln!(
            out,
            "  conflicts {} won by the upstream, {} by the platform ({} decided by the tie rule)",
            c.source_wins, c.platform_wins, c.ties
        )?;
    }
    for note in &summary.notes {
        writeln!(out, "  note      {note}")?;
    }
    Ok(())
}

/// A spinner on stderr with live counts.
#[derive(Clone)]
pub(crate) struct TerminalProgress {
    bar: ProgressBar,
}

impl TerminalProgress {
    pub(crate) fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }
}

impl Progress for TerminalProgress {
    fn on_commit(&self, s: &ProgressSnapshot) {
        self.bar.set_message(format!(
            "records {} · pages {} · requests {} · retries {} · 429s {}",
            s.records.upserted(),
            s.fetch.pages,
            s.fetch.requests,
            s.fetch.retries,
            s.fetch.responses_429
        ));
    }
}
