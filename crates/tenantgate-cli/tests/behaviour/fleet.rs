//! Fleet migration: one transaction per tenant, failures isolated and
//! reported, reruns touch only what is not ready, no double apply.

use std::time::Duration;

use serde_json::Value;
use tenantgate::backend::RegistryChange;

use crate::{
    backend_tests,
    harness::{eventually, report_tenant as tenant, Harness},
    only_on,
};

backend_tests!(
    one_failing_tenant_is_rolled_back_and_the_rest_proceed,
    locked_tenant_is_retried_then_reported,
    three_migrators_apply_once_and_each_reports_only_its_own_work,
    dry_run_changes_nothing,
    registry_state_follows_the_ledger_and_is_announced,
    interrupt_rolls_back_in_flight_and_reports_the_rest,
    shared_migrations_apply_once_before_tenants,
    a_ledger_that_lost_rows_is_migrated_whatever_the_registry_claims,
    killed_migrator_leaves_the_tenant_as_it_was,
);

// PostgreSQL only: a search path that could leak between tenants on a
// pooled connection, and a server connection that can die mid-run. SQLite
// has neither: each tenant is its own file, opened by the migrating process;
// its store goes away when the data folder does.
only_on!(postgres:
    each_tenant_runs_in_its_own_schema_under_load,
    lost_connection_exits_3_with_a_summary,
    each_registry_row_is_found_by_its_key_not_by_a_scan,
    a_tenant_whose_ledger_or_schema_is_gone_is_named_and_the_rest_migrate,
    every_migrated_tenant_is_announced_by_name_before_migrate_exits,
    a_closed_session_has_announced_what_it_committed,
);
only_on!(sqlite: data_folder_gone_mid_run_exits_3_with_a_summary);

/// Waits for a `--json` run to end with `code`; returns its report.
async fn exited_with(child: tokio::process::Child, code: i32) -> Value {
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn one_failing_tenant_is_rolled_back_and_the_rest_proceed(h: Harness) {
    h.write_tables(2);
    let names = ["t_a", "t_b", "t_c", "t_d", "t_e"];
    h.create(&names).await;
    h.write(
        "0003_widgets.sql",
        "CREATE TABLE widgets (id int); INSERT INTO widgets VALUES (1);",
    );
    h.exec_in_tenant("t_c", "CREATE TABLE widgets (conflicting text)")
        .await;

    let run = h.run(&["migrate", "--json", "--jobs", "3"]).await;
    run.expect(1);
    let report = run.json();
    let failed = tenant(&report, "t_c");
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["error"]["migration"]["version"], 3);
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{failed}"
    );
    assert_eq!(failed["error"]["recovery"]["action"], "fix_migration");
    assert_eq!(failed["error"]["recovery"]["tenant"], "t_c");
    for name in ["t_a", "t_b", "t_d", "t_e"] {
        let t = tenant(&report, name);
        assert_eq!(
            (t["outcome"].as_str(), t["state"].as_str()),
            (Some("migrated"), Some("ready")),
            "{t}"
        );
        assert_eq!(t["applied"], serde_json::json!([3]));
        assert!(t["duration_ms"].as_f64().is_some());
        assert_eq!(h.ledger(name).await, [1, 2, 3]);
    }
    assert_eq!(h.ledger("t_c").await, [1, 2], "rolled back");
    let (state, kept, _) = h.registry_row("t_c").await;
    assert_eq!(state, "failed");
    assert!(kept.unwrap().contains("already exists"));

    h.exec_in_tenant("t_c", "DROP TABLE widgets").await;
    let run = h.run(&["migrate", "--json"]).await;
    run.expect(0);
    let report = run.json();
    assert_eq!(tenant(&report, "t_c")["outcome"], "migrated");
    for name in ["t_a", "t_b", "t_d", "t_e"] {
        assert_eq!(
            tenant(&report, name)["outcome"],
            "up_to_date",
            "only the not-ready tenant is touched"
        );
    }
    assert_eq!(h.state("t_c").await, "ready");
    assert_eq!(
        h.scalar_in_tenant("t_c", "SELECT count(*) FROM widgets WHERE id = 1")
            .await,
        1
    );
}

