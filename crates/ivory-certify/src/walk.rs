//! Walking a connector's tree: the files the secret scan and the source checks read.

use std::path::{Path, PathBuf};

use ignore::WalkBuilder;

use crate::error::ScanError;
use crate::secrets::ScanOptions;

/// A regular file of the tree.
#[derive(Debug, Clone)]
pub(crate) struct TreeFile {
    /// Where it is.
    pub(crate) absolute: PathBuf,
    /// Relative to the root, `/`-separated.
    pub(crate) relative: String,
}

/// Every regular file under `root`, sorted by path: hidden files included (`.env` is where
/// secrets hide), `.git/` and `options.exclude_dirs` skipped at any depth, `.gitignore`
/// honoured when `options.respect_gitignore` (whether or not the tree is a git repository).
/// Only the tree's own ignore files count: no global or parent ignores, no `.ignore` files.
/// Symbolic links are not followed.
pub(crate) fn files(root: &Path, options: &ScanOptions) -> Result<Vec<TreeFile>, ScanError> {
    let metadata = std::fs::metadata(root).map_err(|source| ScanError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(ScanError::Root {
            path: root.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }

    let excluded = options.exclude_dirs.clone();
    let mut builder = WalkBuilder::new(root);
    builder
        .hidden(false)
        .parents(false)
        .ignore(false)
        .git_global(false)
        .git_exclude(false)
        .git_ignore(options.respect_gitignore)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .filter_entry(move |entry| {
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            if !is_dir || entry.depth() == 0 {
                return true;
            }
            let name = entry.file_name().to_string_lossy();
            name != ".git" && !excluded.iter().any(|e| *e == name)
        });

    let mut files = Vec::new();
    for entry in builder.build() {
        let entry = entry.map_err(|error| walk_error(root, &error))?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let absolute = entry.into_path();
        let relative = absolute
            .strip_prefix(root)
            .unwrap_or(&absolute)
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        files.push(TreeFile { absolute, relative });
    }
    Ok(files)
}

fn walk_error(root: &Path, error: &ignore::Error) -> ScanError {
    let path = error_path(error).unwrap_or(root).to_path_buf();
    ScanError::Walk {
        path,
        message: error.to_string(),
    }
}

fn error_path(error: &ignore::Error) -> Option<&Path> {
    match error {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithLineNumber { err, .. } | ignore::Error::WithDepth { err, .. } => {
            error_path(err)
        }
        _ => None,
    }
}
