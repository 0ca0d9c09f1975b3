//! Tenants on several PostgreSQL servers behind one registry: placements
//! added and removed, tenants created on each, fleet work across all of
//! them, a server going down mid-run (its tenants fail, the others finish,
//! the guard blocks only its tenants), a crash between a placement's commit
//! and the registry's, and passwords from the libpq password file.
//!
//! Each scenario starts its own extra clusters beside the shared one (the
//! registry's server), so stopping one disturbs no other test.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use crate::{
    harness::{connect, eventually, tenants_where, Cluster, Harness},
    http::send,
    only_on,
    upstream::Upstream,
};

only_on!(postgres:
    tenants_live_on_three_servers_behind_one_registry,
    a_placement_that_goes_down_fails_only_its_tenants,
    a_crash_between_the_placement_and_registry_commits_is_finished_later,
    placement_passwords_come_from_the_password_file,
    a_tenant_moves_between_servers_with_every_row,
    a_killed_move_leaves_the_tenant_whole_in_one_place,
);

only_on!(sqlite: the_sqlite_store_has_no_placements);

/// One number from `sql` on the server at `url`.
async fn scalar(url: &str, sql: &str) -> i64 {
    connect(url)
        .await
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// Whether the server at `url` holds schema `name`.
async fn has_schema(url: &str, name: &str) -> bool {
    scalar(
        url,
        &format!("SELECT count(*) FROM pg_namespace WHERE nspname = '{name}'"),
    )
    .await
        == 1
}

/// Waits until the guard answers `host` with 503 for `reason`.
async fn blocked_for(proxy: &crate::http::Server, host: &str, reason: &str) -> bool {
    eventually(Duration::from_secs(20), || async {
        let page = proxy.page(host, "/", true).await;
        page.status == 503 && page.body.contains(reason)
    })
    .await
}

/// Creates `tenant` on `placement`, routed from `<tenant>.localhost`.
async fn create_on(h: &Harness, tenant: &str, placement: &str) {
    create_routed(h, tenant, placement, &format!("{tenant}.localhost")).await;
}

/// Creates `tenant` on `placement`, routed from `domain`.
async fn create_routed(h: &Harness, tenant: &str, placement: &str, domain: &str) {
    let args = [
        "tenants",
        "create",
        tenant,
        "--placement",
        placement,
        "--domain",
        domain,
    ];
    h.run(&args).await.expect(0);
}

/// The tenants of `tenants list --json` with their placements and versions.
async fn placed(h: &Harness) -> Vec<(String, String, Vec<i64>)> {
    let list = h.run(&["tenants", "list", "--json"]).await;
    list.expect(0);
    list.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["placement"].as_str().unwrap().to_owned(),
                t["applied_versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

async fn tenants_live_on_three_servers_behind_one_registry(h: Harness) {
    let (b, c) = tokio::join!(Cluster::start(), Cluster::start());
    h.write_tables(1);
    h.write(
        "shared/0001_plans.sql",
        "CREATE TABLE plans (id int PRIMARY KEY);",
    );
    h.run(&["placements", "add", "b", &b.url]).await.expect(0);
    h.run(&["placements", "add", "c", &c.url]).await.expect(0);

    // A URL with a password is refused, and the password never printed.
    let with_password = b.url.replacen("postgres@", "postgres:hunter2@", 1);
    let refused = h.run(&["placements", "add", "d", &with_password]).await;
    refused.expect(2);
    assert!(
        refused.stderr.contains("password file"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("hunter2"), "{}", refused.stderr);
    h.run(&["placements", "add", "Bad Name", &b.url])
        .await
        .expect(2);
    h.run(&["tenants", "create", "x", "--placement", "nowhere"])
        .await
        .expect(2);

    for (tenant, placement, domain) in [
        ("on_default", "default", "d.localhost"),
        ("on_b", "b", "b.localhost"),
        ("on_c", "c", "c.localhost"),
    ] {
        create_routed(&h, tenant, placement, domain).await;
    }
    // Without --placement: the one holding the fewest (a tie goes to default).
    h.run(&["tenants", "create", "chosen"]).await.expect(0);
    assert!(has_schema(&b.url, "on_b").await && has_schema(&c.url, "on_c").await);
    assert!(
        !has_schema(&h.url, "on_b").await,
        "built on its placement only"
    );
    assert_eq!(
        scalar(&b.url, "SELECT count(*) FROM public.plans").await,
        0,
        "each placement has the shared set"
    );
    let listed = h.run(&["placements", "list", "--json"]).await;
    listed.expect(0);
    let counts: Vec<(String, i64)> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["tenants"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [("default".into(), 2), ("b".into(), 1), ("c".into(), 1)]
    );

    // A taken name or domain leaves nothing on the placement it targeted.
    h.run(&["tenants", "create", "on_b", "--placement", "c"])
        .await
        .expect(1);
    h.run(&[
        "tenants",
        "create",
        "stolen",
        "--placement",
        "c",
        "--domain",
        "b.localhost",
    ])
    .await
    .expect(1);
    assert!(!has_schema(&c.url, "on_b").await && !has_schema(&c.url, "stolen").await);

    // One release across the three servers.
    h.write_tables(2);
    let migrated = h.run(&["migrate", "--json"]).await;
    migrated.expect(0);
    assert_eq!(
        migrated.json()["counts"]["migrated"],
        4,
        "{}",
        migrated.stdout
    );
    for (url, tenant) in [(&h.url, "on_default"), (&b.url, "on_b"), (&c.url, "on_c")] {
        assert_eq!(
            scalar(url, &format!("SELECT count(*) FROM pg_tables WHERE schemaname = '{tenant}' AND tablename = 't2'")).await,
            1,
            "{tenant}"
        );
    }
    for (tenant, _, versions) in placed(&h).await {
        assert_eq!(
            versions,
            [1, 2],
            "{tenant}: the registry follows each placement's commit"
        );
    }
    let text = h.run(&["migrate"]).await;
    text.expect(0);
    h.run(&["verify", "--deep"]).await.expect(0);

    // Drift on one server is found there.
    connect(&c.url)
        .await
        .batch_execute("ALTER TABLE on_c.t2 ADD COLUMN extra int")
        .await
        .unwrap();
    let drifted = h.run(&["verify", "--deep", "--json"]).await;
    drifted.expect(1);
    let bad = tenants_where(&drifted.json(), |t| t["ok"] == false);
    assert_eq!(bad, ["on_c"], "{}", drifted.stdout);
    connect(&c.url)
        .await
        .batch_execute("ALTER TABLE on_c.t2 DROP COLUMN extra")
        .await
        .unwrap();
    h.run(&["verify", "--deep"]).await.expect(0);

    // Backfills run where each tenant lives.
    h.write(
        "backfills/touch.sql",
        "INSERT INTO t1 VALUES (1, 'touched');",
    );
    let backfilled = h.run(&["backfill", "touch", "--json"]).await;
    backfilled.expect(0);
    assert_eq!(
        backfilled.json()["counts"]["backfilled"],
        4,
        "{}",
        backfilled.stdout
    );
    assert_eq!(scalar(&b.url, "SELECT count(*) FROM on_b.t1").await, 1);

    // Dropping removes the schema on its server; a placement in use stays.
    h.run(&["tenants", "drop", "on_b", "--yes"]).await.expect(0);
    assert!(!has_schema(&b.url, "on_b").await);
    assert!(placed(&h).await.iter().all(|(t, _, _)| t != "on_b"));
    let in_use = h.run(&["placements", "remove", "c"]).await;
    in_use.expect(1);
    assert!(
        in_use.stderr.contains("still holds 1 tenant"),
        "{}",
        in_use.stderr
    );
    h.run(&["placements", "remove", "b"]).await.expect(0);
    h.run(&["placements", "remove", "b"]).await.expect(2);
}

async fn a_placement_that_goes_down_fails_only_its_tenants(h: Harness) {
    let c = Cluster::durable().await;
    h.write_tables(1);
    h.run(&["placements", "add", "c", &c.url]).await.expect(0);
    for (tenant, placement) in [("home", "default"), ("away", "c"), ("yonder", "c")] {
        create_on(&h, tenant, placement).await;
    }
    let app = Upstream::start().await;
    let proxy = h.proxy(app.address, &["--allow-degraded"]).await;
    assert_eq!(proxy.get("away.localhost", "/", "").await.status, 200);

    // The run is inside placement c (waiting on a lock there) when c stops.
    h.write("0002_extra.sql", "ALTER TABLE t1 ADD COLUMN extra int;");
    let blocker = connect(&c.url).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE away.t1 IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let run = h.spawn(&["migrate", "--json", "--jobs", "1", "--lock-timeout", "60s"]);
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%extra%'";
    assert!(
        eventually(Duration::from_secs(20), || async {
            scalar(&c.url, waiting).await >= 1
        })
        .await,
        "the run never reached placement c"
    );
    c.pause().await;
    drop(blocker);
    let out = run.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for t in report["tenants"].as_array().unwrap() {
        let placement = t["placement"].as_str().unwrap();
        if placement == "c" {
            assert_eq!(t["outcome"], "failed", "{t}");
            assert_eq!(t["error"]["kind"], "connection_lost", "{t}");
        } else {
            assert_eq!(t["outcome"], "migrated", "{t}");
        }
    }

    // Verification names what it could not read and exits 3.
    let verified = h.run(&["verify", "--json"]).await;
    verified.expect(3);
    let unreachable = tenants_where(&verified.json(), |t| t.get("unreachable").is_some());
    assert_eq!(unreachable, ["away", "yonder"], "{}", verified.stdout);

    // The guard blocks only c's tenants, as "state unknown".
    assert!(
        blocked_for(&proxy, "away.localhost", "state_unknown").await,
        "a tenant of the stopped placement is not blocked as state unknown"
    );
    let blocked = proxy.page("yonder.localhost", "/", true).await;
    assert_eq!(blocked.status, 503);
    assert!(blocked.body.contains("state_unknown"), "{}", blocked.body);
    assert_eq!(proxy.get("home.localhost", "/", "").await.status, 200);
    // A guard started while c is down serves the others and blocks c's
    // tenants from its first request.
    let late = h.proxy(app.address, &["--allow-degraded"]).await;
    let first = late.page("away.localhost", "/", true).await;
    assert!(
        first.status == 503 && first.body.contains("state_unknown"),
        "{}",
        first.body
    );
    assert_eq!(late.get("home.localhost", "/", "").await.status, 200);
    let admin = proxy.admin.expect("an admin address");
    let metrics = send(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    )
    .await
    .body;
    assert!(
        metrics.contains("tenantgate_placement_up{placement=\"c\"} 0"),
        "{metrics}"
    );
    let health = send(
        admin,
        b"GET /health/migrations HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(health.status, 503);
    assert_eq!(
        health.json()["placements_unreachable"][0]["placement"],
        "c",
        "{}",
        health.body
    );

    // Back up: the rerun completes and the guard serves them again.
    c.resume().await;
    h.run(&["migrate"]).await.expect(0);
    h.run(&["verify"]).await.expect(0);
    assert!(
        eventually(Duration::from_secs(20), || async {
            proxy.get("away.localhost", "/", "").await.status == 200
        })
        .await,
        "served again once its placement answers and it is migrated"
    );
}

async fn a_crash_between_the_placement_and_registry_commits_is_finished_later(h: Harness) {
    let b = Cluster::start().await;
    h.write_tables(1);
    h.run(&["placements", "add", "b", &b.url]).await.expect(0);

    // The registry's table is locked, so the create stops right after its
    // commit on b, where it is killed.
    let create = [
        "tenants",
        "create",
        "halfway",
        "--placement",
        "b",
        "--domain",
        "half.localhost",
    ];
    let blocker = kill_when_blocked(
        &h,
        "LOCK TABLE tenantgate.tenants IN SHARE MODE",
        &create,
        "INSERT INTO tenantgate.tenants%",
    )
    .await;
    assert!(
        has_schema(&b.url, "halfway").await,
        "committed on its placement before the registry row"
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();

    // Not registered, so never served; verify reports it with the step
    // that finishes it.
    assert!(placed(&h).await.is_empty());
    assert_eq!(
        scalar(&h.url, "SELECT count(*) FROM tenantgate.domains").await,
        0
    );
    let verified = h.run(&["verify", "--json"]).await;
    verified.expect(1);
    let unregistered = &verified.json()["unregistered"][0];
    assert_eq!(unregistered["tenant"], "halfway", "{}", verified.stdout);
    assert_eq!(unregistered["placement"], "b");
    assert_eq!(unregistered["recovery"]["action"], "finish_create");
    let text = h.run(&["verify"]).await;
    assert!(
        text.stdout.contains("tenants create halfway --placement b"),
        "{}",
        text.stdout
    );

    // The next create of that name registers what b holds.
    h.run(&create).await.expect(0);
    assert_eq!(placed(&h).await, [("halfway".into(), "b".into(), vec![1])]);
    h.run(&["verify"]).await.expect(0);
}

async fn placement_passwords_come_from_the_password_file(h: Harness) {
    let b = Cluster::start().await;
    h.write_tables(1);
    // b now wants a password over TCP.
    let admin = connect(&b.url).await;
    admin
        .batch_execute("ALTER ROLE postgres PASSWORD 'pg-secret'")
        .await
        .unwrap();
    let hba: String = admin.query_one("SHOW hba_file", &[]).await.unwrap().get(0);
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all all 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();

    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("pgpass");
    let port = b.url.split(':').nth(2).unwrap().split('/').next().unwrap();
    std::fs::write(
        &file,
        format!("# the placement\n127.0.0.1:{port}:postgres:postgres:pg-secret\n"),
    )
    .unwrap();
    let with_file = [("PGPASSFILE", file.to_str().unwrap())];
    let missing = folder.path().join("none");
    let without = [("PGPASSFILE", missing.to_str().unwrap())];

    let refused = h
        .run_with_env(&["placements", "add", "b", &b.url], &without)
        .await;
    refused.expect(3);
    assert!(refused.stderr.contains("password"), "{}", refused.stderr);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    h.run_with_env(&["placements", "add", "b", &b.url], &with_file)
        .await
        .expect(0);
    h.run_with_env(
        &["tenants", "create", "acme", "--placement", "b"],
        &with_file,
    )
    .await
    .expect(0);
    // A file others may read is ignored, as libpq does.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    h.run_with_env(
        &["tenants", "create", "globex", "--placement", "b"],
        &with_file,
    )
    .await
    .expect(3);
    let built: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('acme', 'globex')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(built, 1, "acme is there, globex was never started");
}

async fn the_sqlite_store_has_no_placements(h: Harness) {
    h.write_tables(1);
    for args in [
        &["placements", "list"][..],
        &["placements", "add", "b", "postgres://u@h/db"],
        &["tenants", "create", "acme", "--placement", "b"],
    ] {
        let run = h.run(args).await;
        run.expect(2);
        assert!(run.stderr.contains("SQLite store"), "{}", run.stderr);
    }
}

/// A tenant schema with a foreign key, sequences and a trigger that logs
/// every new account, and rows in its tables.
async fn seeded(h: &Harness, tenant: &str, placement: &str, url: &str) {
    h.write(
        "0001_accounts.sql",
        "CREATE TABLE accounts (id bigserial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE t1 (id bigint PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts (id), note text);
         CREATE INDEX t1_account_idx ON t1 (account_id);
         CREATE TABLE audit (id bigserial PRIMARY KEY, account_id bigint NOT NULL);
         CREATE FUNCTION log_account() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT
           AS $$ BEGIN INSERT INTO audit (account_id) VALUES (NEW.id); RETURN NEW; END $$;
         CREATE TRIGGER accounts_audit AFTER INSERT ON accounts FOR EACH ROW EXECUTE FUNCTION log_account();",
    );
    create_on(h, tenant, placement).await;
    connect(url)
        .await
        .batch_execute(&format!(
            "INSERT INTO {tenant}.accounts (name) SELECT 'account ' || i FROM generate_series(1, 500) i;
             INSERT INTO {tenant}.t1 SELECT i, 1 + i % 500, repeat('x', 100) FROM generate_series(1, 5000) i;"
        ))
        .await
        .unwrap();
}

/// Rows of `tenant` on the server at `url`: (accounts, t1), or `None` without its schema.
async fn rows(url: &str, tenant: &str) -> Option<(i64, i64)> {
    if !has_schema(url, tenant).await {
        return None;
    }
    Some((
        scalar(url, &format!("SELECT count(*) FROM {tenant}.accounts")).await,
        scalar(url, &format!("SELECT count(*) FROM {tenant}.t1")).await,
    ))
}

/// Waits until a session on `url` waits for a lock in a statement like `pattern`.
async fn blocked_at(url: &str, pattern: &str) -> bool {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
            AND wait_event_type = 'Lock' AND query LIKE '{pattern}'"
    );
    eventually(Duration::from_secs(20), || async {
        scalar(url, &sql).await >= 1
    })
    .await
}

async fn a_tenant_moves_between_servers_with_every_row(h: Harness) {
    let (b, c) = tokio::join!(Cluster::start(), Cluster::start());
    h.run(&["placements", "add", "b", &b.url]).await.expect(0);
    h.run(&["placements", "add", "c", &c.url]).await.expect(0);
    seeded(&h, "acme", "default", &h.url).await;
    let app = Upstream::start().await;
    let proxy = h.proxy(app.address, &[]).await;
    assert_eq!(proxy.get("acme.localhost", "/", "").await.status, 200);

    // A reader holds the source's table, so the move waits just before
    // dropping the source: by then writers must be waiting on its locks.
    let reader = connect(&h.url).await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM acme.t1")
        .await
        .unwrap();
    let mut moving = h.spawn(&["tenants", "move", "acme", "--to", "b", "--json"]);
    assert!(
        blocked_at(&h.url, "DROP SCHEMA%").await,
        "the move never reached the source's drop"
    );
    assert!(
        rows(&b.url, "acme").await.is_some(),
        "the copy is committed before the source goes"
    );
    assert!(
        blocked_for(&proxy, "acme.localhost", "being_moved").await,
        "a tenant being moved is still served"
    );
    let html = proxy.page("acme.localhost", "/", false).await;
    assert!(
        html.body.contains("being moved to another database server"),
        "{}",
        html.body
    );
    let writer = connect(&h.url).await;
    let write = tokio::spawn(async move {
        writer
            .batch_execute("INSERT INTO acme.accounts (name) VALUES ('late')")
            .await
    });
    assert!(
        blocked_at(&h.url, "INSERT INTO acme.accounts%").await,
        "a writer got past the move's locks"
    );
    reader.batch_execute("COMMIT").await.unwrap();
    let out = moving.wait().await.unwrap();
    assert!(out.success());
    let refused = write.await.unwrap();
    assert!(
        refused.is_err(),
        "the writer failed loudly once the source was gone"
    );
    assert_eq!(rows(&h.url, "acme").await, None);
    assert_eq!(rows(&b.url, "acme").await, Some((500, 5000)));
    assert_eq!(placed(&h).await[0].1, "b");
    assert!(
        eventually(Duration::from_secs(20), || async {
            proxy.get("acme.localhost", "/", "").await.status == 200
        })
        .await,
        "served again from its new placement"
    );

    // On to another server, then home, the source kept the second time.
    let moved = h
        .run(&["tenants", "move", "acme", "--to", "c", "--json"])
        .await;
    moved.expect(0);
    let report = moved.json();
    assert_eq!(
        (report["from"].as_str(), report["to"].as_str()),
        (Some("b"), Some("c"))
    );
    assert_eq!(
        report["rows"],
        5500 + 500 + 1,
        "the tables, the audit log and the ledger's row: {report}"
    );
    let audited = "SELECT count(*) FROM acme.audit";
    assert_eq!(
        scalar(&c.url, audited).await,
        500,
        "no trigger fired for copied rows"
    );
    let home = h
        .run(&[
            "tenants",
            "move",
            "acme",
            "--to",
            "default",
            "--keep-source",
        ])
        .await;
    home.expect(0);
    assert!(
        home.stdout.contains("kept as schema acme_moved_"),
        "{}",
        home.stdout
    );
    assert_eq!(rows(&h.url, "acme").await, Some((500, 5000)));
    let next = scalar(
        &h.url,
        "INSERT INTO acme.accounts (name) VALUES ('new') RETURNING id",
    )
    .await;
    assert_eq!(next, 501, "the sequence moved with the rows");
    assert_eq!(
        scalar(&h.url, audited).await,
        501,
        "the trigger works after the move"
    );
    h.run(&["verify", "--deep"]).await.expect(0);
    let again = h.run(&["tenants", "move", "acme", "--to", "default"]).await;
    again.expect(1);
    assert!(
        again.stderr.contains("already lives on placement default"),
        "{}",
        again.stderr
    );
}

/// Opens a transaction running `hold` on the registry's server, starts the
/// binary with `args`, waits until it waits for a lock in a statement like
/// `pattern`, and SIGKILLs it there; returns the holder, still in its
/// transaction.
async fn kill_when_blocked(
    h: &Harness,
    hold: &str,
    args: &[&str],
    pattern: &str,
) -> tokio_postgres::Client {
    let holder = connect(&h.url).await;
    holder
        .batch_execute(&format!("BEGIN; {hold}"))
        .await
        .unwrap();
    let mut run = h.spawn(args);
    assert!(
        blocked_at(&h.url, pattern).await,
        "{args:?} never waited at {pattern}"
    );
    run.kill().await.unwrap();
    holder
}

async fn a_killed_move_leaves_the_tenant_whole_in_one_place(h: Harness) {
    let b = Cluster::start().await;
    h.run(&["placements", "add", "b", &b.url]).await.expect(0);
    seeded(&h, "acme", "default", &h.url).await;

    // 1. Killed while waiting for the source's locks (a writer is busy):
    // nothing was copied; verify undoes the move, the writer's row stays.
    let to_b = ["tenants", "move", "acme", "--to", "b"];
    let writer = kill_when_blocked(
        &h,
        "INSERT INTO acme.accounts (name) VALUES ('in flight')",
        &to_b,
        "LOCK TABLE%",
    )
    .await;
    writer.batch_execute("COMMIT").await.unwrap();
    let verified = h.run(&["verify", "--json"]).await;
    verified.expect(0);
    assert_eq!(
        verified.json()["moves"][0]["outcome"],
        "undone",
        "{}",
        verified.stdout
    );
    assert_eq!(rows(&h.url, "acme").await, Some((501, 5000)));
    assert_eq!(rows(&b.url, "acme").await, None);

    // 2. Killed after the copy committed, before the source was dropped:
    // the source is the truth (it may be written once its locks are gone);
    // the next move drops the stale copy and moves again.
    let reader = kill_when_blocked(&h, "SELECT count(*) FROM acme.t1", &to_b, "DROP SCHEMA%").await;
    reader.batch_execute("COMMIT").await.unwrap();
    assert!(rows(&b.url, "acme").await.is_some() && rows(&h.url, "acme").await.is_some());
    connect(&h.url)
        .await
        .batch_execute("INSERT INTO acme.accounts (name) VALUES ('after the kill')")
        .await
        .unwrap();
    assert_eq!(
        placed(&h).await[0].1,
        "default",
        "still served from its source"
    );
    h.run(&["tenants", "move", "acme", "--to", "b"])
        .await
        .expect(0);
    assert_eq!(rows(&b.url, "acme").await, Some((502, 5000)));
    assert_eq!(rows(&h.url, "acme").await, None);

    // 3. Killed after the source was dropped, before the registry switched:
    // the copy is complete; verify finishes the move.
    let registry = kill_when_blocked(
        &h,
        "LOCK TABLE tenantgate.events IN SHARE MODE",
        &["tenants", "move", "acme", "--to", "default"],
        "INSERT INTO tenantgate.events%",
    )
    .await;
    registry.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(rows(&b.url, "acme").await, None, "the source was dropped");
    assert_eq!(placed(&h).await[0].1, "b", "the registry had not switched");
    let verified = h.run(&["verify", "--json"]).await;
    verified.expect(0);
    assert_eq!(
        verified.json()["moves"][0]["outcome"],
        "finished",
        "{}",
        verified.stdout
    );
    assert_eq!(placed(&h).await[0].1, "default");
    assert_eq!(rows(&h.url, "acme").await, Some((502, 5000)));
}
