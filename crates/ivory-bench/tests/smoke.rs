//! A tiny run of the benchmarks, so that they keep working: a 2,000-record sync in its own
//! process against the fake in another, and a few store commits. Seconds, not minutes; the
//! real runs are `ivory-bench all` (BENCHMARKS.md).

use std::process::Command;

fn bench(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ivory-bench"))
        .args(args)
        .output()
        .expect("run ivory-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "ivory-bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn a_tiny_throughput_run_reports_a_row() {
    let table = bench(&["throughput", "--sizes", "2000"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("| 2000 |"))
        .unwrap_or_else(|| panic!("no row for 2000 records in:\n{table}"));
    // records/s end to end is a positive number.
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let rate: f64 = cells[3].parse().expect("records/s");
    assert!(rate > 0.0, "{row}");
}

#[test]
fn a_tiny_store_run_reports_three_phases() {
    let table = bench(&["store", "--batches", "3", "--batch-size", "20"]);
    for phase in ["| new |", "| unchanged |", "| changed |"] {
        assert!(table.contains(phase), "{phase} missing in:\n{table}");
    }
}
