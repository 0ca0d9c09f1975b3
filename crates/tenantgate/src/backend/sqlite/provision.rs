//! Creating, dropping and recovering tenant files.
//!
//! SQLite cannot create a database inside a transaction of another one, so
//! atomic provisioning is built from a temporary file and a rename:
//!
//! 1. the file is built as `tenants/<name>.db.building`, held under an
//!    exclusive lock by the building process, and migrated in one
//!    transaction; then checkpointed, closed and synced;
//! 2. in one registry transaction the tenant's row and domains are
//!    inserted, the file is renamed to `tenants/<name>.db` (and the folder
//!    synced), and the transaction commits.
//!
//! A crash before the rename leaves an unlocked `.building` file; a crash
//! between the rename and the commit leaves a file without a registry row.
//! [`recover`] removes the first and moves the second to `orphaned/`. The
//! guard only serves tenants with a registry row, so neither is ever served.

use std::{
    fs::{File, OpenOptions},
    path::Path,
};

use rusqlite::{params, Connection, ErrorCode, TransactionBehavior};

use super::{
    apply::{as_applied, create_ledger_sql, run_migration},
    blocking::{db_error, error_while, io_error, Cancel},
    data_dir::{open, remove_database, remove_journals, still_at, sync_dir, Create, DataDir},
    registry::{self, encode_ledger, record_event},
};
use crate::{
    backend::{
        failure::{provision_failure, ApplyFailure},
        Limits,
    },
    AppliedMigration, Domain, Error, Migration, MigrationSet, TenantFailure, TenantName,
};

/// A tenant file built under its temporary name, waiting for [`publish`];
/// holds the exclusive lock that tells [`recover`] it is not abandoned.
pub(crate) struct Built {
    lock: File,
    ledger: Vec<AppliedMigration>,
    complete: bool,
}

/// Why [`build_file`] built nothing.
pub(crate) enum BuildFailure {
    /// A migration (or the database under it) failed; recorded as an event.
    Failed(Box<TenantFailure>),
    /// The name is being created by another process, or the folder failed.
    Refused(Error),
}

fn taken_or(context: &str) -> impl Fn(Conflict) -> Error + '_ {
    move |e| match e {
        Conflict::Taken(error) => error,
        Conflict::Db(e) => error_while(context, db_error(&e)),
    }
}

/// Fails early, before building anything, when the name or a domain is taken.
pub(crate) fn check_free(
    conn: &Connection,
    tenant: &TenantName,
    domains: &[Domain],
) -> Result<(), Error> {
    let context = format!("provisioning tenant {tenant} (nothing was created)");
    check_names(conn, tenant, domains).map_err(taken_or(&context))
}

/// Step 1 of provisioning (see the module's docs): builds the tenant's file
/// under its temporary name; a failure removes it.
pub(crate) fn build_file(
    dir: &DataDir,
    tenant: &TenantName,
    set: &MigrationSet,
    cancel: &Cancel,
    limits: &Limits,
) -> Result<Built, BuildFailure> {
    let segment: Vec<&Migration> = set.iter().take_while(|m| !m.no_transaction).collect();
    let building = dir.building(tenant);
    let lock = claim(&building, tenant).map_err(|e| match e {
        Claim::Busy(error) => BuildFailure::Refused(error),
        Claim::Io(e) => BuildFailure::Refused(error_while(
            &format!("provisioning tenant {tenant} (nothing was created)"),
            io_error(&building.display().to_string(), &e),
        )),
    })?;
    match build(&building, &segment, cancel, limits) {
        Ok(ledger) => Ok(Built {
            lock,
            ledger,
            complete: segment.len() == set.len(),
        }),
        Err(failure) => {
            let _ = remove_database(&building);
            Err(BuildFailure::Failed(Box::new(provision_failure(
                tenant, failure,
            ))))
        }
    }
}

