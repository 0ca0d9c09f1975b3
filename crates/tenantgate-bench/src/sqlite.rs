//! The SQLite store against its floor: the same SQL replayed with rusqlite
//! on files opened the way tenantgate opens them (WAL, `synchronous =
//! FULL`), one transaction per tenant, with the same parallelism.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use rusqlite::Connection;
use serde_json::json;
use tenantgate::{
    backend::sqlite::SqliteBackend,
    fleet::{self, FleetOptions},
    verify::{self, VerifyOptions},
    Backend, MigrationFolder, MigrationSet, TenantName,
};
use tokio_util::sync::CancellationToken;

use crate::{
    scenarios::{names, progress, provision_all, report},
    Args,
};

/// The fleet step: a column and an index on the busiest table.
const STEP_FILE: &str = "0003_messages_pinned.sql";
const STEP_SQL: &str = "ALTER TABLE messages ADD COLUMN is_pinned INTEGER NOT NULL DEFAULT 0;\n\
                        CREATE INDEX messages_pinned_idx ON messages (is_pinned);";

/// A scratch folder for one scenario, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(args: &Args, name: &str) -> anyhow::Result<Self> {
        let base = args.sqlite_dir.clone().unwrap_or_else(|| {
            let shm = Path::new("/dev/shm");
            if shm.is_dir() {
                shm.to_owned()
            } else {
                std::env::temp_dir()
            }
        });
        let dir = base.join(format!("tenantgate-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

/// The floor: `sql` in one transaction per file, `jobs` files at a time.
fn replay(files: &[PathBuf], sql: &str, jobs: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let chunk = files.len().div_ceil(jobs).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> rusqlite::Result<()> {
                    for file in part {
                        let conn = open(file)?;
                        conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql}; COMMIT;"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("a floor worker panicked"))
    })?;
    Ok(started.elapsed())
}

fn load(args: &Args) -> anyhow::Result<(MigrationFolder, MigrationFolder)> {
    let initial = MigrationSet::load(&args.sqlite_fixture).context("load the SQLite fixture")?;
    let mut files: Vec<(String, String)> = initial
        .iter()
        .map(|m| (m.file.clone(), m.sql.clone()))
        .collect();
    files.push((STEP_FILE.into(), STEP_SQL.into()));
    let full = MigrationSet::from_files(files.iter().map(|(f, s)| (f.as_str(), s.as_bytes())))
        .map_err(|e| anyhow::anyhow!(e))?;
    let folder = |tenant: MigrationSet| MigrationFolder {
        tenant,
        ..Default::default()
    };
    Ok((folder(initial), folder(full)))
}

/// Provisioning `n` tenants, one at a time and four in flight, against
/// creating the same files with the same SQL.
pub(crate) async fn provision(args: &Args, n: usize) -> anyhow::Result<()> {
    let (initial, _) = load(args)?;
    let tenants = names(n);
    let all_sql: String = initial
        .tenant
        .iter()
        .map(|m| format!("{}\n;\n", m.sql))
        .collect();
    let parallel = FleetOptions::default().jobs;
    let (mut floor, mut sequential, mut concurrent) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.repeat {
        progress(&format!(
            "sqlite provision {n}: round {round}/{}: floor",
            args.repeat
        ));
        let scratch = Scratch::new(args, "floor")?;
        let files: Vec<PathBuf> = tenants
            .iter()
            .map(|t| scratch.0.join(format!("{t}.db")))
            .collect();
        floor.push(replay(&files, &all_sql, 1)?);
        drop(scratch);
        for (jobs, samples) in [(1, &mut sequential), (parallel, &mut concurrent)] {
            progress(&format!(
                "sqlite provision {n}: round {round}/{}: tenantgate, {jobs} in flight",
                args.repeat
            ));
            let scratch = Scratch::new(args, "tenantgate")?;
            let backend = SqliteBackend::new(scratch.0.join("data"));
            backend.prepare().await?;
            let started = Instant::now();
            provision_all(&backend, &initial, &tenants, jobs).await?;
            samples.push(started.elapsed());
        }
    }
    let migrations = initial.tenant.len();
    report(
        "sqlite_provision_sequential",
        n,
        &sequential,
        &floor,
        json!({ "jobs": 1, "migrations": migrations, "floor_jobs": 1 }),
    );
    report(
        "sqlite_provision_parallel",
        n,
        &concurrent,
        &floor,
        json!({ "jobs": parallel, "migrations": migrations, "floor_jobs": 1 }),
    );
    Ok(())
}

/// Copies a data folder (a fleet built once, reused every round).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Migrating a fleet of `n` tenants by one step, then verifying it (ledgers,
/// then `--deep`), each against the floor on an identical copy of the fleet.
/// The deep floor only reads each file's `sqlite_schema`, a narrower job.
pub(crate) async fn migrate_and_verify(args: &Args, n: usize) -> anyhow::Result<()> {
    let (initial, full) = load(args)?;
    let tenants: Vec<TenantName> = names(n);
    let built = Scratch::new(args, "fleet")?;
    progress(&format!("sqlite fleet {n}: provisioning the fleet once"));
    let backend = SqliteBackend::new(built.0.join("data"));
    backend.prepare().await?;
    provision_all(&backend, &initial, &tenants, FleetOptions::default().jobs).await?;
    drop(backend);
    let options = FleetOptions::default();
    let (mut migrate_tg, mut migrate_floor) = (Vec::new(), Vec::new());
    let (mut verify_tg, mut verify_floor) = (Vec::new(), Vec::new());
    let (mut deep_tg, mut deep_floor) = (Vec::new(), Vec::new());
    for round in 1..=args.repeat {
        progress(&format!("sqlite fleet {n}: round {round}/{}", args.repeat));
        let copy = Scratch::new(args, "copy")?;
        copy_dir(&built.0.join("data"), &copy.0)?;
        let files: Vec<PathBuf> = tenants
            .iter()
            .map(|t| copy.0.join("tenants").join(format!("{t}.db")))
            .collect();
        migrate_floor.push(replay(&files, STEP_SQL, options.jobs)?);
        verify_floor.push(replay(
            &files,
            "SELECT version, checksum FROM _tenantgate_migrations WHERE success ORDER BY version",
            options.jobs,
        )?);
        deep_floor.push(replay(
            &files,
            "SELECT type, name, tbl_name, sql FROM sqlite_schema",
            options.jobs,
        )?);
        drop(copy);

        let copy = Scratch::new(args, "copy")?;
        copy_dir(&built.0.join("data"), &copy.0)?;
        let backend = SqliteBackend::new(&copy.0);
        backend.prepare().await?;
        let started = Instant::now();
        let report = fleet::migrate(
            &backend,
            &full,
            &options,
            &|_| {},
            &CancellationToken::new(),
        )
        .await?;
        migrate_tg.push(started.elapsed());
        anyhow::ensure!(report.all_ready(), "the fleet did not migrate: {report:?}");
        let started = Instant::now();
        let verified = verify::verify(
            &backend,
            &full,
            &VerifyOptions::default(),
            &|_| {},
            &CancellationToken::new(),
        )
        .await?;
        verify_tg.push(started.elapsed());
        anyhow::ensure!(verified.all_ok(), "the fleet did not verify");
        let deep = VerifyOptions {
            deep: true,
            ..Default::default()
        };
        let started = Instant::now();
        let verified =
            verify::verify(&backend, &full, &deep, &|_| {}, &CancellationToken::new()).await?;
        deep_tg.push(started.elapsed());
        anyhow::ensure!(verified.all_ok(), "the fleet did not verify deeply");
    }
    report(
        "sqlite_migrate",
        n,
        &migrate_tg,
        &migrate_floor,
        json!({ "jobs": options.jobs, "floor_jobs": options.jobs }),
    );
    report(
        "sqlite_verify",
        n,
        &verify_tg,
        &verify_floor,
        json!({ "jobs": options.jobs, "floor_jobs": options.jobs }),
    );
    report(
        "sqlite_verify_deep",
        n,
        &deep_tg,
        &deep_floor,
        json!({ "floor_jobs": options.jobs }),
    );
    Ok(())
}
