//! Citus: what runs in CI without Citus (the linter, TLS to a node with a
//! stock Citus certificate), and the scenarios that need a Citus cluster,
//! `#[ignore]`d unless `TENANTGATE_CITUS_URL` names its coordinator
//! (`scripts/citus-cluster start`, then `scripts/test --citus`).

use std::time::Duration;

use crate::{
    harness::{connect, eventually, tenants_where, Cluster, Harness},
    only_on,
    upstream::Upstream,
};

only_on!(sqlite: the_linter_names_file_line_and_rule_without_a_database);
only_on!(postgres: a_stock_citus_certificate_connects_as_libpq_does);

async fn the_linter_names_file_line_and_rule_without_a_database(h: Harness) {
    h.write(
        "0001_users.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY);\n",
    );
    h.write(
        "0002_more.sql",
        "CREATE INDEX users_id ON users (id);\n\nALTER TABLE users ADD COLUMN n bigserial;\nCREATE TRIGGER t AFTER INSERT ON users\n  FOR EACH ROW EXECUTE FUNCTION f();\n",
    );
    h.write(
        "shared/0001_plans.sql",
        "CREATE TABLE plans (id int, owner bigint REFERENCES acme.users (id));\n",
    );
    let unreachable = [("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")];
    let linted = h.run_with_env(&["lint"], &unreachable).await;
    linted.expect(1);
    for line in [
        "0002_more.sql:3: error[citus_add_serial_column]",
        "0002_more.sql:4: error[citus_trigger]",
        "shared/0001_plans.sql:1: warning[citus_foreign_key_into_tenant]",
        "2 error(s), 1 warning(s)",
    ] {
        assert!(
            linted.stdout.contains(line),
            "{line} in:\n{}",
            linted.stdout
        );
    }
    let json = h.run_with_env(&["lint", "--json"], &unreachable).await;
    assert_eq!(json.json()["findings"][1]["rule"], "citus_trigger");
    h.remove("0002_more.sql");
    h.run_with_env(&["lint"], &unreachable).await.expect(0);
}

async fn a_stock_citus_certificate_connects_as_libpq_does(h: Harness) {
    let node = Cluster::with_v1_certificate().await;
    let base = node.url.replace("?sslmode=disable", "");
    h.write_tables(1);
    // Below verify-ca the server is not authenticated, as with libpq: the
    // v1 certificate is read for its key only.
    for url in [base.clone(), format!("{base}?sslmode=require")] {
        let listed = h.run_with_url(&url, &["tenants", "list"]).await;
        listed.expect(0);
    }
    let verified = format!(
        "{base}?sslmode=verify-ca&sslrootcert={}",
        node.certificate().display()
    );
    let refused = h.run_with_url(&verified, &["tenants", "list"]).await;
    refused.expect(3);
    assert!(refused.stderr.contains("certificate"), "{}", refused.stderr);
}

/// The Citus coordinator's URL, when the scenario can run.
fn citus_url() -> String {
    std::env::var("TENANTGATE_CITUS_URL")
        .expect("TENANTGATE_CITUS_URL names a Citus coordinator (scripts/citus-cluster start)")
}

