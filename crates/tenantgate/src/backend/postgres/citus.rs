//! What a Citus coordinator needs beyond a plain server: every worker must
//! answer before DDL (two-phase commit touches every node's metadata, so
//! one worker down fails DDL for every tenant), and each tenant's schema
//! lives on one worker.

use std::collections::HashMap;

use tokio_postgres::{types::Type, Client};

use super::sql::error_while;
use crate::{DbError, Error, TenantName};

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

/// The worker (`host:port`) each of `tenants` lives on.
pub(crate) async fn nodes_of(
    client: &Client,
    tenants: &[TenantName],
) -> Result<HashMap<TenantName, String>, Error> {
    let names: Vec<&str> = tenants.iter().map(TenantName::as_str).collect();
    let rows = client
        .query_typed(
            "SELECT DISTINCT ON (n.nspname) n.nspname::text, node.nodename || ':' || node.nodeport
               FROM pg_dist_schema s JOIN pg_namespace n ON n.oid = s.schemaid
               JOIN pg_dist_partition p ON p.colocationid = s.colocationid
               JOIN pg_dist_shard sh ON sh.logicalrelid = p.logicalrelid
               JOIN pg_dist_placement pl ON pl.shardid = sh.shardid
               JOIN pg_dist_node node ON node.groupid = pl.groupid
              WHERE n.nspname = ANY($1)
              ORDER BY n.nspname, node.noderole",
            &[(&names, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(|e| error_while("reading which Citus worker holds each tenant", &e))?;
    Ok(rows
        .iter()
        .filter_map(|row| Some((TenantName::parse(row.get(0)).ok()?, row.get(1))))
        .collect())
}

/// Moves `tenant`'s distributed schema to the worker at `host:port` with
/// Citus's own online move.
pub(crate) async fn move_schema(
    client: &Client,
    tenant: &TenantName,
    host: &str,
    port: i32,
) -> Result<(), Error> {
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
