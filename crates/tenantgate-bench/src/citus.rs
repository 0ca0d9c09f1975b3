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
    scenarios::{
        ledgers_floor_script, names, progress, provision_all, report, FINGERPRINT_FLOOR, STEP,
    },
};

/// The ledger table, as tenantgate creates it.
const LEDGER: &str = "CREATE TABLE _tenantgate_migrations (version bigint PRIMARY KEY, description text NOT NULL, \
     installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL, checksum bytea NOT NULL, execution_time bigint NOT NULL);";

/// Runs provisioning, a fleet migration and a deep verification of `n`
/// tenants on the server at `url` (`label`: `citus` or `plain`), `repeat`
/// interleaved rounds (each builds and drops both fleets).
pub(crate) async fn fleet_on(
    label: &str,
    url: &str,
    psql: &Path,
    initial: &MigrationFolder,
    full: &MigrationFolder,
    n: usize,
    repeat: usize,
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
    let provision_script = floor::provision_script(
        &floor_names,
        initial,
        distributed,
        &format!("{LEDGER}\n"),
        ledger_row,
    );
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
    // What a deep verification must read: every ledger, every catalog (and
    // on Citus every shard's columns on its worker).
    let ledgers_script = ledgers_floor_script(&floor_names);
    let digest_script = FINGERPRINT_FLOOR.replace("'t%'", "'f%'");
    let floor_url = format!(
        "{url}{}sslmode=disable",
        if url.contains('?') { "&" } else { "?" }
    );
    let admin = cluster::connect(&floor_url).await?;
    let workers: Vec<String> = if label == "citus" {
        admin
            .query(
                "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0 AND noderole = 'primary'",
                &[],
            )
            .await?
            .iter()
            .map(|row| with_authority(&floor_url, row.get(0), row.get(1)))
            .collect()
    } else {
        Vec::new()
    };

    let backend = tenantgate::connect(url).await?;
    backend.prepare().await?;
    let cancel = CancellationToken::new();
    let deep = VerifyOptions {
        deep: true,
        ..Default::default()
    };
    let mut provision = (Vec::new(), Vec::new());
    let mut migrate = (Vec::new(), Vec::new());
    let mut verify_deep = (Vec::new(), Vec::new());
    let mut digest_only = Vec::new();
    for round in 1..=repeat {
        progress(&format!("{label} {n}: round {round}/{repeat}: floor"));
        provision
            .1
            .push(floor::replay(psql, &floor_url, &provision_script).await?);
        migrate
            .1
            .push(floor::replay(psql, &floor_url, &migrate_script).await?);
        let digest = floor::replay(psql, &floor_url, &digest_script).await?;
        digest_only.push(digest);
        let mut same_sql = floor::replay(psql, &floor_url, &ledgers_script).await? + digest;
        for worker in &workers {
            same_sql += floor::replay(psql, worker, SHARDS_FLOOR).await?;
        }
        verify_deep.1.push(same_sql);

        progress(&format!("{label} {n}: round {round}/{repeat}: tenantgate"));
        let started = Instant::now();
        provision_all(backend.as_ref(), initial, &names(n), 1).await?;
        provision.0.push(started.elapsed());
        let started = Instant::now();
        let migrated = fleet::migrate(
            backend.as_ref(),
            full,
            &FleetOptions::default(),
            &|_| {},
            &cancel,
        )
        .await?;
        migrate.0.push(started.elapsed());
        anyhow::ensure!(
            migrated.all_ready(),
            "the migration failed: {:?}",
            migrated.failures().next()
        );
        let started = Instant::now();
        let verified = verify::verify(backend.as_ref(), full, &deep, &|_| {}, &cancel).await?;
        verify_deep.0.push(started.elapsed());
        anyhow::ensure!(verified.all_ok(), "the fleet did not verify");

        progress(&format!(
            "{label} {n}: round {round}/{repeat}: dropping both fleets"
        ));
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
    }

    let extra = json!({ "server": label, "migrations": initial.tenant.len() });
    report(
        &format!("{label}_provision_sequential"),
        n,
        &provision.0,
        &provision.1,
        extra.clone(),
    );
    report(
        &format!("{label}_migrate"),
        n,
        &migrate.0,
        &migrate.1,
        extra.clone(),
    );
    let digest_only_s: Vec<f64> = digest_only.iter().map(|d| d.as_secs_f64()).collect();
    let mut extra = extra;
    extra["digest_only_floor_samples_s"] = json!(digest_only_s);
    report(
        &format!("{label}_verify_deep_full_scan"),
        n,
        &verify_deep.0,
        &verify_deep.1,
        extra,
    );
    Ok(())
}

/// The columns of every table of the floor's schemas on a Citus worker,
/// shards included: the query tenantgate sends each worker.
const SHARDS_FLOOR: &str = "BEGIN READ ONLY; SET LOCAL citus.override_table_visibility TO off;
SELECT n.nspname::text, c.relname::text,
       a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE n.nspname LIKE 'f%' AND c.relkind = 'r';
COMMIT;\n";

/// `url` with its host and port replaced (user, database and options kept).
fn with_authority(url: &str, host: &str, port: i32) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let slash = rest.find('/').unwrap_or(rest.len());
    let user = rest[..slash]
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{host}:{port}{}", &rest[slash..])
}
