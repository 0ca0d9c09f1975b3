//! The same fleet work on a Citus cluster (the coordinator
//! `--citus-url` names, e.g. from `scripts/citus-cluster`) and on the plain
//! cluster, each against its floor: one `psql` session replaying the same
//! SQL on the same server. On Citus the floor creates distributed schemas
//! too (`citus.enable_schema_based_sharding` in each tenant's transaction).
//!
//! Floor schemas are named `f…`, tenantgate's `t…`; both are dropped
//! afterwards, with tenantgate's registry rows.

use std::{path::Path, time::Instant};

use anyhow::Context;
use serde_json::json;
use tenantgate::{
    fleet::{self, FleetOptions},
    verify::{self, VerifyOptions},
    MigrationFolder,
};
use tokio_util::sync::CancellationToken;

use crate::{
    cluster, floor,
    scenarios::{names, progress, provision_all, report, FINGERPRINT_FLOOR, STEP},
};

/// The ledger table, as tenantgate creates it.
const LEDGER: &str = "CREATE TABLE _tenantgate_migrations (version bigint PRIMARY KEY, description text NOT NULL, \
     installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL, checksum bytea NOT NULL, execution_time bigint NOT NULL);";

/// Runs provisioning, a fleet migration and a deep verification of `n`
/// tenants on the server at `url` (`label`: `citus` or `plain`).
pub(crate) async fn fleet_on(
    label: &str,
    url: &str,
    psql: &Path,
    initial: &MigrationFolder,
    full: &MigrationFolder,
    n: usize,
) -> anyhow::Result<()> {
    let distributed = if label == "citus" {
        "SET LOCAL citus.enable_schema_based_sharding TO on;\n"
    } else {
        ""
    };
    let floor_names: Vec<String> = (0..n).map(|i| format!("f{i:05}")).collect();
    // The same SQL tenantgate sends: the schema, its ledger, each migration
    // and its ledger row.
    let ledger_row = |version: i64| {
        format!("INSERT INTO _tenantgate_migrations VALUES ({version}, 'bench', now(), true, '\\x00', 0);\n")
    };
    let mut provision_script = String::new();
    for f in &floor_names {
        provision_script.push_str(&format!(
            "BEGIN;\n{distributed}CREATE SCHEMA {f};\nSET LOCAL search_path TO {f};\n{LEDGER}\n"
        ));
        for m in initial.tenant.iter() {
            provision_script.push_str(&m.sql);
            provision_script.push_str("\n;\n");
            provision_script.push_str(&ledger_row(m.version));
        }
        provision_script.push_str("COMMIT;\n");
    }
    let step = full.tenant.get(STEP).context("the fixture's 0020")?;
    let migrate_script: String = floor_names
        .iter()
        .map(|f| {
            format!(
                "BEGIN;\nSET LOCAL search_path TO {f};\n{}\n;\n{}COMMIT;\n",
                step.sql,
                ledger_row(step.version)
            )
        })
        .collect();
    let floor_url = format!(
        "{url}{}sslmode=disable",
        if url.contains('?') { "&" } else { "?" }
    );

    progress(&format!("{label} {n}: floor"));
    let floor_provision = floor::replay(psql, &floor_url, &provision_script).await?;
    let floor_migrate = floor::replay(psql, &floor_url, &migrate_script).await?;
    let floor_deep =
        floor::replay(psql, &floor_url, &FINGERPRINT_FLOOR.replace("'t%'", "'f%'")).await?;

    progress(&format!("{label} {n}: tenantgate"));
    let backend = tenantgate::connect(url).await?;
    backend.prepare().await?;
    let started = Instant::now();
    provision_all(backend.as_ref(), initial, &names(n), 1).await?;
    let provisioned = started.elapsed();
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let migrated = fleet::migrate(
        backend.as_ref(),
        full,
        &FleetOptions::default(),
        &|_| {},
        &cancel,
    )
    .await?;
    let migrate = started.elapsed();
    anyhow::ensure!(
        migrated.all_ready(),
        "the migration failed: {:?}",
        migrated.failures().next()
    );
    let started = Instant::now();
    let deep = VerifyOptions {
        deep: true,
        ..Default::default()
    };
    let verified = verify::verify(backend.as_ref(), full, &deep, &|_| {}, &cancel).await?;
    let verify_deep = started.elapsed();
    anyhow::ensure!(verified.all_ok(), "the fleet did not verify");

    let extra = json!({ "server": label, "migrations": initial.tenant.len() });
    report(
        &format!("{label}_provision_sequential"),
        n,
        &[provisioned],
        &[floor_provision],
        extra.clone(),
    );
    report(
        &format!("{label}_migrate"),
        n,
        &[migrate],
        &[floor_migrate],
        extra.clone(),
    );
    report(
        &format!("{label}_verify_deep_full_scan"),
        n,
        &[verify_deep],
        &[floor_deep],
        extra,
    );

    progress(&format!("{label} {n}: dropping what the run created"));
    let admin = cluster::connect(&floor_url).await?;
    for schema in floor_names
        .iter()
        .map(String::as_str)
        .chain(names(n).iter().map(|t| t.as_str()))
    {
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await?;
    }
    admin
        .batch_execute("DELETE FROM tenantgate.tenants")
        .await?;
    Ok(())
}