/// A fresh database on every node of the Citus cluster, with the
/// extension and the workers registered; its coordinator URL.
async fn citus_database(name: &str) -> String {
    let base = citus_url();
    let admin = connect(&format!("{base}?sslmode=disable")).await;
    let workers: Vec<(String, i32)> = admin
        .query(
            "SELECT nodename::text, nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let db = format!("tg_citus_{name}_{}_{nanos}", std::process::id());
    let root = &base[..base.rfind('/').unwrap()];
    let coordinator_port: i32 = root.rsplit(':').next().unwrap().parse().unwrap();
    let mut nodes = vec![root.to_owned()];
    nodes.extend(
        workers
            .iter()
            .map(|(host, port)| format!("postgres://postgres@{host}:{port}")),
    );
    for node in &nodes {
        connect(&format!("{node}/postgres?sslmode=disable"))
            .await
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        connect(&format!("{node}/{db}?sslmode=disable"))
            .await
            .batch_execute("CREATE EXTENSION citus")
            .await
            .unwrap();
    }
    let coordinator = connect(&format!("{root}/{db}?sslmode=disable")).await;
    coordinator
        .execute(
            "SELECT citus_set_coordinator_host('127.0.0.1', $1)",
            &[&coordinator_port],
        )
        .await
        .unwrap();
    for (host, port) in &workers {
        coordinator
            .execute("SELECT citus_add_node($1, $2)", &[host, port])
            .await
            .unwrap();
    }
    format!("{root}/{db}")
}

/// The workers (`host:port`) the coordinator `client` is connected to knows.
async fn worker_nodes(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT nodename || ':' || nodeport FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Drops a database [`citus_database`] made, on every node.
async fn drop_citus_database(url: &str) {
    let (root, db) = url.rsplit_once('/').unwrap();
    let coordinator = connect(&format!("{url}?sslmode=disable")).await;
    let workers = worker_nodes(&coordinator).await;
    drop(coordinator);
    let urls = workers
        .iter()
        .map(|node| format!("postgres://postgres@{node}"));
    for node in std::iter::once(root.to_owned()).chain(urls) {
        connect(&format!("{node}/postgres?sslmode=disable"))
            .await
            .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Citus cluster: TENANTGATE_CITUS_URL (scripts/citus-cluster start, then scripts/test --citus)"]
async fn citus_tenants_are_distributed_schemas_and_migrate_one_statement_at_a_time() {
    let url = citus_database("schemas").await;
    let h = Harness::postgres().await;
    h.use_demo_migrations(None);
    for tenant in ["acme", "globex"] {
        let domain = format!("{tenant}.localhost");
        h.run_with_url(&url, &["tenants", "create", tenant, "--domain", &domain])
            .await
            .expect(0);
    }
    let coordinator = connect(&format!("{url}?sslmode=disable")).await;
    let distributed: i64 = coordinator
        .query_one(
            "SELECT count(*) FROM pg_dist_schema WHERE schemaid::regnamespace::text IN ('acme', 'globex')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(distributed, 2, "each tenant is a distributed schema");

    // An index and a unique constraint: refused by Citus inside one
    // multi-statement message, accepted one statement at a time.
    h.write(
        "tenant/0003_nick.sql",
        "ALTER TABLE users ADD COLUMN nickname text;\nCREATE INDEX users_nickname_idx ON users (nickname);\nALTER TABLE users ADD CONSTRAINT users_nickname_uniq UNIQUE (nickname);\n",
    );
    h.run_with_url(&url, &["migrate"]).await.expect(0);
    h.run_with_url(&url, &["verify", "--deep"]).await.expect(0);

    // A shard changed on its worker, which the coordinator's catalog does
    // not show, is drift named with the worker.
    let listed = h.run_with_url(&url, &["tenants", "list", "--json"]).await;
    let node = listed.json()[0]["node"].as_str().unwrap().to_owned();
    let db = &url[url.rfind('/').unwrap() + 1..];
    let worker = connect(&format!("postgres://postgres@{node}/{db}?sslmode=disable")).await;
    worker
        .batch_execute("SET citus.override_table_visibility TO off")
        .await
        .unwrap();
    let shard: String = worker
        .query_one(
            "SELECT relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE nspname = 'acme' AND relname ~ '^users_[0-9]+$'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    worker
        .batch_execute(&format!("ALTER TABLE acme.{shard} ADD COLUMN sneaky int"))
        .await
        .unwrap();
    let drifted = h.run_with_url(&url, &["verify", "--deep"]).await;
    drifted.expect(1);
    assert!(
        drifted
            .stdout
            .contains(&format!("shard {shard} on Citus worker {node}")),
        "{}",
        drifted.stdout
    );
    worker
        .batch_execute(&format!("ALTER TABLE acme.{shard} DROP COLUMN sneaky"))
        .await
        .unwrap();
    h.run_with_url(&url, &["verify", "--deep"]).await.expect(0);

    // Each tenant's worker is listed, and a move between workers is online.
    let listed = h.run_with_url(&url, &["tenants", "list", "--json"]).await;
    listed.expect(0);
    let acme = listed.json()[0].clone();
    let before = acme["node"].as_str().unwrap().to_owned();
    let workers = worker_nodes(&coordinator).await;
    let other = workers.iter().find(|w| **w != before).unwrap();
    h.run_with_url(&url, &["tenants", "move", "acme", "--to-node", other])
        .await
        .expect(0);
    let after = h.run_with_url(&url, &["tenants", "list", "--json"]).await;
    assert_eq!(after.json()[0]["node"].as_str(), Some(other.as_str()));

    // The demo app's upsert runs on Citus (the status row is written, then updated).
    coordinator
        .batch_execute("INSERT INTO acme.users (username, display_name) VALUES ('ada', 'Ada')")
        .await
        .unwrap();
    let server = h.serve_with(&url, &[], &[]).await.expect("serve starts");
    for _ in 0..2 {
        let page = server
            .page("acme.localhost", "/en/app/messages/", false)
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
    }

    // A release Citus would refuse is refused before any SQL runs.
    h.write(
        "tenant/0004_trigger.sql",
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;\nCREATE TRIGGER touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();\n",
    );
    let refused = h.run_with_url(&url, &["migrate"]).await;
    refused.expect(2);
    assert!(
        refused.stderr.contains("citus_trigger"),
        "{}",
        refused.stderr
    );
    let applied: i64 = coordinator
        .query_one("SELECT count(*) FROM acme._tenantgate_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied, 3, "nothing of the refused release ran");
    drop((coordinator, worker, server));
    drop_citus_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Citus cluster and its workers' data folders: TENANTGATE_CITUS_URL and TENANTGATE_CITUS_WORKERS (scripts/citus-cluster start, then scripts/test --citus)"]
async fn citus_a_worker_down_blocks_its_tenants_and_stops_ddl_with_one_error() {
    let workers = std::env::var("TENANTGATE_CITUS_WORKERS")
        .expect("TENANTGATE_CITUS_WORKERS lists the workers' data folders");
    let url = citus_database("down").await;
    let h = Harness::postgres().await;
    h.write_tables(1);
    for tenant in ["acme", "globex"] {
        let domain = format!("{tenant}.localhost");
        h.run_with_url(&url, &["tenants", "create", tenant, "--domain", &domain])
            .await
            .expect(0);
    }
    let worker = workers.split(',').next().unwrap().to_owned();
    let port = std::fs::read_to_string(format!("{worker}/tenantgate.port"))
        .unwrap()
        .trim()
        .to_owned();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/citus-cluster");
    let node = |action: &'static str| {
        let (script, worker) = (script.clone(), worker.clone());
        async move {
            let status = tokio::process::Command::new(script)
                .args([action, &worker])
                .status()
                .await
                .unwrap();
            assert!(status.success(), "citus-cluster {action}");
        }
    };
    // Which tenant the worker holds (Citus puts the two on different workers).
    let listed = h.run_with_url(&url, &["tenants", "list", "--json"]).await;
    let on_worker = |held: bool| {
        listed
            .json()
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["node"].as_str().unwrap().ends_with(&format!(":{port}")) == held)
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .expect("a tenant on each worker")
    };
    let (held, spared) = (on_worker(true), on_worker(false));
    let app = Upstream::start().await;
    let proxy = h.proxy_at(&url, app.address, &[], &[]).await;

    h.write(
        "backfills/touch.sql",
        "INSERT INTO t1 VALUES (1, 'touched') ON CONFLICT DO NOTHING;",
    );
    // Creating each tenant's backfill ledger is DDL, which needs every node.
    h.run_with_url(&url, &["backfill", "touch"]).await.expect(0);

    // Everything is observed while the worker is down, and asserted once
    // it is back, so a failure never leaves the shared cluster broken.
    node("pause").await;
    let held_host = format!("{held}.localhost");
    let blocked = eventually(Duration::from_secs(20), || async {
        let page = proxy.page(&held_host, "/", true).await;
        page.status == 503 && page.body.contains("state_unknown")
    })
    .await;
    let spared_status = proxy
        .get(&format!("{spared}.localhost"), "/", "")
        .await
        .status;
    let verified = h.run_with_url(&url, &["verify", "--deep", "--json"]).await;
    let backfilled = h
        .run_with_url(&url, &["backfill", "touch", "--force", "--json"])
        .await;
    h.write_tables(2);
    let migrated = h.run_with_url(&url, &["migrate"]).await;
    let created = h
        .run_with_url(&url, &["tenants", "create", "initech"])
        .await;
    node("resume").await;

    // The guard blocked only the tenant the worker holds.
    assert!(blocked, "the tenant of the down worker was still served");
    assert_eq!(spared_status, 200);
    // verify read the other tenant and named the one it could not read.
    verified.expect(3);
    let unreachable = tenants_where(&verified.json(), |t| t.get("unreachable").is_some());
    assert_eq!(
        unreachable,
        std::slice::from_ref(&held),
        "{}",
        verified.stdout
    );
    // A backfill failed only the tenant the worker holds.
    backfilled.expect(3);
    let report = backfilled.json();
    let failed = tenants_where(&report, |t| t["outcome"] == "failed");
    assert_eq!(failed, std::slice::from_ref(&held), "{report}");
    let done = tenants_where(&report, |t| t["outcome"] == "backfilled");
    assert_eq!(done, std::slice::from_ref(&spared), "{report}");
    // DDL stopped before it started, with one error naming the worker.
    for run in [&migrated, &created] {
        run.expect(3);
        assert!(
            run.stderr.contains(&format!(":{port}")) && run.stderr.contains("Citus worker"),
            "{}",
            run.stderr
        );
    }
    h.run_with_url(&url, &["migrate"]).await.expect(0);
    assert!(
        eventually(Duration::from_secs(20), || async {
            proxy.get(&held_host, "/", "").await.status == 200
        })
        .await,
        "served again once its worker answers"
    );
    drop(proxy);
    drop_citus_database(&url).await;
}