/// Records a failed provisioning attempt as an event, so operators can
/// count them; a failure to record is logged, not raised.
pub(crate) fn record_failed(conn: &Connection, tenant: &TenantName, failure: &TenantFailure) {
    let version = failure.migration.as_ref().map(|m| m.version);
    if let Err(e) = record_event(
        conn,
        tenant.as_str(),
        "provision_failed",
        version,
        &failure.to_string(),
    ) {
        tracing::warn!(tenant = %tenant, error = %e, "could not record the failed provisioning event");
    }
}

/// Step 2 of provisioning: registers the tenant and renames its file into
/// place in one registry transaction; on failure the built file is removed.
/// Returns the versions applied.
pub(crate) fn publish(
    dir: &DataDir,
    conn: &mut Connection,
    tenant: &TenantName,
    domains: &[Domain],
    built: Built,
) -> Result<Vec<i64>, Error> {
    let context = format!("provisioning tenant {tenant} (nothing was created)");
    let published = register_and_rename(dir, conn, tenant, domains, &built.ledger, built.complete);
    if published.is_err() {
        let _ = remove_database(&dir.building(tenant));
    }
    drop(built.lock);
    published.map_err(taken_or(&context))?;
    Ok(built.ledger.iter().map(|a| a.version).collect())
}

enum Conflict {
    Taken(Error),
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for Conflict {
    fn from(e: rusqlite::Error) -> Self {
        Conflict::Db(e)
    }
}

fn check_names(conn: &Connection, tenant: &TenantName, domains: &[Domain]) -> Result<(), Conflict> {
    if registry::is_registered(conn, tenant)? {
        return Err(Conflict::Taken(Error::TenantExists {
            tenant: tenant.to_string(),
            detail: "it is registered".into(),
        }));
    }
    for domain in domains {
        if let Some(owner) = registry::domain_owner(conn, domain.as_str())? {
            return Err(Conflict::Taken(Error::DomainTaken {
                domain: domain.to_string(),
                owner,
            }));
        }
    }
    Ok(())
}

enum Claim {
    Busy(Error),
    Io(std::io::Error),
}

/// Takes the building file under an exclusive lock, emptying what a crashed
/// attempt may have left there.
fn claim(building: &Path, tenant: &TenantName) -> Result<File, Claim> {
    std::fs::create_dir_all(building.parent().expect("a tenant file has a folder"))
        .map_err(Claim::Io)?;
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(building)
            .map_err(Claim::Io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Claim::Busy(Error::TenantExists {
                    tenant: tenant.to_string(),
                    detail: "another process is creating it right now".into(),
                }))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Claim::Io(e)),
        }
        // Recovery may have removed an unlocked file between the open and
        // the lock: then lock the file now at the path instead.
        if still_at(&file, building).map_err(Claim::Io)? {
            file.set_len(0).map_err(Claim::Io)?;
            remove_journals(building).map_err(Claim::Io)?;
            return Ok(file);
        }
    }
}

/// Builds the tenant's file: ledger and migrations in one transaction, then
/// checkpointed into the main file, closed and synced.
fn build(
    building: &Path,
    segment: &[&Migration],
    cancel: &Cancel,
    limits: &Limits,
) -> Result<Vec<AppliedMigration>, ApplyFailure> {
    let fail = |e: &rusqlite::Error, m: Option<&Migration>| {
        ApplyFailure::sqlite(e, m.map(Migration::reference), cancel, limits)
    };
    let conn = open(building, Create::Yes, limits.lock_timeout).map_err(|e| fail(&e, None))?;
    cancel.watch(&conn);
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {}", create_ledger_sql()))
        .map_err(|e| fail(&e, None))?;
    for m in segment {
        run_migration(&conn, m, cancel, limits).map_err(|e| fail(&e, Some(m)))?;
    }
    if cancel.is_cancelled() {
        return Err(ApplyFailure::interrupted());
    }
    conn.execute_batch("COMMIT").map_err(|e| fail(&e, None))?;
    let ledger = segment.iter().map(|m| as_applied(m)).collect();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| fail(&e, None))?;
    conn.close().map_err(|(_, e)| fail(&e, None))?;
    File::open(building)
        .and_then(|f| f.sync_all())
        .map_err(|e| ApplyFailure {
            kind: crate::FailureKind::ConnectionLost,
            migration: None,
            error: io_error("syncing the new tenant file", &e),
        })?;
    Ok(ledger)
}

