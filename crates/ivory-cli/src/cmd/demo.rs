//! `ivory demo`: the main job with zero setup.
//!
//! Starts the fake items API on loopback inside this process, then, for tenant `demo`: a full
//! sync of `example-items` (opaque cursor), new items upstream, an incremental sync that
//! resumes from the committed cursor, and the same with `example-changes` (updated_at
//! watermark). The state stays in the `--db` SQLite file for `ivory records export`. Running it
//! twice is idempotent: the second run finds every record unchanged.
//!
//! Then the Stripe reference connector against the fake Stripe: installed with consent,
//! connected with the tenant's (fake) key, synced; a signed `invoice.payment_failed` goes
//! through the platform's webhook ingress and runs the follow-up workflow (the invoice is
//! marked, a task is created); a tampered copy is rejected; the invoice mirror carries the
//! platform-computed `outstanding` formula.
//!
//! HubSpot and Airtable, and `ivory serve`'s HTTP ingress, join the demo with their issues.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use ivory_runtime::store::{Actor, Approval, InstallRequest};
use ivory_runtime::{Runner, Store, SyncOptions, SyncSummary};
use ivory_sdk::{Clock, Credentials};
use ivory_testkit::items::{BASE_UPDATED, ItemsUpstream};

use super::connectors::builtin;
use super::runtime;
use crate::cli::DemoArgs;

const TENANT: &str = "demo";

pub(crate) fn run(db: &str, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let started = Instant::now();
        let store = Store::open(db).await?;
        let runner = Runner::new(store.clone(), Clock::system());
        let fake = ItemsUpstream::start(args.items, 3, 600).await?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "Ivory demo — store: {db}, fake items API: {}",
            fake.base_url()
        )?;
        writeln!(out)?;

        let mut rows = Vec::new();
        for id in ["example-items", "example-changes"] {
            let Some(builtin) = builtin(id) else {
                anyhow::bail!("built-in connector {id} is missing");
            };
            // Consent recorded, as a tenant admin would give it.
            let vault = super::vault_for(db)?;
            let request = InstallRequest {
                tenant: TENANT,
                manifest: &builtin.manifest,
                settings: Default::default(),
                actor: &Actor::User("demo-admin".into()),
                approval: Approval::Approved,
                now: Clock::system().now(),
            };
            store.install(&request, &vault).await?;
            let options = || SyncOptions {
                base_url: Some(fake.base_url()),
                ..SyncOptions::default()
            };
            let sync = |label: &'static str| {
                let runner = runner.clone();
                let builtin = &builtin;
                async move {
                    runner
                        .sync(
                            TENANT,
                            &builtin.manifest,
                            builtin.connector.as_ref(),
                            Credentials::None,
                            options(),
                        )
                        .await
                        .map(|summary| (label, summary))
                }
            };
            rows.push(sync("first").await?);
            if id == "example-items" {
                // New items upstream; an existing one changes (seen by the watermark sync).
                fake.append(25, BASE_UPDATED + 100_000, 600);
                fake.touch(7, BASE_UPDATED + 100_001);
            }
            rows.push(sync("incremental").await?);
        }
        let stripe = stripe_part(&store, &runner, db).await?;
        store.close().await;

        writeln!(
            out,
            "{:<16} {:<12} {:>8} {:>8} {:>8} {:>6} {:>6} {:>8} {:>5}  cursor",
            "connector", "sync", "created", "updated", "same", "pages", "reqs", "retries", "429s"
        )?;
        for (label, s) in &rows {
            write_row(&mut out, label, s)?;
        }
        if let Some(summary) = &stripe.sync {
            write_row(&mut out, "sync", summary)?;
        }
        writeln!(out)?;
        for line in &stripe.lines {
            writeln!(out, "{line}")?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "Done in {:.1} s. Records of tenant {TENANT:?} are in {db}:",
            started.elapsed().as_secs_f64()
        )?;
        writeln!(
            out,
            "  ivory --db {db} records export --tenant {TENANT} --kind item"
        )?;
        writeln!(
            out,
            "  ivory --db {db} records export --tenant {TENANT} --kind item_change"
        )?;
        writeln!(
            out,
            "Run it again: every record is found unchanged (idempotent upserts)."
        )?;
        Ok(ExitCode::SUCCESS)
    })
}

fn write_row(out: &mut impl Write, label: &str, s: &SyncSummary) -> std::io::Result<()> {
    let t = &s.totals;
    writeln!(
        out,
        "{:<16} {:<12} {:>8} {:>8} {:>8} {:>6} {:>6} {:>8} {:>5}  {}",
        s.connector,
        label,
        t.records_created,
        t.records_updated,
        t.records_unchanged,
        t.pages,
        t.requests,
        t.retries,
        t.responses_429,
        s.cursor.as_deref().unwrap_or("none")
    )
}

struct StripePart {
    sync: Option<SyncSummary>,
    lines: Vec<String>,
}

