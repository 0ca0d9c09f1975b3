//! A session migrating (or backfilling) tenant files one after another.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::Connection;

use super::{
    apply::{apply_set, Applied},
    backfill,
    blocking::{blocking, cancellable, Cancel},
    data_dir::{open, Create},
    registry, Inner,
};
use crate::{
    backend::{
        failure::{backfill_failure, tenant_failure, ApplyFailure},
        BackfillMode, BackfillOutcome, Limits, TenantSession,
    },
    migrations::Backfill,
    DbError, Error, FailureKind, MigrationSet, TenantFailure, TenantName,
};

/// Migrates tenant files one after another, with its own registry connection.
pub(super) struct SqliteSession {
    pub(super) inner: Arc<Inner>,
    pub(super) registry: Arc<Mutex<Connection>>,
}

impl SqliteSession {
    /// Runs `work` on `tenant`'s open file off the runtime, interrupted if
    /// the caller gives up; a missing file is a [`FailureKind::LedgerMissing`].
    async fn on_tenant<T, F>(
        &self,
        tenant: &TenantName,
        limits: &Limits,
        work: F,
    ) -> Result<T, ApplyFailure>
    where
        T: Send + 'static,
        F: FnOnce(
                &Connection,
                &std::path::Path,
                &Cancel,
                &Mutex<Connection>,
            ) -> Result<T, ApplyFailure>
            + Send
            + 'static,
    {
        let (path, limits, registry) = (
            self.inner.dir.tenant(tenant),
            *limits,
            self.registry.clone(),
        );
        let registry_file = self.inner.dir.registry();
        cancellable(move |cancel| {
            if !path.exists() {
                // Without its registry the whole folder is gone (moved,
                // unmounted): the store is lost, not this tenant's file.
                let folder_gone = !registry_file.exists();
                return Err(ApplyFailure {
                    kind: if folder_gone {
                        FailureKind::ConnectionLost
                    } else {
                        FailureKind::LedgerMissing
                    },
                    migration: None,
                    error: DbError {
                        code: None,
                        message: if folder_gone {
                            format!(
                                "the data folder is gone: {} is missing",
                                registry_file.display()
                            )
                        } else {
                            format!("{} is missing", path.display())
                        },
                        connection_lost: folder_gone,
                    },
                });
            }
            let conn = open(&path, Create::No, limits.lock_timeout)
                .map_err(|e| ApplyFailure::sqlite(&e, None, &cancel, &limits))?;
            work(&conn, &path, &cancel, &registry)
        })
        .await
    }
}

#[async_trait]
impl TenantSession for SqliteSession {
    async fn migrate_tenant(
        &mut self,
        tenant: &TenantName,
        set: &MigrationSet,
        limits: &Limits,
    ) -> Result<Vec<i64>, TenantFailure> {
        let (name, set2, limits2) = (tenant.clone(), set.clone(), *limits);
        self.on_tenant(tenant, limits, move |conn, path, cancel, registry| {
            let Applied { versions, ledger } =
                apply_set(conn, path, &set2, false, cancel, &limits2)?;
            let complete = set2
                .iter()
                .all(|m| ledger.iter().any(|a| a.version == m.version));
            registry::follow_ledger(
                &registry.lock().expect("registry lock"),
                &name,
                &ledger,
                complete,
            )
            .map_err(|e| {
                let mut failure = ApplyFailure::sqlite(&e, None, cancel, &limits2);
                failure.error.message = format!(
                    "the migrations committed, but the registry row could not follow: {}",
                    failure.error.message
                );
                failure
            })?;
            Ok(versions)
        })
        .await
        .map_err(|f| tenant_failure(tenant, f))
    }

    async fn record_failure(
        &mut self,
        tenant: &TenantName,
        failure: &TenantFailure,
    ) -> Result<(), Error> {
        let (registry, tenant, failure) = (self.registry.clone(), tenant.clone(), failure.clone());
        blocking(move || {
            registry::record_failure(
                &mut registry.lock().expect("registry lock"),
                &tenant,
                &failure,
            )
        })
        .await
    }

    async fn run_backfill(
        &mut self,
        tenant: &TenantName,
        backfill: &Backfill,
        mode: BackfillMode,
        limits: &Limits,
    ) -> Result<BackfillOutcome, TenantFailure> {
        let (job, limits2) = (backfill.clone(), *limits);
        self.on_tenant(tenant, limits, move |conn, _, cancel, _| {
            backfill::run_backfill(conn, &job, mode, cancel, &limits2)
        })
        .await
        .map_err(|f| backfill_failure(tenant, backfill, f))
    }
}
