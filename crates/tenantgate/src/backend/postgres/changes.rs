//! Which tenant catalogs changed since a deep verification found them
//! clean, so the next one re-reads only those.
//!
//! Two event triggers (`ddl_command_end`, `sql_drop`), enabled ALWAYS so a
//! session in replica mode cannot bypass them, record the schema every DDL
//! command touches in `tenantgate.catalog_changes`, with the writing
//! transaction's id, in that transaction (a rolled-back change leaves no
//! row). A clean verdict keeps the snapshot it was taken under; a tenant is
//! known unchanged when no change row of its schema is invisible to that
//! snapshot (committed after it, or in flight then), the applied set is the
//! same, and the same triggers have been there since (their oid). Anything
//! less is unknown, and unknown is scanned.

use std::collections::{HashMap, HashSet};

use tokio_postgres::{error::SqlState, types::Type, Client};

use super::sql::error_while;
use crate::{backend::ChangeTracking, Error, TenantName};

/// The functions and triggers; creating event triggers takes a superuser.
fn install_sql() -> String {
    let recorder = |name: &str, source: &str| {
        format!(
            r#"CREATE OR REPLACE FUNCTION tenantgate.{name}() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  INSERT INTO tenantgate.catalog_changes (schema_name)
  SELECT DISTINCT schema_name FROM {source}()
   WHERE schema_name IS NOT NULL AND schema_name NOT LIKE 'pg\_temp%' AND schema_name NOT LIKE '\_tenantgate\_scratch%';
END $$;
"#
        )
    };
    format!(
        "{}{}
DROP EVENT TRIGGER IF EXISTS tenantgate_ddl;
DROP EVENT TRIGGER IF EXISTS tenantgate_drop;
CREATE EVENT TRIGGER tenantgate_ddl ON ddl_command_end EXECUTE FUNCTION tenantgate.record_ddl();
CREATE EVENT TRIGGER tenantgate_drop ON sql_drop EXECUTE FUNCTION tenantgate.record_drop();
ALTER EVENT TRIGGER tenantgate_ddl ENABLE ALWAYS;
ALTER EVENT TRIGGER tenantgate_drop ENABLE ALWAYS;
",
        recorder("record_ddl", "pg_event_trigger_ddl_commands"),
        recorder("record_drop", "pg_event_trigger_dropped_objects"),
    )
}

/// The triggers' identity while both are installed and enabled always.
const TRACKER_SQL: &str = "SELECT (SELECT oid FROM pg_catalog.pg_event_trigger WHERE evtname = 'tenantgate_ddl' AND evtenabled = 'A')::bigint * 4294967296
                               + (SELECT oid FROM pg_catalog.pg_event_trigger WHERE evtname = 'tenantgate_drop' AND evtenabled = 'A')::bigint";

async fn tracker(client: &Client) -> Result<Option<i64>, Error> {
    Ok(client
        .query_typed(TRACKER_SQL, &[])
        .await
        .map_err(|e| error_while("looking for tenantgate's event triggers", &e))?
        .first()
        .and_then(|r| r.get::<_, Option<i64>>(0)))
}

/// See [`crate::Backend::catalog_tracking`].
pub(crate) async fn tracking(
    client: &mut Client,
    tenants: &[(TenantName, Vec<i64>)],
) -> Result<ChangeTracking, Error> {
    let tracker = match tracker(client).await? {
        Some(tracker) => tracker,
        None => match install(client).await? {
            Some(refused) => return Ok(ChangeTracking::Unavailable(refused)),
            None => tracker(client).await?.ok_or_else(|| {
                Error::Config(
                    "tenantgate's event triggers vanished right after they were installed".into(),
                )
            })?,
        },
    };
    // The snapshot the coming scan is at least as new as.
    let snapshot: String = client
        .query_typed("SELECT pg_current_snapshot()::text", &[])
        .await
        .map_err(|e| error_while("taking the catalog snapshot", &e))?[0]
        .get(0);
    let names: Vec<&str> = tenants.iter().map(|(t, _)| t.as_str()).collect();
    let rows = client
        .query_typed(
            "SELECT v.tenant, v.applied FROM tenantgate.catalog_verdicts v
              WHERE v.tenant = ANY($1) AND v.tracker = $2
                AND NOT EXISTS (SELECT 1 FROM tenantgate.catalog_changes c
                                 WHERE c.schema_name = v.tenant
                                   AND NOT pg_visible_in_snapshot(c.xid, v.snapshot))",
            &[(&names, Type::TEXT_ARRAY), (&tracker, Type::INT8)],
        )
        .await
        .map_err(|e| error_while("reading which catalogs changed", &e))?;
    let applied_now: HashMap<&str, &Vec<i64>> =
        tenants.iter().map(|(t, a)| (t.as_str(), a)).collect();
    let unchanged: HashSet<TenantName> = rows
        .iter()
        .filter_map(|r| {
            let tenant = TenantName::parse(r.get(0)).ok()?;
            let applied: Vec<i64> = r.get(1);
            (applied_now.get(tenant.as_str()) == Some(&&applied)).then_some(tenant)
        })
        .collect();
    Ok(ChangeTracking::Tracked {
        unchanged,
        since: snapshot,
        tracker,
    })
}

