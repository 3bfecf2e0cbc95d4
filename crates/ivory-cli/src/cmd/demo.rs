//! `ivory demo`: the main job with zero setup.
//!
//! Starts the fake items API on loopback inside this process, then, for tenant `demo`: a full
//! sync of `example-items` (opaque cursor), new items upstream, an incremental sync that
//! resumes from the committed cursor, and the same with `example-changes` (updated_at
//! watermark). The state stays in the `--db` SQLite file for `ivory records export`. Running it
//! twice is idempotent: the second run finds every record unchanged.
//!
//! The reference connectors (Stripe, HubSpot, Airtable) and their fake upstreams join the demo
//! as their issues land.

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
        store.close().await;

        writeln!(
            out,
            "{:<16} {:<12} {:>8} {:>8} {:>8} {:>6} {:>6} {:>8} {:>5}  cursor",
            "connector", "sync", "created", "updated", "same", "pages", "reqs", "retries", "429s"
        )?;
        for (label, s) in &rows {
            write_row(&mut out, label, s)?;
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
