//! Catalog fingerprints: what a schema holds (tables, columns, indexes,
//! constraints), compared with what its ledger promises.
//!
//! The expected shape is built once per distinct applied set, by running the
//! migrations in a scratch schema inside a transaction that is rolled back.
//! Live schemas are fingerprinted with catalog-wide queries (a digest per
//! schema); only schemas whose digest differs are read line by line.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio_postgres::{types::Type, Client};

use super::{
    apply::rollback,
    connect::Connector,
    sql::{db_error, error_while},
};
use crate::{Error, MigrationSet, TenantName};

/// One readable line per catalog object of the schemas in `$1`, with the
/// schema's own name stripped so that schemas of the same shape have the
/// same lines. Read only for schemas whose digest differs.
const LINES_SQL: &str = r#"
WITH s AS (SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::name[])),
rel AS (
  SELECT c.oid, c.relname, c.relkind, s.nspname FROM pg_catalog.pg_class c JOIN s ON s.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relname NOT LIKE '\_tenantgate\_%' AND c.relname <> '_sqlx_migrations'
)
SELECT nspname::text, CASE relkind WHEN 'r' THEN 'table ' WHEN 'p' THEN 'partitioned table ' WHEN 'v' THEN 'view '
         WHEN 'm' THEN 'materialized view ' WHEN 'f' THEN 'foreign table ' ELSE 'sequence ' END || relname
  FROM rel
UNION ALL
SELECT r.nspname::text, 'column ' || r.relname || '.' || a.attname || ' '
       || replace(pg_catalog.format_type(a.atttypid, a.atttypmod), quote_ident(r.nspname) || '.', '')
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || replace(pg_catalog.pg_get_expr(d.adbin, d.adrelid), quote_ident(r.nspname) || '.', ''), '')
  FROM pg_catalog.pg_attribute a JOIN rel r ON r.oid = a.attrelid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind <> 'S'
UNION ALL
SELECT r.nspname::text, 'index ' || replace(pg_catalog.pg_get_indexdef(i.indexrelid), quote_ident(r.nspname) || '.', '')
  FROM pg_catalog.pg_index i JOIN rel r ON r.oid = i.indrelid
UNION ALL
SELECT r.nspname::text, 'constraint ' || r.relname || '.' || con.conname || ' '
       || replace(pg_catalog.pg_get_constraintdef(con.oid), quote_ident(r.nspname) || '.', '')
  FROM pg_catalog.pg_constraint con JOIN rel r ON r.oid = con.conrelid
"#;

