//! Verification: missing migrations, drift in the catalog, and --fix.

use crate::{backend_tests, harness::Harness};

backend_tests!(
    missing_migrations_are_reported_and_fixed,
    deep_verification_finds_the_missing_table
);

async fn missing_migrations_are_reported_and_fixed(h: Harness) {
    h.write_tables(2);
    h.create(&["t_a", "t_b"]).await;
    h.run(&["verify"]).await.expect(0);
    h.write("0003_new.sql", "CREATE TABLE t3 (id int);");
    let run = h.run(&["verify", "--json"]).await;
    run.expect(1);
    let report = run.json();
    let first = &report["tenants"][0];
    assert_eq!(first["missing"][0]["version"], 3);
    assert_eq!(first["state"], "pending");
    assert_eq!(
        first["recovery"][0],
        serde_json::json!({ "action": "migrate_tenant", "tenant": "t_a" })
    );
    let text = h.run(&["verify"]).await;
    assert!(
        text.stdout.contains(" migrate --tenant t_a"),
        "the command that heals it: {}",
        text.stdout
    );
    let run = h.run(&["verify", "--fix", "--json"]).await;
    run.expect(0);
    let report = run.json();
    assert_eq!(report["fixed"]["tenants"].as_array().unwrap().len(), 2);
    assert!(report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["ok"] == true));
    assert_eq!(h.ledger("t_b").await, [1, 2, 3]);
}

async fn deep_verification_finds_the_missing_table(h: Harness) {
    h.write(
        "0001_auth.sql",
        "CREATE TABLE auth_user (id serial PRIMARY KEY, username text NOT NULL);",
    );
    h.write(
        "0002_messages.sql",
        "CREATE TABLE messages_sys_userstatus (id bigserial PRIMARY KEY, user_id int NOT NULL UNIQUE REFERENCES auth_user (id), is_online boolean NOT NULL DEFAULT false);\n\
         CREATE INDEX userstatus_online_idx ON messages_sys_userstatus (is_online);",
    );
    h.create(&["t_a", "t_b", "t_c"]).await;
    h.run(&["verify", "--deep"]).await.expect(0);
    // The seed incident: the ledger says 0002 ran, the table is gone.
    h.exec_in_tenant("t_b", "DROP TABLE messages_sys_userstatus")
        .await;
    h.run(&["verify"]).await.expect(0); // the ledger alone cannot see it
    let run = h.run(&["verify", "--deep", "--json"]).await;
    run.expect(1);
    let report = run.json();
    let broken = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "t_b")
        .unwrap();
    assert_eq!(broken["state"], "drift");
    assert!(
        broken["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "missing table messages_sys_userstatus"),
        "{broken}"
    );
    assert_eq!(broken["recovery"][0]["action"], "repair_drift");
    assert_eq!(broken["recovery"][0]["tenant"], "t_b");
    assert_eq!(
        h.state("t_b").await,
        "drift",
        "recorded so the guard blocks it"
    );
    assert_eq!(h.state("t_a").await, "ready");
    // --fix cannot repair drift: it is reported, never hidden.
    h.run(&["verify", "--deep", "--fix"]).await.expect(1);
    // Restoring the table clears the drift.
    h.exec_in_tenant(
        "t_b",
        "CREATE TABLE messages_sys_userstatus (id bigserial PRIMARY KEY, user_id int NOT NULL UNIQUE REFERENCES auth_user (id), is_online boolean NOT NULL DEFAULT false);\n\
         CREATE INDEX userstatus_online_idx ON messages_sys_userstatus (is_online)",
    )
    .await;
    h.run(&["verify", "--deep"]).await.expect(0);
    assert_eq!(h.state("t_b").await, "ready");
}
