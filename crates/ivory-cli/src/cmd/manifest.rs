//! `ivory manifest check`.

use std::path::Path;
use std::process::ExitCode;

pub(crate) fn check(_path: &Path) -> ExitCode {
    eprintln!("manifest check: not yet built");
    ExitCode::from(1)
}
