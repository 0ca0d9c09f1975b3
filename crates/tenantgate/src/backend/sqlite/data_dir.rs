//! The data folder: where each file of the SQLite store lives, and how a
//! connection to one is opened.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rusqlite::{Connection, OpenFlags};

use super::blocking::is_busy;

use crate::TenantName;

/// The tenant ledger table, the same name as on PostgreSQL.
pub(crate) const LEDGER_TABLE: &str = "_tenantgate_migrations";

/// Suffix of a tenant file still being built by `tenants create`.
pub(crate) const BUILDING_SUFFIX: &str = ".db.building";

/// Suffix of a tenant file whose registry row is being deleted.
pub(crate) const DROPPING_SUFFIX: &str = ".db.dropping";

/// A data folder: `registry.db`, `shared.db` and `tenants/<name>.db`.
///
/// A tenant exists exactly when its registry row does; its file is created
/// under a temporary name and renamed into place only together with the
/// commit of that row.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data folder at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The registry database: tenants, domains, events.
    pub fn registry(&self) -> PathBuf {
        self.root.join("registry.db")
    }

    /// The database shared migrations run in, with the shared ledger.
    pub fn shared(&self) -> PathBuf {
        self.root.join("shared.db")
    }

    /// The folder of tenant files.
    pub fn tenants(&self) -> PathBuf {
        self.root.join("tenants")
    }

    /// Where files found without a registry row are moved, never deleted.
    pub fn orphaned(&self) -> PathBuf {
        self.root.join("orphaned")
    }

    /// The database file of `tenant`.
    pub fn tenant(&self, tenant: &TenantName) -> PathBuf {
        self.tenants().join(format!("{tenant}.db"))
    }

    /// The temporary name `tenant`'s file is built under.
    pub(crate) fn building(&self, tenant: &TenantName) -> PathBuf {
        self.tenants().join(format!("{tenant}{BUILDING_SUFFIX}"))
    }

    /// The name `tenant`'s file takes while its registry row is deleted.
    pub(crate) fn dropping(&self, tenant: &TenantName) -> PathBuf {
        self.tenants().join(format!("{tenant}{DROPPING_SUFFIX}"))
    }
}

/// Whether a missing file is created on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    Yes,
    No,
}

/// Opens a database file with full fsync on commit, foreign keys on, and
/// `busy` as the time a write waits for another writer. A file it creates
/// is switched to WAL mode, which the file then keeps.
pub(crate) fn open(path: &Path, create: Create, busy: Duration) -> rusqlite::Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create == Create::Yes {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy)?;
    if create == Create::Yes {
        use_wal(&conn, busy)?;
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

/// Runs `read` on the existing database file at `path`, alone when no
/// other connection has it open, else beside them.
///
/// Alone, the file is opened in SQLite's exclusive locking mode, which
/// keeps the WAL index in this connection's memory: no `-shm` file is
/// created, sized, mapped and removed, and no lock shared by every thread
/// of the process is taken for it (two thirds of the system calls of a
/// read, and what kept two threads reading a fleet's files from going
/// faster than one). Taking the file alone is not waited for: when another
/// connection holds it, `read` runs again on a connection opened by
/// [`open`], which waits up to `busy` as usual. While the file is held
/// alone (the time of `read`, microseconds for a ledger), a connection that
/// starts reading it waits for it, as it waits today for the last
/// connection's checkpoint on close.
pub(crate) fn read_alone<T>(
    path: &Path,
    busy: Duration,
    read: impl Fn(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let alone = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    alone.busy_timeout(Duration::ZERO)?;
    alone.query_row("PRAGMA locking_mode = EXCLUSIVE", [], |_| Ok(()))?;
    match read(&alone) {
        Err(e) if is_busy(&e) => {
            drop(alone);
            read(&open(path, Create::No, busy)?)
        }
        result => result,
    }
}

/// Switches the file to WAL mode. Two processes creating the same file
/// race for the switch, and SQLite answers the loser "busy" at once rather
/// than waiting (waiting could deadlock), so the switch is retried until
/// `busy` passes.
fn use_wal(conn: &Connection, busy: Duration) -> rusqlite::Result<()> {
    let deadline = Instant::now() + busy;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(())) {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

/// Removes a database file and its journal files; missing ones are fine.
pub(crate) fn remove_database(path: &Path) -> std::io::Result<()> {
    remove_missing_ok(path)?;
    remove_journals(path)
}

/// Removes the `-wal`, `-shm` and `-journal` files of a database; missing
/// ones are fine.
pub(crate) fn remove_journals(path: &Path) -> std::io::Result<()> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        remove_missing_ok(Path::new(&name))?;
    }
    Ok(())
}

fn remove_missing_ok(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether the open `file` is still the one at `path` (not removed or
/// replaced since it was opened).
pub(crate) fn still_at(file: &std::fs::File, path: &Path) -> std::io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let open = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(now) => Ok(open.ino() == now.ino() && open.dev() == now.dev()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        Ok(true)
    }
}

/// Makes a rename or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
