//! Verification: missing migrations, drift in the catalog, and --fix.

use crate::{
    backend_tests,
    harness::{connect, report_tenant as entry, Harness},
    only_on,
};

backend_tests!(
    missing_migrations_are_reported_and_fixed,
    deep_verification_finds_the_missing_table
);
// Change tracking records DDL with PostgreSQL event triggers; SQLite reads
// every tenant file's catalog each time.
only_on!(postgres:
    deep_verification_reads_only_what_changed_and_misses_no_change,
    without_change_tracking_every_catalog_is_read_and_said_so,
    missing_ledgers_among_many_are_named_and_the_rest_read,
);
// A SQLite tenant file is read alone when no other connection has it open
// (no shared WAL index), beside the others when one does.
only_on!(sqlite:
    a_file_another_connection_holds_is_read_at_once_and_as_committed,
    a_change_left_in_a_crashed_writers_wal_is_read_and_kept,
    an_application_reading_tenant_files_is_never_refused_while_verify_reads_them,
);

/// The catalogs a deep verification read, and those it knew unchanged.
fn scanned(report: &serde_json::Value) -> (u64, u64) {
    let catalogs = &report["catalogs"];
    (
        catalogs["scanned"].as_u64().unwrap(),
        catalogs["unchanged"].as_u64().unwrap(),
    )
}

