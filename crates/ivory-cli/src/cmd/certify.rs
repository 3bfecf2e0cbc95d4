//! `ivory certify PATH/manifest.json [--json]`: SPEC §8.
//!
//! Static checks (`ivory_certify::static_checks`), then the dynamic checks of
//! `ivory_certify::harness` against the connector's mocked upstream. The built-in connectors
//! provide their harness targets here; an external crate needs a harness entry point, which
//! is not built yet — its dynamic checks fail saying so. The report carries the digests of the
//! manifest and of the connector's directory; with `TOKEN` a passing report is submitted to
//! the marketplace registry of `--db`. Exit codes: 0 every check passed; 1 a check failed (or
//! the submission was refused); 2 usage errors (missing or unreadable manifest).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use ivory_certify::harness::{MockUpstream, Target, dynamic_checks};
use ivory_certify::{Check, all_pass, static_checks};
use ivory_runtime::Store;
use ivory_runtime::marketplace::{
    CertificationReport, CheckResult, manifest_digest, source_digest,
};
use ivory_sdk::connector::BoxFuture;
use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::{Clock, DynConnector, Secret};
use ivory_testkit::stripe::FakeStripe;
use jiff::Timestamp;
use url::Url;

use super::{runtime, usage_error};
use crate::cli::CertifyArgs;

struct StripeTarget {
    manifest: Manifest,
}

struct Running(FakeStripe);

impl MockUpstream for Running {
    fn base_url(&self) -> Url {
        self.0.base_url()
    }
}

impl Target for StripeTarget {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn connector(&self) -> Arc<dyn DynConnector> {
        Arc::new(ivory_connector_stripe::StripeConnector::default())
    }

    fn record_kind(&self) -> &str {
        ivory_connector_stripe::INVOICE_KIND
    }

    fn start_upstream<'a>(
        &'a self,
        records: usize,
        credential: &'a Secret,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Box<dyn MockUpstream>, String>> {
        Box::pin(async move {
            let fake =
                FakeStripe::start_with_key(records as u64, now.as_second(), credential.expose())
                    .await
                    .map_err(|e| format!("the fake Stripe did not start: {e}"))?;
            Ok(Box::new(Running(fake)) as Box<dyn MockUpstream>)
        })
    }

    fn dataset_size(&self) -> usize {
        2_200
    }

    fn webhook_body(&self) -> Option<Vec<u8>> {
        let event = serde_json::json!({
            "id": "evt_certification_0001",
            "object": "event",
            "type": "invoice.payment_failed",
            "created": Timestamp::now().as_second(),
            "data": {"object": {"id": "in_00000001", "object": "invoice", "status": "open", "amount_due": 1000, "amount_paid": 0}}
        });
        serde_json::to_vec(&event).ok()
    }
}

fn target_for(manifest: &Manifest) -> Option<Box<dyn Target>> {
    match manifest.id.as_str() {
        "stripe" if *manifest == *ivory_connector_stripe::manifest() => {
            Some(Box::new(StripeTarget {
                manifest: manifest.clone(),
            }))
        }
        _ => None,
    }
}

fn connector_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub(crate) fn run(db: &str, args: &CertifyArgs) -> anyhow::Result<ExitCode> {
    let mut checks = match static_checks(&args.manifest) {
        Ok(checks) => checks,
        Err(error) => return Ok(usage_error(error)),
    };
    let dir = connector_dir(&args.manifest);
    let manifest = Manifest::load(&args.manifest, ValidationMode::Production).ok();
    runtime()?.block_on(async {
        match manifest.as_ref().and_then(target_for) {
            Some(target) => checks.extend(dynamic_checks(target.as_ref()).await),
            None => checks.push(Check::fail(
                "dynamic checks",
                "no harness target for this connector: the built-in connectors have one; an external crate needs a harness entry point, which is not built yet",
            )),
        }
        let passed = all_pass(&checks);
        let report = CertificationReport {
            connector_id: manifest.as_ref().map(|m| m.id.clone()).unwrap_or_default(),
            version: manifest.as_ref().map(|m| m.version.clone()).unwrap_or_default(),
            manifest_digest: manifest.as_ref().and_then(|m| manifest_digest(m).ok()).unwrap_or_default(),
            source_digest: source_digest(&dir).unwrap_or_default(),
            passed,
            checks: checks
                .iter()
                .map(|c| CheckResult { name: c.name.clone(), passed: c.passed(), evidence: c.evidence.clone() })
                .collect(),
            generated_at: Clock::system().now(),
        };
        print_report(&report, args.json)?;
        if let (Some(token), true) = (&args.token, passed) {
            let store = Store::open(db).await?;
            let publisher = store.publisher_for_token(&Secret::new(token.clone())).await?;
            let Some(publisher) = publisher else {
                eprintln!("error: the TOKEN is not known to the marketplace; the report was not submitted");
                return Ok(ExitCode::from(1));
            };
            let id = store.submit_report(&publisher, &report, Clock::system().now()).await?;
            store.close().await;
            eprintln!("report {id} submitted to the marketplace for {} {}", report.connector_id, report.version);
        }
        Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

fn print_report(report: &CertificationReport, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "Certification of {} {}",
        report.connector_id, report.version
    )?;
    let width = report
        .checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    writeln!(out, "{:<width$}  {:<7}  evidence", "check", "verdict")?;
    for check in &report.checks {
        let mut lines = check.evidence.lines();
        let first = lines.next().unwrap_or("");
        writeln!(
            out,
            "{:<width$}  {:<7}  {first}",
            check.name,
            if check.passed { "pass" } else { "FAIL" }
        )?;
        for line in lines {
            writeln!(out, "{:<width$}  {:<7}  {line}", "", "")?;
        }
    }
    writeln!(
        out,
        "manifest {}\nsource   {}",
        report.manifest_digest, report.source_digest
    )?;
    writeln!(out, "{}", if report.passed { "PASSED" } else { "FAILED" })?;
    Ok(())
}
