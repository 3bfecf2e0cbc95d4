//! `ivory install`, `ivory uninstall`, `ivory installations list`: install governance.
//!
//! `install` shows the listing's scopes and hosts and needs the admin's consent (an
//! interactive `y`, or `--approve` for scripts); without it nothing is written and it exits 1.
//! An upgrade asking for more scopes or hosts shows the diff and needs consent again; one asking
//! for the same or less proceeds. Exit codes: 0 done; 1 consent missing, not installed, failed;
//! 2 usage errors (unknown listing, bad setting).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use ivory_runtime::Store;
use ivory_runtime::store::{Approval, ConsentDiff, InstallOutcome, InstallRequest, StoreError};
use ivory_sdk::manifest::{Manifest, ValidationMode};
use ivory_sdk::{Clock, Secret};
use serde_json::json;

use super::connectors::{BUILTIN_IDS, builtin};
use super::{actor, runtime, usage_error, vault_for};
use crate::cli::{InstallArgs, InstallationsCommand, UninstallArgs};

/// The webhook path of an installation, served by `ivory serve`.
pub(crate) fn webhook_path(installation: &str) -> String {
    format!("/webhooks/{installation}")
}

/// A listing: a built-in connector, else the newest version published in the marketplace.
async fn listing(
    store: &Store,
    name: Option<&str>,
    manifest: Option<&std::path::Path>,
) -> anyhow::Result<Result<Manifest, String>> {
    Ok(match (name, manifest) {
        (_, Some(path)) => Manifest::load(path, ValidationMode::Test)
            .map_err(|e| format!("{}: {e}", path.display())),
        (Some(id), None) => match builtin(id) {
            Some(builtin) => Ok(builtin.manifest),
            None => match store.latest_listing(id).await? {
                Some(listing) => Ok(listing.manifest),
                None => Err(format!(
                    "unknown listing {id:?} (built-in: {}; or one published with `ivory publish`)",
                    BUILTIN_IDS.join(", ")
                )),
            },
        },
        (None, None) => Err("name a listing or --manifest PATH".into()),
    })
}

fn print_request(manifest: &Manifest, diff: &ConsentDiff, upgrade: bool) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{} {} by {}",
        manifest.name, manifest.version, manifest.publisher
    );
    let list = |items: &[String]| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    if upgrade {
        let _ = writeln!(err, "This version asks for more than you approved:");
        let _ = writeln!(err, "  new scopes: {}", list(&diff.added_scopes));
        let _ = writeln!(err, "  new hosts:  {}", list(&diff.added_hosts));
    } else {
        let _ = writeln!(err, "It asks for access to:");
        let _ = writeln!(err, "  scopes: {}", list(&manifest.connection.scopes));
        let _ = writeln!(err, "  hosts:  {}", list(&manifest.hosts));
    }
}

fn ask_consent() -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("Approve? [y/N] ");
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes")
}