/// The lock, the search path and the ledger read go to the server as one
/// batch: a ledger that cannot be read must still be told from a lock
/// timeout or a failing migration, and must stop only its own tenant.
async fn a_tenant_whose_ledger_or_schema_is_gone_is_named_and_the_rest_migrate(h: Harness) {
    h.write_tables(1);
    h.create(&["t_a", "t_b", "t_c"]).await;
    h.write("0002_alter.sql", "ALTER TABLE t1 ADD COLUMN extra int;");
    h.exec_in_tenant("t_a", "DROP TABLE _tenantgate_migrations")
        .await;
    h.exec_in_registry("DROP SCHEMA t_b CASCADE").await;
    let run = h.run(&["migrate", "--json"]).await;
    run.expect(1);
    let report = run.json();
    for gone in ["t_a", "t_b"] {
        let failed = tenant(&report, gone);
        assert_eq!(failed["error"]["kind"], "ledger_missing", "{failed}");
        assert_eq!(
            failed["error"]["recovery"],
            serde_json::json!({ "action": "restore_or_recreate", "tenant": gone }),
            "{failed}"
        );
    }
    assert_eq!(tenant(&report, "t_c")["outcome"], "migrated", "{report}");
    assert_eq!(h.ledger("t_c").await, [1, 2]);
    assert_eq!(
        h.scalar_in_tenant("t_a", "SELECT count(*) FROM information_schema.columns WHERE table_schema = 't_a' AND column_name = 'extra'")
            .await,
        0,
        "nothing ran where the ledger could not be read"
    );
}

async fn locked_tenant_is_retried_then_reported(h: Harness) {
    h.write_tables(1);
    h.create(&["t_a", "t_b"]).await;
    h.write("0002_alter.sql", "ALTER TABLE t1 ADD COLUMN extra int;");
    let blocker = h.hold_lock("t_a").await;
    let run = h
        .run(&[
            "migrate",
            "--json",
            "--lock-timeout",
            "100ms",
            "--lock-attempts",
            "2",
        ])
        .await;
    run.expect(1);
    let report = run.json();
    let locked = tenant(&report, "t_a");
    assert_eq!(locked["error"]["kind"], "lock_timeout");
    assert_eq!(locked["attempts"], 2);
    assert_eq!(
        locked["error"]["recovery"],
        serde_json::json!({ "action": "find_lock_holder", "tenant": "t_a" })
    );
    assert_eq!(tenant(&report, "t_b")["state"], "ready");
    h.release(blocker).await;
    h.run(&["migrate"]).await.expect(0);
    assert_eq!(h.ledger("t_a").await, [1, 2]);
}

