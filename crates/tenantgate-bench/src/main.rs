//! `tenantgate-bench`: tenantgate against the floor, measured in one run.
//!
//! Every PostgreSQL scenario builds its databases in the cluster
//! `--database-url` points at (a throwaway cluster from `scripts/bench`),
//! measures tenantgate and the floor (one `psql` session replaying the same
//! SQL) on identical clones, prints one JSON line, and drops what it created.
//! The `sqlite-*` scenarios do the same with data folders under
//! `--sqlite-dir`, the floor being the same SQL replayed with rusqlite.

mod citus;
mod cluster;
mod floor;
mod guard;
mod memory;
mod moving;
mod scale;
mod scenarios;
mod sqlite;
mod synthetic;

use std::path::PathBuf;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: memory::CountingAllocator = memory::CountingAllocator;

/// Benchmarks tenantgate against the floor.
#[derive(Debug, Parser)]
struct Args {
    /// A superuser URL of a throwaway cluster (databases are created and dropped in it)
    #[arg(long, env = "TENANTGATE_TEST_PG_URL")]
    database_url: String,
    /// The scenarios to run
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "provision,migrate,verify,guard,http,memory"
    )]
    scenarios: Vec<String>,
    /// Tenants for provisioning
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    provision_sizes: Vec<usize>,
    /// Tenants for fleet migration and verification
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    fleet_sizes: Vec<usize>,
    /// Tenants in the guard's snapshot (decision, throughput, memory)
    #[arg(long, value_delimiter = ',', default_value = "10,100000")]
    snapshot_sizes: Vec<usize>,
    /// Tenants for the one-server scale scenario (`scale`)
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    scale_sizes: Vec<usize>,
    /// Leave the scale scenario's last fleet in its database (`bench_scale`),
    /// migrated and verified, to profile commands against it
    #[arg(long)]
    keep_scale_fleet: bool,
    /// The Citus coordinator the `citus` scenario works on (a throwaway cluster:
    /// schemas f… and t… are created and dropped in its database)
    #[arg(long, env = "TENANTGATE_CITUS_URL")]
    citus_url: Option<String>,
    /// Tenants for the `citus` scenario (on Citus and on the plain cluster)
    #[arg(long, value_delimiter = ',', default_value = "100")]
    citus_sizes: Vec<usize>,
    /// Megabytes of data in the tenant the `move` scenario moves
    #[arg(long, default_value_t = 200)]
    move_mb: usize,
    /// Seconds per HTTP throughput run
    #[arg(long, default_value_t = 3.0)]
    http_seconds: f64,
    /// Interleaved HTTP runs per side
    #[arg(long, default_value_t = 5)]
    http_runs: usize,
    /// Interleaved repetitions of each database scenario (medians are reported)
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Every size 10 and short runs: checks the benchmark code, measures nothing worth keeping
    #[arg(long)]
    smoke: bool,
    /// The saas-tenant fixture's migration folder
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../benches/fixtures/saas-tenant/tenant"))]
    fixture: PathBuf,
    /// Where the sqlite-* scenarios build their data folders (default: /dev/shm when present)
    #[arg(long, env = "TENANTGATE_BENCH_SQLITE_DIR")]
    sqlite_dir: Option<PathBuf>,
    /// The SQLite migration set the sqlite-* scenarios provision (the demo app's)
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/sqlite/tenant"))]
    sqlite_fixture: PathBuf,
    /// psql to use for the floor (default: next to the cluster's server binaries, else PATH)
    #[arg(long, env = "TENANTGATE_PSQL")]
    psql: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.provision_sizes = vec![10];
        args.fleet_sizes = vec![10];
        args.snapshot_sizes = vec![10];
        args.scale_sizes = vec![10];
        args.move_mb = 1;
        args.citus_sizes = vec![3];
        args.http_seconds = 0.3;
        args.http_runs = 1;
        args.repeat = 1;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(scenarios::run_all(&args))
}
