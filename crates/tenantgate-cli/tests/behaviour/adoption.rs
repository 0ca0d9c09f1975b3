//! Fleets tenantgate did not build: adopted with every schema accounted
//! for, their own ledgers (sqlx's, Django's) read and kept, healed through
//! the framework's own command with the ledger as judge, and a deploy
//! announced to running proxies by `tenantgate notify`.

use std::{path::Path, time::Duration};

use sqlx::Connection;

use crate::{
    harness::{eventually, tenants_where, Harness},
    only_on,
    upstream::Upstream,
};

// Schemas to adopt and other tools' ledgers exist on PostgreSQL only.
only_on!(postgres:
    a_sqlx_fleet_is_adopted_and_migrated_as_sqlx_would,
    every_candidate_is_adopted_or_refused_with_its_reason,
    a_baseline_is_written_only_where_the_catalog_matches,
    exec_decides_from_the_ledger_and_kills_what_it_started,
    notify_makes_running_proxies_enforce_a_deploy,
    drift_among_peers_is_found_without_replaying,
);
// The SQLite store keeps tenantgate's own ledger and has no schemas to adopt.
only_on!(sqlite: other_ledgers_and_adoption_need_postgres);

const USERS: &str = "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);\n";
const ORDERS: &str = "CREATE TABLE orders (id bigint PRIMARY KEY, item text);\n";

