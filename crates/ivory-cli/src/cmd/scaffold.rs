//! `ivory scaffold NAME [--auth oauth2|api_key|none] [--cursor updated_at|opaque_token|none]
//! [--dir DIR]`: a new connector crate that builds, passes its own tests against a mocked
//! upstream, and passes `ivory certify DIR/manifest.json` as generated (SPEC §7).
//!
//! The crate is rendered from the templates in `crates/ivory-cli/templates/scaffold/` (compiled
//! in with `include_str!`): a connector for the example Items API written the way the reference
//! connectors are, its mock, its tests, a README with the listing template, and the harness
//! entry point `NAME-harness` through which `ivory certify` runs its dynamic checks
//! (`ivory_certify::external`). It depends on the SDK crates by absolute path to this SDK
//! checkout (no registry yet; `IVORY_SDK_DIR` overrides where that is), and gets a copy of the
//! SDK's `Cargo.lock` so it builds with the versions the SDK was tested with.
//!
//! Exit codes: 0 created; 2 usage errors (an invalid name, an existing directory, an unknown
//! option value — clap's); 1 when the files could not be written or the SDK cannot be found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::usage_error;

/// Arguments of `ivory scaffold`.
#[derive(Debug, Args)]
pub(crate) struct ScaffoldArgs {
    /// The connector's crate name and manifest id: a lowercase slug (a-z, 0-9, `-`; 2–64
    /// characters; starting with a letter), such as `acme-items`.
    pub(crate) name: String,
    /// How tenants authenticate to the upstream.
    #[arg(long, value_enum, default_value_t = Auth::ApiKey)]
    pub(crate) auth: Auth,
    /// How the sync resumes.
    #[arg(long, value_enum, default_value_t = CursorChoice::UpdatedAt)]
    pub(crate) cursor: CursorChoice,
    /// The directory to create (default `./NAME`); it must not exist yet.
    #[arg(long)]
    pub(crate) dir: Option<PathBuf>,
}

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Auth {
    /// OAuth 2 authorization code with PKCE.
    #[value(name = "oauth2")]
    OAuth2,
    /// An API key the tenant pastes.
    #[value(name = "api_key")]
    ApiKey,
    /// No credential.
    #[value(name = "none")]
    None,
}

/// `--cursor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CursorChoice {
    /// A watermark on the upstream's last-modified time.
    #[value(name = "updated_at")]
    UpdatedAt,
    /// A token the connector defines (here: the last id stored).
    #[value(name = "opaque_token")]
    OpaqueToken,
    /// None: a full pass every sync.
    #[value(name = "none")]
    None,
}

impl Auth {
    fn as_str(self) -> &'static str {
        match self {
            Auth::OAuth2 => "oauth2",
            Auth::ApiKey => "api_key",
            Auth::None => "none",
        }
    }
}

impl CursorChoice {
    fn as_str(self) -> &'static str {
        match self {
            CursorChoice::UpdatedAt => "updated_at",
            CursorChoice::OpaqueToken => "opaque_token",
            CursorChoice::None => "none",
        }
    }
}

/// The templates, by the path they are written to.
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/scaffold/Cargo.toml.tmpl"),
    ),
    (
        "manifest.json",
        include_str!("../../templates/scaffold/manifest.json.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/scaffold/README.md.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/scaffold/src/lib.rs.tmpl"),
    ),
    (
        "src/mock.rs",
        include_str!("../../templates/scaffold/src/mock.rs.tmpl"),
    ),
    (
        "src/bin/harness.rs",
        include_str!("../../templates/scaffold/src/bin/harness.rs.tmpl"),
    ),
    (
        "tests/sync.rs",
        include_str!("../../templates/scaffold/tests/sync.rs.tmpl"),
    ),
    (".gitignore", "/target\n"),
];

macro_rules! snippet {
    ($name:literal) => {
        include_str!(concat!(
            "../../templates/scaffold/snippets/",
            $name,
            ".tmpl"
        ))
    };
}

/// Names the generated crate cannot take: Rust keywords and reserved words, names cargo
/// reserves, and the crates it depends on.
const RESERVED: &[&str] = &[
    // Rust keywords and reserved words that are valid slugs.
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    // Cargo: the standard library's crates, build directories, Windows device names.
    "alloc",
    "core",
    "proc-macro",
    "std",
    "test",
    "build",
    "deps",
    "examples",
    "incremental",
    "con",
    "prn",
    "aux",
    "nul",
    "com1",
    "lpt1",
    // The generated crate's own dependencies.
    "axum",
    "futures",
    "ivory-certify",
    "ivory-runtime",
    "ivory-sdk",
    "jiff",
    "serde",
    "tempfile",
    "tokio",
    "url",
];