/// One digest per schema in `$1`: the count and the sum of a 64-bit hash
/// per catalog object, built from catalog columns (names, column numbers,
/// built-in OIDs, referenced table names) instead of deparsed text, which is
/// several times cheaper over every object of every tenant. Hashes combine
/// with `#` (xor), so no arithmetic overflows. An object that embeds a
/// tenant-local OID (a column of the tenant's own type) only sends that
/// tenant to the line-by-line comparison: slower, never wrong.
const DIGEST_SQL: &str = r#"
WITH s AS (SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::name[])),
rel AS (
  SELECT c.oid, c.relname, c.relkind, s.nspname, hashtextextended(c.relname, 0) AS rh
    FROM pg_catalog.pg_class c JOIN s ON s.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relname NOT LIKE '\_tenantgate\_%' AND c.relname <> '_sqlx_migrations'
)
SELECT nspname::text, count(*)::text || ':' || sum(h)::text FROM (
  SELECT nspname, rh # ascii(relkind::text) AS h FROM rel
  UNION ALL
  SELECT r.nspname,
         hashtextextended(a.attname::text, r.rh # (a.atttypid::bigint * 1000003) # (a.atttypmod::bigint * 31)
                          # (a.attnum::bigint * 7919) # a.attnotnull::int)
         # coalesce(hashtextextended(replace(pg_catalog.pg_get_expr(d.adbin, d.adrelid), quote_ident(r.nspname) || '.', ''), 0), 0)
    FROM pg_catalog.pg_attribute a JOIN rel r ON r.oid = a.attrelid
    LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind <> 'S'
  UNION ALL
  SELECT r.nspname,
         hashtextextended(ic.relname || ' ' || i.indkey::text || ' ' || i.indclass::text || ' ' || i.indoption::text
                          || coalesce(i.indexprs::text, '') || coalesce(i.indpred::text, ''),
                          r.rh # ic.relam::bigint # (i.indisunique::int * 2) # i.indisprimary::int)
    FROM pg_catalog.pg_index i JOIN rel r ON r.oid = i.indrelid JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  UNION ALL
  SELECT r.nspname,
         hashtextextended(con.conname || ' ' || con.contype::text || coalesce(con.conkey::text, '') || ' '
                          || coalesce(fr.relname || coalesce(con.confkey::text, ''), '') || ' '
                          || con.condeferrable::text || con.condeferred::text || con.confupdtype::text
                          || con.confdeltype::text || con.confmatchtype::text || coalesce(con.conbin::text, ''),
                          r.rh)
    FROM pg_catalog.pg_constraint con JOIN rel r ON r.oid = con.conrelid
    LEFT JOIN pg_catalog.pg_class fr ON fr.oid = con.confrelid
) objects(nspname, h)
GROUP BY nspname
"#;

/// The expected lines and digest for one applied set.
struct Shape {
    digest: String,
    lines: BTreeSet<String>,
}

/// Reports the tenants whose catalog differs from what their applied
/// versions promise; see [`crate::Backend::catalog_drift`].
pub(crate) async fn catalog_drift(
    connector: &Connector,
    set: &MigrationSet,
    tenants: &[(TenantName, Vec<i64>)],
) -> Result<HashMap<TenantName, Vec<String>>, Error> {
    let mut by_applied: BTreeMap<&[i64], Vec<&TenantName>> = BTreeMap::new();
    for (tenant, applied) in tenants {
        by_applied
            .entry(applied.as_slice())
            .or_default()
            .push(tenant);
    }
    if tenants.is_empty() {
        return Ok(HashMap::new());
    }
    let names: Vec<TenantName> = tenants.iter().map(|(t, _)| t.clone()).collect();
    // The live digests (over a few connections) while the expected shapes
    // are built in a scratch schema on another: neither waits for the other.
    let mut client = connector.checkout().await?;
    let shapes = async {
        let mut shapes = Vec::new();
        for applied in by_applied.keys() {
            shapes.push(expected_shape(&client, set, applied).await?);
            tracing::debug!(versions = applied.len(), "expected shape built");
        }
        Ok::<_, Error>(shapes)
    };
    let (digests, shapes) = futures::try_join!(parallel_digests(connector, &names), shapes)?;
    tracing::debug!(schemas = digests.len(), "catalog digests read");
    let mut drift = HashMap::new();
    for ((_, group), shape) in by_applied.into_iter().zip(shapes) {
        let differing: Vec<&TenantName> = group
            .iter()
            .copied()
            .filter(|t| digests.get(*t) != Some(&shape.digest))
            .collect();
        if differing.is_empty() {
            continue;
        }
        let differing: Vec<TenantName> = differing.into_iter().cloned().collect();
        let mut live = lines(&client, &differing).await?;
        for tenant in &differing {
            let actual = live.remove(tenant).unwrap_or_default();
            let differences = crate::peers::differences(&shape.lines, &actual);
            if !differences.is_empty() {
                drift.insert(tenant.clone(), differences);
            }
        }
    }
    client.keep(true);
    Ok(drift)
}

/// Schemas digested per statement when the work is split over connections.
const DIGESTS_PER_CONNECTION: usize = 500;

/// Connections the digests are split over, at most.
const DIGEST_READERS: usize = 2;

/// [`digests`] split over up to [`DIGEST_READERS`] pooled connections.
async fn parallel_digests(
    connector: &Connector,
    tenants: &[TenantName],
) -> Result<HashMap<TenantName, String>, Error> {
    let readers = DIGEST_READERS
        .min(tenants.len().div_ceil(DIGESTS_PER_CONNECTION))
        .max(1);
    let chunk = tenants.len().div_ceil(readers).max(1);
    let parts = futures::future::try_join_all(tenants.chunks(chunk).map(|part| async move {
        let mut client = connector.checkout().await?;
        let read = digests(&client, part).await;
        client.keep(read.is_ok());
        read
    }))
    .await?;
    Ok(parts.into_iter().flatten().collect())
}

/// One catalog digest per schema of `tenants` (see `DIGEST_SQL`); schemas
/// that hold no object, or do not exist, have none.
pub(crate) async fn digests(
    client: &Client,
    tenants: &[TenantName],
) -> Result<HashMap<TenantName, String>, Error> {
    let names: Vec<&str> = tenants.iter().map(TenantName::as_str).collect();
    let rows = client
        .query_typed(DIGEST_SQL, &[(&names, Type::TEXT_ARRAY)])
        .await
        .map_err(|e| error_while("fingerprinting tenant schemas", &e))?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((TenantName::parse(r.get(0)).ok()?, r.get(1))))
        .collect())
}

