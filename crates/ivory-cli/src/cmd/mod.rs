//! One module per subcommand.

pub(crate) mod certify;
pub(crate) mod connect;
pub(crate) mod connectors;
pub(crate) mod demo;
pub(crate) mod dsar;
pub(crate) mod install;
pub(crate) mod manifest;
pub(crate) mod outbox;
pub(crate) mod publish;
pub(crate) mod records;
pub(crate) mod scaffold;
pub(crate) mod serve;
pub(crate) mod sync;
pub(crate) mod webhook;
pub(crate) mod worker;
pub(crate) mod workflows;

use std::process::ExitCode;

use crate::cli::{Cli, Command, ManifestCommand, WebhookCommand};

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Manifest(ManifestCommand::Check { path, test_mode }) => {
            Ok(manifest::check(&path, test_mode))
        }
        Command::Webhook(WebhookCommand::Verify(args)) => Ok(webhook::verify(&args)),
        Command::Certify(args) => certify::run(&cli.db, &args),
        Command::Scaffold(args) => scaffold::run(&args),
        Command::Publish(args) => publish::publish(&cli.db, &args),
        Command::Publisher(cmd) => publish::publisher(&cli.db, cmd),
        Command::Install(args) => install::install(&cli.db, &args),
        Command::Uninstall(args) => install::uninstall(&cli.db, &args),
        Command::Installations(cmd) => install::installations(&cli.db, cmd),
        Command::Connect(args) => connect::run(&cli.db, &args),
        Command::Sync(args) => sync::run(&cli.db, &args),
        Command::Records(cmd) => records::run(&cli.db, cmd),
        Command::Workflows(cmd) => workflows::run(&cli.db, cmd),
        Command::Serve(args) => serve::run(&cli.db, &args),
        Command::Worker(args) => worker::run(&cli.db, &args),
        Command::Demo(args) => demo::run(&cli.db, &args),
        Command::Outbox(cmd) => outbox::run(&cli.db, cmd),
        Command::Dsar(cmd) => dsar::run(&cli.db, cmd),
    }
}

/// A multi-threaded tokio runtime for the async commands.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The credentials vault of the store at `db`: keys from `IVORY_MASTER_KEY`, else the key file
/// `<db>.key` (created 0600 on first use).
pub(crate) fn vault_for(db: &str) -> anyhow::Result<ivory_runtime::Vault> {
    let env = std::env::var(ivory_runtime::vault::MASTER_KEY_ENV).ok();
    if env.is_none() && (db.starts_with("postgres://") || db.starts_with("postgresql://")) {
        anyhow::bail!(
            "{} must be set with a PostgreSQL store: every process that opens it needs the same master key (a key file is only kept next to a SQLite file)",
            ivory_runtime::vault::MASTER_KEY_ENV
        );
    }
    let key_file = std::path::PathBuf::from(format!("{db}.key"));
    let keys = ivory_runtime::MasterKeys::load(env.as_deref(), &key_file)?;
    Ok(ivory_runtime::Vault::new(keys))
}

/// Who acts, for audit events: `IVORY_ACTOR`, else `cli:<unix user>`.
pub(crate) fn actor() -> ivory_runtime::store::Actor {
    let name = std::env::var("IVORY_ACTOR")
        .ok()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| {
            format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            )
        });
    ivory_runtime::store::Actor::User(name)
}

/// Prints a usage error and returns exit code 2.
pub(crate) fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}
