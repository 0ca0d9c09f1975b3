//! Placements in the registry: the table `tenantgate.placements`, where
//! each tenant lives, and the connections to each placement's server.

use std::{collections::HashMap, time::Duration};

use tokio_postgres::{error::SqlState, types::Type, Client, GenericClient};

use super::{
    connect::Connector,
    sql::{error_while, per_tenant, xact_lock_sql},
};
use crate::{
    placement::{Placement, DEFAULT_PLACEMENT},
    Error, TenantName,
};

/// The lock `placements add/remove` and provisioning's choice of placement
/// take, so a placement is never removed while a tenant is being put there.
pub(crate) const PLACEMENTS_LOCK: &str = "tenantgate placements";

/// The placements other than `default`, each with a way to reach it.
#[derive(Clone, Default)]
pub(crate) struct Placements {
    connectors: HashMap<String, Connector>,
}

impl Placements {
    /// Reads the placements the registry names.
    pub(crate) async fn load(client: &impl GenericClient) -> Result<Self, Error> {
        let rows = client
            .query_typed(
                "SELECT name, url FROM tenantgate.placements ORDER BY name",
                &[],
            )
            .await
            .map_err(|e| error_while("reading the placements", &e))?;
        let mut connectors = HashMap::new();
        for row in rows {
            let (name, url): (String, String) = (row.get(0), row.get(1));
            let connector = Connector::new(&url).map_err(|e| in_placement(&name, e))?;
            connectors.insert(name, connector);
        }
        Ok(Self { connectors })
    }

    /// True when every tenant lives on the registry's own server.
    pub(crate) fn is_empty(&self) -> bool {
        self.connectors.is_empty()
    }

    /// How to reach placement `name` (not `default`).
    pub(crate) fn get(&self, name: &str) -> Option<&Connector> {
        self.connectors.get(name)
    }

    /// Each placement other than `default`, by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Connector)> {
        self.connectors.iter()
    }

    /// The error for a placement the registry does not name.
    pub(crate) fn unknown(&self, name: &str) -> Error {
        let mut known: Vec<String> = std::iter::once(DEFAULT_PLACEMENT.to_owned())
            .chain(self.connectors.keys().cloned())
            .collect();
        known.sort();
        Error::UnknownPlacement {
            placement: name.to_owned(),
            known,
        }
    }
}

/// `error` with the placement named in its context, so a message about a
/// server says which placement it is.
pub(crate) fn in_placement(placement: &str, error: Error) -> Error {
    match error {
        Error::DatabaseUnavailable { context, source } => Error::DatabaseUnavailable {
            context: format!("{context} (placement {placement})"),
            source,
        },
        Error::Database { context, source } => Error::Database {
            context: format!("{context} (placement {placement})"),
            source,
        },
        other => other,
    }
}

/// Every placement with its URL (redacted) and tenant count, `default` first.
pub(crate) async fn list(client: &Client, registry_url: &str) -> Result<Vec<Placement>, Error> {
    let rows = client
        .query_typed(
            "SELECT p.name, p.url, (SELECT count(*) FROM tenantgate.tenants t WHERE t.placement = p.name)
               FROM (SELECT 'default' AS name, NULL::text AS url, 0 AS ord
                     UNION ALL SELECT name, url, 1 FROM tenantgate.placements) p
              ORDER BY p.ord, p.name",
            &[],
        )
        .await
        .map_err(|e| error_while("listing the placements", &e))?;
    Ok(rows
        .iter()
        .map(|row| Placement {
            name: row.get(0),
            url: row
                .get::<_, Option<String>>(1)
                .unwrap_or_else(|| registry_url.to_owned()),
            tenants: row.get::<_, i64>(2) as usize,
        })
        .collect())
}

/// Records placement `name` at `url`; the caller has checked both.
pub(crate) async fn add(client: &mut Client, name: &str, url: &str) -> Result<(), Error> {
    let err = |e: tokio_postgres::Error| error_while(&format!("adding placement {name}"), &e);
    let tx = client.transaction().await.map_err(err)?;
    tx.batch_execute(&xact_lock_sql(PLACEMENTS_LOCK))
        .await
        .map_err(err)?;
    if let Err(e) = tx
        .query_typed(
            "INSERT INTO tenantgate.placements (name, url) VALUES ($1, $2)",
            &[(&name, Type::TEXT), (&url, Type::TEXT)],
        )
        .await
    {
        return Err(if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Error::Config(format!(
                "placement {name} exists already; remove it first to point it elsewhere"
            ))
        } else {
            err(e)
        });
    }
    tx.commit().await.map_err(err)
}

/// Removes placement `name` unless tenants live there.
pub(crate) async fn remove(client: &mut Client, name: &str) -> Result<(), Error> {
    let err = |e: tokio_postgres::Error| error_while(&format!("removing placement {name}"), &e);
    let tx = client.transaction().await.map_err(err)?;
    tx.batch_execute(&xact_lock_sql(PLACEMENTS_LOCK))
        .await
        .map_err(err)?;
    let tenants: i64 = tx
        .query_typed(
            "SELECT count(*) FROM tenantgate.tenants WHERE placement = $1",
            &[(&name, Type::TEXT)],
        )
        .await
        .map_err(err)?[0]
        .get(0);
    if tenants > 0 {
        return Err(Error::PlacementInUse {
            placement: name.to_owned(),
            tenants: tenants as usize,
        });
    }
    let removed = tx
        .query_typed(
            "DELETE FROM tenantgate.placements WHERE name = $1 RETURNING name",
            &[(&name, Type::TEXT)],
        )
        .await
        .map_err(err)?;
    if removed.is_empty() {
        let placements = Placements::load(&tx).await?;
        return Err(placements.unknown(name));
    }
    tx.commit().await.map_err(err)
}

/// The placement of each of `tenants` that does not live on `default`.
pub(crate) async fn locate(
    client: &Client,
    tenants: &[TenantName],
) -> Result<HashMap<TenantName, String>, Error> {
    per_tenant(
        client,
        "SELECT name, placement FROM tenantgate.tenants WHERE name = ANY($1) AND placement <> 'default'",
        tenants,
        "reading where tenants live",
    )
    .await
}

/// The placement holding the fewest tenants (`default` on a tie).
pub(crate) async fn least_used(client: &Client) -> Result<String, Error> {
    let rows = client
        .query_typed(
            "SELECT p.name FROM (SELECT 'default' AS name UNION ALL SELECT name FROM tenantgate.placements) p
               LEFT JOIN tenantgate.tenants t ON t.placement = p.name
              GROUP BY p.name ORDER BY count(t.name), p.name <> 'default', p.name LIMIT 1",
            &[],
        )
        .await
        .map_err(|e| error_while("choosing a placement", &e))?;
    Ok(rows
        .first()
        .map_or_else(|| DEFAULT_PLACEMENT.to_owned(), |row| row.get(0)))
}

/// Whether the placement at `connector` answers within `timeout`.
pub(crate) async fn heartbeat(connector: &Connector, timeout: Duration) -> Result<(), Error> {
    let check = async {
        let mut client = connector.checkout().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| error_while("checking the placement", &e))?;
        client.keep(true);
        Ok(())
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(result) => result,
        Err(_) => Err(Error::DatabaseUnavailable {
            context: format!("checking {}", connector.describe()),
            source: crate::DbError {
                code: None,
                message: format!("no answer within {timeout:?}"),
                connection_lost: true,
            },
        }),
    }
}
