//! The registry in schema `tenantgate`: install, upgrade, read, record.

use tokio_postgres::{types::Type, Client, GenericClient};

use super::sql::{error_while, xact_lock_sql, CHANNEL};
use crate::{
    backend::{Ledgers, StateChange},
    registry::read_back,
    Domain, Error, LedgerKind, Tenant, TenantFailure, TenantName, TenantState,
};

/// The registry's own migrations, applied in order; the index + 1 is the
/// registry schema version recorded in `tenantgate.registry_version`.
const REGISTRY_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenantgate.tenants (
    name              text PRIMARY KEY,
    placement         text NOT NULL DEFAULT 'default',
    state             text NOT NULL CHECK (state IN ('ready', 'pending', 'failed', 'drift')),
    applied_versions  bigint[] NOT NULL DEFAULT '{}',
    applied_checksums bytea[] NOT NULL DEFAULT '{}',
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE tenantgate.domains (
    domain text PRIMARY KEY,
    tenant text NOT NULL REFERENCES tenantgate.tenants (name) ON DELETE CASCADE
);
CREATE INDEX domains_tenant_idx ON tenantgate.domains (tenant);
CREATE TABLE tenantgate.events (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    tenant  text NOT NULL,
    kind    text NOT NULL,
    version bigint,
    detail  text
);
CREATE TABLE tenantgate._shared_migrations (
    version        bigint PRIMARY KEY,
    description    text NOT NULL,
    installed_on   timestamptz NOT NULL DEFAULT now(),
    success        boolean NOT NULL,
    checksum       bytea NOT NULL,
    execution_time bigint NOT NULL
);
"#,
    r#"
CREATE TABLE tenantgate.catalog_changes (
    id          bigserial PRIMARY KEY,
    schema_name text NOT NULL,
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX catalog_changes_schema_idx ON tenantgate.catalog_changes (schema_name);
CREATE TABLE tenantgate.catalog_verdicts (
    tenant   text PRIMARY KEY REFERENCES tenantgate.tenants (name) ON DELETE CASCADE,
    applied  bigint[] NOT NULL,
    snapshot pg_snapshot NOT NULL,
    tracker  bigint NOT NULL
);
"#,
    r#"
CREATE TABLE tenantgate.placements (
    name     text PRIMARY KEY CHECK (name <> 'default'),
    url      text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_placement_idx ON tenantgate.tenants (placement) WHERE placement <> 'default';
ALTER TABLE tenantgate.tenants ADD COLUMN moving_to text;
"#,
];

/// The name the registry lock is taken on; no tenant can be named so.
const REGISTRY_LOCK: &str = "tenantgate registry";

/// Creates or upgrades the registry, serialised across processes.
pub(crate) async fn prepare(client: &mut Client) -> Result<(), Error> {
    let err = |e: tokio_postgres::Error| error_while("installing the tenantgate registry", &e);
    // The common case, without the lock: installed at this version already.
    let installed = client
        .simple_query("SELECT max(version) FROM tenantgate.registry_version")
        .await
        .ok()
        .and_then(|messages| {
            messages.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    row.get(0).and_then(|v| v.parse::<usize>().ok())
                }
                _ => None,
            })
        });
    if installed == Some(REGISTRY_MIGRATIONS.len()) {
        return Ok(());
    }
    let tx = client.transaction().await.map_err(err)?;
    tx.batch_execute(&format!(
        "{} CREATE SCHEMA IF NOT EXISTS tenantgate; \
         CREATE TABLE IF NOT EXISTS tenantgate.registry_version \
           (version integer PRIMARY KEY, installed_on timestamptz NOT NULL DEFAULT now());",
        xact_lock_sql(REGISTRY_LOCK)
    ))
    .await
    .map_err(err)?;
    let current: i32 = tx
        .query_typed(
            "SELECT coalesce(max(version), 0) FROM tenantgate.registry_version",
            &[],
        )
        .await
        .map_err(err)?
        .first()
        .map_or(0, |row| row.get(0));
    for (index, ddl) in REGISTRY_MIGRATIONS
        .iter()
        .enumerate()
        .skip(current as usize)
    {
        tx.batch_execute(ddl).await.map_err(err)?;
        tx.query_typed(
            "INSERT INTO tenantgate.registry_version (version) VALUES ($1)",
            &[(&(index as i32 + 1), Type::INT4)],
        )
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)
}

