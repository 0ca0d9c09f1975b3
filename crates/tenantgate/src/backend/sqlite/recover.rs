//! Recovery of the data folder after a crash: what an interrupted
//! `tenants create` or `tenants drop` left in `tenants/` is removed, set
//! aside or restored on the next open (see [`super::provision`] for how
//! those leftovers arise).

use std::{
    fs::File,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use rusqlite::{Connection, TransactionBehavior};

use super::{
    blocking::{db_error, error_while, io_error},
    data_dir::{remove_database, sync_dir, DataDir, BUILDING_SUFFIX, DROPPING_SUFFIX},
    registry::{self, record_event},
};
use crate::Error;

/// What [`recover`] did to one file.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) file: String,
    pub(crate) action: String,
}

/// Cleans up after crashed `tenants create` and `tenants drop` runs: removes
/// unlocked `.building` files, moves tenant files without a registry row to
/// `orphaned/`, finishes or undoes interrupted drops. Runs under the
/// registry's write lock, which provisioning holds from rename to commit,
/// so no run in progress is mistaken for a crashed one.
pub(crate) fn recover(dir: &DataDir, conn: &mut Connection) -> Result<Vec<Recovered>, Error> {
    let context = "recovering the data folder after an interrupted run";
    let db = |e: rusqlite::Error| error_while(context, db_error(&e));
    let folder = dir.tenants();
    let io = |e: std::io::Error| error_while(context, io_error(&folder.display().to_string(), &e));
    let names: Vec<String> = match std::fs::read_dir(&folder) {
        Ok(entries) => entries
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    // The common case without the registry's write lock: nothing to do.
    let known = registry::names(conn).map_err(db)?;
    if !names.iter().any(|n| Leftover::of(n, &known).is_some()) {
        return Ok(Vec::new());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let known = registry::names(&tx).map_err(db)?;
    let mut recovered = Vec::new();
    for name in names {
        let Some(leftover) = Leftover::of(&name, &known) else {
            continue;
        };
        match leftover.clean_up(dir, &name) {
            Ok(Some(action)) => recovered.push(Recovered {
                file: format!("tenants/{name}"),
                action,
            }),
            // Gone meanwhile, or being built right now: not a leftover.
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    for r in &recovered {
        let detail = format!("{}: {}", r.file, r.action);
        record_event(&tx, "*", "recovered", None, &detail).map_err(db)?;
    }
    sync_dir(&folder).map_err(io)?;
    tx.commit().map_err(db)?;
    Ok(recovered)
}

/// A file in `tenants/` that an interrupted run left behind.
enum Leftover {
    /// `<name>.db.building`: an interrupted (or running) `tenants create`.
    Building(String),
    /// `<name>.db.dropping`: a drop that did (or did not) commit.
    Dropping { tenant: String, registered: bool },
    /// `<name>.db` without a registry row.
    Unregistered(String),
}

impl Leftover {
    fn of(name: &str, known: &std::collections::HashSet<String>) -> Option<Self> {
        if let Some(tenant) = name.strip_suffix(BUILDING_SUFFIX) {
            return Some(Leftover::Building(tenant.to_owned()));
        }
        if let Some(tenant) = name.strip_suffix(DROPPING_SUFFIX) {
            return Some(Leftover::Dropping {
                tenant: tenant.to_owned(),
                registered: known.contains(tenant),
            });
        }
        let tenant = name.strip_suffix(".db")?;
        (!known.contains(tenant)).then(|| Leftover::Unregistered(tenant.to_owned()))
    }

    /// Cleans up `tenants/<name>`; returns what was done, or `None` when
    /// the file turned out to be in use.
    fn clean_up(&self, dir: &DataDir, name: &str) -> std::io::Result<Option<String>> {
        let path = dir.tenants().join(name);
        match self {
            Leftover::Building(tenant) => {
                if File::open(&path)?.try_lock().is_err() {
                    return Ok(None);
                }
                remove_database(&path)?;
                Ok(Some(format!(
                    "removed: an interrupted `tenants create {tenant}` left it"
                )))
            }
            Leftover::Dropping {
                tenant,
                registered: true,
            } => {
                std::fs::rename(&path, dir.tenants().join(format!("{tenant}.db")))?;
                Ok(Some(format!(
                    "restored to tenants/{tenant}.db: the drop did not commit"
                )))
            }
            Leftover::Dropping { tenant, .. } => {
                remove_database(&path)?;
                Ok(Some(format!("removed: tenant {tenant} was dropped")))
            }
            Leftover::Unregistered(tenant) => {
                let orphaned = dir.orphaned();
                std::fs::create_dir_all(&orphaned)?;
                let stamp = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let aside = set_aside(&path, &orphaned, &format!("{name}.{stamp}"))?;
                Ok(Some(format!(
                    "moved to orphaned/{aside}: no registry row (an interrupted `tenants create {tenant}`, or a row deleted by hand)"
                )))
            }
        }
    }
}

/// Moves the database at `path` (and its `-wal` file) into `folder` under
/// `stem`, or `stem.1`, `stem.2`, … when that name is taken: a file set
/// aside is never overwritten. Links first and removes the originals after,
/// so an interruption leaves the file in both places, never in neither.
fn set_aside(path: &Path, folder: &Path, stem: &str) -> std::io::Result<String> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = Path::new(&wal);
    for attempt in 0u32.. {
        let aside = match attempt {
            0 => stem.to_owned(),
            n => format!("{stem}.{n}"),
        };
        match std::fs::hard_link(path, folder.join(&aside)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        if wal.exists() {
            std::fs::hard_link(wal, folder.join(format!("{aside}-wal")))?;
            std::fs::remove_file(wal)?;
        }
        std::fs::remove_file(path)?;
        return Ok(aside);
    }
    unreachable!("some suffix is free")
}