/// sqlx's own migrator on `schema`, from the flat folder `folder`.
async fn sqlx_migrate(h: &Harness, schema: &str, folder: &Path) {
    let mut conn = sqlx::PgConnection::connect(&h.url)
        .await
        .expect("sqlx connects");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("SET search_path TO {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(folder)
        .await
        .expect("sqlx reads the folder")
        .run(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("sqlx migrates {schema}: {e}"));
}

async fn a_sqlx_fleet_is_adopted_and_migrated_as_sqlx_would(h: Harness) {
    // A sqlx project's folder, as it is: flat, with a reversible pair.
    let full = tempfile::tempdir().unwrap();
    let first = tempfile::tempdir().unwrap();
    for dir in [full.path(), first.path()] {
        std::fs::write(dir.join("20240101000000_users.up.sql"), USERS).unwrap();
        std::fs::write(
            dir.join("20240101000000_users.down.sql"),
            "DROP TABLE users;\n",
        )
        .unwrap();
    }
    std::fs::write(full.path().join("20240102000000_orders.sql"), ORDERS).unwrap();
    for schema in ["tenant_acme", "tenant_globex"] {
        h.db()
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
    }
    sqlx_migrate(&h, "tenant_acme", full.path()).await;
    sqlx_migrate(&h, "tenant_globex", first.path()).await;

    let folder = full.path().display().to_string();
    let env = [
        ("TENANTGATE_LEDGER", "sqlx"),
        ("TENANTGATE_MIGRATIONS", folder.as_str()),
    ];
    let adopted = h
        .run_with_env(&["adopt", "--schemas", "tenant\\_%", "--apply"], &env)
        .await;
    adopted.expect(0);
    assert!(
        adopted.stderr.contains("flat sqlx folder"),
        "{}",
        adopted.stderr
    );
    assert_eq!(h.state("tenant_acme").await, "ready");
    assert_eq!(h.state("tenant_globex").await, "pending");
    let verified = h.run_with_env(&["verify"], &env).await;
    verified.expect(1);
    assert!(
        verified.stdout.contains("20240102000000"),
        "{}",
        verified.stdout
    );

    // tenantgate applies what globex lacks, writing sqlx's ledger as sqlx would…
    h.run_with_env(&["migrate"], &env).await.expect(0);
    assert_eq!(h.state("tenant_globex").await, "ready");
    let h = &h;
    let rows = |schema: &'static str| async move {
        h.db()
            .query(
                &format!(
                    "SELECT version, description, success, checksum FROM {schema}._sqlx_migrations ORDER BY version"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    r.get::<_, bool>(2),
                    r.get::<_, Vec<u8>>(3),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(rows("tenant_globex").await, rows("tenant_acme").await);
    // …so sqlx itself finds nothing to do and no checksum it disagrees with.
    sqlx_migrate(h, "tenant_globex", full.path()).await;
    h.run_with_env(&["verify", "--deep"], &env).await.expect(0);
    // A migration sqlx applies later is read from its ledger, not assumed.
    std::fs::write(
        full.path().join("20240103000000_notes.sql"),
        "CREATE TABLE notes (body text);\n",
    )
    .unwrap();
    sqlx_migrate(h, "tenant_acme", full.path()).await;
    let verified = h.run_with_env(&["--json", "verify"], &env).await;
    verified.expect(1);
    let report = verified.json();
    let not_ok = tenants_where(&report, |t| t["ok"] == false);
    assert_eq!(not_ok, ["tenant_globex"], "{report}");
}

async fn every_candidate_is_adopted_or_refused_with_its_reason(h: Harness) {
    h.write_tables(1);
    h.db()
        .batch_execute(
            "CREATE SCHEMA acme; CREATE SCHEMA globex; CREATE SCHEMA \"Bad-Name\"; CREATE SCHEMA initech;
             CREATE TABLE public.clients (schema_name text, domain text);
             INSERT INTO public.clients VALUES
               ('acme', 'acme.example.com'), ('acme', 'www.acme.example.com'),
               ('globex', 'acme.example.com'), ('Bad-Name', 'bad.example.com'),
               ('umbrella', 'umbrella.example.com'), ('initech', 'not a host');",
        )
        .await
        .unwrap();
    let query = "SELECT schema_name, domain FROM public.clients";
    let adopted = h
        .run(&["--json", "adopt", "--from-sql", query, "--apply"])
        .await;
    adopted.expect(1);
    let report = adopted.json();
    let adoptees = report["adopted"].as_array().unwrap();
    assert_eq!(adoptees.len(), 1, "{report}");
    assert_eq!(adoptees[0]["tenant"], "acme");
    assert_eq!(
        adoptees[0]["domains"],
        serde_json::json!(["acme.example.com", "www.acme.example.com"])
    );
    // acme has no ledger yet: registered, not served.
    assert_eq!(adoptees[0]["state"], "pending");
    let reason = |schema: &str| {
        report["refused"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["schema"] == schema)
            .map(|r| r["reason"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{schema} neither adopted nor refused: {report}"))
    };
    assert_eq!(reason("globex"), "domain_taken");
    assert_eq!(reason("Bad-Name"), "invalid_name");
    assert_eq!(reason("umbrella"), "no_such_schema");
    assert_eq!(reason("initech"), "invalid_domain");
    assert_eq!(h.state("acme").await, "pending");
    // Adopting again refuses what is registered; the rest are unchanged.
    let again = h.run(&["--json", "adopt", "--schemas", "acme"]).await;
    again.expect(1);
    assert_eq!(again.json()["refused"][0]["reason"], "already_registered");

    // The query runs read-only, as one SELECT: a bad or writing query is
    // one usage error and changes nothing.
    for hostile in [
        "SELECT schema_name FROM public.clients; DROP TABLE public.clients",
        "SELECT nextval('public.no_such_sequence')",
        "DELETE FROM public.clients RETURNING schema_name",
        "SELECT no_such_column FROM public.clients",
    ] {
        let refused = h.run(&["adopt", "--from-sql", hostile, "--apply"]).await;
        refused.expect(2);
        assert!(refused.stderr.contains("--from-sql"), "{}", refused.stderr);
    }
    let rows: i64 = h
        .db()
        .query_one("SELECT count(*) FROM public.clients", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 6);
}

async fn a_baseline_is_written_only_where_the_catalog_matches(h: Harness) {
    h.write("0001_users.sql", USERS);
    h.write("0002_orders.sql", ORDERS);
    h.write(
        "0003_notes.sql",
        "CREATE TABLE notes (id bigint PRIMARY KEY);\n",
    );
    // Built by hand: acme as the first two migrations would, globex not quite.
    h.db()
        .batch_execute(&format!(
            "CREATE SCHEMA acme; SET search_path TO acme; {USERS}{ORDERS}
             CREATE SCHEMA globex; SET search_path TO globex; {USERS}
             CREATE TABLE orders (id bigint PRIMARY KEY);
             RESET search_path;"
        ))
        .await
        .unwrap();
    let adopted = h
        .run(&[
            "--json",
            "adopt",
            "--schemas",
            "%",
            "--baseline",
            "2",
            "--apply",
        ])
        .await;
    adopted.expect(1);
    let report = adopted.json();
    assert_eq!(report["adopted"][0]["tenant"], "acme", "{report}");
    let refused = &report["refused"][0];
    assert_eq!(refused["schema"], "globex");
    assert_eq!(refused["reason"], "catalog_differs");
    assert!(
        refused["differences"].to_string().contains("item"),
        "names the difference: {refused}"
    );
    assert_eq!(h.ledger("acme").await, [1, 2]);
    assert_eq!(h.state("acme").await, "pending");
    // From here it is an ordinary tenantgate tenant.
    h.run(&["migrate"]).await.expect(0);
    assert_eq!(h.ledger("acme").await, [1, 2, 3]);
    h.run(&["verify", "--deep", "--tenant", "acme"])
        .await
        .expect(0);
}

/// A schema holding a Django ledger with these `shop` migrations recorded.
async fn django_schema(h: &Harness, schema: &str, recorded: &[&str]) {
    let mut sql = format!(
        "CREATE SCHEMA {schema}; CREATE TABLE {schema}.django_migrations
           (id serial PRIMARY KEY, app varchar(255) NOT NULL, name varchar(255) NOT NULL, applied timestamptz NOT NULL DEFAULT now());
         INSERT INTO {schema}.django_migrations (app, name) VALUES ('contenttypes', '0001_initial');"
    );
    for name in recorded {
        sql.push_str(&format!(
            "INSERT INTO {schema}.django_migrations (app, name) VALUES ('shop', '{name}');"
        ));
    }
    h.db().batch_execute(&sql).await.unwrap();
}

/// The options that read `shop`'s Django ledger, with the project in `folder`.
fn django_env(folder: &str) -> [(&'static str, &str); 3] {
    [
        ("TENANTGATE_LEDGER", "django"),
        ("TENANTGATE_DJANGO_APPS", "shop"),
        ("TENANTGATE_MIGRATIONS", folder),
    ]
}

/// A Django project folder whose `shop` app has these migrations.
fn django_project(migrations: &[&str]) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().join("shop/migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("__init__.py"), "").unwrap();
    for name in migrations {
        std::fs::write(
            dir.join(format!("{name}.py")),
            "from django.db import migrations\n\nclass Migration(migrations.Migration):\n    dependencies = []\n",
        )
        .unwrap();
    }
    project
}

async fn exec_decides_from_the_ledger_and_kills_what_it_started(h: Harness) {
    let project = django_project(&["0001_initial", "0002_userstatus"]);
    for (schema, recorded) in [
        ("acme", &["0001_initial", "0002_userstatus"][..]),
        ("globex", &["0001_initial"][..]),
        ("initech", &["0001_initial"][..]),
    ] {
        django_schema(&h, schema, recorded).await;
    }
    let folder = project.path().display().to_string();
    let env = django_env(&folder);
    h.run_with_env(&["adopt", "--schemas", "%", "--apply"], &env)
        .await
        .expect(0);
    // Django's own migrations need Django: migrate alone is refused.
    let refused = h.run_with_env(&["migrate"], &env).await;
    refused.expect(2);
    assert!(refused.stderr.contains("--exec"), "{}", refused.stderr);
    // A command that cannot start is one error, not a failure per tenant.
    let missing = h
        .run_with_env(
            &["migrate", "--exec", "tenantgate-no-such-manage {schema}"],
            &env,
        )
        .await;
    missing.expect(2);
    assert!(
        missing.stderr.contains("tenantgate-no-such-manage"),
        "{}",
        missing.stderr
    );

    // Exit 0 but the ledger still lacks the migration: failed, with its stderr.
    let lied = h
        .run_with_env(
            &[
                "--json",
                "migrate",
                "--shell",
                "--exec",
                "echo 'pretending {schema} is done' >&2",
            ],
            &env,
        )
        .await;
    lied.expect(1);
    let report = lied.json();
    let ran: Vec<&str> = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] != "up_to_date")
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["globex", "initech"], "only tenants behind: {report}");
    let globex = &report["tenants"][1];
    assert_eq!(globex["outcome"], "failed");
    assert_eq!(globex["command"]["exit_code"], 0);
    assert_eq!(
        globex["command"]["stderr_tail"][0],
        "pretending globex is done"
    );
    assert_eq!(h.state("globex").await, "failed");

    // Exit 3 but the ledger holds everything: ready.
    let record = "psql \"$DATABASE_URL\" -qc \"INSERT INTO {schema}.django_migrations (app, name) VALUES ('shop', '0002_userstatus')\"; exit 3";
    let healed = h
        .run_with_env(&["--json", "migrate", "--shell", "--exec", record], &env)
        .await;
    healed.expect(0);
    let report = healed.json();
    for tenant in ["globex", "initech"] {
        assert_eq!(h.state(tenant).await, "ready", "{report}");
    }
    assert_eq!(report["tenants"][1]["command"]["exit_code"], 3);

    // A timeout and an interruption each kill the command's whole process
    // group, grandchildren included.
    django_schema(&h, "umbrella", &[]).await;
    h.run_with_env(&["adopt", "--schemas", "umbrella", "--apply"], &env)
        .await
        .expect(0);
    let pids = tempfile::tempdir().unwrap();
    let sleeper = format!(
        "sleep 600 & echo $! > {}/{{schema}}.timeout; wait",
        pids.path().display()
    );
    let timed_out = h
        .run_with_env(
            &[
                "--json",
                "migrate",
                "--shell",
                "--exec",
                &sleeper,
                "--exec-timeout",
                "1s",
            ],
            &env,
        )
        .await;
    timed_out.expect(1);
    assert_eq!(timed_out.json()["tenants"][3]["command"]["timed_out"], true);
    assert_gone(&pids.path().join("umbrella.timeout")).await;

    let sleeper = format!(
        "sleep 600 & echo $! > {}/{{schema}}.interrupt; wait",
        pids.path().display()
    );
    let mut running = h
        .command_with_env(&["migrate", "--shell", "--exec", &sleeper], &env)
        .spawn()
        .unwrap();
    let pid_file = pids.path().join("umbrella.interrupt");
    let started = eventually(Duration::from_secs(10), || async { pid_file.exists() }).await;
    assert!(started);
    nix_signal(running.id().unwrap(), "INT");
    let status = tokio::time::timeout(Duration::from_secs(10), running.wait())
        .await
        .expect("tenantgate exits after Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(130));
    assert_gone(&pid_file).await;
}

/// Sends `signal` to `pid` with kill(1).
fn nix_signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits until the process whose id `file` holds is gone.
async fn assert_gone(file: &Path) {
    let pid = std::fs::read_to_string(file).unwrap();
    let gone = eventually(Duration::from_secs(10), || async {
        !Path::new(&format!("/proc/{}", pid.trim())).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .is_ok_and(|stat| stat.contains(") Z "))
    })
    .await;
    assert!(gone, "process {} outlived its command", pid.trim());
}

async fn notify_makes_running_proxies_enforce_a_deploy(h: Harness) {
    let project = django_project(&["0001_initial"]);
    django_schema(&h, "acme", &["0001_initial"]).await;
    let folder = project.path().display().to_string();
    let env = django_env(&folder);
    h.db()
        .batch_execute("CREATE TABLE public.hosts (s text, d text); INSERT INTO public.hosts VALUES ('acme', 'acme.localhost')")
        .await
        .unwrap();
    h.run_with_env(
        &[
            "adopt",
            "--from-sql",
            "SELECT s, d FROM public.hosts",
            "--apply",
        ],
        &env,
    )
    .await
    .expect(0);
    let app = Upstream::start().await;
    // Ledgers polled rarely: what follows happens through notify alone.
    let proxy = h
        .proxy_with_env(app.address, &["--ledger-poll", "1h"], &env)
        .await;
    let status = || async {
        crate::http::send(
            proxy.address,
            b"GET / HTTP/1.1\r\nHost: acme.localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .status
    };
    assert_eq!(status().await, 200);

    // A deploy adds a migration the code needs; acme lacks it.
    std::fs::write(
        project.path().join("shop/migrations/0002_userstatus.py"),
        "class Migration: pass\n",
    )
    .unwrap();
    h.run_with_env(&["notify"], &env).await.expect(0);
    let blocked = eventually(Duration::from_secs(10), || async { status().await == 503 }).await;
    assert!(blocked, "the deploy was not enforced: {}", proxy.stderr());

    // Django records it (as `migrate_schemas` would); notify brings it in.
    h.db()
        .batch_execute(
            "INSERT INTO acme.django_migrations (app, name) VALUES ('shop', '0002_userstatus')",
        )
        .await
        .unwrap();
    let notified = h.run_with_env(&["notify"], &env).await;
    notified.expect(0);
    assert!(
        notified.stdout.contains("1 of 1 tenant(s) ready"),
        "{}",
        notified.stdout
    );
    let served = eventually(Duration::from_secs(10), || async { status().await == 200 }).await;
    assert!(served, "acme still blocked: {}", proxy.stderr());
}

async fn drift_among_peers_is_found_without_replaying(h: Harness) {
    let project = django_project(&["0001_initial", "0002_userstatus"]);
    let both = ["0001_initial", "0002_userstatus"];
    // Four tenants hold both migrations; one lost a column by hand. Two hold
    // only the first (too few to vote); two more split evenly.
    for (schema, recorded, table) in [
        (
            "acme",
            &both[..],
            "CREATE TABLE t (id bigint PRIMARY KEY, note text)",
        ),
        (
            "globex",
            &both[..],
            "CREATE TABLE t (id bigint PRIMARY KEY, note text)",
        ),
        (
            "initech",
            &both[..],
            "CREATE TABLE t (id bigint PRIMARY KEY, note text)",
        ),
        (
            "umbrella",
            &both[..],
            "CREATE TABLE t (id bigint PRIMARY KEY)",
        ),
        (
            "hooli",
            &both[..1],
            "CREATE TABLE t (id bigint PRIMARY KEY)",
        ),
        ("pied", &both[..1], "CREATE TABLE t (id bigint PRIMARY KEY)"),
    ] {
        django_schema(&h, schema, recorded).await;
        h.db()
            .batch_execute(&format!(
                "SET search_path TO {schema}; {table}; RESET search_path"
            ))
            .await
            .unwrap();
    }
    let folder = project.path().display().to_string();
    let env = django_env(&folder);
    h.run_with_env(&["adopt", "--schemas", "%", "--apply"], &env)
        .await
        .expect(0);
    let verified = h.run_with_env(&["--json", "verify", "--deep"], &env).await;
    verified.expect(1);
    let report = verified.json();
    let outliers = report["peers"]["outliers"].as_array().unwrap();
    assert_eq!(outliers.len(), 1, "{report}");
    assert_eq!(outliers[0]["tenant"], "umbrella");
    assert_eq!(outliers[0]["group"], 4);
    assert_eq!(
        outliers[0]["differences"],
        serde_json::json!(["missing column t.note text"])
    );
    let undecided = &report["peers"]["undecided"];
    assert_eq!(
        undecided[0]["tenants"],
        serde_json::json!(["hooli", "pied"])
    );
    assert_eq!(undecided[0]["reason"], "fewer_than_three");
    // Reported, not marked: the guard does not block on a vote.
    assert_eq!(h.state("umbrella").await, "ready");
    let text = h.run_with_env(&["verify", "--deep"], &env).await;
    assert!(
        text.stdout
            .contains("differs from the majority of the 4 tenants"),
        "{}",
        text.stdout
    );

    // Two against two: no strict majority, so nobody is called an outlier.
    h.db()
        .batch_execute("ALTER TABLE initech.t DROP COLUMN note")
        .await
        .unwrap();
    let split = h.run_with_env(&["--json", "verify", "--peers"], &env).await;
    let report = split.json();
    assert!(
        report["peers"]["outliers"].as_array().unwrap().is_empty(),
        "{report}"
    );
    assert_eq!(
        report["peers"]["undecided"][1]["reason"], "no_majority",
        "{report}"
    );
}

async fn other_ledgers_and_adoption_need_postgres(h: Harness) {
    h.write_tables(1);
    for args in [
        &["--ledger", "sqlx", "verify"][..],
        &["adopt", "--schemas", "%"][..],
        &["notify"][..],
        &[
            "--ledger",
            "django",
            "--django-apps",
            "shop",
            "tenants",
            "list",
        ][..],
    ] {
        let run = h.run(args).await;
        run.expect(2);
        assert!(
            run.stderr.contains("PostgreSQL"),
            "{args:?}: {}",
            run.stderr
        );
    }
    // Commands that keep tenantgate's own ledger refuse the others outright.
    for args in [
        &["--ledger", "sqlx", "serve"][..],
        &["--ledger", "sqlx", "tenants", "create", "acme"][..],
        &["--ledger", "sqlx", "backfill", "x"][..],
    ] {
        let run = h.run(args).await;
        run.expect(2);
        assert!(
            run.stderr.contains("own ledger"),
            "{args:?}: {}",
            run.stderr
        );
    }
}
