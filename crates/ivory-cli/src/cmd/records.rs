//! `ivory records`.

use std::process::ExitCode;

use crate::cli::RecordsCommand;

pub(crate) fn run(_db: &str, _cmd: RecordsCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("records: not yet built")
}