/// The text summary's count for `label` ("3 migrated, 9 finished by another run, …").
fn summary_count(stdout: &str, label: &str) -> usize {
    let line = stdout
        .lines()
        .find(|l| l.contains(" migrated, "))
        .unwrap_or_else(|| panic!("a summary line in {stdout}"));
    line.split(", ")
        .find_map(|part| part.strip_suffix(label)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{label:?} in {line}"))
}

async fn three_migrators_apply_once_and_each_reports_only_its_own_work(h: Harness) {
    h.write_tables(1);
    let names = h.create_numbered(12).await;
    h.write(
        "shared/0001_shared_counter.sql",
        "CREATE TABLE shared_counter (n int);",
    );
    h.write(
        "0002_counter.sql",
        &format!(
            "CREATE TABLE counter (n int); INSERT INTO counter VALUES (1); {}",
            h.slow_sql(0.02)
        ),
    );
    h.write("0003_more.sql", "INSERT INTO counter VALUES (2);");
    let (a, b, c) = tokio::join!(
        h.run(&["migrate", "--json", "--jobs", "3"]),
        h.run(&["migrate", "--json", "--jobs", "3"]),
        h.run(&["migrate", "--jobs", "3"])
    );
    let (a, b) = (a.expect(0).json(), b.expect(0).json());
    c.expect(0);
    // Each tenant's migrations were applied by exactly one run, and only
    // that run says it migrated the tenant; the others say another run
    // finished it (or, planned after it was done, that it was up to date).
    for name in &names {
        let mut applied_by = 0;
        for report in [&a, &b] {
            let t = tenant(report, name);
            match t["outcome"].as_str().unwrap() {
                "migrated" => {
                    assert_eq!(t["applied"], serde_json::json!([2, 3]), "{t}");
                    applied_by += 1;
                }
                "finished_elsewhere" | "up_to_date" => {
                    assert_eq!(t["applied"], serde_json::json!([]), "{t}")
                }
                other => panic!("{name}: {other}"),
            }
        }
        assert!(applied_by <= 1, "{name} claimed by two runs");
    }
    let count = |report: &Value, key: &str| report["counts"][key].as_u64().unwrap_or(0) as usize;
    let migrated =
        count(&a, "migrated") + count(&b, "migrated") + summary_count(&c.stdout, "migrated");
    assert_eq!(
        migrated,
        names.len(),
        "every tenant migrated once in all: {}",
        c.stdout
    );
    // Each run accounts for every tenant exactly once.
    for report in [&a, &b] {
        let total: usize = ["migrated", "finished_elsewhere", "up_to_date"]
            .iter()
            .map(|k| count(report, k))
            .sum();
        assert_eq!(total, names.len(), "{report}");
    }
    let total: usize = ["migrated", "finished by another run", "up to date"]
        .iter()
        .map(|k| summary_count(&c.stdout, k))
        .sum();
    assert_eq!(total, names.len(), "{}", c.stdout);
    for name in &names {
        assert_eq!(h.ledger(name).await, [1, 2, 3]);
        assert_eq!(
            h.scalar_in_tenant(name, "SELECT count(*) * 10 + sum(n) FROM counter")
                .await,
            23,
            "{name}: rows 1 and 2, each applied exactly once"
        );
    }
    let shared_ledger = h.pick(
        "SELECT count(*) FROM tenantgate._shared_migrations WHERE version = 1",
        "SELECT count(*) FROM _tenantgate_migrations WHERE version = 1",
    );
    assert_eq!(h.scalar_shared(shared_ledger).await, 1);
}

async fn dry_run_changes_nothing(h: Harness) {
    h.write_tables(1);
    h.create(&["t_a", "t_b"]).await;
    h.write("0002_t2.sql", "CREATE TABLE t2 (id int);");
    let run = h.run(&["migrate", "--dry-run", "--json"]).await;
    run.expect(0);
    let report = run.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(tenant(&report, "t_a")["outcome"], "planned");
    assert_eq!(tenant(&report, "t_a")["applied"], serde_json::json!([2]));
    assert_eq!(h.ledger("t_a").await, [1]);
    let text = h.run(&["migrate", "--dry-run"]).await;
    assert!(text.stdout.contains("would apply [2]"), "{}", text.stdout);
    h.run(&["migrate", "--tenant", "nobody"]).await.expect(1);
}

async fn each_tenant_runs_in_its_own_schema_under_load(h: Harness) {
    h.write_tables(1);
    let names = h.create_numbered(16).await;
    // Unqualified names resolve through search_path: a leak would put a
    // tenant's rows in another tenant's schema.
    h.write("0002_whoami.sql", "CREATE TABLE whoami AS SELECT current_schema()::text AS s, current_setting('search_path') AS p;");
    h.run(&["migrate", "--jobs", "4"]).await.expect(0);
    for name in &names {
        let row = h
            .db()
            .query_one(&format!("SELECT s, p FROM {name}.whoami"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), *name);
        assert!(
            row.get::<_, String>(1).starts_with(&format!("\"{name}\""))
                || row.get::<_, String>(1).starts_with(name.as_str())
        );
    }
}

/// Scans and index lookups of the registry table so far (the server's
/// statistics, as its backends have reported them).
async fn registry_reads(h: &Harness) -> (i64, i64) {
    h.db()
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    let row = h
        .db()
        .query_one(
            "SELECT seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables
              WHERE relid = 'tenantgate.tenants'::regclass",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Each tenant's registry update finds its row through the primary key: a
/// fleet run that scanned the registry once per tenant would grow with the
/// square of the fleet (it once did: the key was compared with a
/// differently collated `current_schema()`).
async fn each_registry_row_is_found_by_its_key_not_by_a_scan(h: Harness) {
    h.write_tables(1);
    let names = h.create_numbered(12).await;
    // A registry large enough that the planner would rather use the key.
    h.exec_in_registry(
        "INSERT INTO tenantgate.tenants (name, state) SELECT 'bulk_' || i, 'ready' FROM generate_series(1, 5000) i;
         ANALYZE tenantgate.tenants;",
    )
    .await;
    let (scans_before, lookups_before) = registry_reads(&h).await;
    h.write("0002_t2.sql", "CREATE TABLE t2 (id int);");
    let mut args = vec!["migrate", "--jobs", "4"];
    for name in &names {
        args.extend(["--tenant", name.as_str()]);
    }
    h.run(&args).await.expect(0);
    // The run's server processes report their statistics as they end.
    let looked_up = eventually(Duration::from_secs(15), || async {
        registry_reads(&h).await.1 >= lookups_before + 12
    })
    .await;
    let (scans, lookups) = registry_reads(&h).await;
    assert!(
        looked_up,
        "12 tenants migrated with {} lookups of the registry's key",
        lookups - lookups_before
    );
    assert!(
        scans - scans_before < 12,
        "{} scans of the registry for 12 tenants",
        scans - scans_before
    );
}

async fn registry_state_follows_the_ledger_and_is_announced(h: Harness) {
    h.write_tables(1);
    h.create(&["t_a"]).await;
    // Through the engine's own watch: LISTEN on PostgreSQL, the registry's
    // data_version on SQLite.
    let backend = tenantgate::connect(&h.url).await.unwrap();
    let mut watch = backend.watch().await.unwrap();
    h.write("0002_t2.sql", "CREATE TABLE t2 (id int);");
    h.run(&["migrate"]).await.expect(0);
    let announced = watch
        .next(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("an announcement");
    let t_a = tenantgate::TenantName::parse("t_a").unwrap();
    assert!(
        announced == RegistryChange::Tenant(t_a)
            || (h.is_sqlite() && announced == RegistryChange::Everything),
        "{announced:?}"
    );
    let (state, _, versions) = h.registry_row("t_a").await;
    assert_eq!(versions, h.ledger("t_a").await);
    assert_eq!(state, "ready");
}

/// Fleet runs announce several tenants to a notification, gathered for a
/// few milliseconds on a connection of their own: none may be lost on the
/// way, least of all the last ones, which the process's exit would drop
/// were they not sent before it.
async fn every_migrated_tenant_is_announced_by_name_before_migrate_exits(h: Harness) {
    h.write_tables(1);
    let names = h.create_numbered(40).await;
    let backend = tenantgate::connect(&h.url).await.unwrap();
    let mut watch = backend.watch().await.unwrap();
    h.write("0002_t2.sql", "CREATE TABLE t2 (id int);");
    h.run(&["migrate", "--jobs", "4"]).await.expect(0);
    let mut announced = std::collections::BTreeSet::new();
    // Whatever arrives after the process exited was sent before it did.
    while let Some(change) = watch.next(Duration::from_millis(500)).await.unwrap() {
        match change {
            RegistryChange::Tenant(name) => announced.insert(name.to_string()),
            other => panic!("every tenant is named, not {other:?}"),
        };
    }
    let expected: std::collections::BTreeSet<String> = names.into_iter().collect();
    assert_eq!(announced, expected);
}

/// Closing a session (as every fleet worker does before the run returns)
/// sends what it committed at once, not when the gathering window ends:
/// the announcement reaches a listener before the server's next answer
/// to it.
async fn a_closed_session_has_announced_what_it_committed(h: Harness) {
    h.write_tables(1);
    h.create(&["t_a"]).await;
    h.write("0002_t2.sql", "CREATE TABLE t2 (id int);");
    let set = tenantgate::MigrationSet::load(&h.migrations().join("tenant")).unwrap();
    let backend = tenantgate::connect(&h.url).await.unwrap();
    let mut watch = backend.watch().await.unwrap();
    let t_a = tenantgate::TenantName::parse("t_a").unwrap();
    let mut session = backend.open_session().await.unwrap();
    let limits = tenantgate::backend::Limits::default();
    let applied = session.migrate_tenant(&t_a, &set, &limits).await.unwrap();
    assert_eq!(applied, [2]);
    session.close().await;
    // A listening backend sends the notifications committed before a
    // query ahead of that query's answer.
    watch.heartbeat(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        watch.next(Duration::ZERO).await.unwrap(),
        Some(RegistryChange::Tenant(t_a))
    );
}

async fn interrupt_rolls_back_in_flight_and_reports_the_rest(h: Harness) {
    h.write_tables(1);
    let names = ["t_a", "t_b", "t_c", "t_d"];
    h.create(&names).await;
    h.write(
        "0002_slow.sql",
        &format!("CREATE TABLE slow (id int); {}", h.slow_sql(3.0)),
    );
    let child = h.spawn(&["migrate", "--jobs", "1", "--json"]);
    let pid = child.id().unwrap();
    let started = || async { h.busy_tenants().await > 0 };
    assert!(eventually(Duration::from_secs(10), started).await);
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["interrupted"], true);
    let interrupted: Vec<&Value> = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 1, "{report}");
    assert_eq!(
        report["not_started"].as_array().unwrap().len(),
        3,
        "{report}"
    );
    let gone = || async { !started().await };
    assert!(eventually(Duration::from_secs(15), gone).await);
    for name in names {
        assert_eq!(
            h.ledger(name).await,
            [1],
            "{name}: rolled back or never started"
        );
        assert!(!h.has_table(name, "slow").await);
    }
}

async fn lost_connection_exits_3_with_a_summary(h: Harness) {
    h.write_tables(1);
    h.create(&["t_a", "t_b"]).await;
    h.write(
        "0002_slow.sql",
        "CREATE TABLE slow (id int); SELECT pg_sleep(5);",
    );
    let child = h.spawn(&["migrate", "--jobs", "2", "--json"]);
    let sleeping = || async {
        h.count(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
            "%pg_sleep(5)%",
        )
        .await
            >= 2
    };
    assert!(eventually(Duration::from_secs(10), sleeping).await);
    h.db()
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(5)%' AND pid <> pg_backend_pid()")
        .await
        .unwrap();
    let report = exited_with(child, 3).await;
    assert_eq!(tenant(&report, "t_a")["error"]["kind"], "connection_lost");
    assert_eq!(h.ledger("t_a").await, [1]);
    h.run(&["migrate"]).await.expect(0);
    assert_eq!(h.ledger("t_b").await, [1, 2]);
}

async fn shared_migrations_apply_once_before_tenants(h: Harness) {
    // On PostgreSQL shared tables live in `public` and tenants may reference
    // them; on SQLite they live in shared.db, which tenant files cannot.
    h.write(
        "shared/0001_plans.sql",
        h.pick(
            "CREATE TABLE public.plans (id int PRIMARY KEY); INSERT INTO public.plans VALUES (1);",
            "CREATE TABLE plans (id int PRIMARY KEY); INSERT INTO plans VALUES (1);",
        ),
    );
    h.write(
        "0001_subscriptions.sql",
        h.pick(
            "CREATE TABLE subscriptions (plan int REFERENCES public.plans (id));",
            "CREATE TABLE subscriptions (plan int);",
        ),
    );
    h.create(&["t_a"]).await;
    h.run(&["migrate"]).await.expect(0);
    assert_eq!(
        h.scalar_shared("SELECT count(*) FROM plans WHERE id = 1")
            .await,
        1
    );
    h.write("shared/0002_bad.sql", "INSERT INTO plans VALUES (1);");
    let run = h.run(&["migrate"]).await;
    run.expect(1);
    assert!(
        run.stderr.contains("shared migration 2 (0002_bad.sql)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        h.scalar_shared("SELECT count(*) FROM plans").await,
        1,
        "the failed shared migration was rolled back"
    );
}

/// The registry is a cache: a tenant whose ledger lost a row (the incident)
/// while its registry row still claims every migration is found by reading
/// the ledger, and brought back.
async fn a_ledger_that_lost_rows_is_migrated_whatever_the_registry_claims(h: Harness) {
    h.write_tables(2);
    h.create(&["t_a", "t_b"]).await;
    h.exec_in_tenant(
        "t_b",
        "DROP TABLE t2; DELETE FROM _tenantgate_migrations WHERE version = 2",
    )
    .await;
    assert_eq!(
        h.registry_row("t_b").await.2,
        [1, 2],
        "the row still claims 2"
    );
    let run = h.run(&["migrate", "--json"]).await;
    run.expect(0);
    let report = run.json();
    assert_eq!(tenant(&report, "t_a")["outcome"], "up_to_date");
    assert_eq!(tenant(&report, "t_b")["outcome"], "migrated");
    assert_eq!(tenant(&report, "t_b")["applied"], serde_json::json!([2]));
    assert_eq!(h.ledger("t_b").await, [1, 2]);
    assert!(h.has_table("t_b", "t2").await);
}

/// SIGKILL mid-migration: the tenant's transaction never commits (the server
/// rolls it back; SQLite rolls back the file on the next open), and the next
/// run applies the migration once.
async fn killed_migrator_leaves_the_tenant_as_it_was(h: Harness) {
    h.write_tables(1);
    h.create(&["t_a"]).await;
    h.write(
        "0002_slow.sql",
        &format!(
            "CREATE TABLE slow (id int); INSERT INTO slow VALUES (1); {}",
            h.slow_sql(3.0)
        ),
    );
    let mut child = h.spawn(&["migrate", "--jobs", "1"]);
    let busy = || async { h.busy_tenants().await > 0 };
    assert!(eventually(Duration::from_secs(10), busy).await);
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();
    let idle = || async { !busy().await };
    assert!(eventually(Duration::from_secs(15), idle).await);
    assert_eq!(h.ledger("t_a").await, [1]);
    assert!(!h.has_table("t_a", "slow").await);
    h.write(
        "0002_slow.sql",
        "CREATE TABLE slow (id int); INSERT INTO slow VALUES (1);",
    );
    h.run(&["migrate"]).await.expect(0);
    assert_eq!(h.ledger("t_a").await, [1, 2]);
    assert_eq!(
        h.scalar_in_tenant("t_a", "SELECT count(*) FROM slow").await,
        1
    );
}

/// The SQLite store going away mid-run (its data folder moved or
/// unmounted): the run stops with exit 3 and a summary, like a lost
/// PostgreSQL connection, and no tenant is marked failed for it.
async fn data_folder_gone_mid_run_exits_3_with_a_summary(h: Harness) {
    h.write_tables(1);
    h.create(&["t_a", "t_b", "t_c"]).await;
    h.write(
        "0002_slow.sql",
        &format!("CREATE TABLE slow (id int); {}", h.slow_sql(1.0)),
    );
    let child = h.spawn(&["migrate", "--jobs", "1", "--json"]);
    let busy = || async { h.busy_tenants().await > 0 };
    assert!(eventually(Duration::from_secs(10), busy).await);
    let data = h.data_folder().to_owned();
    let away = data.with_extension("away");
    std::fs::rename(&data, &away).unwrap();
    let report = exited_with(child, 3).await;
    let lost = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["error"]["kind"] == "connection_lost")
        .unwrap_or_else(|| panic!("a tenant reports the lost store: {report}"));
    assert!(
        lost["error"]["message"]
            .as_str()
            .unwrap()
            .contains("data folder is gone"),
        "{lost}"
    );
    assert!(!data.exists(), "the run did not recreate an empty store");
    std::fs::rename(&away, &data).unwrap();
    for name in ["t_a", "t_b", "t_c"] {
        assert_ne!(h.state(name).await, "failed", "{name} is not blamed");
    }
    h.run(&["migrate"]).await.expect(0);
    for name in ["t_a", "t_b", "t_c"] {
        assert_eq!(h.ledger(name).await, [1, 2]);
    }
}
