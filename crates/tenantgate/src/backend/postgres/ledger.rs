//! Reading many tenants' ledgers fast: small statements pipelined over a few
//! connections. A statement naming a ledger that does not exist fails and
//! is read again one ledger at a time, which tells which are missing: the
//! common case (every ledger there) pays no catalog query for it.

use futures::{future::BoxFuture, stream, FutureExt, StreamExt, TryStreamExt};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::{
    connect::Connector,
    sql::{db_error, literal, tenant_ledger},
};
use crate::{backend::Ledgers, django, AppliedMigration, Error, LedgerKind, TenantName};

/// Statements in flight per connection.
const PIPELINE_DEPTH: usize = 64;

/// Connections used for reading ledgers.
const READERS: usize = 4;

/// Which ledger each tenant schema holds and, for Django's, whose rows
/// count.
#[derive(Debug, Clone, Default)]
pub(crate) struct LedgerScope {
    pub(crate) kind: LedgerKind,
    /// Django app labels; empty for every app.
    pub(crate) apps: Vec<String>,
}

/// Reads the ledgers of `tenants`; see [`crate::Backend::read_ledgers`].
/// The reader connections are opened together.
pub(crate) async fn read_ledgers(
    connector: &Connector,
    tenants: &[TenantName],
    scope: &LedgerScope,
) -> Result<Ledgers, Error> {
    if tenants.is_empty() {
        return Ok(Ledgers::new());
    }
    let readers = READERS.min(tenants.len().div_ceil(PIPELINE_DEPTH)).max(1);
    let mut clients =
        futures::future::try_join_all((0..readers).map(|_| connector.checkout())).await?;
    let tenants: Vec<&TenantName> = tenants.iter().collect();
    let chunk = tenants.len().div_ceil(readers);
    let results = futures::future::try_join_all(
        clients
            .iter()
            .zip(tenants.chunks(chunk))
            .map(|(client, tenants)| read_chunk(client, tenants, scope)),
    )
    .await?;
    for client in &mut clients {
        client.keep(true);
    }
    Ok(results.into_iter().flatten().collect())
}

/// Ledgers read by one statement: enough to halve the per-statement cost,
/// few enough that planning stays cheap (one huge UNION ALL plans slowly).
const LEDGERS_PER_STATEMENT: usize = 25;

type Read = Vec<(TenantName, Option<Vec<AppliedMigration>>)>;

async fn read_chunk(
    client: &Client,
    tenants: &[&TenantName],
    scope: &LedgerScope,
) -> Result<Read, Error> {
    // Boxed up front: a closure inside the stream would not be `Send` for
    // every lifetime, which the backend trait's futures must be.
    let reads: Vec<BoxFuture<'_, Result<Read, Error>>> = tenants
        .chunks(LEDGERS_PER_STATEMENT)
        .map(|group| read_group(client, group, scope).boxed())
        .collect();
    let groups: Vec<Read> = stream::iter(reads)
        .buffered(PIPELINE_DEPTH / 4)
        .try_collect()
        .await?;
    Ok(groups.into_iter().flatten().collect())
}

/// Reads a few ledgers with one `UNION ALL` statement; each row carries its
/// tenant's position in `group`. Django's rows are `(app, name)`, keyed
/// `app.name`, without a checksum.
async fn read_group(
    client: &Client,
    group: &[&TenantName],
    scope: &LedgerScope,
) -> Result<Read, Error> {
    let kind = scope.kind;
    let columns = match kind {
        LedgerKind::Django => "app, name, ''",
        LedgerKind::Tenantgate | LedgerKind::Sqlx => {
            "version::text, description, encode(checksum, 'hex')"
        }
    };
    let only_counted = match kind {
        LedgerKind::Django if scope.apps.is_empty() => String::new(),
        LedgerKind::Django => format!(
            " WHERE app IN ({})",
            scope
                .apps
                .iter()
                .map(|a| literal(a))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        LedgerKind::Tenantgate | LedgerKind::Sqlx => " WHERE success".into(),
    };
    let sql = group
        .iter()
        .enumerate()
        .map(|(i, tenant)| {
            format!(
                "SELECT {i}, {columns} FROM {}{only_counted}",
                tenant_ledger(tenant, kind)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let messages = match client.simple_query(&format!("{sql} ORDER BY 1, 2")).await {
        Ok(messages) => messages,
        // A ledger missing (never created, or dropped): read them one by one.
        Err(e) if !db_error(&e).connection_lost && group.len() > 1 => {
            let mut read = Vec::new();
            for tenant in group {
                read.extend(Box::pin(read_group(client, &[tenant], scope)).await?);
            }
            return Ok(read);
        }
        Err(e) if !db_error(&e).connection_lost => return Ok(vec![((*group[0]).clone(), None)]),
        Err(e) => {
            return Err(Error::DatabaseUnavailable {
                context: format!(
                    "reading the ledgers of tenants {} to {}",
                    group[0],
                    group[group.len() - 1]
                ),
                source: db_error(&e),
            })
        }
    };
    let mut ledgers: Vec<Vec<AppliedMigration>> = vec![Vec::new(); group.len()];
    for message in &messages {
        let SimpleQueryMessage::Row(row) = message else {
            continue;
        };
        let parsed = (|| {
            let applied = match kind {
                LedgerKind::Django => {
                    let (app, name) = (row.get(1)?, row.get(2)?);
                    AppliedMigration {
                        version: django::key_version(app, name),
                        description: format!("{app}.{name}"),
                        checksum: Vec::new(),
                    }
                }
                LedgerKind::Tenantgate | LedgerKind::Sqlx => AppliedMigration {
                    version: row.get(1)?.parse().ok()?,
                    description: row.get(2)?.to_owned(),
                    checksum: hex::decode(row.get(3)?).ok()?,
                },
            };
            Some((row.get(0)?.parse::<usize>().ok()?, applied))
        })();
        if let Some((i, applied)) = parsed.filter(|(i, _)| *i < group.len()) {
            ledgers[i].push(applied);
        }
    }
    for ledger in &mut ledgers {
        ledger.sort_by_key(|a| a.version);
    }
    Ok(group
        .iter()
        .map(|t| (*t).clone())
        .zip(ledgers.into_iter().map(Some))
        .collect())
}