/// Checks `name` is usable as the crate name and manifest id; the reason when it is not.
fn check_name(name: &str) -> Result<(), String> {
    let len = name.chars().count();
    let slug = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !(2..=64).contains(&len) || !slug {
        return Err(format!(
            "{name:?} is not a valid connector name: use a lowercase slug (a-z, 0-9, -; 2–64 characters; starting with a letter), such as acme-items; it is both the crate name and the manifest id"
        ));
    }
    if name.ends_with('-') || name.contains("--") {
        return Err(format!(
            "{name:?} is not a valid connector name: a hyphen must separate two words"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "{name:?} cannot be a crate name here: it is a Rust keyword, a name cargo reserves, or a crate the connector depends on"
        ));
    }
    Ok(())
}

/// `acme-items` → `Acme Items`.
fn title_of(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `acme-items` → `AcmeItemsConnector`.
fn type_of(name: &str) -> String {
    title_of(name).replace(' ', "") + "Connector"
}

/// What the templates are rendered with.
struct Plan<'a> {
    name: &'a str,
    auth: Auth,
    cursor: CursorChoice,
    /// The SDK checkout the crate depends on (absolute, `/`-separated).
    sdk: &'a str,
}

impl Plan<'_> {
    /// The values of the placeholders; snippets first, since they hold placeholders too.
    fn values(&self) -> Vec<(&'static str, String)> {
        let (connection, credentials_fn, auth_test, auth_doc) = match self.auth {
            Auth::OAuth2 => (
                snippet!("connection_oauth2"),
                snippet!("credentials_oauth2"),
                snippet!("test_auth"),
                "the tenant's OAuth 2 access token (authorization code with PKCE at `auth.items.example`, scope `items:read`), sent as `Authorization: Bearer <token>`; the platform refreshes it.",
            ),
            Auth::ApiKey => (
                snippet!("connection_api_key"),
                snippet!("credentials_api_key"),
                snippet!("test_auth"),
                "the tenant's API key, sent as `Authorization: Bearer <key>`.",
            ),
            Auth::None => (
                snippet!("connection_none"),
                snippet!("credentials_none"),
                "",
                "none, the API is public.",
            ),
        };
        let (sync, doc, readme, test, listing) = match self.cursor {
            CursorChoice::UpdatedAt => (
                snippet!("sync_updated_at"),
                snippet!("doc_updated_at"),
                snippet!("readme_updated_at"),
                snippet!("test_updated_at"),
                "An updated_at watermark: the newest update time stored. Each sync reads the items updated since the watermark (inclusive) and before the sync started, 100 per request; the watermark is committed when the window completes, so a crash re-reads that window and loses nothing.",
            ),
            CursorChoice::OpaqueToken => (
                snippet!("sync_opaque_token"),
                snippet!("doc_opaque_token"),
                snippet!("readme_opaque_token"),
                snippet!("test_opaque_token"),
                "An opaque cursor: the last item id stored. Items are read in id order, 100 per request, each page committed with its cursor; a sync reads only the items created since the last one, and a crash resumes after the last committed page.",
            ),
            CursorChoice::None => (
                snippet!("sync_none"),
                snippet!("doc_none"),
                snippet!("readme_none"),
                snippet!("test_none"),
                "No cursor: every sync is a full pass over the items, 100 per request, which is also how deletions are seen. An interrupted pass deletes nothing; the next sync starts over.",
            ),
        };
        let with_credential = self.auth != Auth::None;
        vec![
            (
                "{{connection}}",
                connection.trim_end_matches('\n').to_owned(),
            ),
            ("{{credentials_fn}}", credentials_fn.trim_end().to_owned()),
            ("{{auth_test}}", auth_test.to_owned()),
            ("{{auth_doc}}", auth_doc.to_owned()),
            ("{{sync}}", sync.trim_end().to_owned()),
            ("{{cursor_doc}}", doc.trim_end().to_owned()),
            ("{{cursor_readme}}", readme.trim_end().to_owned()),
            ("{{incremental_test}}", test.to_owned()),
            ("{{cursor_listing}}", listing.to_owned()),
            (
                "{{mock_credential}}",
                if with_credential {
                    "Some(CREDENTIAL)"
                } else {
                    "None"
                }
                .to_owned(),
            ),
            (
                "{{harness_credential}}",
                if with_credential {
                    "Some(credential.expose())"
                } else {
                    "None"
                }
                .to_owned(),
            ),
            (
                "{{credential_param}}",
                if with_credential {
                    "credential"
                } else {
                    "_credential"
                }
                .to_owned(),
            ),
            ("{{crate_ident}}", self.name.replace('-', "_")),
            ("{{connector}}", type_of(self.name)),
            ("{{title}}", title_of(self.name)),
            ("{{name}}", self.name.to_owned()),
            ("{{auth}}", self.auth.as_str().to_owned()),
            ("{{cursor}}", self.cursor.as_str().to_owned()),
            ("{{sdk}}", self.sdk.to_owned()),
        ]
    }

    /// Every file of the crate: (relative path, contents).
    fn render(&self) -> Result<Vec<(&'static str, String)>, String> {
        let values = self.values();
        FILES
            .iter()
            .map(|(path, template)| {
                let mut text = (*template).to_owned();
                for (placeholder, value) in &values {
                    text = text.replace(placeholder, value);
                }
                match text.find("{{") {
                    Some(at) => Err(format!(
                        "internal error: the template of {path} has an unknown placeholder at {}",
                        text[at..].chars().take(40).collect::<String>()
                    )),
                    None => {
                        // One final newline, whichever snippets were left empty.
                        text.truncate(text.trim_end().len());
                        text.push('\n');
                        Ok((*path, text))
                    }
                }
            })
            .collect()
    }
}

