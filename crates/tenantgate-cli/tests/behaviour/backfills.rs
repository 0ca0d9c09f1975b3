//! Backfills: named, idempotent data fixes across the fleet.

use crate::{backend_tests, harness::Harness};

backend_tests!(user_statuses_backfill_fixes_every_tenant_once);

async fn user_statuses_backfill_fixes_every_tenant_once(h: Harness) {
    h.use_demo_migrations(None);
    h.create(&["acme", "globex", "initech"]).await;
    // Users written by older code, without their status rows.
    h.exec_in_tenant(
        "acme",
        "INSERT INTO users (username, display_name) VALUES ('a1', 'A1'), ('a2', 'A2')",
    )
    .await;
    h.exec_in_tenant(
        "globex",
        "INSERT INTO users (username, display_name) VALUES ('g1', 'G1')",
    )
    .await;
    let missing = "SELECT count(*) FROM users u WHERE NOT EXISTS (SELECT 1 FROM user_statuses s WHERE s.user_id = u.id)";
    let dry = h
        .run(&["backfill", "user-statuses", "--dry-run", "--json"])
        .await;
    dry.expect(0);
    let rows = |report: &serde_json::Value, t: &str| {
        report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["tenant"] == t)
            .unwrap()["rows_changed"]
            .clone()
    };
    assert_eq!(rows(&dry.json(), "acme"), 2);
    assert_eq!(
        h.scalar_in_tenant("acme", missing).await,
        2,
        "a dry run changes nothing"
    );

    let run = h.run(&["backfill", "user-statuses", "--json"]).await;
    run.expect(0);
    let report = run.json();
    assert_eq!(rows(&report, "acme"), 2);
    assert_eq!(rows(&report, "globex"), 1);
    assert_eq!(rows(&report, "initech"), 0);
    for t in ["acme", "globex", "initech"] {
        assert_eq!(h.scalar_in_tenant(t, missing).await, 0);
    }
    let again = h.run(&["backfill", "user-statuses", "--json"]).await;
    again.expect(0);
    for t in again.json()["tenants"].as_array().unwrap() {
        assert_eq!(
            t["outcome"], "up_to_date",
            "recorded in the backfill ledger: {t}"
        );
    }
    let forced = h
        .run(&["backfill", "user-statuses", "--force", "--json"])
        .await;
    forced.expect(0);
    assert_eq!(
        rows(&forced.json(), "acme"),
        0,
        "idempotent: nothing left to change"
    );
    h.run(&["backfill", "no-such-fix"]).await.expect(2);
}
