//! Running a backfill in one tenant file: one transaction, its own ledger.

use rusqlite::{params, Connection, OptionalExtension};

use super::blocking::{run_script, Cancel};
use crate::{
    backend::{failure::ApplyFailure, BackfillMode, BackfillOutcome, Limits},
    migrations::Backfill,
};

/// Runs `backfill` in the tenant file `conn` has open; see
/// [`crate::TenantSession::run_backfill`].
pub(crate) fn run_backfill(
    conn: &Connection,
    backfill: &Backfill,
    mode: BackfillMode,
    cancel: &Cancel,
    limits: &Limits,
) -> Result<BackfillOutcome, ApplyFailure> {
    let fail = |e: &rusqlite::Error| ApplyFailure::sqlite(e, None, cancel, limits);
    cancel.watch(conn);
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS _tenantgate_backfills (
             name TEXT PRIMARY KEY,
             checksum BLOB NOT NULL,
             applied_on TEXT NOT NULL,
             rows_changed INTEGER NOT NULL
         );",
    )
    .map_err(|e| fail(&e))?;
    let result = (|| {
        let already = conn
            .query_row(
                "SELECT 1 FROM _tenantgate_backfills WHERE name = ?1",
                [&backfill.name],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| fail(&e))?
            .is_some();
        if already && !mode.force {
            return Ok(BackfillOutcome::AlreadyDone);
        }
        cancel.limit(limits.statement_timeout);
        let ran = run_script(conn, &backfill.sql);
        cancel.limit(None);
        let rows = ran.map_err(|e| fail(&e))?;
        if mode.dry_run {
            return Ok(BackfillOutcome::Ran { rows });
        }
        conn.execute(
            "INSERT INTO _tenantgate_backfills (name, checksum, applied_on, rows_changed)
             VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?3)
             ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum,
               applied_on = excluded.applied_on, rows_changed = excluded.rows_changed",
            params![backfill.name, backfill.checksum, rows as i64],
        )
        .map_err(|e| fail(&e))?;
        if cancel.is_cancelled() {
            return Err(ApplyFailure::interrupted());
        }
        conn.execute_batch("COMMIT").map_err(|e| fail(&e))?;
        Ok(BackfillOutcome::Ran { rows })
    })();
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}