async fn deep_verification_reads_only_what_changed_and_misses_no_change(h: Harness) {
    h.write(
        "0001_shop.sql",
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price int DEFAULT 0);
         CREATE INDEX items_name ON items (name);
         CREATE TABLE orders (id bigint PRIMARY KEY, item bigint REFERENCES items (id));",
    );
    let tenants = [
        "t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10", "t11",
    ];
    h.create(&tenants).await;
    let deep = || async {
        let run = h.run(&["--json", "verify", "--deep"]).await;
        (run.code, run.json())
    };
    let (code, first) = deep().await;
    assert_eq!(code, 0, "{first}");
    assert_eq!(scanned(&first), (12, 0), "{first}");
    let (_, second) = deep().await;
    assert_eq!(scanned(&second), (0, 12), "nothing changed: {second}");

    // Every kind of change, each in its own tenant, each found.
    let changes = [
        "DROP TABLE orders",
        "ALTER TABLE items DROP COLUMN price",
        "ALTER TABLE items ADD COLUMN extra text",
        "ALTER TABLE items ALTER COLUMN price TYPE bigint",
        "DROP INDEX items_name",
        "CREATE INDEX items_price ON items (price)",
        "ALTER TABLE items ALTER COLUMN price DROP DEFAULT",
        "ALTER TABLE items ALTER COLUMN price SET NOT NULL",
        "ALTER TABLE orders DROP CONSTRAINT orders_item_fkey",
        "ALTER TABLE items RENAME TO goods",
        "CREATE VIEW cheap AS SELECT id FROM items",
    ];
    for (tenant, change) in tenants.iter().zip(changes) {
        h.exec_in_tenant(tenant, change).await;
    }
    let (code, found) = deep().await;
    assert_eq!(code, 1);
    assert_eq!(scanned(&found), (11, 1), "only the changed ones: {found}");
    for (tenant, change) in tenants.iter().zip(changes) {
        let check = found["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == *tenant)
            .unwrap();
        assert_eq!(check["state"], "drift", "{change} not found: {check}");
    }

    // A change in flight while a verification reads is caught by the next.
    let (_, before) = deep().await;
    assert_eq!(
        scanned(&before),
        (11, 1),
        "drifted ones are always read again"
    );
    let session = connect(&h.url).await;
    session
        .batch_execute("BEGIN; ALTER TABLE t11.items ADD COLUMN late text")
        .await
        .unwrap();
    let (code, during) = deep().await;
    assert_eq!(code, 1, "only the eleven drifted: {during}");
    session.batch_execute("COMMIT").await.unwrap();
    let (_, after) = deep().await;
    let t11 = after["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "t11")
        .unwrap();
    assert_eq!(
        t11["state"], "drift",
        "the change committed after the snapshot: {after}"
    );

    // A session that turns triggers off for replication cannot hide a change.
    let (_, _) = deep().await;
    h.db()
        .batch_execute("SET session_replication_role = replica; ALTER TABLE t0.items ADD COLUMN hidden text; RESET session_replication_role")
        .await
        .unwrap();
    let (_, replica) = deep().await;
    let t0 = replica["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "t0")
        .unwrap();
    assert!(
        t0["drift"].to_string().contains("hidden"),
        "a change in replica mode went unseen: {t0}"
    );
}

async fn without_change_tracking_every_catalog_is_read_and_said_so(h: Harness) {
    // A role that may not create event triggers (not a superuser), owning
    // its own database.
    let db = format!(
        "plain_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    h.db()
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE tenantgate_plain LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .await
        .unwrap();
    h.db()
        .batch_execute(&format!("CREATE DATABASE {db} OWNER tenantgate_plain"))
        .await
        .unwrap();
    let url =
        crate::harness::with_database(&h.url, &db).replacen("postgres@", "tenantgate_plain@", 1);
    h.write_tables(1);
    for tenant in ["a", "b", "c"] {
        h.run_with_url(&url, &["tenants", "create", tenant])
            .await
            .expect(0);
    }
    for _ in 0..2 {
        let run = h.run_with_url(&url, &["--json", "verify", "--deep"]).await;
        run.expect(0);
        let report = run.json();
        assert_eq!(report["catalogs"]["scanned"], 3, "{report}");
        assert!(
            report["catalogs"]["full_scan"]
                .as_str()
                .unwrap()
                .contains("superuser"),
            "{report}"
        );
    }
    let text = h.run_with_url(&url, &["verify", "--deep"]).await;
    assert!(
        text.stdout.contains("every catalog is read"),
        "{}",
        text.stdout
    );
}

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

/// Ledgers are read many to a statement; a statement naming a missing one
/// fails. Whatever the grouping, each missing ledger (its table dropped, or
/// its whole schema) is named, and every other tenant is still read.
async fn missing_ledgers_among_many_are_named_and_the_rest_read(h: Harness) {
    h.write(
        "0001_items.sql",
        "CREATE TABLE items (id bigint PRIMARY KEY);",
    );
    h.write(
        "0002_orders.sql",
        "CREATE TABLE orders (id bigint PRIMARY KEY);",
    );
    // More than one statement's worth, so both a first and a later
    // statement meet a missing ledger.
    let names = h.create_numbered(60).await;
    h.exec_in_tenant("t_3", "DROP TABLE _tenantgate_migrations")
        .await;
    h.exec_in_tenant("t_41", "DROP TABLE _tenantgate_migrations")
        .await;
    h.exec_in_tenant("t_17", "DROP SCHEMA t_17 CASCADE").await;
    h.exec_in_tenant(
        "t_50",
        "DELETE FROM _tenantgate_migrations WHERE version = 2",
    )
    .await;
    let run = h.run(&["verify", "--json"]).await;
    run.expect(1);
    let report = run.json();
    let tenants = report["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), names.len());
    for tenant in tenants {
        let name = tenant["tenant"].as_str().unwrap();
        let lost = ["t_3", "t_17", "t_41"].contains(&name);
        assert_eq!(tenant["ledger_missing"], lost, "{tenant}");
        let behind = name == "t_50";
        assert_eq!(tenant["ok"], !(lost || behind), "{tenant}");
        if behind {
            assert_eq!(tenant["missing"][0]["file"], "0002_orders.sql", "{tenant}");
        }
    }
}

/// An application holds a tenant's file open, with a committed change
/// still in the WAL and a write transaction open: verify reads the file
/// beside it without waiting for it, and sees what is committed, not what
/// is not.
async fn a_file_another_connection_holds_is_read_at_once_and_as_committed(h: Harness) {
    h.write_tables(2);
    h.create(&["t_a", "t_b"]).await;
    let app = h.tenant_connection("t_b");
    app.execute_batch(
        "DELETE FROM _tenantgate_migrations WHERE version = 2;
         BEGIN IMMEDIATE;
         INSERT INTO _tenantgate_migrations VALUES (99, 'uncommitted', '', 1, x'00', 0);",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = h.run(&["verify", "--json"]).await;
    // Taking the file alone is not waited for; the store's busy timeout
    // (5 s) would show here if it were.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "verify waited {:?} for the application's connection",
        started.elapsed()
    );
    run.expect(1);
    let report = run.json();
    assert_eq!(entry(&report, "t_a")["ok"], true, "{report}");
    let held = entry(&report, "t_b");
    assert_eq!(
        held["missing"][0]["version"], 2,
        "the committed change: {held}"
    );
    assert!(!held.to_string().contains("uncommitted"), "{held}");
    app.execute_batch("ROLLBACK").unwrap();
}

/// A writer that died after committing leaves its change only in the
/// file's WAL: reading the file alone recovers it from there (the ledger
/// row it deleted, the table it created), and the change is still there
/// afterwards.
async fn a_change_left_in_a_crashed_writers_wal_is_read_and_kept(h: Harness) {
    h.write_tables(2);
    h.create(&["t_a", "t_b"]).await;
    let file = h.tenant_file("t_b");
    let with_suffix = |suffix: &str| {
        let mut name = file.clone().into_os_string();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let writer = h.tenant_connection("t_b");
    writer
        .execute_batch(
            "DELETE FROM _tenantgate_migrations WHERE version = 2;
             CREATE TABLE intruder (id int);",
        )
        .unwrap();
    // What a crash leaves: the database file as the last checkpoint left
    // it, the WAL holding the committed change, and a stale index (copied
    // while the writer is open, before its close checkpoints and cleans up).
    for suffix in ["", "-wal", "-shm"] {
        std::fs::copy(with_suffix(suffix), with_suffix(&format!("{suffix}.crash"))).unwrap();
    }
    drop(writer);
    for suffix in ["", "-wal", "-shm"] {
        std::fs::rename(with_suffix(&format!("{suffix}.crash")), with_suffix(suffix)).unwrap();
    }
    assert!(
        std::fs::metadata(with_suffix("-wal")).unwrap().len() > 0,
        "the change lives in the WAL"
    );
    let run = h.run(&["verify", "--deep", "--json"]).await;
    run.expect(1);
    let report = run.json();
    assert_eq!(entry(&report, "t_a")["ok"], true, "{report}");
    let crashed = entry(&report, "t_b");
    assert_eq!(crashed["missing"][0]["version"], 2, "{crashed}");
    assert!(
        crashed["drift"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().contains("intruder")),
        "{crashed}"
    );
    assert_eq!(h.ledger("t_b").await, [1], "the committed change is kept");
    assert!(h.has_table("t_b", "intruder").await);
}

/// An application opening tenant files with a busy timeout, as SQLite
/// advises, over and over while verify and deep verify read them: while a
/// file is read alone, its first read waits a moment and is never refused.
async fn an_application_reading_tenant_files_is_never_refused_while_verify_reads_them(h: Harness) {
    h.write_tables(2);
    let names = h.create_numbered(20).await;
    let files: Vec<_> = names.iter().map(|t| h.tenant_file(t)).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let app = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut reads, mut refused) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for file in &files {
                    let read = rusqlite::Connection::open(file).and_then(|conn| {
                        conn.busy_timeout(std::time::Duration::from_secs(5))?;
                        conn.query_row("SELECT count(*) FROM _tenantgate_migrations", [], |r| {
                            r.get::<_, i64>(0)
                        })
                    });
                    match read {
                        Ok(2) => reads += 1,
                        other => refused.push(format!("{}: {other:?}", file.display())),
                    }
                }
            }
            (reads, refused)
        })
    };
    for _ in 0..5 {
        h.run(&["verify"]).await.expect(0);
        h.run(&["verify", "--deep"]).await.expect(0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (reads, refused) = app.join().unwrap();
    assert!(refused.is_empty(), "{} refused: {refused:?}", refused.len());
    assert!(reads > 0);
}
