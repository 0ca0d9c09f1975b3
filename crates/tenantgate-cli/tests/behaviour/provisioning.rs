//! Atomic provisioning: all of a tenant or nothing of it.

use std::time::Duration;

use crate::{
    backend_tests,
    harness::{eventually, Harness},
};

backend_tests!(
    failed_migration_leaves_nothing,
    killed_provisioning_leaves_nothing,
    existing_tenant_or_taken_domain_changes_nothing,
    no_transaction_migrations_run_after_the_commit,
    domains_are_normalised,
    drop_removes_everything,
);

async fn failed_migration_leaves_nothing(h: Harness) {
    h.write_tables(5);
    h.write(
        "0003_table_3.sql",
        "CREATE TABLE t3 (id bigint REFERENCES no_such_table (id));",
    );
    let run = h
        .run(&["tenants", "create", "acme", "--domain", "acme.example.com"])
        .await;
    run.expect(1);
    assert!(
        run.stderr.contains("migration 3 (0003_table_3.sql)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("no_such_table"),
        "the database's own error: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("tenantgate tenants create acme"),
        "the recovery command: {}",
        run.stderr
    );
    assert!(!h.schema_exists("acme").await);
    assert_eq!(h.registry_rows("acme").await, (0, 0));
    assert_eq!(
        h.count("SELECT count(*) FROM tenantgate.events WHERE tenant = $1 AND kind = 'provision_failed' AND version = 3", "acme").await,
        1,
        "the failed attempt is recorded as an event"
    );
    // The next attempt is not blocked by residue.
    h.write_tables(5);
    h.run(&["tenants", "create", "acme", "--domain", "acme.example.com"])
        .await
        .expect(0);
    assert_eq!(h.ledger("acme").await, [1, 2, 3, 4, 5]);
    assert_eq!(h.state("acme").await, "ready");
}

async fn killed_provisioning_leaves_nothing(h: Harness) {
    h.write_tables(3);
    h.write(
        "0002_table_2.sql",
        "CREATE TABLE t2 (id int); SELECT pg_sleep(2);",
    );
    let mut child = h.spawn(&["tenants", "create", "acme", "--domain", "acme.example.com"]);
    let sleeping = || async {
        h.count(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
            "%pg_sleep(2)%",
        )
        .await
            > 0
    };
    assert!(
        eventually(Duration::from_secs(10), sleeping).await,
        "provisioning reached migration 2"
    );
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let gone = || async { !sleeping().await };
    assert!(
        eventually(Duration::from_secs(15), gone).await,
        "the server noticed the dead client"
    );
    assert!(!h.schema_exists("acme").await);
    assert_eq!(h.registry_rows("acme").await, (0, 0));
}

async fn existing_tenant_or_taken_domain_changes_nothing(h: Harness) {
    h.write_tables(2);
    h.run(&["tenants", "create", "acme", "--domain", "acme.example.com"])
        .await
        .expect(0);
    let run = h.run(&["tenants", "create", "acme"]).await;
    run.expect(1);
    assert!(
        run.stderr.contains("tenant acme already exists"),
        "{}",
        run.stderr
    );
    let run = h
        .run(&[
            "tenants",
            "create",
            "globex",
            "--domain",
            "ACME.example.com",
        ])
        .await;
    run.expect(1);
    assert!(
        run.stderr
            .contains("domain acme.example.com already belongs to tenant acme"),
        "{}",
        run.stderr
    );
    assert!(!h.schema_exists("globex").await);
    assert_eq!(h.registry_rows("globex").await, (0, 0));
    assert_eq!(h.registry_rows("acme").await, (1, 1));
    // A schema that exists without a registry row is not taken over.
    h.db()
        .batch_execute("CREATE SCHEMA initech; CREATE TABLE initech.keep (id int)")
        .await
        .unwrap();
    let run = h.run(&["tenants", "create", "initech"]).await;
    run.expect(1);
    assert!(
        run.stderr.contains("exists without a registry row"),
        "{}",
        run.stderr
    );
    assert_eq!(
        h.count(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
            "initech"
        )
        .await,
        1
    );
}

async fn no_transaction_migrations_run_after_the_commit(h: Harness) {
    h.write_tables(2);
    h.write(
        "0003_index.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY t1_note_idx ON t1 (note);",
    );
    h.write("0004_table_4.sql", "CREATE TABLE t4 (id int);");
    h.run(&["tenants", "create", "acme"]).await.expect(0);
    assert_eq!(h.ledger("acme").await, [1, 2, 3, 4]);
    assert_eq!(h.state("acme").await, "ready");
    assert_eq!(
        h.count(
            "SELECT count(*) FROM pg_indexes WHERE indexname = $1",
            "t1_note_idx"
        )
        .await,
        1
    );

    h.write(
        "0005_bad_index.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY bad_idx ON no_such_table (x);",
    );
    let run = h.run(&["tenants", "create", "globex"]).await;
    run.expect(1);
    assert!(run.stderr.contains("0005_bad_index.sql"), "{}", run.stderr);
    assert_eq!(h.state("globex").await, "failed", "created, then blocked");
    assert_eq!(h.ledger("globex").await, [1, 2, 3, 4]);
}

async fn domains_are_normalised(h: Harness) {
    h.write_tables(1);
    h.run(&[
        "tenants",
        "create",
        "acme",
        "--domain",
        "Bücher.Example.COM.:8443",
        "--domain",
        "acme.localhost",
    ])
    .await
    .expect(0);
    let run = h.run(&["tenants", "show", "acme", "--json"]).await;
    run.expect(0);
    assert_eq!(
        run.json()["domains"],
        serde_json::json!(["acme.localhost", "xn--bcher-kva.example.com"])
    );
    let run = h
        .run(&["tenants", "create", "globex", "--domain", "not a host"])
        .await;
    run.expect(2);
    assert!(!h.schema_exists("globex").await);
}

async fn drop_removes_everything(h: Harness) {
    h.write_tables(2);
    h.run(&["tenants", "create", "acme", "--domain", "acme.example.com"])
        .await
        .expect(0);
    let run = h.run(&["tenants", "drop", "acme"]).await;
    run.expect(2);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert!(h.schema_exists("acme").await);
    h.run(&["tenants", "drop", "acme", "--yes"]).await.expect(0);
    assert!(!h.schema_exists("acme").await);
    assert_eq!(h.registry_rows("acme").await, (0, 0));
    h.run(&["tenants", "drop", "acme", "--yes"]).await.expect(1);
    h.run(&["tenants", "show", "acme"]).await.expect(1);
}
