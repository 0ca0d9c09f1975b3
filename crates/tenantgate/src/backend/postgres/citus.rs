//! What a Citus coordinator needs beyond a plain server: every worker must
//! answer before DDL (two-phase commit touches every node's metadata, so
//! one worker down fails DDL for every tenant), and each tenant's schema
//! lives on one worker.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio_postgres::{types::Type, Client};

use super::{
    connect::Connector,
    sql::{error_while, per_tenant},
};
use crate::{DbError, Error, TenantName};

/// Why a deep verification on Citus reads every catalog each time.
pub(crate) const UNTRACKED: &str = "on a Citus placement every catalog is read: a shard can be changed on its worker, where the coordinator records nothing";

/// Fails with one error naming the first worker the coordinator cannot
/// reach, before any tenant's DDL runs.
pub(crate) async fn workers_answer(client: &Client) -> Result<(), Error> {
    let rows = client
        .query_typed(
            "SELECT nodename::text, nodeport, citus_check_connection_to_node(nodename, nodeport)
               FROM pg_dist_node WHERE noderole = 'primary' AND isactive AND groupid <> 0
              ORDER BY nodeid",
            &[],
        )
        .await
        .map_err(|e| error_while("checking the Citus workers", &e))?;
    match rows.iter().find(|row| !row.get::<_, bool>(2)) {
        None => Ok(()),
        Some(row) => Err(Error::DatabaseUnavailable {
            context: format!(
                "checking Citus worker {}:{}",
                row.get::<_, String>(0),
                row.get::<_, i32>(1)
            ),
            source: DbError {
                code: None,
                message: "the coordinator cannot reach it; DDL on this coordinator fails for every tenant until it answers (two-phase commit touches every node), so nothing was started".into(),
                connection_lost: true,
            },
        }),
    }
}

/// Every tenant held by a worker the coordinator cannot reach, with why.
pub(crate) async fn cut_off(client: &Client) -> Result<HashMap<TenantName, String>, Error> {
    let rows = client
        .query_typed(
            "WITH down AS (
               SELECT groupid, nodename || ':' || nodeport AS node FROM pg_dist_node
                WHERE noderole = 'primary' AND isactive AND groupid <> 0
                  AND NOT citus_check_connection_to_node(nodename, nodeport))
             SELECT DISTINCT n.nspname::text, down.node
               FROM down JOIN pg_dist_placement pl ON pl.groupid = down.groupid
               JOIN pg_dist_shard sh ON sh.shardid = pl.shardid
               JOIN pg_dist_partition p ON p.logicalrelid = sh.logicalrelid
               JOIN pg_dist_schema s ON s.colocationid = p.colocationid
               JOIN pg_namespace n ON n.oid = s.schemaid",
            &[],
        )
        .await
        .map_err(|e| error_while("checking the Citus workers", &e))?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let tenant = TenantName::parse(row.get(0)).ok()?;
            let node: String = row.get(1);
            Some((tenant, format!("its Citus worker {node} does not answer")))
        })
        .collect())
}

/// The worker (`host:port`) each of `tenants` lives on.
pub(crate) async fn nodes_of(
    client: &Client,
    tenants: &[TenantName],
) -> Result<HashMap<TenantName, String>, Error> {
    per_tenant(
        client,
        "SELECT DISTINCT ON (n.nspname) n.nspname::text, node.nodename || ':' || node.nodeport
           FROM pg_dist_schema s JOIN pg_namespace n ON n.oid = s.schemaid
           JOIN pg_dist_partition p ON p.colocationid = s.colocationid
           JOIN pg_dist_shard sh ON sh.logicalrelid = p.logicalrelid
           JOIN pg_dist_placement pl ON pl.shardid = sh.shardid
           JOIN pg_dist_node node ON node.groupid = pl.groupid
          WHERE n.nspname = ANY($1::name[])
          ORDER BY n.nspname, node.noderole",
        tenants,
        "reading which Citus worker holds each tenant",
    )
    .await
}

/// Moves `tenant`'s distributed schema to the worker at `host:port` with
/// Citus's own online move, within `limits`' statement timeout (set on
/// `client`, a connection of its own).
pub(crate) async fn move_schema(
    client: &Client,
    tenant: &TenantName,
    host: &str,
    port: i32,
    limits: &crate::backend::Limits,
) -> Result<(), Error> {
    let timeout = limits.statement_timeout.map_or(0, |t| t.as_millis());
    client
        .batch_execute(&format!("SET statement_timeout = {timeout}"))
        .await
        .map_err(|e| error_while("bounding the move", &e))?;
    client
        .query_typed(
            "SELECT citus_schema_move(to_regnamespace($1), $2, $3)",
            &[
                (&tenant.quoted(), Type::TEXT),
                (&host, Type::TEXT),
                (&port, Type::INT4),
            ],
        )
        .await
        .map_err(|e| {
            error_while(
                &format!("moving tenant {tenant} to worker {host}:{port}"),
                &e,
            )
        })?;
    Ok(())
}

