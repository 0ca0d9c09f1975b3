//! SQLite: one database file per tenant in a data folder, the embedded
//! default. See [`DataDir`] for the layout.
//!
//! What replaces what PostgreSQL offers:
//! - advisory locks → SQLite's write lock on the tenant's file (`BEGIN
//!   IMMEDIATE`, waiting up to the lock timeout), plus an exclusive file
//!   lock around `-- no-transaction` migrations and files being built;
//! - transactional `CREATE SCHEMA` → building the file under a temporary
//!   name and renaming it into place inside the registry transaction that
//!   commits its row, with recovery of leftovers on the next open;
//! - one transaction for migrations and registry row → the tenant's commit
//!   first, the registry row right after (the row never claims more than
//!   the ledger holds);
//! - `LISTEN/NOTIFY` → polling `PRAGMA data_version` of the registry.

mod apply;
mod backfill;
mod blocking;
mod catalog;
mod data_dir;
mod provision;
mod recover;
mod registry;
mod session;
mod watch;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use async_trait::async_trait;
use rusqlite::Connection;

pub use self::data_dir::DataDir;

use self::{
    apply::{apply_set, read_ledger},
    blocking::{blocking, cancellable, db_error, error_while, io_error, par_map},
    data_dir::{open, read_alone, Create},
};
use crate::{
    backend::{
        failure::{provision_error, ApplyFailure},
        Backend, Ledgers, Limits, StateChange, TenantSession, Watch,
    },
    AppliedMigration, Domain, Error, MigrationSet, Tenant, TenantName,
};

/// A tenant with its ledger; `None` when its file or ledger is missing.
type TenantLedger = (TenantName, Option<Vec<AppliedMigration>>);

/// How long registry writes wait for another process's registry write.
const REGISTRY_BUSY: Duration = Duration::from_secs(30);

/// A data folder holding the registry and one database file per tenant.
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    dir: DataDir,
    /// The registry connection shared by this process's registry calls.
    registry: Mutex<Option<Connection>>,
    /// Set once this process installed the registry and recovered the folder.
    prepared: AtomicBool,
}

impl Inner {
    /// Opens the registry. Until this process prepared the store, a missing
    /// folder and registry are created; after that, a missing registry
    /// means the folder went away, and is an error, not a fresh start.
    fn open_registry(&self) -> Result<Connection, Error> {
        let create = if self.prepared.load(Ordering::Relaxed) {
            Create::No
        } else {
            std::fs::create_dir_all(self.dir.tenants()).map_err(|e| {
                error_while(
                    "opening the data folder",
                    io_error(&self.dir.root().display().to_string(), &e),
                )
            })?;
            Create::Yes
        };
        open(&self.dir.registry(), create, REGISTRY_BUSY)
            .map_err(|e| error_while("opening the registry", db_error(&e)))
    }

    /// Runs `f` on the shared registry connection; a connection that failed
    /// as unusable is replaced on the next call.
    fn with_registry<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut slot = self.registry.lock().expect("registry lock");
        if slot.is_none() {
            *slot = Some(self.open_registry()?);
        }
        let result = f(slot.as_mut().expect("opened above"));
        if matches!(result, Err(Error::DatabaseUnavailable { .. })) {
            *slot = None;
        }
        result
    }

    /// Reads one tenant's ledger; `None` when its file or ledger is missing.
    fn ledger(&self, tenant: &TenantName) -> Result<Option<Vec<AppliedMigration>>, Error> {
        let path = self.dir.tenant(tenant);
        if !path.exists() {
            return Ok(None);
        }
        read_alone(&path, Duration::from_secs(5), read_ledger).map_err(|e| {
            error_while(
                &format!("reading the ledger of tenant {tenant}"),
                db_error(&e),
            )
        })
    }

    fn ledgers(&self, tenants: &[TenantName]) -> Result<Vec<TenantLedger>, Error> {
        par_map(tenants, |t| self.ledger(t).map(|l| (t.clone(), l)))
            .into_iter()
            .collect()
    }
}

impl SqliteBackend {
    /// The store in data folder `root`; nothing is opened until first use.
    pub fn new(root: impl Into<std::path::PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir: DataDir::new(root),
                registry: Mutex::new(None),
                prepared: AtomicBool::new(false),
            }),
        }
    }

    /// The data folder.
    pub fn data_dir(&self) -> &DataDir {
        &self.inner.dir
    }

    async fn registry<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<T, Error> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || inner.with_registry(|conn| f(&inner, conn))).await
    }
}

/// Where a tenant lives, for messages.
fn container(tenant: &TenantName) -> String {
    format!("file tenants/{tenant}.db")
}

#[async_trait]
impl Backend for SqliteBackend {
    fn describe(&self) -> String {
        format!("sqlite://{}", self.inner.dir.root().display())
    }

    fn container(&self, tenant: &TenantName) -> String {
        container(tenant)
    }

    fn dialect(&self) -> crate::sql::Dialect {
        crate::sql::Dialect::Sqlite
    }

