//! `ivory manifest check`.
//!
//! Exit codes: 0 valid (`ok: <id> <version>` on stdout); 1 invalid (one `path: message` line
//! per error on stdout, a count on stderr); 2 when the file is missing, unreadable or not JSON
//! (the reason on stderr).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ivory_sdk::manifest::{Manifest, ManifestError, ValidationMode};

/// The file name looked for when the path is a directory.
const FILE_NAME: &str = "manifest.json";

pub(crate) fn check(path: &Path, test_mode: bool) -> ExitCode {
    let mode = if test_mode {
        ValidationMode::Test
    } else {
        ValidationMode::Production
    };
    check_in(path, mode)
}

/// Validates the manifest at `path` (a file, or a directory holding `manifest.json`).
fn check_in(path: &Path, mode: ValidationMode) -> ExitCode {
    let file = manifest_file(path);
    let mut stdout = std::io::stdout().lock();
    // Write errors (such as a closed pipe) cannot change the verdict, so they are ignored.
    match Manifest::load(&file, mode) {
        Ok(manifest) => {
            let _ = writeln!(stdout, "ok: {} {}", manifest.id, manifest.version);
            ExitCode::SUCCESS
        }
        Err(ManifestError::Invalid(errors)) => {
            for error in &errors {
                let _ = writeln!(stdout, "{error}");
            }
            let _ = stdout.flush();
            let noun = if errors.len() == 1 { "error" } else { "errors" };
            eprintln!("{}: {} {noun}", file.display(), errors.len());
            ExitCode::from(1)
        }
        Err(error @ ManifestError::Io { .. }) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("error: {}: {error}", file.display());
            ExitCode::from(2)
        }
    }
}

fn manifest_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(FILE_NAME)
    } else {
        path.to_path_buf()
    }
}