/// The Stripe reference connector against the fake Stripe, and a webhook through the ingress.
async fn stripe_part(store: &Store, runner: &Runner, db: &str) -> anyhow::Result<StripePart> {
    use ivory_runtime::store::{StoredGrant, Tombstones, WebhookSecretSource};
    use ivory_runtime::webhooks::{IngestError, Ingested};
    use ivory_sdk::Secret;
    use ivory_sdk::webhook::{Delivery, Scheme, Verifier};
    use ivory_testkit::stripe::{FakeStripe, TEST_API_KEY};

    const WEBHOOK_SECRET: &str = "whsec_test_ivory_demo_not_a_real_secret";
    let Some(builtin) = builtin("stripe") else {
        anyhow::bail!("the Stripe connector is missing");
    };
    let vault = super::vault_for(db)?;
    let admin = Actor::User("demo-admin".into());
    let now = Clock::system().now();
    store
        .install(
            &InstallRequest {
                tenant: TENANT,
                manifest: &builtin.manifest,
                settings: Default::default(),
                actor: &admin,
                approval: Approval::Approved,
                now,
            },
            &vault,
        )
        .await?;
    let installation = store
        .installation(TENANT, "stripe")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the Stripe installation vanished"))?;
    store
        .put_credentials(
            &installation.id,
            &StoredGrant::ApiKey(Secret::new(TEST_API_KEY)),
            &vault,
            now,
        )
        .await?;
    store
        .set_webhook_secret(
            &installation,
            &Secret::new(WEBHOOK_SECRET),
            WebhookSecretSource::Tenant,
            &vault,
            &admin,
            now,
        )
        .await?;
    let fake = FakeStripe::start_with_key(1_500, now.as_second(), TEST_API_KEY).await?;
    let summary = runner
        .sync(
            TENANT,
            &builtin.manifest,
            builtin.connector.as_ref(),
            ivory_sdk::Credentials::ApiKey(Secret::new(TEST_API_KEY)),
            SyncOptions {
                base_url: Some(fake.base_url()),
                ..SyncOptions::default()
            },
        )
        .await?;

    let mut lines = vec![format!("Stripe webhook ({}):", fake.base_url())];
    let event = fake
        .fail_payment("in_00000042")
        .ok_or_else(|| anyhow::anyhow!("the fake has no invoice in_00000042"))?;
    let verifier = Verifier::new(Scheme::Stripe, WEBHOOK_SECRET)?;
    let body = serde_json::to_vec(&event)?;
    let delivery = verifier.sign(
        Delivery::new(Default::default(), body.clone()),
        Clock::system().now(),
    )?;
    let ingest = |d: Delivery| {
        let connector = builtin.connector.clone();
        let manifest = builtin.manifest.clone();
        let id = installation.id.clone();
        let vault = &vault;
        async move {
            runner
                .ingest_webhook(&id, &manifest, connector.as_ref(), &d, vault, None)
                .await
        }
    };
    match ingest(delivery.clone()).await {
        Ok(Ingested::Accepted { workflow_runs, .. }) => {
            for run in &workflow_runs {
                lines.push(format!("  signed invoice.payment_failed: accepted; workflow {} {:?}", run.workflow, run.status));
            }
        }
        Ok(Ingested::Duplicate { event_id }) => lines.push(format!("  signed invoice.payment_failed: {event_id} was already processed (a second run is idempotent)")),
        Ok(other) => lines.push(format!("  signed invoice.payment_failed: {other:?}")),
        Err(error) => lines.push(format!("  signed invoice.payment_failed: {error}")),
    }
    let mut tampered = body;
    if let Some(byte) = tampered.iter_mut().rev().find(|b| b.is_ascii_digit()) {
        *byte = if *byte == b'9' { b'1' } else { *byte + 1 };
    }
    let tampered = Delivery::new(delivery.headers().clone(), tampered);
    match ingest(tampered).await {
        Err(IngestError::Rejected(reason)) => {
            lines.push(format!("  tampered copy: rejected ({reason})"))
        }
        other => lines.push(format!("  tampered copy: {other:?} (expected a rejection)")),
    }
    let invoice = store
        .find_record(TENANT, "stripe_invoice", "in_00000042")
        .await?
        .map(|r| r.data)
        .unwrap_or_default();
    lines.push(format!(
        "  invoice in_00000042: status {}, amount_due {}, outstanding (platform formula) {}, payment_failed {}",
        invoice["status"], invoice["amount_due"], invoice["outstanding"], invoice["payment_failed"]
    ));
    use futures::TryStreamExt;
    let tasks: Vec<_> = store
        .export_records(TENANT, "task", Tombstones::Exclude)
        .try_collect()
        .await?;
    for task in tasks.iter().take(3) {
        lines.push(format!(
            "  follow-up task {}: {}",
            task.id, task.data["title"]
        ));
    }
    lines.push(format!(
        "  ivory --db {db} records export --tenant {TENANT} --kind stripe_invoice"
    ));
    Ok(StripePart {
        sync: Some(summary),
        lines,
    })
}
