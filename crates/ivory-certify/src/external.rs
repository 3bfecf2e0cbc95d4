//! Certification of a connector crate that is not built into `ivory` (a scaffolded crate,
//! inside or outside this workspace): the dynamic checks run **in the connector's own
//! process**, through a harness entry point compiled into its crate.
//!
//! - The crate has a binary target whose name ends in `-harness` (`ivory scaffold` generates
//!   `<crate>-harness`, `src/bin/harness.rs`). Its `main` builds the crate's [`Target`] (the
//!   connector, its manifest, its mocked upstream) and calls [`entry_point`], which runs
//!   [`dynamic_checks`] and prints one [`HarnessReport`] as JSON on stdout (logs, if any, go to
//!   stderr).
//! - `ivory certify PATH/manifest.json`, for a manifest that is not a built-in connector's,
//!   calls [`run_harness`]: it finds that binary with `cargo metadata`, builds and runs it with
//!   `cargo run` (stderr passes through, so a build error is shown as cargo prints it), reads
//!   the report and checks it is about the same manifest (id, version and digest). Anything
//!   else — no `Cargo.toml` next to the manifest, no harness binary, a build failure, a
//!   report that does not parse — is one failing check, `dynamic checks`, saying why.
//!
//! The protocol is versioned ([`PROTOCOL`]): a report of another version is refused rather
//! than misread.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use ivory_runtime::marketplace::manifest_digest;
use ivory_sdk::manifest::Manifest;
use serde::{Deserialize, Serialize};

use crate::check::Check;
use crate::harness::{Target, dynamic_checks};

/// The version of the harness report format.
pub const PROTOCOL: u32 = 1;

/// The name of the check that stands for all dynamic checks when the harness cannot run.
pub const DYNAMIC_CHECKS: &str = "dynamic checks";

/// What a harness entry point prints on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HarnessReport {
    /// [`PROTOCOL`].
    pub protocol: u32,
    /// The certified manifest's `id`.
    pub connector_id: String,
    /// Its `version`.
    pub version: String,
    /// Its digest (`ivory_runtime::marketplace::manifest_digest`).
    pub manifest_digest: String,
    /// The dynamic checks, in the order [`dynamic_checks`] returns them.
    pub checks: Vec<Check>,
}

/// The `main` of a connector crate's harness binary: runs the dynamic checks against
/// `target` and prints the [`HarnessReport`] on stdout. Exit 0 when a report was printed
/// (whatever its verdicts: `ivory certify` judges them), 1 when none could be.
///
/// ```no_run
/// # use ivory_certify::harness::Target;
/// # fn my_target() -> Box<dyn Target> { unimplemented!() }
/// fn main() -> std::process::ExitCode {
///     ivory_certify::external::entry_point(my_target().as_ref())
/// }
/// ```
pub fn entry_point(target: &dyn Target) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: the harness could not start its runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let checks = runtime.block_on(dynamic_checks(target));
    let manifest = target.manifest();
    let report = HarnessReport {
        protocol: PROTOCOL,
        connector_id: manifest.id.clone(),
        version: manifest.version.clone(),
        manifest_digest: manifest_digest(manifest).unwrap_or_default(),
        checks,
    };
    match serde_json::to_string(&report) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: the harness report did not serialize: {error}");
            ExitCode::from(1)
        }
    }
}

/// Builds and runs the harness binary of the crate holding `manifest_path` (see the module
/// doc) and returns its dynamic checks; a harness that cannot run is one failing check.
pub fn run_harness(manifest_path: &Path, manifest: &Manifest) -> Vec<Check> {
    match harness_report(manifest_path, manifest) {
        Ok(checks) => checks,
        Err(reason) => vec![Check::fail(DYNAMIC_CHECKS, reason)],
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn crate_dir(manifest_path: &Path) -> PathBuf {
    if manifest_path.is_dir() {
        return manifest_path.to_path_buf();
    }
    match manifest_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    manifest_path: PathBuf,
    targets: Vec<BuildTarget>,
}

#[derive(Deserialize)]
struct BuildTarget {
    name: String,
    kind: Vec<String>,
}

/// The harness binary of the package whose `Cargo.toml` is `cargo_toml`.
fn harness_binary(cargo_toml: &Path) -> Result<String, String> {
    let output = cargo()
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(cargo_toml)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed on {}: {}",
            cargo_toml.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata printed something unexpected: {e}"))?;
    let wanted = cargo_toml
        .canonicalize()
        .unwrap_or_else(|_| cargo_toml.into());
    let package = metadata
        .packages
        .iter()
        .find(|p| {
            p.manifest_path
                .canonicalize()
                .unwrap_or_else(|_| p.manifest_path.clone())
                == wanted
        })
        .ok_or_else(|| format!("no package is defined by {}", cargo_toml.display()))?;
    let bins: Vec<&str> = package
        .targets
        .iter()
        .filter(|t| t.kind.iter().any(|k| k == "bin") && t.name.ends_with("-harness"))
        .map(|t| t.name.as_str())
        .collect();
    match bins.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Err(format!(
            "{} has no harness entry point: a binary named <crate>-harness calling ivory_certify::external::entry_point (ivory scaffold generates one)",
            cargo_toml.display()
        )),
        many => Err(format!(
            "{} has several harness binaries ({}); keep one",
            cargo_toml.display(),
            many.join(", ")
        )),
    }
}

fn harness_report(manifest_path: &Path, manifest: &Manifest) -> Result<Vec<Check>, String> {
    let dir = crate_dir(manifest_path);
    let cargo_toml = dir.join("Cargo.toml");
    if !cargo_toml.is_file() {
        return Err(format!(
            "no harness target: {} is not a built-in connector and there is no Cargo.toml next to its manifest",
            manifest.id
        ));
    }
    let bin = harness_binary(&cargo_toml)?;
    let output = cargo()
        .args(["run", "--quiet", "--manifest-path"])
        .arg(&cargo_toml)
        .args(["--bin", &bin])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the harness {bin} did not build or run (cargo run exited with {}; its errors are above)",
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("the harness {bin} printed no report"))?;
    let report: HarnessReport = serde_json::from_str(line)
        .map_err(|e| format!("the harness {bin} printed an unreadable report: {e}"))?;
    if report.protocol != PROTOCOL {
        return Err(format!(
            "the harness {bin} speaks protocol {}, this ivory speaks {PROTOCOL}: rebuild it against this SDK",
            report.protocol
        ));
    }
    let digest = manifest_digest(manifest).unwrap_or_default();
    if report.connector_id != manifest.id
        || report.version != manifest.version
        || report.manifest_digest != digest
    {
        return Err(format!(
            "the harness {bin} certified {} {} (manifest {}), not this manifest ({} {}, {digest}): it must load the crate's own manifest.json",
            report.connector_id,
            report.version,
            report.manifest_digest,
            manifest.id,
            manifest.version
        ));
    }
    Ok(report.checks)
}
