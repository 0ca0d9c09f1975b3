//! How far one server goes: a fleet of a small schema (two tables with an
//! index each) at the size asked, each fleet operation measured once on it,
//! with the guard's snapshot and the server's own memory and catalog size.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use serde_json::json;
use tenantgate::{
    fleet::{self, FleetOptions},
    readiness::RequiredSet,
    verify::{self, VerifyOptions},
    MigrationFolder, MigrationSet,
};
use tenantgate_http::Snapshot;
use tokio_util::sync::CancellationToken;

use crate::{
    cluster::{self, Cluster},
    floor, memory,
    scenarios::{
        ledgers_floor_script, names, progress, provision_all, report, round, FINGERPRINT_FLOOR,
    },
};

const SMALL_SCHEMA: [(&str, &str); 3] = [
    (
        "0001_accounts.sql",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);\nCREATE INDEX accounts_email ON accounts (email);\n",
    ),
    (
        "0002_events.sql",
        "CREATE TABLE events (id bigint PRIMARY KEY, account bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());\nCREATE INDEX events_account ON events (account);\n",
    ),
    (
        "0003_note.sql",
        "ALTER TABLE accounts ADD COLUMN note text;\n",
    ),
];

/// Runs the scale scenario at `n` tenants; one JSON line per measurement.
/// With `keep`, the fleet stays in its database afterwards.
pub(crate) async fn scale(
    cluster: &Cluster,
    psql: &Path,
    n: usize,
    keep: bool,
) -> anyhow::Result<()> {
    let full = MigrationSet::from_files(SMALL_SCHEMA).map_err(anyhow::Error::msg)?;
    let folder = |set: MigrationSet| MigrationFolder {
        tenant: set,
        ..Default::default()
    };
    let (initial, full) = (folder(full.up_to(2)), folder(full));
    let url = cluster.create("bench_scale").await?;
    let backend = tenantgate::connect(&url).await?;
    backend.prepare().await?;
    let cancel = CancellationToken::new();
    let once = |name: &str, elapsed: Duration, extra: serde_json::Value| {
        report(name, n, &[elapsed], &[], extra)
    };

    progress(&format!("scale {n}: provisioning"));
    let jobs = FleetOptions::default().jobs;
    let started = Instant::now();
    provision_all(backend.as_ref(), &initial, &names(n), jobs).await?;
    once(
        "scale_provision",
        started.elapsed(),
        json!({ "jobs": jobs }),
    );
    cluster.checkpoint().await?;

    progress(&format!("scale {n}: one migration across the fleet"));
    let started = Instant::now();
    let migrated = fleet::migrate(
        backend.as_ref(),
        &full,
        &FleetOptions::default(),
        &|_| {},
        &cancel,
    )
    .await?;
    once("scale_migrate_step", started.elapsed(), json!({}));
    anyhow::ensure!(migrated.all_ready(), "the scale fleet did not migrate");

    let verify_once = |deep: bool| {
        let (backend, full, cancel) = (backend.as_ref(), &full, &cancel);
        async move {
            let options = VerifyOptions {
                deep,
                ..Default::default()
            };
            let started = Instant::now();
            let report = verify::verify(backend, full, &options, &|_| {}, cancel).await?;
            anyhow::Ok((started.elapsed(), report))
        }
    };
    progress(&format!("scale {n}: verify"));
    let (elapsed, verified) = verify_once(false).await?;
    anyhow::ensure!(verified.all_ok(), "the scale fleet did not verify");
    once("scale_verify", elapsed, json!({}));
    // The floor of a full deep scan: one catalog-wide digest query in psql
    // (the issue's); and with every ledger read too, which a deep
    // verification must also do (as the Citus scenario's floor).
    let floor = floor::replay(psql, &url, FINGERPRINT_FLOOR).await?;
    let ledgers = floor::replay(psql, &url, &ledgers_floor_script(&names(n))).await?;
    for label in ["scale_verify_deep_full", "scale_verify_deep_unchanged"] {
        progress(&format!("scale {n}: {label}"));
        let (elapsed, verified) = verify_once(true).await?;
        anyhow::ensure!(verified.all_ok(), "the scale fleet did not verify deep");
        let with_ledgers = floor + ledgers;
        report(
            label,
            n,
            &[elapsed],
            &[floor],
            json!({
                "catalogs": verified.catalogs,
                "ledgers_floor_s": round(ledgers.as_secs_f64()),
                "ratio_to_ledgers_and_digest": round(elapsed.as_secs_f64() / with_ledgers.as_secs_f64()),
            }),
        );
    }
    let drifting: Vec<_> = names(n).into_iter().step_by(100).collect();
    let script: String = drifting
        .iter()
        .map(|t| format!("CREATE TABLE {t}.bench_drift (id int);\n"))
        .collect();
    floor::replay(psql, &url, &script).await?;
    progress(&format!("scale {n}: verify --deep, 1 % changed"));
    let (elapsed, verified) = verify_once(true).await?;
    let found = verified
        .tenants
        .iter()
        .filter(|t| !t.drift.is_empty())
        .count();
    anyhow::ensure!(
        found == drifting.len(),
        "{found} of {} changes found",
        drifting.len()
    );
    report(
        "scale_verify_deep_one_percent_changed",
        n,
        &[elapsed],
        &[floor],
        json!({ "changed": drifting.len(), "catalogs": verified.catalogs }),
    );

    progress(&format!("scale {n}: the guard's snapshot and the server"));
    let required = RequiredSet::from_folder(&full);
    let shared = backend.shared_ledger().await?;
    // Counted from before the registry is read: the rows are consumed (and
    // freed) by the build, what remains is the snapshot.
    let before = memory::live_bytes();
    let tenants = backend.tenants().await?;
    let snapshot = Snapshot::build(tenants, &shared, &required);
    let snapshot_mb = memory::live_bytes().saturating_sub(before) as f64 / 1_048_576.0;
    std::hint::black_box(&snapshot);
    drop(snapshot);
    let server = server_facts(&url).await?;
    println!(
        "{}",
        json!({
            "scenario": "scale_footprint",
            "tenants": n,
            "snapshot_mb": (snapshot_mb * 10.0).round() / 10.0,
            "server": server,
        })
    );
    drop(backend);
    if keep {
        progress(&format!("scale {n}: the fleet is kept in {url}"));
    } else {
        cluster.drop("bench_scale").await?;
    }
    Ok(())
}

