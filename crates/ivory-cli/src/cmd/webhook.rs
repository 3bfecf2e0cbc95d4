//! `ivory webhook verify`.

use std::process::ExitCode;

use clap::Args;

/// Arguments of `ivory webhook verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {}

pub(crate) fn verify(_args: &VerifyArgs) -> ExitCode {
    eprintln!("webhook verify: not yet built");
    ExitCode::from(1)
}
