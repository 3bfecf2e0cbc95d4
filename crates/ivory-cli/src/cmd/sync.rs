//! `ivory sync`.

use std::process::ExitCode;

use crate::cli::SyncArgs;

pub(crate) fn run(_db: &str, _args: &SyncArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("sync: not yet built")
}
