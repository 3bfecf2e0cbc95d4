//! Temporary connector trees and secret values built at run time.
//!
//! No literal in this crate looks like a live key: every planted secret is assembled here from
//! fragments and a deterministic generator, so the repository itself stays clean (and
//! `repo::this_repository_has_no_live_looking_secrets` keeps it so).

use std::path::{Path, PathBuf};

use ivory_certify::secrets::is_obviously_fake;
use tempfile::TempDir;

/// The clean connector fixture.
pub(crate) fn clean_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clean-connector")
}

/// The workspace root.
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A temporary tree.
pub(crate) struct Tree {
    dir: TempDir,
}

impl Tree {
    /// An empty tree.
    pub(crate) fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A copy of the clean connector fixture.
    pub(crate) fn clean_connector() -> Self {
        let tree = Self::empty();
        copy_dir(&clean_fixture(), tree.path());
        tree
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn manifest(&self) -> PathBuf {
        self.path().join("manifest.json")
    }

    /// Writes `text` to `relative`, creating directories.
    pub(crate) fn write(&self, relative: &str, text: impl AsRef<[u8]>) {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(path, text).expect("write file");
    }

    pub(crate) fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path().join(relative)).expect("read file")
    }

    /// Rewrites the manifest as JSON through `edit`.
    pub(crate) fn edit_manifest(&self, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut manifest: serde_json::Value =
            serde_json::from_str(&self.read("manifest.json")).expect("manifest JSON");
        edit(&mut manifest);
        self.write(
            "manifest.json",
            serde_json::to_string_pretty(&manifest).expect("serialize"),
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

pub(crate) const ALNUM: &str = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789";
pub(crate) const UPPER_DIGITS: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ234567";
pub(crate) const HEX: &str = "0123456789abcdef";
pub(crate) const BASE64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A deterministic random-looking string of `length` characters of `alphabet`, guaranteed not
/// obviously fake (so that the scanner must report it).
pub(crate) fn random(seed: u64, length: usize, alphabet: &str) -> String {
    let alphabet: Vec<char> = alphabet.chars().collect();
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    loop {
        let value: String = (0..length)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                alphabet[((state >> 33) as usize) % alphabet.len()]
            })
            .collect();
        if !is_obviously_fake(&value) {
            return value;
        }
    }
}

/// Live-looking values, one per provider rule, assembled from fragments.
pub(crate) struct Planted;

impl Planted {
    pub(crate) fn stripe_secret_key() -> String {
        format!("sk_{}_{}", "live", random(1, 24, ALNUM))
    }
    pub(crate) fn stripe_restricted_key() -> String {
        format!("rk_{}_{}", "live", random(2, 99, ALNUM))
    }
    pub(crate) fn webhook_secret() -> String {
        format!("whsec{}{}", "_", random(3, 32, ALNUM))
    }
    pub(crate) fn hubspot_token() -> String {
        let hex = random(4, 32, HEX);
        format!(
            "pat-{}1-{}-{}-{}-{}-{}",
            "eu",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
    pub(crate) fn airtable_token() -> String {
        format!("{}{}.{}", "pat", random(5, 14, ALNUM), random(6, 64, HEX))
    }
    pub(crate) fn aws_key_id() -> String {
        format!("{}{}", "AKIA", random(7, 16, UPPER_DIGITS))
    }
    pub(crate) fn github_token() -> String {
        format!("{}_{}", "ghp", random(8, 36, ALNUM))
    }
    /// A PEM private key with real line breaks.
    pub(crate) fn pem_key() -> String {
        let body: Vec<String> = (0..4).map(|i| random(20 + i, 64, BASE64)).collect();
        format!(
            "-----BEGIN {} KEY-----\n{}\n-----END {} KEY-----\n",
            "RSA PRIVATE",
            body.join("\n"),
            "RSA PRIVATE"
        )
    }
    /// A generic high-entropy value.
    pub(crate) fn generic(seed: u64) -> String {
        random(100 + seed, 32, ALNUM)
    }
}
