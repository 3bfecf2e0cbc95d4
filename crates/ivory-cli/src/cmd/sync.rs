//! `ivory sync CONNECTOR --tenant T [--base-url URL] [--full-refresh] [--json]`.
//!
//! Exit codes: 0 the sync succeeded; 1 it failed (the reason on stderr; with `--json` the run's
//! summary is still printed on stdout); 2 usage errors (unknown connector, bad URL or tenant).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use ivory_runtime::oauth::{OAuthApp, OAuthEndpoints, OAuthTokenSource};
use ivory_runtime::store::StoredGrant;
use ivory_runtime::{RunError, Runner, Store, StoreError, SyncOptions, SyncSummary};
use ivory_sdk::fetch::{RetryPolicy, TokenSource};
use ivory_sdk::manifest::{AuthType, Manifest};
use ivory_sdk::{Clock, Credentials, Progress, ProgressSnapshot};

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
        ..SyncOptions::default()
    };
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let clock = Clock::system();
        let credentials =
            match credentials_for(db, &store, &args.tenant, &builtin.manifest, &clock).await? {
                Ok((credentials, source)) => {
                    options.token_source = source;
                    credentials
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

type Loaded = (Credentials, Option<Arc<dyn TokenSource>>);

/// The tenant's stored credentials for the connector (decrypted), and for OAuth a token source
/// that refreshes them; `Err` with a message telling the user what to do when they are missing.
async fn credentials_for(
    db: &str,
    store: &Store,
    tenant: &str,
    manifest: &Manifest,
    clock: &Clock,
) -> anyhow::Result<Result<Loaded, String>> {
    if manifest.connection.auth == AuthType::None {
        return Ok(Ok((Credentials::None, None)));
    }
    let missing = || {
        format!(
            "tenant {tenant} has not connected {id}: run `ivory connect {id} --tenant {tenant}` first",
            id = manifest.id
        )
    };
    let Some(installation) = store.installation(tenant, &manifest.id).await? else {
        return Ok(Err(missing()));
    };
    let vault = Arc::new(vault_for(db)?);
    let Some((grant, _)) = store.credentials(&installation.id, &vault).await? else {
        return Ok(Err(missing()));
    };
    let credentials = grant.to_credentials();
    let source: Option<Arc<dyn TokenSource>> =
        match (&grant, OAuthEndpoints::from_manifest(manifest)) {
            (StoredGrant::OAuth2(grant), Ok(endpoints)) => {
                let app = match OAuthApp::from_env(|k| std::env::var(k).ok()) {
                    Ok(app) => app,
                    // A grant that can never be refreshed needs no OAuth app: its access
                    // token is sent as it is, until the upstream refuses it.
                    Err(_) if grant.refresh_token.is_none() => return Ok(Ok((credentials, None))),
                    Err(error) => return Ok(Err(error.to_string())),
                };
                Some(Arc::new(OAuthTokenSource::new(
                    store.clone(),
                    vault,
                    app,
                    endpoints.token_url,
                    &installation.id,
                    clock.clone(),
                    ivory_runtime::oauth::http::token_client()?,
                )))
            }
            _ => None,
        };
    Ok(Ok((credentials, source)))
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