pub(crate) fn install(db: &str, args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let mut settings = BTreeMap::new();
    for pair in &args.settings {
        let Some((key, value)) = pair.split_once('=') else {
            return Ok(usage_error(format!(
                "--setting {pair:?}: expected KEY=VALUE"
            )));
        };
        settings.insert(key.trim().to_owned(), value.to_owned());
    }
    let vault = vault_for(db)?;
    let actor = actor();
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let manifest = match listing(&store, args.listing.as_deref(), args.manifest.as_deref()).await? {
            Ok(manifest) => manifest,
            Err(message) => return Ok(usage_error(message)),
        };
        let clock = Clock::system();
        let mut approval = if args.approve { Approval::Approved } else { Approval::NotGiven };
        let outcome = loop {
            let request = InstallRequest {
                tenant: &args.tenant,
                manifest: &manifest,
                settings: settings.clone(),
                actor: &actor,
                approval,
                now: clock.now(),
            };
            match store.install(&request, &vault).await {
                Ok(InstallOutcome::ConsentRequired { diff }) if approval == Approval::NotGiven => {
                    let upgrade = store.installation(&args.tenant, &manifest.id).await?.is_some_and(|i| i.status != "uninstalled");
                    print_request(&manifest, &diff, upgrade);
                    if ask_consent() {
                        approval = Approval::Approved;
                        continue;
                    }
                    eprintln!("error: consent required: nothing was installed; re-run with --approve to consent");
                    return Ok(ExitCode::from(1));
                }
                Ok(outcome) => break outcome,
                Err(StoreError::Invalid { what, message }) => {
                    for line in message.split("; ") {
                        eprintln!("error: {what}: {line}");
                    }
                    return Ok(ExitCode::from(2));
                }
                Err(error) => return Err(error.into()),
            }
        };
        store.close().await;
        let (installation, verb, secret, diff) = match outcome {
            InstallOutcome::Installed { installation, generated_webhook_secret } => (installation, "installed", generated_webhook_secret, None),
            InstallOutcome::Upgraded { installation, from_version, diff } => {
                eprintln!("upgraded from {from_version}");
                (installation, "upgraded", None, Some(diff))
            }
            InstallOutcome::Unchanged { installation } => (installation, "unchanged", None, None),
            _ => anyhow::bail!("unexpected install outcome"),
        };
        if args.json {
            let value = json!({
                "id": installation.id,
                "connector": installation.connector_id,
                "version": installation.connector_version,
                "status": installation.status,
                "result": verb,
                "webhook_path": webhook_path(&installation.id),
                "settings": installation.settings,
                "consent_diff": diff,
                "webhook_secret": secret.as_ref().map(Secret::expose),
            });
            println!("{value}");
        } else {
            println!("{verb}: {} for tenant {} — installation {}", installation.connector_id, installation.tenant_id, installation.id);
            println!("webhook path: {}", webhook_path(&installation.id));
            if let Some(secret) = &secret {
                println!("webhook signing secret (shown once, store it in the sender): {}", secret.expose());
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn uninstall(db: &str, args: &UninstallArgs) -> anyhow::Result<ExitCode> {
    let actor = actor();
    let vault = vault_for(db)?;
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let clock = Clock::system();
        // Revoke upstream first, while the grant is still readable.
        if let Some(installation) = store.installation(&args.tenant, &args.listing).await?
            && let Some(manifest) = builtin(&args.listing).map(|b| b.manifest)
        {
            revoke_upstream(&store, &vault, &manifest, &installation.id).await;
        }
        let removed = store
            .uninstall(&args.tenant, &args.listing, &actor, clock.now())
            .await?;
        store.close().await;
        match removed {
            Some(installation) => {
                println!(
                    "uninstalled: {} for tenant {} ({}): syncs stopped, credentials deleted",
                    args.listing, args.tenant, installation.id
                );
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!(
                    "error: tenant {} has no installation of {}",
                    args.tenant, args.listing
                );
                Ok(ExitCode::from(1))
            }
        }
    })
}

/// Best effort: tells the upstream to revoke the grant, where it has a revocation endpoint.
async fn revoke_upstream(
    store: &Store,
    vault: &ivory_runtime::Vault,
    manifest: &Manifest,
    installation: &str,
) {
    let Some(url) = manifest.connection.revocation_url.as_deref() else {
        return;
    };
    let Ok(Some((ivory_runtime::store::StoredGrant::OAuth2(grant), _))) =
        store.credentials(installation, vault).await
    else {
        return;
    };
    let Ok(client) = ivory_runtime::oauth::http::token_client() else {
        return;
    };
    let token = grant.refresh_token.as_ref().unwrap_or(&grant.access_token);
    match client
        .post(url)
        .form(&[("token", token.expose())])
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => eprintln!("revoked the grant upstream"),
        Ok(response) => eprintln!(
            "warning: the upstream answered {} to the revocation; the grant is deleted here anyway",
            response.status()
        ),
        Err(_) => eprintln!(
            "warning: the revocation endpoint could not be reached; the grant is deleted here anyway"
        ),
    }
}

pub(crate) fn installations(db: &str, cmd: InstallationsCommand) -> anyhow::Result<ExitCode> {
    let InstallationsCommand::List { tenant, json } = cmd;
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let list = store.installations(&tenant).await?;
        store.close().await;
        if json {
            let items: Vec<_> = list
                .iter()
                .map(|i| {
                    json!({
                        "id": i.id,
                        "connector": i.connector_id,
                        "version": i.connector_version,
                        "status": i.status,
                        "status_reason": i.status_reason,
                        "webhook_path": webhook_path(&i.id),
                        "settings": i.settings,
                        "created_at": i.created_at.to_string(),
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(items));
        } else if list.is_empty() {
            println!("tenant {tenant} has no installations");
        } else {
            for i in &list {
                println!(
                    "{:<22} {:<18} {:<8} {:<16} {}",
                    i.id,
                    i.connector_id,
                    i.connector_version,
                    i.status,
                    webhook_path(&i.id)
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
