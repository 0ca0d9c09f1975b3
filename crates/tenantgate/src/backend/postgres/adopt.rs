//! Adopting existing schemas: reading the candidates, checking them, and
//! registering them in one transaction.

use std::collections::{HashMap, HashSet};

use tokio_postgres::{types::Type, Client};

use super::{
    apply::Target,
    registry::notify,
    sql::{error_while, literal},
};
use crate::{
    adopt::{AdoptSource, Adoptee, Candidate},
    DbError, Error, LedgerKind, MigrationSet,
};

/// The candidates `source` names. A query runs in a read-only transaction
/// as a subquery, so it is one `SELECT` and cannot write or end the
/// transaction; each row's columns are read as text in order: the schema,
/// then the domain when there is one.
pub(crate) async fn candidates(
    client: &Client,
    source: &AdoptSource,
) -> Result<Vec<Candidate>, Error> {
    let rows = match source {
        AdoptSource::Schemas(pattern) => client
            .query_typed(
                "SELECT ARRAY[nspname::text] FROM pg_catalog.pg_namespace
                  WHERE nspname LIKE $1 AND nspname NOT LIKE 'pg\\_%'
                    AND nspname NOT IN ('information_schema', 'public', 'tenantgate')
                  ORDER BY nspname",
                &[(pattern, Type::TEXT)],
            )
            .await
            .map_err(|e| error_while("listing the schemas to adopt", &e))?,
        AdoptSource::Sql(query) => {
            let query = query
                .trim()
                .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
            client
                .batch_execute("BEGIN TRANSACTION READ ONLY")
                .await
                .map_err(|e| error_while("starting the adoption query", &e))?;
            let rows = client
                .query_typed(
                    &format!(
                        "SELECT ARRAY(SELECT value FROM json_each_text(row_to_json(q))) FROM ({query}) AS q"
                    ),
                    &[],
                )
                .await;
            let _ = client.batch_execute("ROLLBACK").await;
            rows.map_err(|e| match super::sql::db_error(&e) {
                lost if lost.connection_lost => Error::DatabaseUnavailable {
                    context: "running the adoption query".into(),
                    source: lost,
                },
                refused => Error::Config(format!(
                    "the --from-sql query was refused (it runs read-only as one SELECT returning the schema and optionally a domain): {refused}"
                )),
            })?
        }
    };
    Ok(rows
        .iter()
        .filter_map(|row| {
            let columns: Vec<Option<String>> = row.get(0);
            let mut columns = columns.into_iter();
            Some(Candidate {
                schema: columns.next().flatten()?,
                domains: columns.next().flatten().into_iter().collect(),
            })
        })
        .collect())
}

/// Which of `schemas` exist.
pub(crate) async fn existing_schemas(
    client: &Client,
    schemas: &[String],
) -> Result<HashSet<String>, Error> {
    let rows = client
        .query_typed(
            "SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::name[])",
            &[(&schemas, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(|e| error_while("looking up the schemas to adopt", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Every registered domain and its tenant.
pub(crate) async fn domain_owners(client: &Client) -> Result<HashMap<String, String>, Error> {
    let rows = client
        .query_typed("SELECT domain, tenant FROM tenantgate.domains", &[])
        .await
        .map_err(|e| error_while("reading the registered domains", &e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Registers `adoptees` in one transaction; see
/// [`crate::Backend::register_existing`].
pub(crate) async fn register(
    client: &mut Client,
    adoptees: &[Adoptee],
    baseline: Option<&MigrationSet>,
) -> Result<(), Error> {
    let err = |e: tokio_postgres::Error| error_while("registering the adopted schemas", &e);
    let tx = client.transaction().await.map_err(err)?;
    for adoptee in adoptees {
        let name = adoptee.tenant.as_str();
        let versions: Vec<i64> = adoptee.ledger.iter().map(|a| a.version).collect();
        let checksums: Vec<&[u8]> = adoptee
            .ledger
            .iter()
            .map(|a| a.checksum.as_slice())
            .collect();
        tx.query_typed(
            "INSERT INTO tenantgate.tenants (name, state, applied_versions, applied_checksums, last_error)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                (&name, Type::TEXT),
                (&adoptee.state.as_str(), Type::TEXT),
                (&versions, Type::INT8_ARRAY),
                (&checksums, Type::BYTEA_ARRAY),
                (&adoptee.note, Type::TEXT),
            ],
        )
        .await
        .map_err(|e| conflict(&e, name).unwrap_or_else(|| err(e)))?;
        let domains: Vec<&str> = adoptee.domains.iter().map(|d| d.as_str()).collect();
        tx.query_typed(
            "INSERT INTO tenantgate.domains (domain, tenant) SELECT unnest($1::text[]), $2",
            &[(&domains, Type::TEXT_ARRAY), (&name, Type::TEXT)],
        )
        .await
        .map_err(|e| conflict(&e, name).unwrap_or_else(|| err(e)))?;
        if let Some(baseline) = baseline {
            let target = Target::tenant(&adoptee.tenant, LedgerKind::Tenantgate);
            let mut batch = target.create_ledger_sql();
            for m in baseline.iter() {
                batch.push_str(&format!(
                    "INSERT INTO {} (version, description, success, checksum, execution_time) VALUES ({}, {}, true, '\\x{}'::bytea, 0);",
                    target.ledger,
                    m.version,
                    literal(&m.description),
                    hex::encode(&m.checksum)
                ));
            }
            tx.batch_execute(&batch).await.map_err(err)?;
        }
        tx.query_typed(
            "INSERT INTO tenantgate.events (tenant, kind) VALUES ($1, 'adopted')",
            &[(&name, Type::TEXT)],
        )
        .await
        .map_err(err)?;
    }
    notify(&tx, "*").await.map_err(err)?;
    tx.commit().await.map_err(err)
}

/// A row registered (or a domain claimed) by someone else since the checks.
fn conflict(e: &tokio_postgres::Error, tenant: &str) -> Option<Error> {
    (e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)).then(|| {
        Error::Database {
            context: format!("registering the adopted schema {tenant} (nothing was registered)"),
            source: DbError {
                code: Some("23505".into()),
                message: "another process registered this tenant or one of its domains since the checks; run adopt again".into(),
                connection_lost: false,
            },
        }
    })
}
