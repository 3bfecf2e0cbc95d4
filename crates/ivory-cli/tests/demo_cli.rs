//! `ivory demo` as a user runs it: the real binary, nothing set up, a fresh SQLite file; then
//! a second run on the same file.

use std::process::Output;

use assert_cmd::Command;

fn ivory(db: &std::path::Path, args: &[&str]) -> Output {
    Command::cargo_bin("ivory")
        .expect("binary")
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("IVORY_MASTER_KEY")
        .output()
        .expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const ARGS: &[&str] = &[
    "demo",
    "--invoices",
    "400",
    "--contacts",
    "120",
    "--orders",
    "60",
];

/// The "Records per object" block.
fn counts(report: &str) -> Vec<String> {
    report
        .lines()
        .skip_while(|l| !l.starts_with("Records per object"))
        .take_while(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The rows of the sync table: (connector, sync label, created, updated).
fn rows(report: &str) -> Vec<(String, String, u64, u64)> {
    report
        .lines()
        .filter(|l| {
            ["stripe ", "hubspot ", "airtable "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .filter_map(|l| {
            let (connector, rest) = l.split_once(' ')?;
            let rest = rest.trim_start();
            let (label, numbers) = if let Some(numbers) = rest.strip_prefix("both sides") {
                ("both sides", numbers)
            } else {
                rest.split_once(' ')?
            };
            let numbers: Vec<u64> = numbers
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            Some((
                connector.to_owned(),
                label.to_owned(),
                *numbers.first()?,
                *numbers.get(1)?,
            ))
        })
        .collect()
}

#[test]
fn the_demo_runs_end_to_end_and_a_second_run_creates_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("demo.db");
    let first = ivory(&db, ARGS);
    let report = text(&first.stdout);
    assert!(first.status.success(), "{}\n{report}", text(&first.stderr));
    for expected in [
        "API key (stored sealed)",
        "OAuth 2.0 with PKCE through the fake authorization server",
        "signed invoice.payment_failed: HTTP 200 accepted; workflow payment-failed-follow-up succeeded",
        "tampered copy: HTTP 400 rejected: no signature matched",
        "outstanding (platform formula) ",
        "payment_failed true",
        "follow-up task",
        "1 won by HubSpot, 1 by Ivorycom (0 ties); 2 platform edits pushed",
        "webhook accepted 1",
        "webhook rejected 1",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
    let first_rows = rows(&report);
    assert_eq!(first_rows.len(), 4, "{report}");
    assert_eq!(
        first_rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        [400, 120, 70, 0],
        "created per sync: {report}"
    );
    let first_counts = counts(&report);
    assert!(
        first_counts
            .iter()
            .any(|l| l.contains("stripe_invoice") && l.ends_with(" 400")),
        "{first_counts:?}"
    );
    assert!(
        first_counts
            .iter()
            .any(|l| l.contains("task") && l.ends_with(" 1"))
    );

    // The state is inspectable with the CLI.
    let export = ivory(
        &db,
        &[
            "records",
            "export",
            "--tenant",
            "demo",
            "--kind",
            "stripe_invoice",
        ],
    );
    assert!(export.status.success());
    assert_eq!(text(&export.stdout).lines().count(), 400);
    let listed = ivory(
        &db,
        &["installations", "list", "--tenant", "demo", "--json"],
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");

    let second = ivory(&db, ARGS);
    let again = text(&second.stdout);
    assert!(second.status.success(), "{}\n{again}", text(&second.stderr));
    assert!(
        again.contains("signed invoice.payment_failed: HTTP 200 already processed"),
        "the same event is a legitimate retry the second time:\n{again}"
    );
    for (connector, label, created, _) in rows(&again) {
        assert_eq!(
            created, 0,
            "{connector} {label} created records twice:\n{again}"
        );
    }
    assert_eq!(counts(&again), first_counts, "the same records, no more");
    assert_eq!(
        again.matches("workflow run wfr_").count(),
        1,
        "one workflow run in all:\n{again}"
    );
}
