//! Applying a migration set to one database file: provisioning, fleet
//! migration and shared migrations.
//!
//! A transactional run is one `BEGIN IMMEDIATE` transaction: SQLite's write
//! lock on the file stands in for PostgreSQL's advisory lock (a second
//! migrator waits for it, up to the lock timeout, then re-reads the ledger),
//! and SQLite's transactional DDL makes the migrations and their ledger rows
//! commit together or not at all.

use std::{path::Path, time::Instant};

use rusqlite::{params, Connection};

use super::{
    blocking::{db_error, is_busy, is_interrupt, run_script, Cancel},
    data_dir::LEDGER_TABLE,
};
use crate::{
    backend::{
        failure::ApplyFailure,
        plan::{next_step, Step},
        Limits,
    },
    migrations::{Migration, MigrationRef},
    AppliedMigration, DbError, FailureKind, MigrationSet,
};

/// The DDL of an empty ledger table with sqlx's six columns.
pub(crate) fn create_ledger_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
            version INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TEXT NOT NULL,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time INTEGER NOT NULL
        );"
    )
}

/// The successful rows of the ledger; `None` when the file has none.
pub(crate) fn read_ledger(conn: &Connection) -> rusqlite::Result<Option<Vec<AppliedMigration>>> {
    let statement = conn.prepare_cached(&format!(
        "SELECT version, description, checksum FROM {LEDGER_TABLE} WHERE success ORDER BY version"
    ));
    let mut statement = match statement {
        Ok(statement) => statement,
        Err(e) if is_missing_table(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let rows = statement.query_map([], |row| {
        Ok(AppliedMigration {
            version: row.get(0)?,
            description: row.get(1)?,
            checksum: row.get(2)?,
        })
    })?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map(Some)
}

/// Whether preparing a statement failed because its table does not exist.
fn is_missing_table(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(_, Some(message)) if message.starts_with("no such table"))
}

impl ApplyFailure {
    /// Classifies a SQLite error: another writer past the lock timeout, the
    /// caller giving up, the file unusable, or the migration's own error.
    pub(crate) fn sqlite(
        e: &rusqlite::Error,
        migration: Option<MigrationRef>,
        cancel: &Cancel,
        limits: &Limits,
    ) -> Self {
        let mut error = db_error(e);
        let kind = if is_busy(e) {
            FailureKind::LockTimeout
        } else if is_interrupt(e) && cancel.is_cancelled() {
            FailureKind::Interrupted
        } else if error.connection_lost {
            FailureKind::ConnectionLost
        } else {
            if is_interrupt(e) {
                error.message = format!(
                    "canceling statement due to statement timeout ({:?})",
                    limits.statement_timeout.unwrap_or_default()
                );
            }
            FailureKind::Migration
        };
        Self {
            kind,
            migration: migration.map(Box::new),
            error,
        }
    }

    pub(crate) fn interrupted() -> Self {
        Self {
            kind: FailureKind::Interrupted,
            migration: None,
            error: DbError {
                code: None,
                message: "interrupted before commit; rolled back".into(),
                connection_lost: false,
            },
        }
    }

    fn ledger_missing() -> Self {
        Self {
            kind: FailureKind::LedgerMissing,
            migration: None,
            error: DbError {
                code: None,
                message: format!("the database file has no {LEDGER_TABLE} table"),
                connection_lost: false,
            },
        }
    }
}

/// What a run of [`apply_set`] did.
pub(crate) struct Applied {
    /// The versions applied by this run.
    pub(crate) versions: Vec<i64>,
    /// The ledger once the run committed.
    pub(crate) ledger: Vec<AppliedMigration>,
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

/// Runs `m` and records it in the ledger, inside the open transaction.
pub(crate) fn run_migration(
    conn: &Connection,
    m: &Migration,
    cancel: &Cancel,
    limits: &Limits,
) -> rusqlite::Result<()> {
    cancel.limit(limits.statement_timeout);
    let started = Instant::now();
    let ran = run_script(conn, &m.sql);
    cancel.limit(None);
    ran?;
    record(conn, m, started)
}

/// The ledger row [`run_migration`] records for `m`.
pub(crate) fn as_applied(m: &Migration) -> AppliedMigration {
    AppliedMigration {
        version: m.version,
        description: m.description.clone(),
        checksum: m.checksum.clone(),
    }
}

fn record(conn: &Connection, m: &Migration, started: Instant) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO {LEDGER_TABLE} (version, description, installed_on, success, checksum, execution_time)
         VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 1, ?3, ?4)"
    ))?
    .execute(params![
        m.version,
        m.description,
        m.checksum,
        i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
    ])
    .map(drop)
}

