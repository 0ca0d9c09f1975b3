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
    sql::{db_error, error_while},
};
use crate::{Error, MigrationSet, TenantName};

/// One line per catalog object of the schemas in `$1`, with the schema's own
/// name stripped so that schemas of the same shape have the same lines.
///
/// `readable` deparses types, indexes and constraints (`integer`,
/// `CREATE INDEX …`, `FOREIGN KEY …`); the compact form spells them with
/// catalog columns instead (built-in OIDs, column numbers, referenced table
/// names), an order of magnitude cheaper over every object of every tenant.
/// Digests compare the compact form; differences are found and shown in the
/// readable one. (A compact line that embeds a tenant-local OID, such as an
/// index on a tenant's own type, only sends that tenant to the readable
/// comparison: slower, never wrong.)
fn lines_sql(readable: bool) -> String {
    let strip = |expr: &str| format!("replace({expr}, quote_ident(r.nspname) || '.', '')");
    let (column_type, index, constraint) = if readable {
        (
            strip("pg_catalog.format_type(a.atttypid, a.atttypmod)"),
            format!(
                "'index ' || {}",
                strip("pg_catalog.pg_get_indexdef(i.indexrelid)")
            ),
            format!(
                "'constraint ' || r.relname || '.' || con.conname || ' ' || {}",
                strip("pg_catalog.pg_get_constraintdef(con.oid)")
            ),
        )
    } else {
        (
            // OIDs below 16384 are the built-in types, the same in every schema.
            format!(
                "CASE WHEN a.atttypid < 16384 THEN a.atttypid::text || ',' || a.atttypmod::text ELSE {} END",
                strip("pg_catalog.format_type(a.atttypid, a.atttypmod)")
            ),
            "'index ' || ic.relname || ' on ' || r.relname || ' ' || ic.relam::text || ' ' || i.indisunique::text \
             || i.indisprimary::text || ' ' || i.indkey::text || ' ' || i.indclass::text || ' ' || i.indoption::text \
             || coalesce(' ' || md5(i.indexprs::text), '') || coalesce(' ' || md5(i.indpred::text), '')"
                .to_owned(),
            "'constraint ' || r.relname || '.' || con.conname || ' ' || con.contype::text || ' ' \
             || coalesce(con.conkey::text, '') || ' ' || coalesce(fr.relname || coalesce(con.confkey::text, ''), '') || ' ' \
             || con.condeferrable::text || con.condeferred::text || con.confupdtype::text || con.confdeltype::text \
             || con.confmatchtype::text || coalesce(' ' || md5(con.conbin::text), '')"
                .to_owned(),
        )
    };
    format!(
        r#"
WITH s AS (SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1)),
rel AS (
  SELECT c.oid, c.relname, c.relkind, s.nspname FROM pg_catalog.pg_class c JOIN s ON s.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relname NOT LIKE '\_tenantgate\_%'
)
SELECT nspname::text, CASE relkind WHEN 'r' THEN 'table ' WHEN 'p' THEN 'partitioned table ' WHEN 'v' THEN 'view '
         WHEN 'm' THEN 'materialized view ' WHEN 'f' THEN 'foreign table ' ELSE 'sequence ' END || relname
  FROM rel
UNION ALL
SELECT r.nspname::text, 'column ' || r.relname || '.' || a.attname || ' ' || {column_type}
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || {default}, '')
  FROM pg_catalog.pg_attribute a JOIN rel r ON r.oid = a.attrelid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind <> 'S'
UNION ALL
SELECT r.nspname::text, {index}
  FROM pg_catalog.pg_index i JOIN rel r ON r.oid = i.indrelid JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
UNION ALL
SELECT r.nspname::text, {constraint}
  FROM pg_catalog.pg_constraint con JOIN rel r ON r.oid = con.conrelid
  LEFT JOIN pg_catalog.pg_class fr ON fr.oid = con.confrelid
