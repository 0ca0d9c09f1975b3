//! The database scenarios: provisioning, fleet migration, verification.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::{stream, StreamExt};
use serde_json::json;
use tenantgate::{
    backend::Limits,
    fleet::{self, FleetOptions},
    provision,
    verify::{self, VerifyOptions},
    Backend, MigrationFolder, MigrationSet, TenantName,
};
use tokio_util::sync::CancellationToken;

use crate::{cluster::Cluster, floor, Args};

/// The version of the fixture's fleet-migration step (`0020`).
pub(crate) const STEP: i64 = 20;

/// The median of samples.
pub(crate) fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Prints one result line: medians of interleaved repetitions, and the samples.
pub(crate) fn report(
    scenario: &str,
    tenants: usize,
    tenantgate: &[Duration],
    floor: &[Duration],
    extra: serde_json::Value,
) {
    let secs = |v: &[Duration]| v.iter().map(|d| round(d.as_secs_f64())).collect::<Vec<_>>();
    let tg = median(tenantgate);
    let mut line = json!({
        "scenario": scenario,
        "tenants": tenants,
        "tenantgate_s": round(tg.as_secs_f64()),
        "tenants_per_s": round(tenants as f64 / tg.as_secs_f64()),
        "tenantgate_samples_s": secs(tenantgate),
    });
    if !floor.is_empty() {
        let fl = median(floor);
        line["floor_s"] = json!(round(fl.as_secs_f64()));
        line["ratio"] = json!(round(tg.as_secs_f64() / fl.as_secs_f64()));
        line["floor_samples_s"] = json!(secs(floor));
    }
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    println!("{line}");
}

pub(crate) fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn progress(message: &str) {
    eprintln!("[bench] {message}");
}

pub(crate) async fn run_all(args: &Args) -> anyhow::Result<()> {
    let psql = floor::psql(args.psql.as_deref());
    let full = MigrationSet::load(&args.fixture).context("load the fixture")?;
    let initial = full.up_to(STEP - 1);
    let folder = |set: &MigrationSet| MigrationFolder {
        tenant: set.clone(),
        ..Default::default()
    };
    for scenario in &args.scenarios {
        match scenario.as_str() {
            "provision" => {
                let cluster = Cluster::connect(&args.database_url).await?;
                for &n in &args.provision_sizes {
                    provision_scenario(&cluster, &psql, &folder(&initial), n, args.repeat).await?;
                }
            }
            "migrate" | "verify" => {
                if scenario == "verify" && args.scenarios.iter().any(|s| s == "migrate") {
                    continue; // measured on the migrated fleets, right after migration
                }
                let cluster = Cluster::connect(&args.database_url).await?;
                for &n in &args.fleet_sizes {
                    fleet_scenarios(
                        &cluster,
                        &psql,
                        &folder(&initial),
                        &folder(&full),
                        n,
                        args.repeat,
                    )
                    .await?;
                }
            }
            "guard" => {
                // Measured on a runtime of its own, off this one.
                let (sizes, set) = (args.snapshot_sizes.clone(), full.clone());
                std::thread::spawn(move || crate::guard::decision(&sizes, &set))
                    .join()
                    .map_err(|_| anyhow::anyhow!("the guard benchmark panicked"))??;
            }
            "http" => crate::guard::throughput(args, &full).await?,
            "scale" => {
                let cluster = Cluster::connect(&args.database_url).await?;
                for &n in &args.scale_sizes {
                    crate::scale::scale(&cluster, &psql, n, args.keep_scale_fleet).await?;
                }
            }
            "memory" => crate::guard::memory(&args.snapshot_sizes, &full),
            "citus" => {
                let citus = args.citus_url.as_deref().context(
                    "the citus scenario needs --citus-url (TENANTGATE_CITUS_URL), e.g. from scripts/citus-cluster start",
                )?;
                let cluster = Cluster::connect(&args.database_url).await?;
                for &n in &args.citus_sizes {
                    let plain = cluster.create("bench_citus_plain").await?;
                    crate::citus::fleet_on(
                        "plain",
                        &plain,
                        &psql,
                        &folder(&initial),
                        &folder(&full),
                        n,
                        args.repeat,
                    )
                    .await?;
                    cluster.drop("bench_citus_plain").await?;
                    crate::citus::fleet_on(
                        "citus",
                        citus,
                        &psql,
                        &folder(&initial),
                        &folder(&full),
                        n,
                        args.repeat,
                    )
                    .await?;
                }
            }
            "move" => {
                let cluster = Cluster::connect(&args.database_url).await?;
                crate::moving::moving(&cluster, &folder(&full), args.move_mb, args.repeat).await?;
            }
            "sqlite-provision" => {
                for &n in &args.provision_sizes {
                    crate::sqlite::provision(args, n).await?;
                }
            }
            "sqlite-migrate" => {
                for &n in &args.fleet_sizes {
                    crate::sqlite::migrate_and_verify(args, n).await?;
                }
            }
            other => anyhow::bail!("unknown scenario {other:?}"),
        }
    }
    Ok(())
}

