//! Failures of applying migrations, and the recovery advice attached to
//! them; the same words for every store, with the store's own nouns.

use crate::{
    migrations::{Backfill, Migration, MigrationRef},
    DbError, Error, FailureKind, MigrationSet, TenantFailure, TenantName,
};

/// Why applying to a tenant (or the shared database) failed.
#[derive(Debug)]
pub(crate) struct ApplyFailure {
    pub(crate) kind: FailureKind,
    pub(crate) migration: Option<MigrationRef>,
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
            migration: Some(changed.reference()),
        }
    }

    /// The engine error for a failure of the shared migrations.
    pub(crate) fn into_shared_error(self) -> Error {
        match self.kind {
            FailureKind::ChecksumMismatch => Error::ChecksumChanged {
                changed: vec![(
                    "shared".into(),
                    self.migration
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

/// How a store names the place a tenant lives, for recovery advice.
pub(crate) struct Place {
    /// The tenant's container, e.g. `schema "acme"` or `file tenants/acme.db`.
    pub(crate) container: String,
    /// What to look for when the tenant stays locked.
    pub(crate) lock_holders: String,
}

/// A tenant's failure with the command that recovers it.
pub(crate) fn tenant_failure(tenant: &TenantName, place: &Place, f: ApplyFailure) -> TenantFailure {
    let rerun = format!("tenantgate migrate --tenant {tenant}");
    let container = &place.container;
    let recovery = match (f.kind, &f.migration) {
        (FailureKind::ChecksumMismatch, Some(m)) => format!(
            "restore {} as it was applied (migrations are forward-only; put new changes in a new migration)",
            m.file
        ),
        (FailureKind::LockTimeout, _) => {
            format!("find {}, then run `{rerun}`", place.lock_holders)
        }
        (FailureKind::LedgerMissing, _) => format!(
            "{container} or its ledger is gone: restore it from a backup, or `tenantgate tenants drop {tenant} --yes` and create it again"
        ),
        (FailureKind::ConnectionLost, _) => {
            format!("once the database is reachable, run `{rerun}`")
        }
        (_, Some(m)) => format!(
            "fix {} or the conflicting object in {container}, then run `{rerun}`",
            m.file
        ),
        (_, None) => format!("resolve the database error, then run `{rerun}`"),
    };
    TenantFailure {
        kind: f.kind,
        migration: f.migration,
        message: f.error.to_string(),
        recovery,
    }
}

/// A tenant's backfill failure with the command that reruns it.
pub(crate) fn backfill_failure(
    tenant: &TenantName,
    place: &Place,
    backfill: &Backfill,
    f: ApplyFailure,
) -> TenantFailure {
    let mut failure = tenant_failure(tenant, place, f);
    if failure.kind == FailureKind::Migration {
        failure.recovery = format!(
            "fix backfills/{}.sql or the data it trips on, then run `tenantgate backfill {} --tenant {tenant}`",
            backfill.name, backfill.name
        );
    }
    failure
}

/// A failed provisioning attempt, of which nothing remains.
pub(crate) fn provision_failure(tenant: &TenantName, failure: ApplyFailure) -> TenantFailure {
    let recovery = match &failure.migration {
        Some(m) => format!(
            "fix {} and run `tenantgate tenants create {tenant}` again; nothing of the failed attempt remains",
            m.file
        ),
        None => format!(
            "run `tenantgate tenants create {tenant}` again once the database error is resolved"
        ),
    };
    TenantFailure {
        kind: failure.kind,
        migration: failure.migration,
        message: failure.error.to_string(),
        recovery,
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
