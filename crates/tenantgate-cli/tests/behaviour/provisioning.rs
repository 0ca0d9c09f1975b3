//! Atomic provisioning: all of a tenant or nothing of it.

use std::time::Duration;

use crate::{
    backend_tests,
    harness::{eventually, Harness},
    only_on,
};

backend_tests!(
    failed_migration_leaves_nothing,
    killed_provisioning_leaves_nothing,
    existing_tenant_or_taken_domain_changes_nothing,
    no_transaction_migrations_run_after_the_commit,
    domains_are_normalised,
    drop_removes_everything,
    stray_containers_are_not_taken_over,
    concurrent_creations_of_one_name_make_one_tenant,
);

only_on!(sqlite: files_without_a_registry_row_are_set_aside_and_never_served);
only_on!(postgres: hand_edited_registry_timestamps_are_shown_not_fatal);

async fn failed_migration_leaves_nothing(h: Harness) {
    h.write_tables(5);
    h.write(
        "0003_table_3.sql",
        "CREATE TABLE t3 (id bigint); INSERT INTO no_such_table VALUES (1);",
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
        run.stderr.contains(" tenants create acme"),
        "the recovery command: {}",
        run.stderr
    );
    assert!(!h.tenant_exists("acme").await);
    assert_eq!(h.leftovers(), Vec::<String>::new());
    assert_eq!(h.registry_rows("acme").await, (0, 0));
    assert_eq!(
        h.events("acme", "provision_failed").await,
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
        &format!("CREATE TABLE t2 (id int); {}", h.slow_sql(3.0)),
    );
    let mut child = h.spawn(&["tenants", "create", "acme", "--domain", "acme.example.com"]);
    let busy = || async { h.busy_tenants().await > 0 };
    assert!(
        eventually(Duration::from_secs(10), busy).await,
        "provisioning reached migration 2"
    );
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let idle = || async { !busy().await };
    assert!(
        eventually(Duration::from_secs(15), idle).await,
        "the store noticed the dead process"
    );
    assert!(!h.tenant_exists("acme").await);
    assert_eq!(h.registry_rows("acme").await, (0, 0));
    // The next run cleans up what the killed one left (on SQLite, its
    // half-built file) and says so; then the name is free again.
    let next = h.run(&["tenants", "list"]).await;
    next.expect(0);
    if h.is_sqlite() {
        assert!(next.stderr.contains("recovered"), "{}", next.stderr);
        assert!(next.stderr.contains("acme.db.building"), "{}", next.stderr);
    }
    assert_eq!(h.leftovers(), Vec::<String>::new());
    h.write_tables(3);
    h.run(&["tenants", "create", "acme", "--domain", "acme.example.com"])
        .await
        .expect(0);
    assert_eq!(h.ledger("acme").await, [1, 2, 3]);
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
    assert!(!h.tenant_exists("globex").await);
    assert_eq!(h.registry_rows("globex").await, (0, 0));
    assert_eq!(h.registry_rows("acme").await, (1, 1));
    assert_eq!(h.leftovers(), Vec::<String>::new());
}