pub(crate) fn names(n: usize) -> Vec<TenantName> {
    (0..n)
        .map(|i| TenantName::parse(&format!("t{i:05}")).expect("valid"))
        .collect()
}

/// Creates `tenants` with up to `jobs` creations in flight.
pub(crate) async fn provision_all(
    backend: &dyn Backend,
    folder: &MigrationFolder,
    tenants: &[TenantName],
    jobs: usize,
) -> anyhow::Result<()> {
    let limits = Limits::default();
    let mut created = stream::iter(tenants)
        .map(|t| provision::create_tenant(backend, folder, t, &[], &limits))
        .buffer_unordered(jobs);
    let mut done = 0;
    while let Some(result) = created.next().await {
        result?;
        done += 1;
        if done % 1000 == 0 {
            progress(&format!("provisioned {done}/{}", tenants.len()));
        }
    }
    Ok(())
}

async fn provision_scenario(
    cluster: &Cluster,
    psql: &Path,
    folder: &MigrationFolder,
    n: usize,
    repeat: usize,
) -> anyhow::Result<()> {
    let tenants = names(n);
    let script = floor::provision_script(&tenants, folder, "", "", |_| String::new());
    let parallel = FleetOptions::default().jobs;
    let (mut floor, mut sequential, mut concurrent) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=repeat {
        progress(&format!("provision {n}: round {round}/{repeat}: floor"));
        let url = cluster.create("bench_provision").await?;
        floor.push(floor::replay(psql, &url, &script).await?);
        for (jobs, samples) in [(1, &mut sequential), (parallel, &mut concurrent)] {
            progress(&format!(
                "provision {n}: round {round}/{repeat}: tenantgate, {jobs} in flight"
            ));
            cluster.checkpoint().await?;
            let url = cluster.create("bench_provision").await?;
            let backend = tenantgate::connect(&url).await?;
            backend.prepare().await?;
            let started = Instant::now();
            provision_all(backend.as_ref(), folder, &tenants, jobs).await?;
            samples.push(started.elapsed());
        }
        cluster.drop("bench_provision").await?;
        cluster.checkpoint().await?;
    }
    let migrations = folder.tenant.len();
    report(
        "provision_sequential",
        n,
        &sequential,
        &floor,
        json!({ "jobs": 1, "migrations": migrations }),
    );
    report(
        "provision_parallel",
        n,
        &concurrent,
        &floor,
        json!({ "jobs": parallel, "migrations": migrations }),
    );
    Ok(())
}

