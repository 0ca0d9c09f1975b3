//! Running a backfill in one tenant: one transaction, its own ledger.

use tokio_postgres::{Client, SimpleQueryMessage};

use super::{
    apply::{rollback, ApplyFailure, Target},
    sql::literal,
};
use crate::{
    backend::{BackfillMode, BackfillOutcome, Limits},
    migrations::Backfill,
};

/// The backfill ledger in each tenant schema.
const BACKFILL_LEDGER: &str = "_tenantgate_backfills";

/// Runs `backfill` in the target tenant; see [`crate::TenantSession::run_backfill`].
pub(crate) async fn run_backfill(
    client: &Client,
    target: &Target,
    backfill: &Backfill,
    mode: BackfillMode,
    limits: &Limits,
) -> Result<BackfillOutcome, ApplyFailure> {
    let ledger = format!("{}.{BACKFILL_LEDGER}", target.schema);
    let name = literal(&backfill.name);
    let prelude = format!(
        "{begin} CREATE TABLE IF NOT EXISTS {ledger} (
             name text PRIMARY KEY,
             checksum bytea NOT NULL,
             applied_on timestamptz NOT NULL DEFAULT now(),
             rows_changed bigint NOT NULL
         );
         SELECT 'done' FROM {ledger} WHERE name = {name};",
        begin = target.begin_sql(limits),
    );
    let result = async {
        let done = client.simple_query(&prelude).await.map_err(|e| ApplyFailure::db(&e, None))?;
        // The lock's SELECT yields a row too: look for the ledger's answer.
        let already = done.iter().any(|m| matches!(m, SimpleQueryMessage::Row(row) if row.get(0) == Some("done")));
        if !mode.force && already {
            return Ok(BackfillOutcome::AlreadyDone);
        }
        let messages = client.simple_query(&backfill.sql).await.map_err(|e| ApplyFailure::db(&e, None))?;
        let rows: u64 = messages
            .iter()
            .map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => *n,
                _ => 0,
            })
            .sum();
        if mode.dry_run {
            return Ok(BackfillOutcome::Ran { rows });
        }
        client
            .batch_execute(&format!(
                "INSERT INTO {ledger} (name, checksum, rows_changed) VALUES ({name}, '\\x{checksum}'::bytea, {rows})
                 ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_on = excluded.applied_on,
                   rows_changed = excluded.rows_changed;
                 COMMIT;",
                checksum = hex::encode(&backfill.checksum),
            ))
            .await
            .map_err(|e| ApplyFailure::db(&e, None))?;
        Ok(BackfillOutcome::Ran { rows })
    }
    .await;
    let committed = matches!(result, Ok(BackfillOutcome::Ran { .. })) && !mode.dry_run;
    if !committed {
        rollback(client).await;
    }
    result
}