/// Registers the tenant and renames its file into place in one registry
/// transaction: the file appears under its name only if the row commits.
fn register_and_rename(
    dir: &DataDir,
    conn: &mut Connection,
    tenant: &TenantName,
    domains: &[Domain],
    ledger: &[AppliedMigration],
    complete: bool,
) -> Result<(), Conflict> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (versions, checksums) = encode_ledger(ledger);
    let state = if complete { "ready" } else { "pending" };
    if let Err(e) = tx.execute(
        "INSERT INTO tenants (name, state, applied_versions, applied_checksums) VALUES (?1, ?2, ?3, ?4)",
        params![tenant.as_str(), state, versions, checksums],
    ) {
        return Err(if is_constraint(&e) {
            Conflict::Taken(Error::TenantExists {
                tenant: tenant.to_string(),
                detail: "it is registered".into(),
            })
        } else {
            Conflict::Db(e)
        });
    }
    for domain in domains {
        if let Err(e) = tx.execute(
            "INSERT INTO domains (domain, tenant) VALUES (?1, ?2)",
            params![domain.as_str(), tenant.as_str()],
        ) {
            if !is_constraint(&e) {
                return Err(Conflict::Db(e));
            }
            let owner = registry::domain_owner(&tx, domain.as_str())?
                .unwrap_or_else(|| format!("another tenant (or {tenant} listed it twice)"));
            return Err(Conflict::Taken(Error::DomainTaken {
                domain: domain.to_string(),
                owner,
            }));
        }
    }
    record_event(&tx, tenant.as_str(), "provisioned", None, "")?;
    let target = dir.tenant(tenant);
    if target.exists() {
        return Err(Conflict::Taken(Error::TenantExists {
            tenant: tenant.to_string(),
            detail: format!(
                "{} exists without a registry row; move it away first",
                target.display()
            ),
        }));
    }
    let io = |e: std::io::Error| Conflict::Db(io_as_sqlite(&e));
    std::fs::rename(dir.building(tenant), &target).map_err(io)?;
    sync_dir(&dir.tenants()).map_err(io)?;
    if let Err(e) = tx.commit() {
        let _ = std::fs::rename(&target, dir.building(tenant));
        return Err(Conflict::Db(e));
    }
    Ok(())
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
}

fn io_as_sqlite(e: &std::io::Error) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
        Some(e.to_string()),
    )
}

/// Drops `tenant`: its file is set aside and its registry row deleted in one
/// registry transaction, then the file is removed.
pub(crate) fn drop_tenant(
    dir: &DataDir,
    conn: &mut Connection,
    tenant: &TenantName,
) -> Result<(), Error> {
    let context = format!("dropping tenant {tenant} (rolled back, nothing changed)");
    let err = |e: rusqlite::Error| error_while(&context, db_error(&e));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let deleted = tx
        .execute("DELETE FROM tenants WHERE name = ?1", [tenant.as_str()])
        .map_err(err)?;
    if deleted == 0 {
        return Err(Error::UnknownTenant {
            tenant: tenant.to_string(),
        });
    }
    record_event(&tx, tenant.as_str(), "dropped", None, "").map_err(err)?;
    let (file, dropping) = (dir.tenant(tenant), dir.dropping(tenant));
    let io = |e: std::io::Error| error_while(&context, io_error(&file.display().to_string(), &e));
    if file.exists() {
        std::fs::rename(&file, &dropping).map_err(io)?;
        sync_dir(&dir.tenants()).map_err(io)?;
    }
    if let Err(e) = tx.commit() {
        let _ = std::fs::rename(&dropping, &file);
        return Err(err(e));
    }
    remove_database(&dropping).map_err(io)?;
    remove_journals(&file).map_err(io)
}
