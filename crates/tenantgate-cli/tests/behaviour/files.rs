//! Migration files that try to break all-or-nothing, entries that cannot be
//! read as migrations, and migrations that would apply out of order: each
//! refused before any SQL runs (exit 2, naming the file), never skipped.

use crate::{backend_tests, harness::Harness, only_on};

backend_tests!(
    transaction_control_at_top_level_is_refused_before_any_sql,
    the_same_words_where_they_control_nothing_are_applied,
    a_nul_byte_is_refused_and_nothing_applied,
    a_byte_order_mark_is_stripped_and_the_checksum_kept,
    entries_that_cannot_be_read_are_errors_and_hidden_ones_ignored,
    an_out_of_order_migration_is_refused_unless_allowed,
);
only_on!(sqlite: orphaning_one_name_repeatedly_keeps_every_copy);

/// Asserts a refusal: exit 2, the file named, nothing of `tenant` created.
async fn refused(h: &Harness, args: &[&str], names: &[&str], tenant: &str) {
    let run = h.run(args).await;
    run.expect(2);
    for name in names {
        assert!(run.stderr.contains(name), "{name} in: {}", run.stderr);
    }
    assert!(!h.tenant_exists(tenant).await, "{tenant} was created");
    // The refusal came before the store was touched; install the registry
    // (listing needs no migration folder) to look for rows.
    h.run(&["tenants", "list"]).await.expect(0);
    assert_eq!(h.registry_rows(tenant).await, (0, 0));
}

async fn transaction_control_at_top_level_is_refused_before_any_sql(h: Harness) {
    h.write_tables(1);
    for (i, statement) in [
        "COMMIT;",
        "commit work;",
        "END;",
        "ROLLBACK;",
        "Rollback Transaction;",
        "ABORT;",
        "BEGIN;",
        "START TRANSACTION;",
        "COMMIT AND CHAIN;",
        "PREPARE TRANSACTION 'x';",
    ]
    .iter()
    .enumerate()
    {
        h.write(
            "0002_sneaky.sql",
            &format!(
                "CREATE TABLE before_it (x int);\n\n{statement}\nCREATE TABLE after_it (y int);\n"
            ),
        );
        let tenant = format!("t_{i}");
        refused(
            &h,
            &["tenants", "create", &tenant],
            &["0002_sneaky.sql:3:", "transaction"],
            &tenant,
        )
        .await;
    }
    // An existing tenant is not touched by `migrate` either.
    h.remove("0002_sneaky.sql");
    h.create(&["acme"]).await;
    h.write("0002_sneaky.sql", "CREATE TABLE before_it (x int); COMMIT;");
    let run = h.run(&["migrate"]).await;
    run.expect(2);
    assert!(run.stderr.contains("0002_sneaky.sql:1:"), "{}", run.stderr);
    assert_eq!(h.ledger("acme").await, [1]);
    assert!(!h.has_table("acme", "before_it").await);
    // A `-- no-transaction` file manages its own transactions: exempt.
    h.write(
        "0002_sneaky.sql",
        "-- no-transaction\nBEGIN; CREATE TABLE own_tx (x int); COMMIT;",
    );
    h.run(&["migrate"]).await.expect(0);
    assert!(h.has_table("acme", "own_tx").await);
}

async fn the_same_words_where_they_control_nothing_are_applied(h: Harness) {
    h.write_tables(1);
    let body = h.pick(
        "CREATE FUNCTION bump(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN a + 1 ELSE 0 END; END;
         CREATE FUNCTION noop() RETURNS void AS $$ BEGIN PERFORM 1; END $$ LANGUAGE plpgsql;",
        "CREATE TRIGGER note_end AFTER INSERT ON notes BEGIN UPDATE notes SET body = CASE WHEN body = '' THEN 'end' ELSE body END; END;",
    );
    h.write(
        "0002_words.sql",
        &format!(
            "CREATE TABLE notes (body text); -- COMMIT;\n\
             INSERT INTO notes VALUES ('COMMIT;'), ('x; ROLLBACK; y');\n\
             /* BEGIN; */ CREATE TABLE \"commit\" (\"end\" int);\n\
             SAVEPOINT s; INSERT INTO notes VALUES ('kept'); ROLLBACK TO SAVEPOINT s; RELEASE SAVEPOINT s;\n\
             {body}\n"
        ),
    );
    h.run(&["tenants", "create", "acme"]).await.expect(0);
    assert_eq!(h.ledger("acme").await, [1, 2]);
    assert_eq!(
        h.scalar_in_tenant("acme", "SELECT count(*) FROM notes")
            .await,
        2,
        "the rolled-back savepoint's row is gone, the others kept"
    );
}