    async fn prepare(&self) -> Result<(), Error> {
        if self.inner.prepared.load(Ordering::Relaxed) {
            return Ok(());
        }
        let recovered = self
            .registry(|inner, conn| {
                registry::prepare(conn)?;
                recover::recover(&inner.dir, conn)
            })
            .await?;
        for r in recovered {
            tracing::warn!(file = %r.file, "recovered the data folder: {}", r.action);
        }
        self.inner.prepared.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn apply_shared_now(
        &self,
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, Error> {
        let (path, set, limits) = (self.inner.dir.shared(), set.clone(), *limits);
        cancellable(move |cancel| {
            let conn = open(&path, Create::Yes, limits.lock_timeout)
                .map_err(|e| ApplyFailure::sqlite(&e, None, &cancel, &limits))?;
            apply_set(&conn, &path, &set, true, &cancel, &limits).map(|a| a.versions)
        })
        .await
        .map_err(ApplyFailure::into_shared_error)
    }

    async fn shared_ledger(&self) -> Result<Vec<AppliedMigration>, Error> {
        let path = self.inner.dir.shared();
        blocking(move || {
            if !path.exists() {
                return Ok(Vec::new());
            }
            open(&path, Create::No, Duration::from_secs(5))
                .and_then(|conn| read_ledger(&conn))
                .map(Option::unwrap_or_default)
                .map_err(|e| error_while("reading the shared ledger", db_error(&e)))
        })
        .await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, Error> {
        self.registry(|_, conn| registry::tenants(conn, None)).await
    }

    async fn tenants_named(&self, names: &[TenantName]) -> Result<Vec<Tenant>, Error> {
        let names = names.to_vec();
        self.registry(move |_, conn| registry::tenants(conn, Some(&names)))
            .await
    }

    async fn watch(&self) -> Result<Box<dyn Watch>, Error> {
        Ok(Box::new(
            watch::SqliteWatch::open(self.inner.dir.registry()).await?,
        ))
    }

    async fn create_tenant(
        &self,
        tenant: &TenantName,
        domains: &[Domain],
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, Error> {
        let (name, wanted) = (tenant.clone(), domains.to_vec());
        self.registry(move |_, conn| provision::check_free(conn, &name, &wanted))
            .await?;
        let (dir, name, set, limits) =
            (self.inner.dir.clone(), tenant.clone(), set.clone(), *limits);
        let built =
            cancellable(move |cancel| provision::build_file(&dir, &name, &set, &cancel, &limits))
                .await;
        let built = match built {
            Ok(built) => built,
            Err(provision::BuildFailure::Refused(error)) => return Err(error),
            Err(provision::BuildFailure::Failed(failure)) => {
                let (name, recorded) = (tenant.clone(), failure.clone());
                // Best effort: the failure itself is what the caller needs.
                let _ = self
                    .registry(move |_, conn| {
                        provision::record_failed(conn, &name, &recorded);
                        Ok(())
                    })
                    .await;
                return Err(provision_error(tenant, *failure));
            }
        };
        let (name, wanted) = (tenant.clone(), domains.to_vec());
        self.registry(move |inner, conn| {
            provision::publish(&inner.dir, conn, &name, &wanted, built)
        })
        .await
    }

    async fn drop_tenant(&self, tenant: &TenantName) -> Result<(), Error> {
        let tenant = tenant.clone();
        self.registry(move |inner, conn| provision::drop_tenant(&inner.dir, conn, &tenant))
            .await
    }

    async fn read_ledgers(&self, tenants: &[TenantName]) -> Result<Ledgers, Error> {
        let inner = self.inner.clone();
        let tenants = tenants.to_vec();
        let ledgers = blocking(move || inner.ledgers(&tenants)).await?;
        Ok(ledgers.into_iter().collect())
    }

    async fn catalog_drift(
        &self,
        set: &MigrationSet,
        tenants: &[(TenantName, Vec<i64>)],
    ) -> Result<HashMap<TenantName, Vec<String>>, Error> {
        let (dir, set, tenants) = (self.inner.dir.clone(), set.clone(), tenants.to_vec());
        blocking(move || catalog::catalog_drift(&dir, &set, &tenants)).await
    }

    async fn sync_registry(&self, tenants: &[TenantName]) -> Result<(), Error> {
        if tenants.is_empty() {
            return Ok(());
        }
        let tenants = tenants.to_vec();
        self.registry(move |inner, conn| {
            let ledgers = inner.ledgers(&tenants)?;
            registry::sync_registry(conn, &ledgers)
        })
        .await
    }

    async fn record_states(&self, changes: &[StateChange]) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let changes = changes.to_vec();
        self.registry(move |_, conn| registry::record_states(conn, &changes))
            .await
    }

    async fn open_session(&self) -> Result<Box<dyn TenantSession>, Error> {
        let inner = self.inner.clone();
        let registry = blocking(move || {
            let conn = inner.open_registry()?;
            // A session only writes what follows a tenant's own commit: its
            // ledger, or a failure. Losing such a write to a power cut
            // leaves the registry behind the ledgers, which blocks rather
            // than serves until the next run or `verify` catches up; so
            // these commits skip the fsync, which a fleet run would
            // otherwise pay once per tenant, one writer at a time.
            conn.execute_batch("PRAGMA synchronous = NORMAL")
                .map_err(|e| error_while("opening the registry", db_error(&e)))?;
            Ok::<_, Error>(conn)
        })
        .await?;
        Ok(Box::new(session::SqliteSession {
            inner: self.inner.clone(),
            registry: Arc::new(Mutex::new(registry)),
        }))
    }
}