async fn fleet_scenarios(
    cluster: &Cluster,
    psql: &Path,
    initial: &MigrationFolder,
    full: &MigrationFolder,
    n: usize,
    repeat: usize,
) -> anyhow::Result<()> {
    let template = format!("bench_fleet_{n}");
    progress(&format!("fleet {n}: building the template fleet"));
    {
        let url = cluster.create(&template).await?;
        let backend = tenantgate::connect(&url).await?;
        backend.prepare().await?;
        provision_all(
            backend.as_ref(),
            initial,
            &names(n),
            FleetOptions::default().jobs,
        )
        .await?;
    }
    cluster.checkpoint().await?;
    let step = full.tenant.get(STEP).context("the fixture's 0020")?;

    let mut script = String::new();
    for t in names(n) {
        script.push_str(&format!(
            "BEGIN;\nSET LOCAL search_path TO {t};\n{sql}\n;\nINSERT INTO {t}._tenantgate_migrations \
             (version, description, installed_on, success, checksum, execution_time) VALUES ({v}, '{d}', now(), true, '\\x{c}', 0);\nCOMMIT;\n",
            sql = step.sql,
            v = step.version,
            d = step.description,
            c = hex(&step.checksum),
        ));
    }
    let ledger_script: String = names(n)
        .iter()
        .map(|t| format!("SELECT version, checksum FROM {t}._tenantgate_migrations;\n"))
        .collect();
    let cancel = CancellationToken::new();
    let options = FleetOptions::default();
    // 1 % of the tenants (at least one) change their catalog by hand.
    let drifting: Vec<TenantName> = names(n).into_iter().step_by(100).collect();
    let drift_script: String = drifting
        .iter()
        .map(|t| format!("CREATE TABLE {t}.bench_drift (id int);\n"))
        .collect();
    let mut samples: [(Vec<Duration>, Vec<Duration>); 5] = Default::default();
    let [migrate, verify_ledgers, verify_deep, deep_unchanged, deep_one_percent] = &mut samples;
    for round in 1..=repeat {
        progress(&format!("fleet {n}: round {round}/{repeat}: floor"));
        let floor_url = cluster.clone_of(&template, "bench_fleet").await?;
        migrate
            .1
            .push(floor::replay(psql, &floor_url, &script).await?);
        verify_ledgers
            .1
            .push(floor::replay(psql, &floor_url, &ledger_script).await?);
        let fingerprint = floor::replay(psql, &floor_url, FINGERPRINT_FLOOR).await?;
        verify_deep.1.push(fingerprint);
        deep_unchanged.1.push(fingerprint);
        deep_one_percent.1.push(fingerprint);
        cluster.checkpoint().await?;

        progress(&format!("fleet {n}: round {round}/{repeat}: tenantgate"));
        let url = cluster.clone_of(&template, "bench_fleet").await?;
        let backend = tenantgate::connect(&url).await?;
        let started = Instant::now();
        let migrated = fleet::migrate(backend.as_ref(), full, &options, &|_| {}, &cancel).await?;
        migrate.0.push(started.elapsed());
        anyhow::ensure!(
            migrated.all_ready(),
            "the benchmark fleet migration failed: {:?}",
            migrated.failures().next()
        );
        for (deep, samples) in [(false, &mut verify_ledgers.0), (true, &mut verify_deep.0)] {
            let started = Instant::now();
            let verified = verify::verify(
                backend.as_ref(),
                full,
                &VerifyOptions {
                    deep,
                    ..Default::default()
                },
                &|_| {},
                &cancel,
            )
            .await?;
            samples.push(started.elapsed());
            anyhow::ensure!(verified.all_ok(), "the benchmark fleet did not verify");
        }
        // Again, with change tracking in place: nothing changed, then 1 %.
        let deep = VerifyOptions {
            deep: true,
            ..Default::default()
        };
        let started = Instant::now();
        let verified = verify::verify(backend.as_ref(), full, &deep, &|_| {}, &cancel).await?;
        deep_unchanged.0.push(started.elapsed());
        anyhow::ensure!(
            verified.catalogs.as_ref().is_some_and(|c| c.scanned == 0),
            "nothing changed, yet catalogs were read: {:?}",
            verified.catalogs
        );
        floor::replay(psql, &url, &drift_script).await?;
        let started = Instant::now();
        let verified = verify::verify(backend.as_ref(), full, &deep, &|_| {}, &cancel).await?;
        deep_one_percent.0.push(started.elapsed());
        let drifted = verified
            .tenants
            .iter()
            .filter(|t| !t.drift.is_empty())
            .count();
        anyhow::ensure!(
            drifted == drifting.len(),
            "{drifted} drifted tenants found, {} changed",
            drifting.len()
        );
        drop(backend);
        cluster.drop("bench_fleet").await?;
        cluster.checkpoint().await?;
    }
    let peak = crate::memory::peak_rss_mb();
    report(
        "migrate_step",
        n,
        &migrate.0,
        &migrate.1,
        json!({ "jobs": options.jobs, "bench_peak_rss_mb": peak }),
    );
    let peak = json!({ "bench_peak_rss_mb": peak });
    report(
        "verify",
        n,
        &verify_ledgers.0,
        &verify_ledgers.1,
        peak.clone(),
    );
    report(
        "verify_deep",
        n,
        &verify_deep.0,
        &verify_deep.1,
        peak.clone(),
    );
    report(
        "verify_deep_unchanged",
        n,
        &deep_unchanged.0,
        &deep_unchanged.1,
        peak.clone(),
    );
    report(
        "verify_deep_one_percent_changed",
        n,
        &deep_one_percent.0,
        &deep_one_percent.1,
        json!({ "changed": drifting.len(), "bench_peak_rss_mb": crate::memory::peak_rss_mb() }),
    );
    cluster.drop(&template).await?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every ledger of `schemas` read by `UNION ALL` queries of 25 tables, the
/// statement tenantgate sends (a query of a thousand took psql 2.3 times as
/// long at 10,000 tenants: planning grows faster than the tables it names):
/// the floor of what a verification reads, replayed on one connection.
pub(crate) fn ledgers_floor_script<S: std::fmt::Display>(schemas: &[S]) -> String {
    schemas
        .chunks(25)
        .map(|chunk| {
            let selects: Vec<String> = chunk
                .iter()
                .map(|s| {
                    format!(
                        "SELECT '{s}', version, checksum, success FROM {s}._tenantgate_migrations"
                    )
                })
                .collect();
            format!("{};\n", selects.join(" UNION ALL "))
        })
        .collect()
}

/// The least a deep check must read: one digest of tables and columns per
/// tenant schema, in one catalog-wide query.
pub(crate) const FINGERPRINT_FLOOR: &str = "SELECT n.nspname, md5(string_agg(c.relname || '.' || a.attname || ':' || a.atttypid::text, ',' ORDER BY c.relname, a.attnum))
  FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid JOIN pg_attribute a ON a.attrelid = c.oid
 WHERE n.nspname LIKE 't%' AND a.attnum > 0 AND NOT a.attisdropped
 GROUP BY n.nspname;\n";
