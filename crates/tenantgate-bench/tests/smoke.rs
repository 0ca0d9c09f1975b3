//! The benchmark code cannot rot: every scenario runs at smoke size (10
//! tenants, short HTTP runs) against the test cluster and prints a
//! well-formed result line.

use std::process::Command;

/// Runs the benchmark at smoke size against the test cluster with `args`;
/// its stdout, once it succeeded.
fn smoke(args: &[&str]) -> String {
    let url = std::env::var("TENANTGATE_TEST_PG_URL")
        .expect("TENANTGATE_TEST_PG_URL is not set: run the suite with ./scripts/test, which starts PostgreSQL");
    let output = Command::new(env!("CARGO_BIN_EXE_tenantgate-bench"))
        .args(["--smoke", "--database-url", &url])
        .args(args)
        .output()
        .expect("run tenantgate-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn every_scenario_runs_at_smoke_size() {
    let stdout = smoke(&[]);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let scenarios: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["scenario"].as_str())
        .collect();
    for expected in [
        "provision_sequential",
        "provision_parallel",
        "migrate_step",
        "verify",
        "verify_deep",
        "guard_decision",
        "http_throughput",
        "snapshot_memory",
    ] {
        assert!(
            scenarios.contains(&expected),
            "{expected} missing from {scenarios:?}"
        );
    }
    for line in &lines {
        if line.get("floor_s").is_some() {
            assert!(line["ratio"].as_f64().is_some_and(|r| r > 0.0), "{line}");
        }
    }
}

/// The move scenario (not among the defaults: it fills a tenant with data)
/// runs too, with `pg_dump | pg_restore` as its floor.
#[test]
fn the_move_scenario_runs_at_smoke_size() {
    let stdout = smoke(&["--scenarios", "move"]);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("a JSON line");
    assert_eq!(line["scenario"], "move");
    assert!(line["ratio"].as_f64().is_some_and(|r| r > 0.0), "{line}");
}