async fn no_transaction_migrations_run_after_the_commit(h: Harness) {
    h.write_tables(2);
    // SQLite has no CONCURRENTLY; VACUUM is its statement that refuses a transaction.
    let outside = h.pick("CREATE INDEX CONCURRENTLY", "VACUUM; CREATE INDEX");
    h.write(
        "0003_index.sql",
        &format!("-- no-transaction\n{outside} t1_note_idx ON t1 (note);"),
    );
    h.write("0004_table_4.sql", "CREATE TABLE t4 (id int);");
    h.run(&["tenants", "create", "acme"]).await.expect(0);
    assert_eq!(h.ledger("acme").await, [1, 2, 3, 4]);
    assert_eq!(h.state("acme").await, "ready");
    assert!(h.has_index("acme", "t1_note_idx").await);

    h.write(
        "0005_bad_index.sql",
        &format!("-- no-transaction\n{outside} bad_idx ON no_such_table (x);"),
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
    assert!(!h.tenant_exists("globex").await);
    // Hosts that browsers parse as IPv4 addresses are not domains.
    for numeric in ["127.000.000.001", "0x7f.1", "1234", "globex.0x10"] {
        let run = h
            .run(&["tenants", "create", "globex", "--domain", numeric])
            .await;
        run.expect(2);
        assert!(run.stderr.contains("IPv4"), "{numeric}: {}", run.stderr);
        assert!(!h.tenant_exists("globex").await);
    }
}

async fn drop_removes_everything(h: Harness) {
    h.write_tables(2);
    h.run(&["tenants", "create", "acme", "--domain", "acme.example.com"])
        .await
        .expect(0);
    let run = h.run(&["tenants", "drop", "acme"]).await;
    run.expect(2);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert!(h.tenant_exists("acme").await);
    h.run(&["tenants", "drop", "acme", "--yes"]).await.expect(0);
    assert!(!h.tenant_exists("acme").await);
    assert_eq!(h.registry_rows("acme").await, (0, 0));
    assert_eq!(h.leftovers(), Vec::<String>::new());
    h.run(&["tenants", "drop", "acme", "--yes"]).await.expect(1);
    h.run(&["tenants", "show", "acme"]).await.expect(1);
}

/// A tenant's schema (or file) without a registry row is never taken over
/// by `tenants create`. On PostgreSQL it stays as it is; on SQLite, where a
/// crash between the rename and the registry commit leaves exactly such a
/// file, the next open moves it to `orphaned/` (data kept, never served).
async fn stray_containers_are_not_taken_over(h: Harness) {
    h.write_tables(1);
    h.make_stray("initech").await;
    let run = h.run(&["tenants", "create", "initech"]).await;
    if h.is_sqlite() {
        run.expect(0);
        assert!(run.stderr.contains("orphaned/initech.db"), "{}", run.stderr);
        assert!(!h.has_table("initech", "keep").await, "a fresh file");
    } else {
        run.expect(1);
        assert!(
            run.stderr.contains("exists without a registry row"),
            "{}",
            run.stderr
        );
        assert!(h.has_table("initech", "keep").await);
    }
}

async fn files_without_a_registry_row_are_set_aside_and_never_served(h: Harness) {
    h.use_demo_migrations(None);
    h.run(&["tenants", "create", "acme", "--domain", "acme.localhost"])
        .await
        .expect(0);
    // What a SIGKILL between the rename and the registry commit leaves.
    let tenants = h.data_folder().join("tenants");
    std::fs::copy(tenants.join("acme.db"), tenants.join("ghost.db")).unwrap();
    // And a drop interrupted before its registry commit.
    std::fs::rename(tenants.join("acme.db"), tenants.join("acme.db.dropping")).unwrap();
    let server = h
        .serve_with(&h.url, &["--allow-degraded"], &[])
        .await
        .unwrap();
    assert_eq!(
        server
            .page("ghost.localhost", "/en/app/messages/", true)
            .await
            .status,
        404,
        "no registry row, never served"
    );
    let reported = || async {
        let stderr = server.stderr();
        stderr.contains("orphaned/ghost.db") && stderr.contains("restored to tenants/acme.db")
    };
    assert!(
        eventually(Duration::from_secs(5), reported).await,
        "{}",
        server.stderr()
    );
    assert_eq!(
        server
            .page("acme.localhost", "/en/app/messages/", true)
            .await
            .status,
        200
    );
    assert_eq!(h.leftovers(), Vec::<String>::new());
    let orphaned: Vec<_> = std::fs::read_dir(h.data_folder().join("orphaned"))
        .unwrap()
        .collect();
    assert_eq!(orphaned.len(), 1, "kept, not deleted");
}

async fn concurrent_creations_of_one_name_make_one_tenant(h: Harness) {
    h.write_tables(3);
    let runs = futures::future::join_all(
        (0..4).map(|_| h.run(&["tenants", "create", "acme", "--domain", "acme.example.com"])),
    )
    .await;
    let succeeded = runs.iter().filter(|r| r.code == 0).count();
    assert_eq!(succeeded, 1, "exactly one creation wins");
    for lost in runs.iter().filter(|r| r.code != 0) {
        lost.expect(1);
        assert!(
            lost.stderr.contains("tenant acme already exists")
                || lost
                    .stderr
                    .contains("acme.example.com already belongs to tenant acme"),
            "{}",
            lost.stderr
        );
    }
    assert_eq!(h.registry_rows("acme").await, (1, 1));
    assert_eq!(h.ledger("acme").await, [1, 2, 3]);
    assert_eq!(h.leftovers(), Vec::<String>::new());
}

/// The registry's timestamps are formatted by tenantgate: a hand-edited
/// row whose timestamps the format cannot spell still reads, and the fleet
/// is still listed, served and verified.
async fn hand_edited_registry_timestamps_are_shown_not_fatal(h: Harness) {
    h.write(
        "0001_users.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY);",
    );
    h.create(&["acme", "globex"]).await;
    h.db()
        .batch_execute(
            "UPDATE tenantgate.tenants SET created_at = '1960-01-01', updated_at = 'infinity' WHERE name = 'acme'",
        )
        .await
        .unwrap();
    let run = h.run(&["tenants", "list", "--json"]).await;
    run.expect(0);
    let list = run.json();
    let tenant = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {list}"))
            .clone()
    };
    assert_eq!(tenant("acme")["created_at"], "out of range");
    assert_eq!(tenant("acme")["updated_at"], "out of range");
    let created = tenant("globex")["created_at"].as_str().unwrap().to_owned();
    assert!(
        created.len() == 20 && created.starts_with("20") && created.ends_with('Z'),
        "{created}"
    );
    h.run(&["verify"]).await.expect(0);
}