/// Every tenant with its domains, or only those named in `only`.
pub(crate) async fn tenants(
    client: &Client,
    only: Option<&[TenantName]>,
) -> Result<Vec<Tenant>, Error> {
    // One row per tenant and domain, in tenant order: no aggregation and
    // no timestamp formatting on the server, which at 100,000 tenants took
    // two thirds of this read's server time.
    let rows = client
        .query_typed(
            "SELECT t.name, t.placement, t.state, t.applied_versions, t.applied_checksums, t.last_error,
                    t.created_at, t.updated_at, d.domain, t.moving_to
               FROM tenantgate.tenants t LEFT JOIN tenantgate.domains d ON d.tenant = t.name
              WHERE $1::text[] IS NULL OR t.name = ANY($1)
              ORDER BY t.name",
            &[(
                &only.map(|names| names.iter().map(TenantName::as_str).collect::<Vec<_>>()),
                Type::TEXT_ARRAY,
            )],
        )
        .await
        .map_err(|e| error_while("reading the registry", &e))?;
    let mut tenants: Vec<Tenant> = Vec::with_capacity(rows.len());
    for row in &rows {
        let domain = row
            .get::<_, Option<&str>>(8)
            .map(|d| read_back("the domain", d, Domain::parse))
            .transpose()?;
        match tenants.last_mut() {
            Some(last) if last.name.as_str() == row.get::<_, &str>(0) => {
                last.domains.extend(domain);
            }
            _ => tenants.push(tenant_from_row(row, domain)?),
        }
    }
    for tenant in &mut tenants {
        tenant.domains.sort();
    }
    Ok(tenants)
}

fn tenant_from_row(row: &tokio_postgres::Row, domain: Option<Domain>) -> Result<Tenant, Error> {
    let state: &str = row.get(2);
    let timestamp = |i| registry_timestamp(row.try_get(i).ok());
    Ok(Tenant {
        name: read_back("the tenant name", row.get(0), TenantName::parse)?,
        placement: row.get(1),
        moving_to: row.get(9),
        state: TenantState::parse(state).ok_or_else(|| Error::Database {
            context: "reading the registry".into(),
            source: crate::DbError {
                code: None,
                message: format!("unknown tenant state {state:?}"),
                connection_lost: false,
            },
        })?,
        applied_versions: row.get(3),
        applied_checksums: row.get(4),
        last_error: row.get(5),
        created_at: timestamp(6),
        updated_at: timestamp(7),
        domains: domain.into_iter().collect(),
    })
}

/// A registry timestamp as RFC 3339 text in UTC, seconds precision. A value
/// the format cannot spell (before 1970, after 9999, `infinity`: only a
/// hand-edited row holds one) reads as `out of range` rather than failing
/// the registry read.
fn registry_timestamp(time: Option<std::time::SystemTime>) -> String {
    const YEAR_10000: std::time::Duration = std::time::Duration::from_secs(253_402_300_800);
    match time {
        Some(t)
            if t.duration_since(std::time::UNIX_EPOCH)
                .is_ok_and(|since| since < YEAR_10000) =>
        {
            humantime::format_rfc3339_seconds(t).to_string()
        }
        _ => "out of range".to_owned(),
    }
}

/// Appends an event in its own statement (its own commit outside a transaction).
pub(crate) async fn record_event(
    client: &impl GenericClient,
    tenant: &str,
    kind: &str,
    version: Option<i64>,
    detail: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .query_typed(
            "INSERT INTO tenantgate.events (tenant, kind, version, detail) VALUES ($1, $2, $3, $4)",
            &[
                (&tenant, Type::TEXT),
                (&kind, Type::TEXT),
                (&version, Type::INT8),
                (&detail, Type::TEXT),
            ],
        )
        .await
        .map(drop)
}

/// Marks a tenant failed, keeps the error, records an event, announces it;
/// one transaction.
pub(crate) async fn record_failure(
    client: &mut Client,
    tenant: &TenantName,
    failure: &TenantFailure,
) -> Result<(), Error> {
    let err = |e: tokio_postgres::Error| {
        error_while(&format!("recording the failure of tenant {tenant}"), &e)
    };
    let text = failure.to_string();
    let tx = client.transaction().await.map_err(err)?;
    tx.query_typed(
        "UPDATE tenantgate.tenants SET state = 'failed', last_error = $2, updated_at = now() WHERE name = $1",
        &[(&tenant.as_str(), Type::TEXT), (&text, Type::TEXT)],
    )
    .await
    .map_err(err)?;
    let version = failure.migration.as_ref().map(|m| m.version);
    record_event(&tx, tenant.as_str(), "migration_failed", version, &text)
        .await
        .map_err(err)?;
    notify(&tx, tenant.as_str()).await.map_err(err)?;
    tx.commit().await.map_err(err)
}

