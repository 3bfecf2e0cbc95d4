//! The repository itself: no live-looking secret anywhere, and the rules documented.

use ivory_certify::{ScanOptions, scan_secrets};

use crate::support::repo_root;

#[test]
fn this_repository_has_no_live_looking_secrets() {
    let report = scan_secrets(&repo_root(), &ScanOptions::default()).expect("scan");
    assert!(
        report.is_clean(),
        "live-looking secrets in the repository:\n{}",
        report
            .findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(report.files_scanned > 50, "{} files", report.files_scanned);
}

#[test]
fn the_spec_documents_every_rule() {
    let spec = std::fs::read_to_string(repo_root().join("docs/specs/secret-scan.md"))
        .expect("docs/specs/secret-scan.md");
    for rule in ivory_certify::secrets::rules() {
        assert!(
            spec.contains(&format!("`{}`", rule.id())),
            "docs/specs/secret-scan.md does not document rule {}",
            rule.id()
        );
    }
    for marker in [
        "`test`",
        "`fake`",
        "`example`",
        "`dummy`",
        "`not_real`",
        "`notreal`",
        "`xxxx`",
    ] {
        assert!(spec.contains(marker), "fake marker {marker} undocumented");
    }
    assert!(spec.contains(".ivory-secrets-allow"));
}
