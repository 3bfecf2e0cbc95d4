//! `ivory demo`: the main job with zero setup.
//!
//! Everything a tenant and an operator would do, in one process, on loopback:
//!
//! 1. Starts the fake Stripe, HubSpot and Airtable APIs, a fake OAuth authorization server, and
//!    the platform itself ([`ivory_server::Server`], what `ivory serve` runs) on a free port.
//! 2. Tenant `demo` installs the three reference connectors (consent to their scopes and hosts
//!    recorded) and connects them: Stripe with an API key; HubSpot and Airtable through the
//!    real OAuth dance — the consent URL is followed to the fake authorization server, which
//!    redirects to the platform's callback, which checks the state and exchanges the code.
//! 3. Syncs the three (progress bars on a terminal).
//! 4. A contact is edited on both sides, and another on the platform only; the next HubSpot
//!    sync decides the conflict by the connector's declared policy (newest wins) and pushes
//!    the platform's edits.
//! 5. A signed `invoice.payment_failed` goes to the platform's real webhook endpoint over HTTP:
//!    stored, the invoice marked, the follow-up workflow run, a task created. A tampered copy is
//!    refused with its reason.
//! 6. Prints the report: records per object, formula values, the workflow run and its task,
//!    the conflict decisions, requests/retries/429s per connector.
//!
//! The state stays in the `--db` SQLite file for `ivory records export`. The fakes serve the
//! same data every time (fixed ids and times), so a second run creates nothing: no record,
//! workflow run or task twice (the webhook is answered as an already-processed event).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ivory_connector_hubspot::CONTACT_KIND;
use ivory_runtime::connection::load_sync_credentials;
use ivory_runtime::oauth::{ClientAuth, OAuthApp, OAuthEndpoints, flow};
use ivory_runtime::objects::FieldInput;
use ivory_runtime::store::{
    Actor, Approval, InstallRequest, StoredGrant, Tombstones, WebhookSecretSource,
};
use ivory_runtime::{Installation, RunError, Runner, Store, SyncOptions, SyncSummary, Vault};
use ivory_sdk::webhook::{Delivery, Scheme, Verifier};
use ivory_sdk::{Clock, Progress, ProgressSnapshot, Secret};
use ivory_server::{Connectors, OAuthSetup, Server, ServerConfig};
use ivory_testkit::airtable::{self, FakeAirtable};
use ivory_testkit::hubspot::{self, FakeHubSpot, Limits};
use ivory_testkit::oauth::{self as fake_oauth, OAuthServer};
use ivory_testkit::stripe::{FakeStripe, TEST_API_KEY};
use jiff::Timestamp;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::connectors::builtin;
use super::{runtime, vault_for};
use crate::cli::DemoArgs;

const TENANT: &str = "demo";
const WEBHOOK_SECRET: &str = "whsec_test_ivory_demo_not_a_real_secret";
/// The fakes' data is anchored here (2026-03-01), so every run serves the same records.
const ANCHOR_S: i64 = 1_772_323_200;
/// The invoice whose payment fails.
const FAILING_INVOICE: &str = "in_00000042";

