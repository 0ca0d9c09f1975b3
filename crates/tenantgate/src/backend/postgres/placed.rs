//! Tenants on a placement other than `default`: their schema, ledger and
//! the placement's own record of them commit together on the placement's
//! server; the registry row follows, after that commit.
//!
//! The order makes the registry never ahead of a ledger: a crash between
//! the two commits leaves a tenant the placement holds and the registry
//! does not know, which is never served; `verify` reports it and the next
//! `tenants create` of that name on that placement registers it.

use tokio_postgres::{error::SqlState, types::Type, Client};

use super::{
    connect::Connector,
    provision,
    registry::{notify, record_event},
    sql::error_while,
};
use crate::{
    backend::Limits, Domain, Error, FailureKind, MigrationSet, Recovery, TenantFailure, TenantName,
};

/// What a placement's own record says of a tenant it holds.
struct Record {
    state: String,
    versions: Vec<i64>,
    checksums: Vec<Vec<u8>>,
}

/// Provisions `tenant` on `placement` (reached through `remote`), then
/// registers it; see [`crate::Backend::create_tenant_on`].
pub(crate) async fn create_tenant(
    central: &Connector,
    placement: &str,
    remote: &Connector,
    tenant: &TenantName,
    domains: &[Domain],
    set: &MigrationSet,
    limits: &Limits,
) -> Result<Vec<i64>, Error> {
    let mut registry = central.checkout().await?;
    refuse_taken(&registry, tenant, domains).await?;
    registry.keep(true);
    let mut client = remote.checkout().await?;
    let built = match record(&client, tenant).await? {
        // An earlier create committed here and stopped before the registry
        // row: finish it.
        Some(_) => Ok(()),
        None => {
            let kind = remote.kind().await?;
            provision::create_tenant(&client, tenant, domains, set, limits, kind)
                .await
                .map(drop)
        }
    };
    client.keep(built.is_ok());
    built?;
    let record = record(&client, tenant)
        .await?
        .ok_or_else(|| vanished(tenant, placement))?;
    let mut registry = central.checkout().await?;
    let registered = register(&mut registry, placement, tenant, domains, &record).await;
    registry.keep(registered.is_ok());
    if let Err(e @ (Error::TenantExists { .. } | Error::DomainTaken { .. })) = registered {
        // Another process took the name or a domain meanwhile: what was
        // built here is dropped, so nothing of this attempt remains.
        provision::drop_tenant(&client, tenant, limits).await?;
        return Err(e);
    }
    registered?;
    Ok(record.versions)
}

/// Refuses a name or domain the registry already routes.
async fn refuse_taken(
    client: &Client,
    tenant: &TenantName,
    domains: &[Domain],
) -> Result<(), Error> {
    let err = |e| error_while("checking the registry before provisioning", &e);
    let names: Vec<&str> = domains.iter().map(Domain::as_str).collect();
    let rows = client
        .query_typed(
            "SELECT 'tenant', name FROM tenantgate.tenants WHERE name = $1
             UNION ALL
             SELECT domain, tenant FROM tenantgate.domains WHERE domain = ANY($2)",
            &[(&tenant.as_str(), Type::TEXT), (&names, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(err)?;
    match rows.first() {
        None => Ok(()),
        Some(row) if row.get::<_, String>(0) == "tenant" => Err(Error::TenantExists {
            tenant: tenant.to_string(),
            detail: "it is registered".into(),
        }),
        Some(row) => Err(Error::DomainTaken {
            domain: row.get(0),
            owner: row.get(1),
        }),
    }
}

/// The placement's own record of `tenant`, if it holds one.
async fn record(client: &Client, tenant: &TenantName) -> Result<Option<Record>, Error> {
    let rows = client
        .query_typed(
            "SELECT state, applied_versions, applied_checksums FROM tenantgate.tenants WHERE name = $1",
            &[(&tenant.as_str(), Type::TEXT)],
        )
        .await
        .map_err(|e| error_while(&format!("reading the placement's record of {tenant}"), &e))?;
    Ok(rows.first().map(|row| Record {
        state: row.get(0),
        versions: row.get(1),
        checksums: row.get(2),
    }))
}

fn vanished(tenant: &TenantName, placement: &str) -> Error {
    Error::UnknownTenant {
        tenant: format!(
            "{tenant} (dropped from placement {placement} while it was being registered)"
        ),
    }
}

/// Writes the registry row of a tenant the placement holds, with its
/// domains; one transaction, announced at its commit.
async fn register(
    client: &mut Client,
    placement: &str,
    tenant: &TenantName,
    domains: &[Domain],
    record: &Record,
) -> Result<(), Error> {
    let err = |e| error_while(&format!("registering tenant {tenant}"), &e);
    let names: Vec<&str> = domains.iter().map(Domain::as_str).collect();
    let tx = client.transaction().await.map_err(err)?;
    let inserted = tx
        .query_typed(
            "INSERT INTO tenantgate.tenants (name, placement, state, applied_versions, applied_checksums)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                (&tenant.as_str(), Type::TEXT),
                (&placement, Type::TEXT),
                (&record.state, Type::TEXT),
                (&record.versions, Type::INT8_ARRAY),
                (&record.checksums, Type::BYTEA_ARRAY),
            ],
        )
        .await;
    if let Err(e) = inserted {
        return Err(if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Error::TenantExists {
                tenant: tenant.to_string(),
                detail: "it was registered by another process meanwhile".into(),
            }
        } else {
            err(e)
        });
    }
    let claimed = tx
        .query_typed(
            "INSERT INTO tenantgate.domains (domain, tenant) SELECT unnest($1::text[]), $2",
            &[(&names, Type::TEXT_ARRAY), (&tenant.as_str(), Type::TEXT)],
        )
        .await;
    if let Err(e) = claimed {
        return Err(if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Error::DomainTaken {
                domain: names.join(", "),
                owner: "another tenant, registered meanwhile".into(),
            }
        } else {
            err(e)
        });
    }
    record_event(&tx, tenant.as_str(), "provisioned", None, placement)
        .await
        .map_err(err)?;
    notify(&tx, tenant.as_str()).await.map_err(err)?;
    tx.commit().await.map_err(err)
}

