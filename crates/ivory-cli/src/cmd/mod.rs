//! One module per subcommand.

pub(crate) mod manifest;
pub(crate) mod records;
pub(crate) mod sync;
pub(crate) mod webhook;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ManifestCommand, WebhookCommand};

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Manifest(ManifestCommand::Check { path, test_mode }) => {
            Ok(manifest::check(&path, test_mode))
        }
        Command::Webhook(WebhookCommand::Verify(args)) => Ok(webhook::verify(&args)),
        Command::Sync(args) => sync::run(&cli.db, &args),
        Command::Records(cmd) => records::run(&cli.db, cmd),
    }
}