pub(crate) fn run(db: &str, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let vault = Arc::new(vault_for(db)?);
    runtime()?.block_on(async {
        let started = Instant::now();
        let store = Store::open(db).await?;
        let outcome = demo(&store, vault, db, args).await;
        store.close().await;
        let report = outcome?;
        let mut out = std::io::stdout().lock();
        for line in report {
            writeln!(out, "{line}")?;
        }
        writeln!(
            out,
            "\nDone in {:.1} s. The state is in {db}; for example:",
            started.elapsed().as_secs_f64()
        )?;
        for kind in ["stripe_invoice", "task", CONTACT_KIND, "airtable_orders"] {
            writeln!(
                out,
                "  ivory --db {db} records export --tenant {TENANT} --kind {kind}"
            )?;
        }
        writeln!(
            out,
            "Run it again: nothing is created twice (no record, workflow run or task)."
        )?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The fakes, the platform, and the report lines.
async fn demo(
    store: &Store,
    vault: Arc<Vault>,
    db: &str,
    args: &DemoArgs,
) -> anyhow::Result<Vec<String>> {
    let mut report = vec![
        format!("Ivory demo — tenant {TENANT:?}, store {db}"),
        String::new(),
    ];

    // 1. The fake upstreams and the platform on loopback.
    let stripe = FakeStripe::start_with_key(args.invoices, ANCHOR_S, TEST_API_KEY).await?;
    let hubspot = FakeHubSpot::start(Limits::HUBSPOT).await?;
    hubspot.set_now_ms(hubspot::START_MS);
    let contact_ids = hubspot.create_contacts(args.contacts.max(3), hubspot::START_MS);
    let airtable = FakeAirtable::start(args.orders, args.orders.div_ceil(6).max(1)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let platform = Url::parse(&format!("http://{}", listener.local_addr()?))?;
    let callback = platform.join("/oauth/callback")?;
    let authorization_server =
        OAuthServer::start(&[callback.as_str()], Duration::from_secs(1800)).await?;
    let oauth_app = |client_auth| OAuthApp {
        client_id: fake_oauth::CLIENT_ID.to_owned(),
        client_secret: Some(Secret::new(fake_oauth::CLIENT_SECRET)),
        redirect_uri: callback.clone(),
        client_auth,
    };
    let token_url = authorization_server.url("/oauth2/token");
    let mut config = ServerConfig {
        scheduler: false,
        oauth_from_env: false,
        ..ServerConfig::default()
    };
    config.upstreams.insert("stripe".into(), stripe.base_url());
    config
        .upstreams
        .insert("hubspot".into(), hubspot.base_url());
    config
        .upstreams
        .insert("airtable".into(), airtable.base_url());
    for (id, auth) in [
        ("hubspot", ClientAuth::RequestBody),
        ("airtable", ClientAuth::Basic),
    ] {
        config.oauth.insert(
            id.into(),
            OAuthSetup {
                app: oauth_app(auth),
                token_url: Some(token_url.clone()),
            },
        );
    }
    let mut connectors = Connectors::default();
    for id in ["stripe", "hubspot", "airtable"] {
        let builtin = builtin(id).ok_or_else(|| anyhow::anyhow!("built-in {id} is missing"))?;
        connectors.add(builtin.manifest, builtin.connector);
    }
    let server = Server::new(
        store.clone(),
        vault.clone(),
        connectors.clone(),
        config.clone(),
        Clock::system(),
    )?;
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(server.clone().run(listener, shutdown.clone()));
    report.push(format!(
        "Platform (ivory serve) at {platform} · fake Stripe {} · fake HubSpot {} · fake Airtable {} · fake OAuth server {}",
        stripe.base_url(),
        hubspot.base_url(),
        airtable.base_url(),
        authorization_server.url("")
    ));

    let result = scenario(
        store,
        &vault,
        &connectors,
        &config,
        &platform,
        Fakes {
            stripe: &stripe,
            hubspot: &hubspot,
            contact_ids: &contact_ids[..3],
            authorization_server: &authorization_server,
        },
        &mut report,
    )
    .await;
    shutdown.cancel();
    match serving.await {
        Ok(served) => served?,
        Err(error) => anyhow::bail!("the platform server task failed: {error}"),
    }
    result?;
    Ok(report)
}

struct Fakes<'a> {
    stripe: &'a FakeStripe,
    hubspot: &'a FakeHubSpot,
    /// The contacts the scenario edits.
    contact_ids: &'a [String],
    authorization_server: &'a OAuthServer,
}

#[allow(clippy::too_many_lines)]
async fn scenario(
    store: &Store,
    vault: &Arc<Vault>,
    connectors: &Connectors,
    config: &ServerConfig,
    platform: &Url,
    fakes: Fakes<'_>,
    report: &mut Vec<String>,
) -> anyhow::Result<()> {
    let admin = Actor::User("demo-admin".into());
    ivory_sdk::fetch::install_tls_provider();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()?;

    // 2. Install (consent recorded) and connect.
    report.push(String::new());
    report.push("Installed and connected (consent to scopes and hosts recorded):".into());
    let mut installations = BTreeMap::new();
    for id in ["stripe", "hubspot", "airtable"] {
        let entry = connectors
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("connector {id} is missing"))?;
        let mut settings = BTreeMap::from([("schedule".to_owned(), "15m".to_owned())]);
        if id == "airtable" {
            settings.insert("baseId".into(), airtable::BASE_ID.into());
        }
        store
            .install(
                &InstallRequest {
                    tenant: TENANT,
                    manifest: &entry.manifest,
                    settings,
                    actor: &admin,
                    approval: Approval::Approved,
                    now: Clock::system().now(),
                },
                vault,
            )
            .await?;
        let installation = store
            .installation(TENANT, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the {id} installation vanished"))?;
        let how = if id == "stripe" {
            let now = Clock::system().now();
            store
                .put_credentials(
                    &installation.id,
                    &StoredGrant::ApiKey(Secret::new(TEST_API_KEY)),
                    vault,
                    now,
                )
                .await?;
            store
                .set_webhook_secret(
                    &installation,
                    &Secret::new(WEBHOOK_SECRET),
                    WebhookSecretSource::Tenant,
                    vault,
                    &admin,
                    now,
                )
                .await?;
            "API key (stored sealed); webhook secret set".to_owned()
        } else {
            let (access, refresh) = if id == "hubspot" {
                (hubspot::ACCESS_TOKEN, hubspot::REFRESH_TOKEN)
            } else {
                (
                    airtable::TEST_ACCESS_TOKEN,
                    "airtable-demo-refresh-token-not-real",
                )
            };
            fakes
                .authorization_server
                .issue_on_exchange(access, refresh);
            oauth_dance(
                store,
                vault,
                config,
                &entry.manifest,
                &installation,
                fakes.authorization_server,
                &http,
            )
            .await?
        };
        report.push(format!(
            "  {id:<9} {} · hosts {} · {how}",
            installation.id,
            entry.manifest.hosts.join(", ")
        ));
        installations.insert(id, installation);
    }

    // Each demo run edits the contacts anew (the edits name the run).
    let round = store.runs_of(&installations["hubspot"].id).await?.len() / 2 + 1;

    // 3. Syncs, with progress bars on a terminal.
    let runner = Runner::new(store.clone(), Clock::system());
    let bars = if std::io::stderr().is_terminal() {
        MultiProgress::new()
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    };
    let mut rows = Vec::new();
    for id in ["stripe", "hubspot", "airtable"] {
        let summary = sync(
            &runner,
            store,
            vault,
            connectors,
            config,
            &installations[id],
            &bars,
        )
        .await?;
        rows.push(("first", summary));
    }

    // 4. Edits on both sides, then HubSpot's next sync decides them.
    let contacts = fakes.contact_ids;
    // Edit times are a couple of minutes back on the wall clock: later than anything a
    // previous run wrote, inside the connector's lookback, never in the runner's future.
    let base_ms = Clock::system().now().as_millisecond() - 180_000;
    let at = |offset_ms: i64| Timestamp::from_millisecond(base_ms + offset_ms);
    let edit = |id: String, name: String, offset_ms: i64| {
        let store = store.clone();
        let admin = admin.clone();
        async move {
            let when = at(offset_ms)?;
            store
                .update_record_fields(
                    TENANT,
                    CONTACT_KIND,
                    &id,
                    &[("firstname".to_owned(), FieldInput::Text(name))],
                    &admin,
                    when,
                )
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
    };
    // The first: changed in HubSpot after the platform's edit — HubSpot's version is newer.
    let name = |who: &str, side: &str| format!("{who} ({side} edit, demo run {round})");
    edit(contacts[0].clone(), name("Ada", "Ivorycom"), 60_000).await?;
    fakes.hubspot.edit(
        &contacts[0],
        &[("firstname", &name("Ada", "HubSpot"))],
        base_ms + 90_000,
    );
    // The second: changed in HubSpot first, then on the platform — the platform's is newer.
    fakes.hubspot.edit(
        &contacts[1],
        &[("firstname", &name("Grace", "HubSpot"))],
        base_ms + 60_000,
    );
    edit(contacts[1].clone(), name("Grace", "Ivorycom"), 90_000).await?;
    // The third: changed on the platform only — pushed to HubSpot.
    edit(contacts[2].clone(), name("Edsger", "Ivorycom"), 60_000).await?;
    fakes.hubspot.set_now_ms(base_ms + 120_000);
    let conflicts = sync(
        &runner,
        store,
        vault,
        connectors,
        config,
        &installations["hubspot"],
        &bars,
    )
    .await?;
    rows.push(("both sides", conflicts.clone()));

    // 5. A signed invoice.payment_failed through the real webhook endpoint.
    let stripe_installation = &installations["stripe"];
    let endpoint = platform.join(&format!("/webhooks/{}", stripe_installation.id))?;
    let event = fakes
        .stripe
        .fail_payment(FAILING_INVOICE)
        .ok_or_else(|| anyhow::anyhow!("the fake has no invoice {FAILING_INVOICE}"))?;
    let body = serde_json::to_vec(&event)?;
    let verifier = Verifier::new(Scheme::Stripe, WEBHOOK_SECRET)?;
    let signed = verifier.sign(
        Delivery::new(Default::default(), body.clone()),
        Clock::system().now(),
    )?;
    let mut tampered = body;
    if let Some(byte) = tampered.iter_mut().rev().find(|b| b.is_ascii_digit()) {
        *byte = if *byte == b'9' { b'1' } else { *byte + 1 };
    }
    let tampered = Delivery::new(signed.headers().clone(), tampered);
    let mut webhook_lines = Vec::new();
    for (label, delivery) in [
        ("signed invoice.payment_failed", &signed),
        ("tampered copy", &tampered),
    ] {
        let mut request = http.post(endpoint.clone());
        for (name, value) in delivery.headers() {
            request = request.header(name, value);
        }
        let response = request.body(delivery.body().to_vec()).send().await?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let detail = match answer["status"].as_str() {
            Some("accepted") => {
                let runs: Vec<String> = answer["workflow_runs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        format!(
                            "workflow {} {}",
                            r["workflow"].as_str().unwrap_or("?"),
                            r["status"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                format!("accepted; {}", runs.join(", "))
            }
            Some("duplicate") => {
                "already processed (a legitimate retry: nothing runs twice)".into()
            }
            Some(other) => format!("{other}: {}", answer["reason"].as_str().unwrap_or("")),
            None => answer.to_string(),
        };
        webhook_lines.push(format!("  {label}: HTTP {status} {detail}"));
    }

    // 6. The report.
    report.push(String::new());
    report.push(format!(
        "{:<9} {:<11} {:>8} {:>8} {:>9} {:>8} {:>6} {:>6} {:>8} {:>5}",
        "connector",
        "sync",
        "created",
        "updated",
        "unchanged",
        "deleted",
        "pages",
        "reqs",
        "retries",
        "429s"
    ));
    for (label, s) in &rows {
        let t = &s.totals;
        report.push(format!(
            "{:<9} {:<11} {:>8} {:>8} {:>9} {:>8} {:>6} {:>6} {:>8} {:>5}",
            s.connector,
            label,
            t.records_created,
            t.records_updated,
            t.records_unchanged,
            t.records_deleted,
            t.pages,
            t.requests,
            t.retries,
            t.responses_429
        ));
    }
    report.push(String::new());
    report.push("Records per object:".into());
    for (kind, live, deleted) in store.record_counts(TENANT).await? {
        let deleted = if deleted > 0 {
            format!(" ({deleted} deleted upstream)")
        } else {
            String::new()
        };
        report.push(format!("  {kind:<24} {live:>6}{deleted}"));
    }
    report.push(String::new());
    let c = &conflicts.conflicts;
    report.push(format!(
        "HubSpot conflicts (policy newest_wins): {} won by HubSpot, {} by Ivorycom ({} ties); {} platform edits pushed",
        c.source_wins, c.platform_wins, c.ties, conflicts.outbound.pushed
    ));
    for id in contacts {
        let ours = store
            .find_record(TENANT, CONTACT_KIND, id)
            .await?
            .map(|r| r.data["firstname"].clone())
            .unwrap_or(Value::Null);
        let theirs = fakes
            .hubspot
            .contact(id)
            .map(|c| c["properties"]["firstname"].clone())
            .unwrap_or(Value::Null);
        report.push(format!(
            "  contact {id}: Ivorycom {ours} · HubSpot {theirs}"
        ));
    }
    report.push(String::new());
    report.push(format!("Stripe webhook (POST {endpoint}):"));
    report.extend(webhook_lines);
    let invoice = store
        .find_record(TENANT, "stripe_invoice", FAILING_INVOICE)
        .await?
        .map(|r| r.data)
        .unwrap_or_default();
    report.push(format!(
        "  invoice {FAILING_INVOICE}: status {}, amount_due {}, amount_paid {}, outstanding (platform formula) {}, payment_failed {}",
        invoice["status"], invoice["amount_due"], invoice["amount_paid"], invoice["outstanding"], invoice["payment_failed"]
    ));
    for run in store.workflow_runs(TENANT).await? {
        report.push(format!(
            "  workflow run {}: {} {} (trigger {})",
            run.id,
            run.workflow,
            run.status.as_str(),
            run.delivery_id
        ));
    }
    let tasks: Vec<_> = store
        .export_records(TENANT, "task", Tombstones::Exclude)
        .try_collect()
        .await?;
    for task in &tasks {
        report.push(format!(
            "  follow-up task {}: {}",
            task.id, task.data["title"]
        ));
    }
    let metrics = server_metrics(&http, platform).await;
    if !metrics.is_empty() {
        report.push(format!("  platform metrics: {metrics}"));
    }
    Ok(())
}

/// Consent URL → fake authorization server (the user approves) → 302 to the platform's
/// callback → state checked, code exchanged, grant stored sealed.
async fn oauth_dance(
    store: &Store,
    vault: &Vault,
    config: &ServerConfig,
    manifest: &ivory_sdk::manifest::Manifest,
    installation: &Installation,
    authorization_server: &OAuthServer,
    http: &reqwest::Client,
) -> anyhow::Result<String> {
    let setup = config
        .oauth
        .get(&manifest.id)
        .ok_or_else(|| anyhow::anyhow!("no OAuth app for {}", manifest.id))?;
    let mut endpoints = OAuthEndpoints::from_manifest(manifest)?;
    endpoints.authorization_url = authorization_server.url("/oauth2/authorize");
    if let Some(token_url) = &setup.token_url {
        endpoints.token_url = token_url.clone();
    }
    let authorization = flow::begin(
        store,
        vault,
        &setup.app,
        &endpoints,
        installation,
        Clock::system().now(),
    )
    .await?;
    let response = http.get(authorization.url.clone()).send().await?;
    let status = response.status();
    let page = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "the OAuth dance for {} failed ({status}): {page}",
            manifest.id
        );
    }
    Ok(format!(
        "OAuth 2.0 with PKCE through the fake authorization server (scopes {})",
        manifest.connection.scopes.join(" ")
    ))
}

async fn sync(
    runner: &Runner,
    store: &Store,
    vault: &Arc<Vault>,
    connectors: &Connectors,
    config: &ServerConfig,
    installation: &Installation,
    bars: &MultiProgress,
) -> anyhow::Result<SyncSummary> {
    let id = installation.connector_id.as_str();
    let entry = connectors
        .get(id)
        .ok_or_else(|| anyhow::anyhow!("connector {id} is missing"))?;
    let setup = config.oauth.get(id);
    let app = setup
        .map(|s| s.app.clone())
        .ok_or_else(|| format!("no OAuth app for {id}"));
    let loaded = load_sync_credentials(
        store,
        vault.clone(),
        &entry.manifest,
        installation,
        app,
        setup.and_then(|s| s.token_url.clone()),
        runner.clock(),
    )
    .await?;
    let bar = bars.add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix:<9} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(id.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    let progress = Arc::new(BarProgress(bar.clone()));
    let result = runner
        .sync(
            TENANT,
            &entry.manifest,
            entry.connector.as_ref(),
            loaded.credentials,
            SyncOptions {
                base_url: config.upstreams.get(id).cloned(),
                token_source: loaded.token_source,
                progress: Some(progress as Arc<dyn Progress>),
                ..SyncOptions::default()
            },
        )
        .await;
    match result {
        Ok(summary) => {
            bar.finish_with_message(format!(
                "{} records · {} pages · {} requests · done",
                summary.records_upserted, summary.totals.pages, summary.totals.requests
            ));
            Ok(summary)
        }
        Err(RunError::Failed { summary, error }) => {
            bar.abandon_with_message(format!("failed: {error}"));
            anyhow::bail!("the {} sync failed: {error}", summary.connector)
        }
        Err(other) => {
            bar.abandon_with_message(format!("failed: {other}"));
            Err(other.into())
        }
    }
}

struct BarProgress(ProgressBar);

impl Progress for BarProgress {
    fn on_commit(&self, s: &ProgressSnapshot) {
        self.0.set_message(format!(
            "records {} · pages {} · requests {} · retries {} · 429s {}",
            s.records.upserted(),
            s.fetch.pages,
            s.fetch.requests,
            s.fetch.retries,
            s.fetch.responses_429
        ));
    }
}

/// The platform's webhook verdicts, read from its own `/metrics`.
async fn server_metrics(http: &reqwest::Client, platform: &Url) -> String {
    let Ok(url) = platform.join("/metrics") else {
        return String::new();
    };
    let Ok(response) = http.get(url).send().await else {
        return String::new();
    };
    let text = response.text().await.unwrap_or_default();
    let mut verdicts: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("ivory_webhook_deliveries_total{"))
        .filter_map(|l| {
            let outcome = l.split("outcome=\"").nth(1)?.split('"').next()?;
            let value = l.rsplit(' ').next()?;
            Some(format!("webhook {outcome} {value}"))
        })
        .collect();
    verdicts.sort();
    verdicts.join(", ")
}
