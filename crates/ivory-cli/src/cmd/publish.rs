//! `ivory publish` and `ivory publisher create`: the marketplace side of governance.
//!
//! `publish` recomputes the digests of the manifest and of the connector's directory and lists
//! the connector only when the registry holds a passing certification report, submitted by the
//! same publisher (`ivory certify` with `TOKEN`), for exactly those digests. Exit codes: 0
//! published; 1 refused (not certified, unknown token, already published); 2 usage errors.

use std::process::ExitCode;

use ivory_runtime::Store;
use ivory_runtime::marketplace::{PublishError, source_digest};
use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::{Clock, Secret};

use super::{runtime, usage_error};
use crate::cli::{PublishArgs, PublisherCommand};

pub(crate) fn publish(db: &str, args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let manifest = match Manifest::load(&args.manifest, ValidationMode::Production) {
        Ok(manifest) => manifest,
        Err(error) => return Ok(usage_error(format!("{}: {error}", args.manifest.display()))),
    };
    let dir = if args.manifest.is_dir() {
        args.manifest.clone()
    } else {
        args.manifest
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default()
    };
    let dir = if dir.as_os_str().is_empty() {
        std::path::PathBuf::from(".")
    } else {
        dir
    };
    let source = match source_digest(&dir) {
        Ok(digest) => digest,
        Err(error) => {
            return Ok(usage_error(format!(
                "cannot read {}: {error}",
                dir.display()
            )));
        }
    };
    let token = Secret::new(args.token.clone());
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let result = store.publish(&token, &manifest, &source, Clock::system().now()).await;
        store.close().await;
        match result {
            Ok(listing) => {
                if args.json {
                    println!(
                        "{}",
                        serde_json::json!({"connector": listing.connector_id, "version": listing.version, "report": listing.report_id, "publisher": listing.publisher_id})
                    );
                } else {
                    println!("published: {} {} (report {})", listing.connector_id, listing.version, listing.report_id);
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(PublishError::Store(error)) => Err(error.into()),
            Err(error) => {
                eprintln!("error: {error}");
                Ok(ExitCode::from(1))
            }
        }
    })
}

pub(crate) fn publisher(db: &str, cmd: PublisherCommand) -> anyhow::Result<ExitCode> {
    let PublisherCommand::Create { name } = cmd;
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let result = store.create_publisher(&name, Clock::system().now()).await;
        store.close().await;
        match result {
            Ok((publisher, token)) => {
                println!("publisher {} ({})", publisher.name, publisher.id);
                println!("TOKEN (shown once): {}", token.expose());
                Ok(ExitCode::SUCCESS)
            }
            Err(ivory_runtime::StoreError::Invalid { what, message }) => {
                Ok(usage_error(format!("{what}: {message}")))
            }
            Err(error) => Err(error.into()),
        }
    })
}
