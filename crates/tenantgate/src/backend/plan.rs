//! What a migration run does next, given the ledger it just read: the same
//! decision on every store.

#[cfg(any(feature = "postgres", feature = "sqlite"))]
use super::failure::{changed_migration, ApplyFailure};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::Migration;
use crate::{AppliedMigration, MigrationSet};

/// The next step of a run.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) enum Step<'a> {
    /// Run these transactional migrations (possibly none) in one
    /// transaction; `complete` when nothing is left after them.
    Transaction {
        segment: Vec<&'a Migration>,
        complete: bool,
    },
    /// Run this `-- no-transaction` migration on its own; `last` when it is
    /// the last one missing.
    Alone {
        migration: &'a Migration,
        // Only PostgreSQL writes the registry row in the same step.
        #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
        last: bool,
    },
}

/// Decides the next step from the applied `(version, checksum)` pairs;
/// fails when an applied migration's file changed.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn next_step<'a>(
    set: &'a MigrationSet,
    ledger: &[(i64, Vec<u8>)],
) -> Result<Step<'a>, ApplyFailure> {
    if let Some(changed) = changed_migration(set, ledger) {
        return Err(ApplyFailure::checksum_changed(changed));
    }
    let pending: Vec<&Migration> = set
        .iter()
        .filter(|m| !ledger.iter().any(|(v, _)| *v == m.version))
        .collect();
    match pending.first() {
        Some(first) if first.no_transaction => Ok(Step::Alone {
            migration: first,
            last: pending.len() == 1,
        }),
        _ => {
            let segment: Vec<&Migration> = pending
                .iter()
                .take_while(|m| !m.no_transaction)
                .copied()
                .collect();
            let complete = segment.len() == pending.len();
            Ok(Step::Transaction { segment, complete })
        }
    }
}

/// Whether `applied` holds every migration of `set` with its current checksum.
pub(crate) fn holds_all(set: &MigrationSet, applied: &[AppliedMigration]) -> bool {
    set.iter().all(|m| {
        applied
            .iter()
            .any(|a| a.version == m.version && a.checksum == m.checksum)
    })
}