"#,
        default = strip("pg_catalog.pg_get_expr(d.adbin, d.adrelid)"),
    )
}

/// Schemas, each with the digest of its sorted compact lines.
fn digest_sql() -> String {
    format!(
        "SELECT nspname, md5(string_agg(line, E'\\n' ORDER BY line)) FROM ({}) l(nspname, line) GROUP BY nspname",
        lines_sql(false)
    )
}

/// The expected lines and digest for one applied set.
struct Shape {
    digest: String,
    lines: BTreeSet<String>,
}

/// Reports the tenants whose catalog differs from what their applied
/// versions promise; see [`crate::Backend::catalog_drift`].
pub(crate) async fn catalog_drift(
    client: &Client,
    set: &MigrationSet,
    tenants: &[(TenantName, Vec<i64>)],
) -> Result<HashMap<String, Vec<String>>, Error> {
    let mut by_applied: BTreeMap<&[i64], Vec<&TenantName>> = BTreeMap::new();
    for (tenant, applied) in tenants {
        by_applied
            .entry(applied.as_slice())
            .or_default()
            .push(tenant);
    }
    let names: Vec<&str> = tenants.iter().map(|(t, _)| t.as_str()).collect();
    let digests: HashMap<String, String> = client
        .query_typed(&digest_sql(), &[(&names, Type::TEXT_ARRAY)])
        .await
        .map_err(|e| error_while("fingerprinting tenant schemas", &e))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    tracing::debug!(schemas = digests.len(), "catalog digests read");
    let mut drift = HashMap::new();
    for (applied, group) in by_applied {
        let shape = expected_shape(client, set, applied).await?;
        tracing::debug!(versions = applied.len(), "expected shape built");
        let differing: Vec<&str> = group
            .iter()
            .map(|t| t.as_str())
            .filter(|t| digests.get(*t) != Some(&shape.digest))
            .collect();
        if differing.is_empty() {
            continue;
        }
        let mut live: HashMap<String, BTreeSet<String>> = HashMap::new();
        for row in client
            .query_typed(&lines_sql(true), &[(&differing, Type::TEXT_ARRAY)])
            .await
            .map_err(|e| error_while("reading drifted tenant schemas", &e))?
        {
            live.entry(row.get(0)).or_default().insert(row.get(1));
        }
        for tenant in differing {
            let actual = live.remove(tenant).unwrap_or_default();
            let mut differences: Vec<String> = shape
                .lines
                .difference(&actual)
                .map(|l| format!("missing {l}"))
                .collect();
            differences.extend(
                actual
                    .difference(&shape.lines)
                    .map(|l| format!("unexpected {l}")),
            );
            if !differences.is_empty() {
                drift.insert(tenant.to_owned(), differences);
            }
        }
    }
    Ok(drift)
}

/// Builds the shape `applied` promises in a scratch schema, reads it, rolls back.
async fn expected_shape(
    client: &Client,
    set: &MigrationSet,
    applied: &[i64],
) -> Result<Shape, Error> {
    let scratch = format!("_tenantgate_scratch_{}", std::process::id());
    let mut sql = format!(
        "BEGIN; SET LOCAL statement_timeout = 0; CREATE SCHEMA \"{scratch}\"; \
         SET LOCAL search_path TO \"{scratch}\", public;\n"
    );
    for version in applied {
        match set.get(*version) {
            Some(m) => {
                sql.push_str(&m.sql);
                sql.push_str("\n;\n");
            }
            None => {
                return Err(Error::Config(format!(
                    "cannot build the expected shape: applied migration {version} has no file"
                )))
            }
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
            .query_typed(&lines_sql(true), &[(&scratch_names, Type::TEXT_ARRAY)])
            .await
            .map_err(|e| error_while("reading the expected shape", &e))?;
        let digest = client
            .query_typed(&digest_sql(), &[(&scratch_names, Type::TEXT_ARRAY)])
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