/// The database's size and catalog, and what one server process holds
/// after reading every tenant's catalog once (its catalog caches).
async fn server_facts(url: &str) -> anyhow::Result<serde_json::Value> {
    let client = cluster::connect(url).await?;
    let row = client
        .query_one(
            "SELECT pg_database_size(current_database()),
                    (SELECT count(*) FROM pg_catalog.pg_class),
                    (SELECT count(*) FROM pg_catalog.pg_attribute),
                    pg_backend_pid(),
                    current_setting('shared_buffers')",
            &[],
        )
        .await?;
    let pid: i32 = row.get(3);
    client
        .batch_execute(
            "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid",
        )
        .await?;
    // A commit every thousand tenants: one transaction would hold a lock
    // per table, more than the server's lock table has at 100,000.
    client
        .batch_execute(
            "DO $$ DECLARE r record; i int := 0; BEGIN
               FOR r IN SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.nspname ~ '^t[0-9]+$' LOOP
                 EXECUTE format('SELECT 1 FROM %I.accounts LIMIT 0', r.nspname);
                 i := i + 1;
                 IF i % 1000 = 0 THEN COMMIT; END IF;
               END LOOP; END $$",
        )
        .await?;
    let backend_rss_mb = memory::peak_rss_mb_of(&pid.to_string());
    Ok(json!({
        "database_mb": row.get::<_, i64>(0) / 1_048_576,
        "pg_class_rows": row.get::<_, i64>(1),
        "pg_attribute_rows": row.get::<_, i64>(2),
        "shared_buffers": row.get::<_, String>(4),
        "backend_peak_rss_mb_after_touching_every_tenant": backend_rss_mb,
    }))
}