/// The catalog of each schema of `tenants`, one readable line per object.
pub(crate) async fn lines(
    client: &Client,
    tenants: &[TenantName],
) -> Result<HashMap<TenantName, BTreeSet<String>>, Error> {
    let names: Vec<&str> = tenants.iter().map(TenantName::as_str).collect();
    let mut live: HashMap<TenantName, BTreeSet<String>> = HashMap::new();
    for row in client
        .query_typed(LINES_SQL, &[(&names, Type::TEXT_ARRAY)])
        .await
        .map_err(|e| error_while("reading tenant schemas' catalogs", &e))?
    {
        if let Ok(tenant) = TenantName::parse(row.get(0)) {
            live.entry(tenant).or_default().insert(row.get(1));
        }
    }
    Ok(live)
}

/// Builds the shape `applied` promises in a scratch schema, reads it, rolls back.
async fn expected_shape(
    client: &Client,
    set: &MigrationSet,
    applied: &[i64],
) -> Result<Shape, Error> {
    let scratch = format!("_tenantgate_scratch_{}", std::process::id());
    // On a Citus coordinator the scratch schema stays local (nothing sent
    // to the workers, which need not all answer); elsewhere the setting is
    // an inert placeholder.
    let mut sql = format!(
        "BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL citus.enable_ddl_propagation TO off; \
         CREATE SCHEMA \"{scratch}\"; SET LOCAL search_path TO \"{scratch}\", public;\n"
    );
    for version in applied {
        match set.get(*version) {
            Some(m) => {
                sql.push_str(&m.sql);
                sql.push_str("\n;\n");
            }
            None => return Err(Error::MissingMigrationFile { version: *version }),
        }
    }
    let scratch_names = vec![scratch.as_str()];
    let result = async {
        client.batch_execute(&sql).await.map_err(|e| Error::Database {
            context: format!(
                "building the expected shape of migrations {applied:?} in a scratch schema (rolled back); \
                 a no-transaction migration cannot be replayed there"
            ),
            source: db_error(&e),
        })?;
        let lines = client
            .query_typed(LINES_SQL, &[(&scratch_names, Type::TEXT_ARRAY)])
            .await
            .map_err(|e| error_while("reading the expected shape", &e))?;
        let digest = client
            .query_typed(DIGEST_SQL, &[(&scratch_names, Type::TEXT_ARRAY)])
            .await
            .map_err(|e| error_while("digesting the expected shape", &e))?;
        Ok::<_, Error>((lines, digest))
    }
    .await;
    rollback(client).await;
    let (lines, digest) = result?;
    let lines = lines.iter().map(|r| r.get(1)).collect();
    let digest = digest.first().map(|r| r.get(1)).unwrap_or_default();
    Ok(Shape { digest, lines })
}
