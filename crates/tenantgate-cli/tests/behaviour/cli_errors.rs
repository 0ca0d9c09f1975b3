//! Bad input gets a clear error, the documented exit code, and changes nothing.

use crate::{backend_tests, harness::Harness, only_on};

/// A database URL nothing answers at.
const UNREACHABLE: &str = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1";

backend_tests!(
    hostile_tenant_names_are_rejected_before_any_sql,
    broken_migration_folders_are_usage_errors,
);

// PostgreSQL only: SQLite files are opened directly, without a network.
only_on!(postgres: tls_connections_work);

async fn hostile_tenant_names_are_rejected_before_any_sql(h: Harness) {
    h.write_tables(1);
    let long = "a".repeat(64);
    for name in [
        "a;drop schema public",
        "\"x\"",
        "Ab",
        long.as_str(),
        "",
        "ünïcode",
        "pg_temp",
        "public",
        "tenantgate",
        "information_schema",
    ] {
        // An unreachable database proves validation happens before connecting (else exit 3).
        let run = h
            .run_with_url(UNREACHABLE, &["tenants", "create", name])
            .await;
        let stderr = &run.stderr;
        assert_eq!(run.code, 2, "{name:?}: {stderr}");
        assert!(
            stderr.contains("lowercase ASCII letters"),
            "{name:?}: the rule is stated: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    for args in [
        ["migrate", "--tenant", "Bad;Name"],
        ["verify", "--tenant", "pg_x"],
    ] {
        h.run(&args).await.expect(2);
    }
}

async fn broken_migration_folders_are_usage_errors(h: Harness) {
    h.write_tables(2);
    h.write("notes.txt", "ignored");
    h.write("0008_only_comments.sql", "-- a no-op migration\n");
    h.run(&["tenants", "create", "acme"]).await.expect(0);
    assert_eq!(h.ledger("acme").await, [1, 2, 8]);
    h.write("create_users.sql", "CREATE TABLE users (id int);");
    let run = h.run(&["migrate"]).await;
    run.expect(2);
    assert!(run.stderr.contains("create_users.sql"), "{}", run.stderr);
    h.remove("create_users.sql");
    h.write("02_duplicate.sql", "SELECT 1;");
    let run = h.run(&["migrate"]).await;
    run.expect(2);
    assert!(run.stderr.contains("share version 2"), "{}", run.stderr);
    h.remove("02_duplicate.sql");
    let missing = h.migrations().join("nowhere");
    let run = h
        .run(&["--migrations", missing.to_str().unwrap(), "migrate"])
        .await;
    run.expect(2);
    // The database unreachable: exit 3.
    let run = h.run_with_url(UNREACHABLE, &["migrate"]).await;
    run.expect(3);
    assert!(
        run.stderr.contains("database unavailable"),
        "{}",
        run.stderr
    );
}

async fn tls_connections_work(h: Harness) {
    h.write_tables(1);
    let tls_url = h.url.replace("sslmode=disable", "sslmode=require");
    h.run_with_url(&tls_url, &["tenants", "create", "acme"])
        .await
        .expect(0);
    assert_eq!(h.state("acme").await, "ready");
    let (client, connection) = tokio_postgres::connect(&h.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let ssl_on: bool = client
        .query_one("SHOW ssl", &[])
        .await
        .map(|r| r.get::<_, String>(0) == "on")
        .unwrap();
    assert!(
        ssl_on,
        "the test cluster serves TLS, so sslmode=require was honoured"
    );
}