/// Copies each tenant's ledger into its registry row and announces it; one
/// transaction, reading each ledger in the statement that writes its copy.
pub(crate) async fn sync_registry(
    client: &mut Client,
    tenants: &[TenantName],
    kind: LedgerKind,
) -> Result<(), Error> {
    let err = |e: tokio_postgres::Error| {
        error_while("bringing the registry in step with the ledgers", &e)
    };
    let tx = client.transaction().await.map_err(err)?;
    for tenant in tenants {
        let ledger = super::sql::tenant_ledger(tenant, kind);
        let exists = tx
            .query_typed(
                "SELECT to_regclass($1) IS NOT NULL",
                &[(&ledger, Type::TEXT)],
            )
            .await
            .map_err(err)?[0]
            .get::<_, bool>(0);
        if !exists {
            tx.query_typed(
                "UPDATE tenantgate.tenants SET applied_versions = '{}', applied_checksums = '{}', state = 'failed',
                        last_error = 'the tenant schema or its ledger is missing', updated_at = now()
                  WHERE name = $1",
                &[(&tenant.as_str(), Type::TEXT)],
            )
            .await
            .map_err(err)?;
            notify(&tx, tenant.as_str()).await.map_err(err)?;
            continue;
        }
        tx.query_typed(
            &format!(
                "UPDATE tenantgate.tenants SET
                    applied_versions = ARRAY(SELECT version FROM {ledger} WHERE success ORDER BY version),
                    applied_checksums = ARRAY(SELECT checksum FROM {ledger} WHERE success ORDER BY version),
                    updated_at = now()
                  WHERE name = $1"
            ),
            &[(&tenant.as_str(), Type::TEXT)],
        )
        .await
        .map_err(err)?;
        notify(&tx, tenant.as_str()).await.map_err(err)?;
    }
    tx.commit().await.map_err(err)
}

/// Copies ledgers read before (Django's, whose rows need reading as keys)
/// into the registry rows and announces them; one transaction. A tenant
/// whose schema or ledger is gone is marked failed.
pub(crate) async fn write_ledgers(client: &mut Client, ledgers: &Ledgers) -> Result<(), Error> {
    let err = |e: tokio_postgres::Error| {
        error_while("bringing the registry in step with the ledgers", &e)
    };
    let tx = client.transaction().await.map_err(err)?;
    for (tenant, ledger) in ledgers {
        let name = tenant.as_str();
        match ledger {
            None => tx.query_typed(
                "UPDATE tenantgate.tenants SET applied_versions = '{}', applied_checksums = '{}', state = 'failed',
                        last_error = 'the tenant schema or its ledger is missing', updated_at = now()
                  WHERE name = $1",
                &[(&name, Type::TEXT)],
            ).await,
            Some(applied) => {
                let versions: Vec<i64> = applied.iter().map(|a| a.version).collect();
                let checksums: Vec<&[u8]> = applied.iter().map(|a| a.checksum.as_slice()).collect();
                tx.query_typed(
                    "UPDATE tenantgate.tenants SET applied_versions = $2, applied_checksums = $3, updated_at = now()
                      WHERE name = $1",
                    &[
                        (&name, Type::TEXT),
                        (&versions, Type::INT8_ARRAY),
                        (&checksums, Type::BYTEA_ARRAY),
                    ],
                ).await
            }
        }
        .map_err(err)?;
        notify(&tx, tenant.as_str()).await.map_err(err)?;
    }
    tx.commit().await.map_err(err)
}

/// Writes state changes and announces each; one transaction.
pub(crate) async fn record_states(
    client: &mut Client,
    changes: &[StateChange],
) -> Result<(), Error> {
    let err = |e: tokio_postgres::Error| error_while("recording tenant states", &e);
    let names: Vec<&str> = changes.iter().map(|c| c.tenant.as_str()).collect();
    let states: Vec<&str> = changes.iter().map(|c| c.state.as_str()).collect();
    let details: Vec<Option<&str>> = changes.iter().map(|c| c.detail.as_deref()).collect();
    let tx = client.transaction().await.map_err(err)?;
    tx.query_typed(
        "WITH c AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS c(name, state, detail)),
              u AS (UPDATE tenantgate.tenants t SET state = c.state, last_error = c.detail, updated_at = now()
                      FROM c WHERE t.name = c.name AND (t.state, t.last_error) IS DISTINCT FROM (c.state, c.detail)
                    RETURNING t.name)
         SELECT pg_notify('tenantgate', name) FROM u",
        &[
            (&names, Type::TEXT_ARRAY),
            (&states, Type::TEXT_ARRAY),
            (&details, Type::TEXT_ARRAY),
        ],
    )
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)
}

/// Queues a `NOTIFY tenantgate, '<tenant>'`, delivered when the transaction commits.
pub(crate) async fn notify(
    client: &impl GenericClient,
    tenant: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .query_typed(
            "SELECT pg_notify($1, $2)",
            &[(&CHANNEL, Type::TEXT), (&tenant, Type::TEXT)],
        )
        .await
        .map(drop)
}
