//! Deep verification on SQLite: each tenant file's own catalog
//! (`sqlite_schema` and `pragma_table_info`) against the shape its applied
//! migrations produce when replayed in an in-memory database.

use std::collections::{BTreeSet, HashMap};

use rusqlite::Connection;

use super::{
    blocking::{db_error, error_while, par_map, run_script},
    data_dir::{read_alone, DataDir, LEDGER_TABLE},
};
use crate::{Error, MigrationSet, TenantName};

/// One line per table, column, index, trigger and view, the tenantgate
/// ledgers left out. Lines are compared as sets, so order does not matter.
const LINES_SQL: &str = r#"
WITH objects AS (
    SELECT type, name, tbl_name, sql FROM sqlite_schema
     WHERE name NOT LIKE 'sqlite\_%' ESCAPE '\'
       AND name NOT IN (?1, '_tenantgate_backfills')
)
SELECT 'table ' || name FROM objects WHERE type = 'table'
UNION ALL
SELECT 'column ' || o.name || '.' || p.name || ' ' || lower(p.type)
       || CASE WHEN p."notnull" THEN ' not null' ELSE '' END
       || coalesce(' default ' || p.dflt_value, '')
       || CASE WHEN p.pk > 0 THEN ' primary key' ELSE '' END
  FROM objects o, pragma_table_info(o.name) p
 WHERE o.type = 'table'
UNION ALL
SELECT type || ' ' || name || ' on ' || tbl_name || coalesce(': ' || sql, '')
  FROM objects WHERE type IN ('index', 'trigger', 'view')
"#;

fn lines(conn: &Connection) -> rusqlite::Result<BTreeSet<String>> {
    let mut statement = conn.prepare_cached(LINES_SQL)?;
    let rows = statement.query_map([LEDGER_TABLE], |r| r.get::<_, String>(0))?;
    rows.map(|line| line.map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect()
}

/// The shape `versions` of `set` produce, replayed in memory.
fn expected(set: &MigrationSet, versions: &[i64]) -> Result<BTreeSet<String>, Error> {
    let context = "replaying the migrations to learn the expected shape";
    let fail = |e: rusqlite::Error| error_while(context, db_error(&e));
    let conn = Connection::open_in_memory().map_err(fail)?;
    for m in set.iter().filter(|m| versions.contains(&m.version)) {
        run_script(&conn, &m.sql).map_err(|e| Error::Database {
            context: format!("{context}: {} failed in an empty database", m.file),
            source: db_error(&e),
        })?;
    }
    lines(&conn).map_err(fail)
}

/// See [`crate::Backend::catalog_drift`].
pub(crate) fn catalog_drift(
    dir: &DataDir,
    set: &MigrationSet,
    tenants: &[(TenantName, Vec<i64>)],
) -> Result<HashMap<TenantName, Vec<String>>, Error> {
    let mut shapes: HashMap<&[i64], BTreeSet<String>> = HashMap::new();
    for (_, versions) in tenants {
        if !shapes.contains_key(versions.as_slice()) {
            shapes.insert(versions, expected(set, versions)?);
        }
    }
    let found = par_map(tenants, |(tenant, versions)| {
        let path = dir.tenant(tenant);
        if !path.exists() {
            return Ok(None);
        }
        let live = read_alone(&path, std::time::Duration::from_secs(5), lines).map_err(|e| {
            error_while(
                &format!("reading the catalog of tenant {tenant}"),
                db_error(&e),
            )
        })?;
        let want = &shapes[versions.as_slice()];
        let mut drift: Vec<String> = want
            .difference(&live)
            .map(|l| format!("missing {l}"))
            .collect();
        drift.extend(live.difference(want).map(|l| format!("unexpected {l}")));
        Ok((!drift.is_empty()).then(|| (tenant.clone(), drift)))
    });
    let mut drifted = HashMap::new();
    for result in found {
        if let Some((tenant, drift)) = result? {
            drifted.insert(tenant, drift);
        }
    }
    Ok(drifted)
}
