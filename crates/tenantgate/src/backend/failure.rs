//! Failures of applying migrations, and the step that heals each: the
//! same decision for every store.

use crate::{
    migrations::{Backfill, Migration, MigrationRef},
    DbError, Error, FailureKind, MigrationSet, Recovery, TenantFailure, TenantName,
};

/// Why applying to a tenant (or the shared database) failed.
#[derive(Debug)]
pub(crate) struct ApplyFailure {
    pub(crate) kind: FailureKind,
    pub(crate) migration: Option<Box<MigrationRef>>,
    pub(crate) error: DbError,
}

impl ApplyFailure {
    /// An applied migration whose file changed since.
    pub(crate) fn checksum_changed(changed: &Migration) -> Self {
        Self {
            kind: FailureKind::ChecksumMismatch,
            error: DbError {
                code: None,
                message: format!(
                    "the file of applied migration {} ({}) changed since it was applied",
                    changed.version, changed.file
                ),
                connection_lost: false,
            },
            migration: Some(Box::new(changed.reference())),
        }
    }

    /// The engine error for a failure of the shared migrations.
    pub(crate) fn into_shared_error(self) -> Error {
        match self.kind {
            FailureKind::ChecksumMismatch => Error::ChecksumChanged {
                changed: vec![(
                    "shared".into(),
                    *self
                        .migration
                        .expect("a checksum failure names its migration"),
                )],
            },
            FailureKind::ConnectionLost => Error::DatabaseUnavailable {
                context: "applying shared migrations".into(),
                source: self.error,
            },
            _ => match self.migration {
                Some(migration) => Error::SharedMigrationFailed {
                    migration,
                    source: self.error,
                },
                None => Error::Database {
                    context: "applying shared migrations".into(),
                    source: self.error,
                },
            },
        }
    }
}

/// The first applied migration whose file differs from what was applied.
pub(crate) fn changed_migration<'a>(
    set: &'a MigrationSet,
    ledger: &[(i64, Vec<u8>)],
) -> Option<&'a Migration> {
    ledger
        .iter()
        .find_map(|(v, checksum)| set.get(*v).filter(|m| &m.checksum != checksum))
}

/// A tenant's failure with the step that heals it.
pub(crate) fn tenant_failure(tenant: &TenantName, f: ApplyFailure) -> TenantFailure {
    let tenant = tenant.clone();
    let recovery = match (f.kind, &f.migration) {
        (FailureKind::ChecksumMismatch, Some(m)) => Recovery::RestoreFile {
            file: m.file.clone(),
        },
        (FailureKind::LockTimeout, _) => Recovery::FindLockHolder { tenant },
        (FailureKind::LedgerMissing, _) => Recovery::RestoreOrRecreate { tenant },
        (FailureKind::ConnectionLost, _) => Recovery::RetryWhenReachable { tenant },
        (_, Some(m)) => Recovery::FixMigration {
            tenant,
            file: m.file.clone(),
        },
        (_, None) => Recovery::MigrateTenant { tenant },
    };
    TenantFailure {
        kind: f.kind,
        migration: f.migration.map(|m| *m),
        message: f.error.to_string(),
        recovery,
    }
}

/// A tenant's backfill failure with the step that reruns it.
pub(crate) fn backfill_failure(
    tenant: &TenantName,
    backfill: &Backfill,
    f: ApplyFailure,
) -> TenantFailure {
    let mut failure = tenant_failure(tenant, f);
    if failure.kind == FailureKind::Migration {
        failure.recovery = Recovery::FixBackfill {
            tenant: tenant.clone(),
            backfill: backfill.name.clone(),
        };
    }
    failure
}

/// A failed provisioning attempt, of which nothing remains.
pub(crate) fn provision_failure(tenant: &TenantName, failure: ApplyFailure) -> TenantFailure {
    TenantFailure {
        kind: failure.kind,
        recovery: Recovery::CreateAgain {
            tenant: tenant.clone(),
            file: failure.migration.as_ref().map(|m| m.file.clone()),
        },
        migration: failure.migration.map(|m| *m),
        message: failure.error.to_string(),
    }
}

/// The engine error for a failed provisioning attempt.
pub(crate) fn provision_error(tenant: &TenantName, failure: TenantFailure) -> Error {
    if failure.kind == FailureKind::ConnectionLost {
        return Error::DatabaseUnavailable {
            context: format!("provisioning tenant {tenant} (rolled back)"),
            source: DbError {
                code: None,
                message: failure.message,
                connection_lost: true,
            },
        };
    }
    Error::ProvisionFailed {
        tenant: tenant.to_string(),
        failure: Box::new(failure),
    }
}
