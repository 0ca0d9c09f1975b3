//! Creating and dropping a tenant, each in one transaction.

use tokio_postgres::{error::SqlState, types::Type, Client};

use super::{
    apply::{blame, rollback, segment_sql, ApplyFailure, Target},
    connect::ServerKind,
    registry::record_event,
    sql::error_while,
};
use crate::{
    backend::{
        failure::{provision_error, provision_failure},
        Limits,
    },
    Domain, Error, LedgerKind, Migration, MigrationSet, TenantName,
};

/// Provisions `tenant` atomically; see [`crate::Backend::create_tenant`].
pub(crate) async fn create_tenant(
    client: &Client,
    tenant: &TenantName,
    domains: &[Domain],
    set: &MigrationSet,
    limits: &Limits,
    kind: ServerKind,
) -> Result<Vec<i64>, Error> {
    let target = Target::tenant(tenant, LedgerKind::Tenantgate).on(kind);
    let segment: Vec<&Migration> = set.iter().take_while(|m| !m.no_transaction).collect();
    let complete = segment.len() == set.len();
    match build(client, tenant, &target, domains, &segment, complete, limits).await {
        Ok(()) => Ok(segment.iter().map(|m| m.version).collect()),
        Err(Build::Conflict(error)) => Err(error),
        Err(Build::Failed(failure)) => {
            let failure = provision_failure(tenant, failure);
            let version = failure.migration.as_ref().map(|m| m.version);
            // A separate commit, so operators can count failed attempts.
            if let Err(e) = record_event(
                client,
                tenant.as_str(),
                "provision_failed",
                version,
                &failure.to_string(),
            )
            .await
            {
                tracing::warn!(tenant = %tenant, error = %e, "could not record the failed provisioning event");
            }
            Err(provision_error(tenant, failure))
        }
    }
}

enum Build {
    Conflict(Error),
    Failed(ApplyFailure),
}

async fn build(
    client: &Client,
    tenant: &TenantName,
    target: &Target,
    domains: &[Domain],
    segment: &[&Migration],
    complete: bool,
    limits: &Limits,
) -> Result<(), Build> {
    let failed = |e: &tokio_postgres::Error| Build::Failed(ApplyFailure::db(e, None));
    target.begin(client, limits).await.map_err(|e| failed(&e))?;
    let steps = async {
        if let Err(e) = client
            .query_typed(
                "INSERT INTO tenantgate.tenants (name, state) VALUES ($1, 'pending')",
                &[(&tenant.as_str(), Type::TEXT)],
            )
            .await
        {
            return Err(if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                Build::Conflict(Error::TenantExists {
                    tenant: tenant.to_string(),
                    detail: "it is registered".into(),
                })
            } else {
                failed(&e)
            });
        }
        let names: Vec<&str> = domains.iter().map(Domain::as_str).collect();
        if let Err(e) = client
            .query_typed(
                "INSERT INTO tenantgate.domains (domain, tenant) SELECT unnest($1::text[]), $2",
                &[(&names, Type::TEXT_ARRAY), (&tenant.as_str(), Type::TEXT)],
            )
            .await
        {
            return Err(if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                Build::Conflict(domain_conflict(client, tenant, &names).await)
            } else {
                failed(&e)
            });
        }
        // On Citus the schema becomes a distributed schema, in this transaction.
        let distribute = if target.one_by_one {
            "SET LOCAL citus.enable_schema_based_sharding TO on;"
        } else {
            ""
        };
        if let Err(e) = target
            .execute(
                client,
                &format!("{distribute} CREATE SCHEMA {}; {}", target.schema, target.create_ledger_sql()),
            )
            .await
        {
            return Err(if e.code() == Some(&SqlState::DUPLICATE_SCHEMA) {
                Build::Conflict(Error::TenantExists {
                    tenant: tenant.to_string(),
                    detail: format!("schema {} exists without a registry row; drop or rename it first", target.schema),
                })
            } else {
                failed(&e)
            });
        }
        let mut batch = segment_sql(target, segment, complete, &[]);
        batch.push_str("INSERT INTO tenantgate.events (tenant, kind) VALUES (current_schema(), 'provisioned');");
        if let Err(e) = target.execute(client, &batch).await {
            rollback(client).await;
            return Err(Build::Failed(provision_blame(client, target, segment, limits, &e).await));
        }
        if target.one_by_one {
            confirm_distributed(client, tenant).await?;
        }
        target.commit_and_announce(client).await.map_err(|e| failed(&e))
    }
    .await;
    if steps.is_err() {
        rollback(client).await;
    }
    steps
}