/// Differences between each tenant's shards and the tables they belong to,
/// read on the worker holding them (a shard altered on its worker, which
/// the coordinator's catalog does not show), each naming the worker.
pub(crate) async fn shard_drift(
    coordinator: &Connector,
    tenants: &[TenantName],
) -> Result<HashMap<TenantName, Vec<String>>, Error> {
    let nodes = {
        let mut client = coordinator.checkout().await?;
        let nodes = nodes_of(&client, tenants).await;
        client.keep(nodes.is_ok());
        nodes?
    };
    let mut by_node: BTreeMap<String, Vec<TenantName>> = BTreeMap::new();
    for (tenant, node) in nodes {
        by_node.entry(node).or_default().push(tenant);
    }
    // Every worker at once: each answers for its own shards only.
    let per_worker =
        futures::future::try_join_all(by_node.into_iter().map(|(node, tenants)| async move {
            let (host, port) = node
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                .ok_or_else(|| {
                    Error::Config(format!("Citus names worker {node:?}, not HOST:PORT"))
                })?;
            let worker = coordinator.for_node(host, port)?;
            let mut client = worker.checkout().await.map_err(|e| match e {
                Error::DatabaseUnavailable { context, source } => Error::DatabaseUnavailable {
                    context: format!("{context} (Citus worker {node})"),
                    source,
                },
                other => other,
            })?;
            let columns = worker_columns(&client, &tenants).await;
            client.keep(columns.is_ok());
            Ok::<_, Error>(compare_shards(&columns?, &node))
        }))
        .await?;
    let mut drift: HashMap<TenantName, Vec<String>> = HashMap::new();
    for (tenant, differences) in per_worker.into_iter().flatten() {
        drift.entry(tenant).or_default().extend(differences);
    }
    Ok(drift)
}

/// (schema, table, column line) of every ordinary table of `tenants` on a
/// worker, shards included (Citus hides them unless asked).
async fn worker_columns(
    client: &Client,
    tenants: &[TenantName],
) -> Result<Vec<(String, String, String)>, Error> {
    let names: Vec<&str> = tenants.iter().map(TenantName::as_str).collect();
    let err = |e| error_while("reading the shards on a Citus worker", &e);
    client
        .batch_execute("BEGIN READ ONLY; SET LOCAL citus.override_table_visibility TO off;")
        .await
        .map_err(err)?;
    let rows = client
        .query_typed(
            "SELECT n.nspname::text, c.relname::text,
                    a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              WHERE n.nspname = ANY($1::name[]) AND c.relkind = 'r'",
            &[(&names, Type::TEXT_ARRAY)],
        )
        .await;
    let _ = client.batch_execute("COMMIT").await;
    Ok(rows
        .map_err(err)?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

/// Each shard (`<table>_<shard id>`) against its table's columns on the
/// same worker.
fn compare_shards(
    columns: &[(String, String, String)],
    node: &str,
) -> HashMap<TenantName, Vec<String>> {
    let mut tables: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for (schema, table, column) in columns {
        tables.entry((schema, table)).or_default().insert(column);
    }
    let mut drift: HashMap<TenantName, Vec<String>> = HashMap::new();
    for ((schema, shard), shard_columns) in &tables {
        let Some((table, id)) = shard.rsplit_once('_') else {
            continue;
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Some(table_columns) = tables.get(&(*schema, table)) else {
            continue;
        };
        let Ok(tenant) = TenantName::parse(schema) else {
            continue;
        };
        let differences = drift.entry(tenant).or_default();
        for column in shard_columns.difference(table_columns) {
            differences.push(format!(
                "extra column {table}.{column} in shard {shard} on Citus worker {node}"
            ));
        }
        for column in table_columns.difference(shard_columns) {
            differences.push(format!(
                "missing column {table}.{column} in shard {shard} on Citus worker {node}"
            ));
        }
    }
    drift.retain(|_, differences| !differences.is_empty());
    drift
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_shard_that_differs_from_its_table_is_named_with_its_worker() {
        let row =
            |table: &str, column: &str| ("acme".to_owned(), table.to_owned(), column.to_owned());
        let columns = [
            row("users", "id bigint not null"),
            row("users_102008", "id bigint not null"),
            row("users_102008", "sneaky integer"),
            row("notes_2024", "id bigint"),
            row("messages", "id bigint"),
            row("messages_102009", "id bigint"),
        ];
        let drift = super::compare_shards(&columns, "10.0.0.2:5432");
        let acme = crate::TenantName::parse("acme").unwrap();
        assert_eq!(
            drift[&acme],
            ["extra column users.sneaky integer in shard users_102008 on Citus worker 10.0.0.2:5432"]
        );
        assert_eq!(drift.len(), 1);
    }
}