/// Drops a tenant living on a placement: the registry marks it failed
/// first (so it is not served), then the placement drops its schema, then
/// the registry row goes. A crash part-way leaves a blocked tenant that the
/// next drop finishes.
pub(crate) async fn drop_tenant(
    central: &Connector,
    remote: &Connector,
    tenant: &TenantName,
) -> Result<(), Error> {
    let err = |e| error_while(&format!("dropping tenant {tenant}"), &e);
    let mut registry = central.checkout().await?;
    let marked = registry
        .query_typed(
            "WITH u AS (UPDATE tenantgate.tenants SET state = 'failed', last_error = 'being dropped', updated_at = now()
                         WHERE name = $1 RETURNING name)
             SELECT pg_notify('tenantgate', name) FROM u",
            &[(&tenant.as_str(), Type::TEXT)],
        )
        .await
        .map_err(err)?;
    if marked.is_empty() {
        return Err(Error::UnknownTenant {
            tenant: tenant.to_string(),
        });
    }
    let mut client = remote.checkout().await?;
    match provision::drop_tenant(&client, tenant, &Limits::default()).await {
        Ok(()) | Err(Error::UnknownTenant { .. }) => client.keep(true),
        Err(e) => return Err(e),
    }
    let tx = registry.transaction().await.map_err(err)?;
    tx.query_typed(
        "DELETE FROM tenantgate.tenants WHERE name = $1",
        &[(&tenant.as_str(), Type::TEXT)],
    )
    .await
    .map_err(err)?;
    record_event(&tx, tenant.as_str(), "dropped", None, "")
        .await
        .map_err(err)?;
    notify(&tx, tenant.as_str()).await.map_err(err)?;
    tx.commit().await.map_err(err)?;
    registry.keep(true);
    Ok(())
}

/// Copies the placement's record of `tenant` (after a commit there) into
/// its registry row, keeping a `drift` state (only a deep verification
/// clears it), and announces it.
pub(crate) async fn copy_to_registry(
    placement_client: &Client,
    registry: &Client,
    placement: &str,
    tenant: &TenantName,
) -> Result<(), TenantFailure> {
    let copy = async {
        let record = record(placement_client, tenant)
            .await?
            .ok_or_else(|| vanished(tenant, placement))?;
        registry
            .query_typed(
                "WITH u AS (UPDATE tenantgate.tenants SET
                        state = CASE WHEN state = 'drift' THEN 'drift' ELSE $2 END,
                        last_error = CASE WHEN state = 'drift' THEN last_error END,
                        applied_versions = $3, applied_checksums = $4, updated_at = now()
                      WHERE name = $1 RETURNING name)
                 SELECT pg_notify('tenantgate', name) FROM u",
                &[
                    (&tenant.as_str(), Type::TEXT),
                    (&record.state, Type::TEXT),
                    (&record.versions, Type::INT8_ARRAY),
                    (&record.checksums, Type::BYTEA_ARRAY),
                ],
            )
            .await
            .map_err(|e| error_while(&format!("recording tenant {tenant} in the registry"), &e))
            .map(drop)
    };
    copy.await.map_err(|e: Error| TenantFailure {
        kind: FailureKind::ConnectionLost,
        migration: None,
        message: format!(
            "its migrations committed on placement {placement}, but the registry could not record them ({e}); the registry catches up on the next run or verify"
        ),
        recovery: Recovery::RetryWhenReachable {
            tenant: tenant.clone(),
        },
    })
}

/// Tenants placement `client` holds that the registry (`registry`) does
/// not know: builds that stopped between the two commits.
pub(crate) async fn unregistered(
    placement_client: &Client,
    registry: &Client,
) -> Result<Vec<TenantName>, Error> {
    let held = placement_client
        .query_typed("SELECT name FROM tenantgate.tenants ORDER BY name", &[])
        .await
        .map_err(|e| error_while("reading a placement's tenants", &e))?;
    let names: Vec<String> = held.iter().map(|row| row.get(0)).collect();
    let known = registry
        .query_typed(
            "SELECT name FROM tenantgate.tenants WHERE name = ANY($1)",
            &[(&names, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(|e| error_while("reading the registry", &e))?;
    let known: std::collections::HashSet<String> = known.iter().map(|row| row.get(0)).collect();
    names
        .iter()
        .filter(|name| !known.contains(*name))
        .map(|name| crate::registry::read_back("the tenant name", name, TenantName::parse))
        .collect()
}
