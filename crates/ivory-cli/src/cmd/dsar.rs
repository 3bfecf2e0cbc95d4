//! `ivory dsar export|delete --tenant T --contact ID`: the operator's side of the DSAR
//! endpoints (`ivory_runtime::dsar`), printing the platform's JSON answer on stdout. Audited as
//! the CLI's actor (`IVORY_ACTOR`, else `cli:<user>`).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use ivory_runtime::Store;
use ivory_runtime::dsar::{DsarCaller, DsarError, ErasureMode};
use ivory_sdk::Clock;

use super::{actor, runtime, usage_error};

#[derive(Debug, Subcommand)]
pub(crate) enum DsarCommand {
    /// Print every synced record of a contact, per kind (JSON).
    Export(ExportArgs),
    /// Erase a contact: hard-delete or anonymize its records (invoices are always anonymized)
    /// and suppress it for later syncs (JSON answer).
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The tenant.
    #[arg(long)]
    pub(crate) tenant: String,
    /// The contact id (the HubSpot contact's id).
    #[arg(long)]
    pub(crate) contact: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Mode {
    /// Hard-delete (financial records are anonymized).
    Delete,
    /// Strip personal fields.
    Anonymize,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The tenant.
    #[arg(long)]
    pub(crate) tenant: String,
    /// The contact id (the HubSpot contact's id).
    #[arg(long)]
    pub(crate) contact: String,
    /// What happens to records that are not financial.
    #[arg(long, value_enum, default_value = "delete")]
    pub(crate) mode: Mode,
    /// A legal hold: do nothing and answer `blocked: true`.
    #[arg(long)]
    pub(crate) held: bool,
}

pub(crate) fn run(db: &str, cmd: DsarCommand) -> anyhow::Result<ExitCode> {
    let (tenant, contact) = match &cmd {
        DsarCommand::Export(a) => (&a.tenant, &a.contact),
        DsarCommand::Delete(a) => (&a.tenant, &a.contact),
    };
    if tenant.trim().is_empty() || contact.trim().is_empty() {
        return Ok(usage_error("--tenant and --contact must not be empty"));
    }
    let caller = DsarCaller::new(actor());
    let now = Clock::system().now();
    runtime()?.block_on(async {
        let store = Store::open(db).await?;
        let answer = match &cmd {
            DsarCommand::Export(a) => store
                .dsar_export(&a.tenant, &a.contact, &caller, now)
                .await
                .map(|export| serde_json::to_string_pretty(&export)),
            DsarCommand::Delete(a) => {
                let mode = match a.mode {
                    Mode::Delete => ErasureMode::Delete,
                    Mode::Anonymize => ErasureMode::Anonymize,
                };
                store
                    .dsar_delete(&a.tenant, &a.contact, mode, a.held, &caller, now)
                    .await
                    .map(|erasure| serde_json::to_string_pretty(&erasure))
            }
        };
        store.close().await;
        match answer {
            Ok(json) => {
                println!("{}", json?);
                Ok(ExitCode::SUCCESS)
            }
            Err(DsarError::MissingContact) => Ok(usage_error("--contact must not be empty")),
            Err(e) => Err(e.into()),
        }
    })
}
