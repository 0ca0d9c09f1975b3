//! Bad input gets a clear error, the documented exit code, and changes nothing.

use crate::{backend_tests, harness::Harness, only_on};

/// A database URL nothing answers at.
const UNREACHABLE: &str = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1";

backend_tests!(
    hostile_tenant_names_are_rejected_before_any_sql,
    broken_migration_folders_are_usage_errors,
    a_registry_row_that_is_not_a_tenant_is_reported_not_dropped,
);

// PostgreSQL only: SQLite files are opened directly, without a network.
only_on!(postgres: tls_connections_verify_the_server, secrets_are_never_printed);

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

/// A row edited by hand into something no tenant can be named is an error
/// naming it, never silently left out of lists, checks and the guard.
async fn a_registry_row_that_is_not_a_tenant_is_reported_not_dropped(h: Harness) {
    h.write_tables(1);
    h.create(&["acme"]).await;
    h.exec_in_registry("INSERT INTO tenants (name, state) VALUES ('Not A Tenant', 'ready')")
        .await;
    for args in [&["tenants", "list"][..], &["verify"], &["migrate"]] {
        let run = h.run(args).await;
        run.expect(1);
        assert!(
            run.stderr.contains("Not A Tenant") && run.stderr.contains("tenant name"),
            "{args:?}: {}",
            run.stderr
        );
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

/// The test cluster's CA certificate, set by `scripts/test`.
fn test_ca() -> String {
    std::env::var("TENANTGATE_TEST_PG_CA")
        .expect("TENANTGATE_TEST_PG_CA is not set: run the suite with ./scripts/test")
}

/// The scenario's database name and the cluster's port, from its URL.
fn database_and_port(url: &str) -> (String, String) {
    let after_at = url.split('@').nth(1).unwrap();
    let (authority, rest) = after_at.split_once('/').unwrap();
    let port = authority.rsplit(':').next().unwrap().to_owned();
    (rest.split('?').next().unwrap().to_owned(), port)
}

async fn tls_connections_verify_the_server(h: Harness) {
    h.use_demo_migrations(None);
    let ca = test_ca();
    let (db, port) = database_and_port(&h.url);
    let with_mode = |mode: &str| h.url.replace("sslmode=disable", mode);

    // verify-full with the right CA and a host name the certificate names,
    // in the URL and the key=value form.
    let full = with_mode(&format!("sslmode=verify-full&sslrootcert={ca}"))
        .replace("127.0.0.1", "localhost");
    h.run_with_url(&full, &["tenants", "create", "acme"])
        .await
        .expect(0);
    let keyvalue = format!(
        "host=127.0.0.1 port={port} dbname={db} user=postgres sslmode=verify-full sslrootcert='{ca}'"
    );
    h.run_with_url(&keyvalue, &["tenants", "list"])
        .await
        .expect(0);

    // The binary's own connections are encrypted: seen from a second
    // connection while a server holds its watch connection open.
    let server = h
        .serve_with(&full, &[], &[])
        .await
        .unwrap_or_else(|(code, e)| panic!("{code}: {e}"));
    let encrypted = h
        .db()
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.datname = current_database() AND a.application_name = 'tenantgate' AND s.ssl",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert!(encrypted >= 1, "tenantgate's connections use TLS");
    drop(server);

    // A CA the server's certificate does not chain to: refused (the
    // operating system's roots do not hold the test CA).
    let h = &h;
    let refused_certificate = |url: String| async move {
        let run = h.run_with_url(&url, &["tenants", "list"]).await;
        run.expect(3);
        assert!(
            run.stderr.to_lowercase().contains("certificate"),
            "{url}: {}",
            run.stderr
        );
    };
    refused_certificate(with_mode("sslmode=verify-full&sslrootcert=system")).await;
    // A host name the certificate does not name: refused by verify-full,
    // accepted by verify-ca, which checks the chain only.
    let elsewhere = |mode: &str| {
        format!(
            "host=other.example hostaddr=127.0.0.1 port={port} dbname={db} user=postgres sslmode={mode} sslrootcert={ca}"
        )
    };
    refused_certificate(elsewhere("verify-full")).await;
    h.run_with_url(&elsewhere("verify-ca"), &["tenants", "list"])
        .await
        .expect(0);
    // `require` keeps libpq's meaning: encrypted, the server not checked.
    h.run_with_url(
        &elsewhere("require").replace(&format!(" sslrootcert={ca}"), ""),
        &["tenants", "list"],
    )
    .await
    .expect(0);
}

async fn secrets_are_never_printed(h: Harness) {
    h.write_tables(1);
    const SECRET: &str = "Sup3rS3cretPw";
    let targets = [
        format!("postgres://nobody:{SECRET}@127.0.0.1:1/none?connect_timeout=1"),
        format!("postgres://nobody@127.0.0.1:1/none?connect_timeout=1&password={SECRET}"),
        format!("host=127.0.0.1 port=1 user=nobody password={SECRET} connect_timeout=1"),
        format!("host=127.0.0.1 port=1 user=nobody password='{SECRET} x' connect_timeout=1"),
        // Invalid strings: the error about the string itself.
        format!("postgres://nobody:{SECRET}@127.0.0.1:1/none?sslmode=bogus"),
        format!("host=127.0.0.1 password={SECRET} sslmode=verify-full sslrootcert=/nonexistent"),
        format!("postgres://nobody:{SECRET}@127.0.0.1:notaport/none"),
        format!("host=127.0.0.1 password={SECRET} port="),
    ];
    let commands: [&[&str]; 5] = [
        &["tenants", "list"],
        &["tenants", "create", "acme"],
        &["migrate"],
        &["verify", "--json"],
        &["serve", "--listen", "127.0.0.1:0"],
    ];
    for target in &targets {
        for command in commands {
            let run = h.run_with_url(target, command).await;
            assert_ne!(run.code, 0, "{target} {command:?}");
            let output = format!("{}{}", run.stdout, run.stderr);
            assert!(
                !output.contains(SECRET),
                "{command:?} with {target} printed the password:\n{output}"
            );
            assert!(
                output.contains("127.0.0.1"),
                "{command:?} with {target} names the host:\n{output}"
            );
        }
    }
    // The admin token is never echoed, whatever the requests carry.
    let server = h
        .serve(&["--log-json"], &[("TENANTGATE_ADMIN_TOKEN", SECRET)])
        .await;
    for auth in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Bearer Sup3rS3cretPw\r\n",
    ] {
        for path in ["/health/migrations", "/metrics", "/readyz"] {
            let response = server.get("", path, auth).await;
            assert!(!response.body.contains(SECRET), "{path}: {}", response.body);
        }
        let body = r#"{"name":"Bad!"}"#;
        let request = format!(
            "POST /admin/tenants HTTP/1.1\r\nHost: admin\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let response = server.raw(&request).await;
        assert!(!response.body.contains(SECRET), "{}", response.body);
    }
    assert!(!server.stderr().contains(SECRET), "{}", server.stderr());
}