/// Refuses to commit a tenant Citus did not make a distributed schema of
/// (the setting ignored, or an older Citus): it would live on the
/// coordinator alone.
async fn confirm_distributed(client: &Client, tenant: &TenantName) -> Result<(), Build> {
    let distributed = client
        .query_typed(
            "SELECT EXISTS (SELECT 1 FROM pg_dist_schema WHERE schemaid = to_regnamespace($1))",
            &[(&tenant.quoted(), Type::TEXT)],
        )
        .await
        .map_err(|e| Build::Failed(ApplyFailure::db(&e, None)))?
        .first()
        .is_some_and(|row| row.get::<_, bool>(0));
    if distributed {
        Ok(())
    } else {
        Err(Build::Conflict(Error::Config(format!(
            "Citus did not make schema {} a distributed schema (citus.enable_schema_based_sharding needs Citus 12 or later); nothing was created",
            tenant.quoted()
        ))))
    }
}

/// Replays a failed build to name the migration that failed: the replay
/// must recreate the schema first, inside its own rolled-back transaction.
async fn provision_blame(
    client: &Client,
    target: &Target,
    segment: &[&Migration],
    limits: &Limits,
    error: &tokio_postgres::Error,
) -> ApplyFailure {
    let setup = format!("CREATE SCHEMA {};", target.schema);
    blame(client, target, segment, limits, error, &setup).await
}

/// After a rollback: which of `names` is taken, and by whom.
async fn domain_conflict(client: &Client, tenant: &TenantName, names: &[&str]) -> Error {
    rollback(client).await;
    let owner = client
        .query_typed(
            "SELECT domain, tenant FROM tenantgate.domains WHERE domain = ANY($1) ORDER BY domain LIMIT 1",
            &[(&names, Type::TEXT_ARRAY)],
        )
        .await;
    match owner.ok().and_then(|rows| rows.into_iter().next()) {
        Some(row) => Error::DomainTaken {
            domain: row.get(0),
            owner: row.get(1),
        },
        None => Error::DomainTaken {
            domain: names.join(", "),
            owner: format!("another tenant (or {tenant} listed it twice)"),
        },
    }
}

/// Drops `tenant` in one transaction; see [`crate::Backend::drop_tenant`].
pub(crate) async fn drop_tenant(
    client: &Client,
    tenant: &TenantName,
    limits: &Limits,
) -> Result<(), Error> {
    let context = format!("dropping tenant {tenant} (rolled back, nothing changed)");
    let err = |e: &tokio_postgres::Error| error_while(&context, e);
    let target = Target::tenant(tenant, LedgerKind::Tenantgate);
    target.begin(client, limits).await.map_err(|e| err(&e))?;
    let result = async {
        let deleted = client
            .query_typed(
                "DELETE FROM tenantgate.tenants WHERE name = $1 RETURNING name",
                &[(&tenant.as_str(), Type::TEXT)],
            )
            .await
            .map_err(|e| err(&e))?;
        if deleted.is_empty() {
            return Err(Error::UnknownTenant {
                tenant: tenant.to_string(),
            });
        }
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", target.schema))
            .await
            .map_err(|e| err(&e))?;
        record_event(client, tenant.as_str(), "dropped", None, "")
            .await
            .map_err(|e| err(&e))?;
        super::registry::notify(client, tenant.as_str())
            .await
            .map_err(|e| err(&e))?;
        client.batch_execute("COMMIT").await.map_err(|e| err(&e))
    }
    .await;
    if result.is_err() {
        rollback(client).await;
    }
    result
}