/// Installs the triggers when this role may; says why not otherwise.
async fn install(client: &mut Client) -> Result<Option<String>, Error> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| error_while("installing change tracking", &e))?;
    match tx.batch_execute(&install_sql()).await {
        Ok(()) => {
            tx.commit()
                .await
                .map_err(|e| error_while("installing change tracking", &e))?;
            tracing::info!("installed the event triggers that record which schemas change");
            Ok(None)
        }
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Ok(Some(
            "every catalog is read: recording which schemas change takes event triggers, which only a superuser can create (run `verify --deep` once as one to install them)".into(),
        )),
        Err(e) => Err(error_while("installing change tracking", &e)),
    }
}

/// See [`crate::Backend::record_verdicts`].
pub(crate) async fn record(
    client: &mut Client,
    verdicts: &[(TenantName, Vec<i64>, bool)],
    since: &str,
    tracker: i64,
) -> Result<(), Error> {
    let err = |e: tokio_postgres::Error| error_while("recording the catalog verdicts", &e);
    let clean: Vec<(&str, String)> = verdicts
        .iter()
        .filter(|(_, _, clean)| *clean)
        .map(|(t, applied, _)| {
            (
                t.as_str(),
                format!("{applied:?}").replace('[', "{").replace(']', "}"),
            )
        })
        .collect();
    let dirty: Vec<&str> = verdicts
        .iter()
        .filter(|(_, _, clean)| !*clean)
        .map(|(t, _, _)| t.as_str())
        .collect();
    let scanned: Vec<&str> = verdicts.iter().map(|(t, _, _)| t.as_str()).collect();
    let tx = client.transaction().await.map_err(err)?;
    tx.query_typed(
        "DELETE FROM tenantgate.catalog_verdicts WHERE tenant = ANY($1)",
        &[(&dirty, Type::TEXT_ARRAY)],
    )
    .await
    .map_err(err)?;
    tx.query_typed(
        "INSERT INTO tenantgate.catalog_verdicts (tenant, applied, snapshot, tracker)
         SELECT v.tenant, v.applied::bigint[], $3::pg_snapshot, $4
           FROM unnest($1::text[], $2::text[]) AS v(tenant, applied)
           JOIN tenantgate.tenants t ON t.name = v.tenant
         ON CONFLICT (tenant) DO UPDATE
           SET applied = excluded.applied, snapshot = excluded.snapshot, tracker = excluded.tracker",
        &[
            (&clean.iter().map(|(t, _)| *t).collect::<Vec<_>>(), Type::TEXT_ARRAY),
            (&clean.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>(), Type::TEXT_ARRAY),
            (&since, Type::TEXT),
            (&tracker, Type::INT8),
        ],
    )
    .await
    .map_err(err)?;
    // Changes every later scan would see anyway: those of the schemas just
    // scanned, and of schemas that are no tenant's, visible to the snapshot.
    tx.query_typed(
        "DELETE FROM tenantgate.catalog_changes c
          WHERE pg_visible_in_snapshot(c.xid, $2::pg_snapshot)
            AND (c.schema_name = ANY($1)
                 OR NOT EXISTS (SELECT 1 FROM tenantgate.tenants t WHERE t.name = c.schema_name))",
        &[(&scanned, Type::TEXT_ARRAY), (&since, Type::TEXT)],
    )
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)
}