/// Applies every migration of `set` the ledger of the file `conn` has open
/// (at `path`) lacks, transactional ones in as few transactions as the
/// no-transaction ones allow. With `create_ledger` a missing ledger is
/// created (the shared database); otherwise it is a failure.
pub(crate) fn apply_set(
    conn: &Connection,
    path: &Path,
    set: &MigrationSet,
    create_ledger: bool,
    cancel: &Cancel,
    limits: &Limits,
) -> Result<Applied, ApplyFailure> {
    let fail = |e: &rusqlite::Error, m: Option<&Migration>| {
        rollback(conn);
        ApplyFailure::sqlite(e, m.map(Migration::reference), cancel, limits)
    };
    cancel.watch(conn);
    let mut versions = Vec::new();
    loop {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| fail(&e, None))?;
        if create_ledger {
            conn.execute_batch(&create_ledger_sql())
                .map_err(|e| fail(&e, None))?;
        }
        let Some(ledger) = read_ledger(conn).map_err(|e| fail(&e, None))? else {
            rollback(conn);
            return Err(ApplyFailure::ledger_missing());
        };
        let pairs: Vec<(i64, Vec<u8>)> = ledger
            .iter()
            .map(|a| (a.version, a.checksum.clone()))
            .collect();
        let (segment, complete) = match next_step(set, &pairs) {
            Err(failure) => {
                rollback(conn);
                return Err(failure);
            }
            Ok(Step::Alone { migration, .. }) => {
                rollback(conn);
                apply_no_transaction(conn, path, migration, cancel, limits)?;
                versions.push(migration.version);
                continue;
            }
            Ok(Step::Transaction { segment, complete }) => (segment, complete),
        };
        for m in &segment {
            run_migration(conn, m, cancel, limits).map_err(|e| fail(&e, Some(m)))?;
        }
        if cancel.is_cancelled() {
            rollback(conn);
            return Err(ApplyFailure::interrupted());
        }
        conn.execute_batch("COMMIT").map_err(|e| fail(&e, None))?;
        versions.extend(segment.iter().map(|m| m.version));
        if complete {
            let mut ledger = ledger;
            ledger.extend(segment.iter().map(|m| as_applied(m)));
            ledger.sort_by_key(|a| a.version);
            return Ok(Applied { versions, ledger });
        }
    }
}

/// Runs one `-- no-transaction` migration under an exclusive lock on the
/// file (held by this process, separate from SQLite's own locks), re-checking
/// the ledger under it, then records it in its own transaction.
fn apply_no_transaction(
    conn: &Connection,
    path: &Path,
    m: &Migration,
    cancel: &Cancel,
    limits: &Limits,
) -> Result<(), ApplyFailure> {
    let fail = |e: &rusqlite::Error| {
        rollback(conn);
        ApplyFailure::sqlite(e, Some(m.reference()), cancel, limits)
    };
    let _lock = lock_file(path, limits).map_err(|message| ApplyFailure {
        kind: FailureKind::LockTimeout,
        migration: Some(Box::new(m.reference())),
        error: DbError {
            code: None,
            message,
            connection_lost: false,
        },
    })?;
    let already = read_ledger(conn)
        .map_err(|e| fail(&e))?
        .unwrap_or_default()
        .iter()
        .any(|a| a.version == m.version);
    if already {
        return Ok(());
    }
    cancel.limit(limits.statement_timeout);
    let started = Instant::now();
    let ran = run_script(conn, &m.sql);
    cancel.limit(None);
    ran.map_err(|e| fail(&e))?;
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| fail(&e))?;
    record(conn, m, started).map_err(|e| fail(&e))?;
    conn.execute_batch("COMMIT").map_err(|e| fail(&e))
}

/// Takes an exclusive advisory lock on `path`, waiting up to the lock timeout.
fn lock_file(path: &Path, limits: &Limits) -> Result<std::fs::File, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let deadline = Instant::now() + limits.lock_timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => {
                return Err(format!(
                    "could not lock {} within {:?}: {e}",
                    path.display(),
                    limits.lock_timeout
                ))
            }
        }
    }
}
