//! Reading many tenants' ledgers fast: small statements pipelined over a few
//! connections, after one catalog query that says which ledgers exist.

use std::collections::HashSet;

use futures::{future::BoxFuture, stream, FutureExt, StreamExt, TryStreamExt};
use tokio_postgres::{types::Type, Client, SimpleQueryMessage};

use super::{
    connect::Connector,
    sql::{db_error, tenant_ledger, LEDGER_TABLE},
};
use crate::{backend::Ledgers, AppliedMigration, Error, TenantName};

/// Statements in flight per connection.
const PIPELINE_DEPTH: usize = 64;

/// Connections used for reading ledgers.
const READERS: usize = 4;

/// Reads the ledgers of `tenants`; see [`crate::Backend::read_ledgers`].
pub(crate) async fn read_ledgers(
    connector: &Connector,
    tenants: &[TenantName],
) -> Result<Ledgers, Error> {
    let mut first = connector.checkout().await?;
    let existing = schemas_with_ledger(&first).await?;
    let mut ledgers: Ledgers = tenants
        .iter()
        .filter(|t| !existing.contains(t.as_str()))
        .map(|t| (t.to_string(), None))
        .collect();
    let present: Vec<&TenantName> = tenants
        .iter()
        .filter(|t| existing.contains(t.as_str()))
        .collect();
    if present.is_empty() {
        first.keep(true);
        return Ok(ledgers);
    }
    let readers = READERS.min(present.len().div_ceil(PIPELINE_DEPTH)).max(1);
    let mut clients = vec![first];
    for _ in 1..readers {
        clients.push(connector.checkout().await?);
    }
    let chunk = present.len().div_ceil(readers);
    let results = futures::future::try_join_all(
        clients
            .iter()
            .zip(present.chunks(chunk))
            .map(|(client, tenants)| read_chunk(&**client, tenants)),
    )
    .await?;
    for client in &mut clients {
        client.keep(true);
    }
    ledgers.extend(results.into_iter().flatten());
    Ok(ledgers)
}

type ReadResult = Result<(String, Option<Vec<AppliedMigration>>), Error>;

async fn read_chunk(
    client: &Client,
    tenants: &[&TenantName],
) -> Result<Vec<(String, Option<Vec<AppliedMigration>>)>, Error> {
    // Boxed up front: a closure inside the stream would not be `Send` for
    // every lifetime, which the backend trait's futures must be.
    let reads: Vec<BoxFuture<'_, ReadResult>> = tenants
        .iter()
        .map(|tenant| read_one(client, tenant).boxed())
        .collect();
    stream::iter(reads)
        .buffered(PIPELINE_DEPTH)
        .try_collect()
        .await
}

async fn read_one(client: &Client, tenant: &TenantName) -> ReadResult {
    let sql = format!(
        "SELECT version, description, encode(checksum, 'hex') FROM {} WHERE success ORDER BY version",
        tenant_ledger(tenant)
    );
    match client.simple_query(&sql).await {
        Ok(messages) => Ok((tenant.to_string(), Some(parse_rows(&messages)))),
        // Dropped between the catalog query and this read.
        Err(e) if !db_error(&e).connection_lost => Ok((tenant.to_string(), None)),
        Err(e) => Err(Error::DatabaseUnavailable {
            context: format!("reading the ledger of tenant {tenant}"),
            source: db_error(&e),
        }),
    }
}

fn parse_rows(messages: &[SimpleQueryMessage]) -> Vec<AppliedMigration> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(AppliedMigration {
                version: row.get(0)?.parse().ok()?,
                description: row.get(1)?.to_owned(),
                checksum: hex::decode(row.get(2)?).ok()?,
            }),
            _ => None,
        })
        .collect()
}

/// Schemas that hold a ledger table, in one catalog query.
async fn schemas_with_ledger(client: &Client) -> Result<HashSet<String>, Error> {
    let rows = client
        .query_typed(
            "SELECT n.nspname::text FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relname = $1 AND c.relkind IN ('r', 'p')",
            &[(&LEDGER_TABLE, Type::TEXT)],
        )
        .await
        .map_err(|e| Error::DatabaseUnavailable {
            context: "listing tenant ledgers".into(),
            source: db_error(&e),
        })?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
