//! `ivory certify PATH/manifest.json [--json]`: SPEC §8.
//!
//! Static checks (`ivory_certify::static_checks`), then the dynamic checks of
//! `ivory_certify::harness` against the connector's mocked upstream. The built-in connectors
//! (Stripe, HubSpot, Airtable) provide their harness targets here, against the testkit's
//! fakes behind a credential gate (the fakes know only their own test tokens; the harness
//! certifies with canaries); any other manifest is certified through the harness entry point
//! compiled into its own crate (`ivory_certify::external`). The report carries the digests of the
//! manifest and of the connector's directory; with `TOKEN` a passing report is submitted to
//! the marketplace registry of `--db`. Exit codes: 0 every check passed; 1 a check failed (or
//! the submission was refused); 2 usage errors (missing or unreadable manifest).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use std::collections::BTreeMap;

use ivory_certify::external::run_harness;
use ivory_certify::harness::{CredentialGate, MockUpstream, Target, dynamic_checks};
use ivory_certify::{all_pass, static_checks};
use ivory_runtime::Store;
use ivory_runtime::marketplace::{
    CertificationReport, CheckResult, manifest_digest, source_digest,
};
use ivory_sdk::connector::BoxFuture;
use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::{Clock, DynConnector, Secret};
use ivory_testkit::airtable::{self, FakeAirtable};
use ivory_testkit::hubspot::{self, FakeHubSpot, Limits};
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

/// HubSpot: the fake portal (HubSpot's limits on) behind a credential gate, contacts spread
/// ten per second before now; the conflict check edits `firstname`.
struct HubSpotTarget {
    manifest: Manifest,
}

struct RunningHubSpot {
    fake: FakeHubSpot,
    gate: CredentialGate,
}

impl MockUpstream for RunningHubSpot {
    fn base_url(&self) -> Url {
        self.gate.url()
    }

    fn edit(&self, id: &str, field: &str, value: &str, at: Timestamp) -> Result<(), String> {
        let at_ms = at.as_millisecond();
        if !self.fake.edit(id, &[(field, value)], at_ms) {
            return Err(format!("the fake HubSpot has no live contact {id}"));
        }
        // HubSpot's clock moves on: its own writes come after the user's edit.
        if self.fake.now_ms() <= at_ms {
            self.fake.set_now_ms(at_ms + 1_000);
        }
        Ok(())
    }

    fn value(&self, id: &str, field: &str) -> Option<String> {
        let contact = self.fake.contact(id)?;
        Some(contact["properties"][field].as_str()?.to_owned())
    }
}

impl Target for HubSpotTarget {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn connector(&self) -> Arc<dyn DynConnector> {
        Arc::new(ivory_connector_hubspot::HubSpotConnector::default())
    }

    fn record_kind(&self) -> &str {
        ivory_connector_hubspot::CONTACT_KIND
    }

    fn start_upstream<'a>(
        &'a self,
        records: usize,
        credential: &'a Secret,
        now: Timestamp,
    ) -> BoxFuture<'a, Result<Box<dyn MockUpstream>, String>> {
        Box::pin(async move {
            let fake = FakeHubSpot::start(Limits::HUBSPOT)
                .await
                .map_err(|e| format!("the fake HubSpot did not start: {e}"))?;
            let now_ms = now.as_millisecond();
            fake.set_now_ms(now_ms);
            let seconds = i64::try_from(records.div_ceil(10)).unwrap_or(i64::MAX);
            for second in 0..seconds {
                let left = records.saturating_sub(usize::try_from(second).unwrap_or(0) * 10);
                fake.create_contacts(left.min(10), now_ms - (seconds - second) * 1_000);
            }
            let gate =
                CredentialGate::start(fake.base_url(), credential, hubspot::ACCESS_TOKEN).await?;
            Ok(Box::new(RunningHubSpot { fake, gate }) as Box<dyn MockUpstream>)
        })
    }

    fn dataset_size(&self) -> usize {
        4_500
    }

    fn webhook_body(&self) -> Option<Vec<u8>> {
        None
    }

    fn conflict_field(&self) -> Option<&str> {
        Some("firstname")
    }
}

/// Airtable: the fixture base (Orders, Customers) behind a credential gate, installed with
/// its `baseId`; the Orders table is counted.
struct AirtableTarget {
    manifest: Manifest,
}

struct RunningAirtable {
    _fake: FakeAirtable,
    gate: CredentialGate,
}

impl MockUpstream for RunningAirtable {
    fn base_url(&self) -> Url {
        self.gate.url()
    }
}

impl Target for AirtableTarget {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn connector(&self) -> Arc<dyn DynConnector> {
        Arc::new(ivory_connector_airtable::AirtableConnector::default())
    }

    fn record_kind(&self) -> &str {
        "airtable_orders"
    }

    fn start_upstream<'a>(
        &'a self,
        records: usize,
        credential: &'a Secret,
        _now: Timestamp,
    ) -> BoxFuture<'a, Result<Box<dyn MockUpstream>, String>> {
        Box::pin(async move {
            let fake = FakeAirtable::start(records, 12)
                .await
                .map_err(|e| format!("the fake Airtable did not start: {e}"))?;
            let gate =
                CredentialGate::start(fake.base_url(), credential, airtable::TEST_ACCESS_TOKEN)
                    .await?;
            Ok(Box::new(RunningAirtable { _fake: fake, gate }) as Box<dyn MockUpstream>)
        })
    }

    fn dataset_size(&self) -> usize {
        2_200
    }

    fn webhook_body(&self) -> Option<Vec<u8>> {
        None
    }

    fn settings(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(
            ivory_connector_airtable::BASE_SETTING.to_owned(),
            airtable::BASE_ID.to_owned(),
        )])
    }
}