/// The SDK checkout: `IVORY_SDK_DIR`, else the one this binary was built from.
fn sdk_root() -> Result<PathBuf, String> {
    let (root, origin) = match std::env::var_os("IVORY_SDK_DIR") {
        Some(dir) => (PathBuf::from(dir), "IVORY_SDK_DIR"),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
            "the checkout this ivory was built from",
        ),
    };
    let root = root.canonicalize().map_err(|e| {
        format!(
            "cannot find the Ivory SDK at {} ({origin}): {e}; set IVORY_SDK_DIR to an SDK checkout",
            root.display()
        )
    })?;
    if !root.join("crates/ivory-sdk/Cargo.toml").is_file() {
        return Err(format!(
            "{} ({origin}) is not an Ivory SDK checkout (no crates/ivory-sdk); set IVORY_SDK_DIR to one",
            root.display()
        ));
    }
    Ok(root)
}

fn write_crate(dir: &Path, files: &[(&str, String)], lock: Option<&Path>) -> std::io::Result<()> {
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    if let Some(lock) = lock {
        std::fs::copy(lock, dir.join("Cargo.lock"))?;
    }
    Ok(())
}

pub(crate) fn run(args: &ScaffoldArgs) -> anyhow::Result<ExitCode> {
    if let Err(reason) = check_name(&args.name) {
        return Ok(usage_error(reason));
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        return Ok(usage_error(format!(
            "{} already exists: scaffold creates a new directory (choose another --dir)",
            dir.display()
        )));
    }
    let sdk = match sdk_root() {
        Ok(sdk) => sdk,
        Err(reason) => {
            eprintln!("error: {reason}");
            return Ok(ExitCode::from(1));
        }
    };
    let Some(sdk_text) = sdk.to_str() else {
        eprintln!(
            "error: the SDK path {} is not UTF-8: Cargo.toml cannot name it",
            sdk.display()
        );
        return Ok(ExitCode::from(1));
    };
    let plan = Plan {
        name: &args.name,
        auth: args.auth,
        cursor: args.cursor,
        sdk: &sdk_text.replace('\\', "/"),
    };
    let files = plan.render().map_err(anyhow::Error::msg)?;
    let lock = sdk.join("Cargo.lock");
    let lock = lock.is_file().then_some(lock.as_path());
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("could not create {}: {e}", dir.display()))?;
    if let Err(error) = write_crate(&dir, &files, lock) {
        // Leave nothing half-written behind.
        let _ = std::fs::remove_dir_all(&dir);
        return Err(anyhow::anyhow!(
            "could not write {}: {error}",
            dir.display()
        ));
    }
    println!(
        "Created the connector crate {} in {} ({} auth, {} cursor).",
        args.name,
        dir.display(),
        args.auth.as_str(),
        args.cursor.as_str()
    );
    for (relative, _) in &files {
        println!("  {relative}");
    }
    if lock.is_some() {
        println!("  Cargo.lock (the SDK's)");
    }
    println!(
        "It depends on the SDK at {sdk_text} by path. Next:\n  cd {} && cargo test\n  ivory certify {}",
        dir.display(),
        dir.join("manifest.json").display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use ivory_sdk::manifest::{AuthType, CursorKind, Manifest, ValidationMode};

    use super::*;

    const AUTHS: [Auth; 3] = [Auth::OAuth2, Auth::ApiKey, Auth::None];
    const CURSORS: [CursorChoice; 3] = [
        CursorChoice::UpdatedAt,
        CursorChoice::OpaqueToken,
        CursorChoice::None,
    ];

    #[test]
    fn names() {
        for good in ["acme-items", "ab", "x1", "crm-sync-2"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let too_long = "a".repeat(65);
        for bad in [
            "",
            "a",
            "Acme",
            "acme_items",
            "1acme",
            "-acme",
            "acme-",
            "ac--me",
            "acme items",
            "acmé",
            too_long.as_str(),
            "test",
            "self",
            "ivory-sdk",
            "tokio",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(title_of("acme-items-2"), "Acme Items 2");
        assert_eq!(type_of("acme-items"), "AcmeItemsConnector");
    }

    #[test]
    fn every_combination_renders_a_valid_manifest_and_no_placeholder() {
        for auth in AUTHS {
            for cursor in CURSORS {
                let plan = Plan {
                    name: "acme-items",
                    auth,
                    cursor,
                    sdk: "/sdk",
                };
                let files = plan.render().expect("renders");
                let text = |path: &str| &files.iter().find(|(p, _)| *p == path).expect("file").1;
                let manifest = Manifest::parse(text("manifest.json"), ValidationMode::Production)
                    .unwrap_or_else(|e| panic!("{auth:?} {cursor:?}: {e}"));
                assert_eq!(manifest.id, "acme-items");
                let expected_auth = match auth {
                    Auth::OAuth2 => AuthType::Oauth2,
                    Auth::ApiKey => AuthType::ApiKey,
                    Auth::None => AuthType::None,
                };
                assert_eq!(manifest.connection.auth, expected_auth);
                let expected_cursor = match cursor {
                    CursorChoice::UpdatedAt => CursorKind::UpdatedAt,
                    CursorChoice::OpaqueToken => CursorKind::OpaqueToken,
                    CursorChoice::None => CursorKind::None,
                };
                assert_eq!(manifest.connection.sync.cursor, expected_cursor);
                assert!(text("Cargo.toml").contains(r#"path = "/sdk/crates/ivory-sdk""#));
                assert!(text("src/lib.rs").contains("pub struct AcmeItemsConnector"));
                assert!(text("src/bin/harness.rs").contains("use acme_items::mock::MockItems;"));
                assert_eq!(
                    text("tests/sync.rs").contains("a_wrong_credential_is_refused"),
                    auth != Auth::None
                );
            }
        }
    }

    /// The generated Cargo.toml asks for the versions the SDK's workspace uses.
    #[test]
    fn dependency_versions_follow_the_workspace() {
        let workspace =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
                .expect("workspace Cargo.toml");
        let template = FILES
            .iter()
            .find(|(p, _)| *p == "Cargo.toml")
            .expect("template")
            .1;
        for line in template.lines() {
            let Some((name, spec)) = line.split_once(" = ") else {
                continue;
            };
            let version = spec
                .strip_prefix('"')
                .and_then(|s| s.split('"').next())
                .or_else(|| {
                    spec.split("version = \"")
                        .nth(1)
                        .and_then(|s| s.split('"').next())
                });
            let Some(version) = version.filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
            else {
                continue;
            };
            if ["version", "rust-version"].contains(&name) {
                continue;
            }
            let declared = workspace
                .lines()
                .find(|l| l.starts_with(&format!("{name} = ")))
                .unwrap_or_else(|| panic!("{name} is not a workspace dependency"));
            assert!(
                declared.contains(&format!("\"{version}\"")),
                "{name}: the template asks for {version}, the workspace for {declared}"
            );
        }
    }
}