async fn a_nul_byte_is_refused_and_nothing_applied(h: Harness) {
    h.write_tables(1);
    let path = h.migrations().join("tenant/0002_nul.sql");
    std::fs::write(
        &path,
        b"CREATE TABLE visible (x int);\0CREATE TABLE hidden (y int);",
    )
    .unwrap();
    refused(
        &h,
        &["tenants", "create", "acme"],
        &["0002_nul.sql", "NUL byte at byte offset 29"],
        "acme",
    )
    .await;
    std::fs::remove_file(&path).unwrap();
    h.create(&["acme"]).await;
    std::fs::write(&path, b"CREATE TABLE visible (x int);\0").unwrap();
    h.run(&["migrate"]).await.expect(2);
    assert_eq!(h.ledger("acme").await, [1]);
}

async fn a_byte_order_mark_is_stripped_and_the_checksum_kept(h: Harness) {
    h.write_tables(1);
    std::fs::write(
        h.migrations().join("tenant/0002_bom.sql"),
        "\u{feff}CREATE TABLE with_bom (x int);",
    )
    .unwrap();
    h.run(&["tenants", "create", "acme"]).await.expect(0);
    assert!(h.has_table("acme", "with_bom").await);
    // The recorded checksum is that of the file's bytes, BOM included:
    // the file as it is verifies clean, the file without its BOM does not.
    h.run(&["verify"]).await.expect(0);
    h.write("0002_bom.sql", "CREATE TABLE with_bom (x int);");
    h.run(&["verify"]).await.expect(1);
}

async fn entries_that_cannot_be_read_are_errors_and_hidden_ones_ignored(h: Harness) {
    use std::os::unix::ffi::OsStrExt;
    h.write_tables(1);
    let tenant_dir = h.migrations().join("tenant");
    // Hidden entries (editor lock files) are ignored.
    std::fs::write(tenant_dir.join(".#0002_draft.sql"), "not sql at all (").unwrap();
    std::os::unix::fs::symlink("nowhere", tenant_dir.join(".0003_link.sql")).unwrap();
    h.run(&["tenants", "create", "acme"]).await.expect(0);

    let not_utf8 = tenant_dir.join(std::ffi::OsStr::from_bytes(b"0006_caf\xe9.sql"));
    let cases = [
        ("0002_broken.sql", "0002_broken.sql"),
        ("0004_loop.sql", "0004_loop.sql"),
        ("0005_folder.sql", "0005_folder.sql"),
        ("", "not UTF-8"),
    ];
    for (i, (name, named)) in cases.into_iter().enumerate() {
        let path = if name.is_empty() {
            not_utf8.clone()
        } else {
            tenant_dir.join(name)
        };
        match i {
            0 => std::os::unix::fs::symlink("missing.sql", &path).unwrap(),
            1 => std::os::unix::fs::symlink(&path, &path).unwrap(),
            2 => std::fs::create_dir(&path).unwrap(),
            _ => std::fs::write(&path, "SELECT 1;").unwrap(),
        }
        let tenant = format!("t_{i}");
        refused(&h, &["tenants", "create", &tenant], &[named], &tenant).await;
        let run = h.run(&["migrate"]).await;
        run.expect(2);
        assert!(run.stderr.contains(named), "{named}: {}", run.stderr);
        if path.is_dir() {
            std::fs::remove_dir(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    assert_eq!(h.ledger("acme").await, [1]);
}

async fn an_out_of_order_migration_is_refused_unless_allowed(h: Harness) {
    h.write("0001_a.sql", "CREATE TABLE a (x int);");
    h.write("0003_c.sql", "CREATE TABLE c (x int);");
    h.create(&["acme", "globex"]).await;
    h.write("0002_b.sql", "CREATE TABLE b (x int);");
    let run = h.run(&["migrate"]).await;
    run.expect(2);
    for named in ["0002_b.sql", "acme", "globex", "--allow-out-of-order"] {
        assert!(run.stderr.contains(named), "{named}: {}", run.stderr);
    }
    assert_eq!(h.ledger("acme").await, [1, 3]);
    h.run(&["migrate", "--allow-out-of-order"]).await.expect(0);
    assert_eq!(h.ledger("acme").await, [1, 2, 3]);
    assert_eq!(h.ledger("globex").await, [1, 2, 3]);
    // A new tenant gets every migration in order: nothing out of order there.
    h.create(&["hooli"]).await;
    assert_eq!(h.ledger("hooli").await, [1, 2, 3]);
}

async fn orphaning_one_name_repeatedly_keeps_every_copy(h: Harness) {
    h.write_tables(1);
    h.create(&["acme"]).await;
    for _ in 0..4 {
        h.make_stray("ghost").await;
        h.run(&["tenants", "list"]).await.expect(0);
    }
    let kept: Vec<String> = std::fs::read_dir(h.data_folder().join("orphaned"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ghost.db") && !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(kept.len(), 4, "every copy kept: {kept:?}");
    for name in &kept {
        let copy = rusqlite::Connection::open(h.data_folder().join("orphaned").join(name)).unwrap();
        let tables: i64 = copy
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'keep'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 1, "{name} is a whole copy");
    }
}