/// The built-in target of a manifest, when it is exactly a built-in connector's.
fn target_for(manifest: &Manifest) -> Option<Box<dyn Target>> {
    let target: Box<dyn Target> = match manifest.id.as_str() {
        "stripe" if *manifest == *ivory_connector_stripe::manifest() => Box::new(StripeTarget {
            manifest: manifest.clone(),
        }),
        "hubspot" if *manifest == *ivory_connector_hubspot::manifest() => Box::new(HubSpotTarget {
            manifest: manifest.clone(),
        }),
        "airtable" if *manifest == *ivory_connector_airtable::manifest() => {
            Box::new(AirtableTarget {
                manifest: manifest.clone(),
            })
        }
        _ => return None,
    };
    Some(target)
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
        match (manifest.as_ref(), manifest.as_ref().and_then(target_for)) {
            (_, Some(target)) => checks.extend(dynamic_checks(target.as_ref()).await),
            // The connector's own crate runs the suite (it builds first: off the runtime's threads).
            (Some(manifest), None) => {
                let path = args.manifest.clone();
                let manifest = manifest.clone();
                checks.extend(
                    tokio::task::spawn_blocking(move || run_harness(&path, &manifest)).await?,
                );
            }
            // An invalid manifest: the static checks already say why; nothing can run.
            (None, None) => {}
        }
        let passed = all_pass(&checks);
        let report = CertificationReport {
            connector_id: manifest.as_ref().map(|m| m.id.clone()).unwrap_or_default(),
            version: manifest
                .as_ref()
                .map(|m| m.version.clone())
                .unwrap_or_default(),
            manifest_digest: manifest
                .as_ref()
                .and_then(|m| manifest_digest(m).ok())
                .unwrap_or_default(),
            source_digest: source_digest(&dir).unwrap_or_default(),
            passed,
            checks: checks
                .iter()
                .map(|c| CheckResult {
                    name: c.name.clone(),
                    passed: c.passed(),
                    evidence: c.evidence.clone(),
                })
                .collect(),
            generated_at: Clock::system().now(),
        };
        print_report(&report, args.json)?;
        if let (Some(token), true) = (&args.token, passed) {
            let store = Store::open(db).await?;
            let publisher = store
                .publisher_for_token(&Secret::new(token.clone()))
                .await?;
            let Some(publisher) = publisher else {
                eprintln!(
                    "error: the TOKEN is not known to the marketplace; the report was not submitted"
                );
                return Ok(ExitCode::from(1));
            };
            let id = store
                .submit_report(&publisher, &report, Clock::system().now())
                .await?;
            store.close().await;
            eprintln!(
                "report {id} submitted to the marketplace for {} {}",
                report.connector_id, report.version
            );
        }
        Ok(if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
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

#[cfg(test)]
mod tests {
    use ivory_certify::Check;
    use ivory_connector_hubspot::{CONTACT_KIND, HubSpotConnector};
    use ivory_sdk::context::{Disposition, OutboundCommit};
    use ivory_sdk::{Connector, Context, Error, SyncResult};

    use super::*;

    /// The mutation: HubSpot's connector, except that every pending platform-side edit is
    /// dropped before the pull as if HubSpot had won — `source_wins` applied whatever the
    /// manifest declares (`newest_wins`).
    struct SourceAlwaysWins(HubSpotConnector);

    impl Connector for SourceAlwaysWins {
        async fn sync(&self, ctx: &mut Context) -> Result<SyncResult, Error> {
            let pending = ctx.pending_changes(CONTACT_KIND, None, 100).await?;
            let commit = OutboundCommit {
                links: Vec::new(),
                acks: pending
                    .iter()
                    .map(|change| change.ack(&change.id, Disposition::Superseded))
                    .collect(),
            };
            ctx.commit_outbound(&commit).await?;
            self.0.sync(ctx).await
        }
    }

    struct WrongPolicy(HubSpotTarget);

    impl Target for WrongPolicy {
        fn manifest(&self) -> &Manifest {
            self.0.manifest()
        }
        fn connector(&self) -> Arc<dyn DynConnector> {
            Arc::new(SourceAlwaysWins(HubSpotConnector::default()))
        }
        fn record_kind(&self) -> &str {
            self.0.record_kind()
        }
        fn start_upstream<'a>(
            &'a self,
            records: usize,
            credential: &'a Secret,
            now: Timestamp,
        ) -> BoxFuture<'a, Result<Box<dyn MockUpstream>, String>> {
            self.0.start_upstream(records, credential, now)
        }
        fn dataset_size(&self) -> usize {
            // Enough requests for the sync checks, fewer than the real target's to stay quick.
            2_400
        }
        fn webhook_body(&self) -> Option<Vec<u8>> {
            None
        }
        fn conflict_field(&self) -> Option<&str> {
            self.0.conflict_field()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn applying_the_wrong_conflict_policy_fails_the_conflict_check() {
        let target = WrongPolicy(HubSpotTarget {
            manifest: ivory_connector_hubspot::manifest().clone(),
        });
        let checks = dynamic_checks(&target).await;
        let failed: Vec<&Check> = checks.iter().filter(|c| !c.passed()).collect();
        assert_eq!(
            failed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["conflict policy outcome"],
            "{checks:#?}"
        );
        let evidence = &failed[0].evidence;
        assert!(
            evidence.contains("platform edited later: WRONG — platform should win; the platform has the upstream's edit, the upstream has the upstream's edit"),
            "{evidence}"
        );
        assert!(
            evidence.contains("upstream edited later: upstream kept on both sides"),
            "{evidence}"
        );
    }
}
