//! The registry database: install, upgrade, read, record.
//!
//! It lives in `registry.db`, apart from the tenant files, so a tenant's
//! migrations and its registry row commit separately: the ledger in the
//! tenant's file is the truth and the registry row follows it right after
//! the tenant's commit. Until then the row says less than the ledger holds,
//! so the guard errs on the side of blocking, never of serving.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::blocking::{db_error, error_while};
use crate::{
    backend::StateChange, registry::read_back, AppliedMigration, Domain, Error, Tenant,
    TenantFailure, TenantName, TenantState,
};

/// The current time as stored: RFC 3339, UTC, seconds.
pub(crate) const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

/// The registry's own migrations; the index + 1 is the version recorded
/// in `registry_version`.
const REGISTRY_MIGRATIONS: &[&str] = &[r#"
CREATE TABLE tenants (
    name              TEXT PRIMARY KEY,
    placement         TEXT NOT NULL DEFAULT 'default',
    state             TEXT NOT NULL CHECK (state IN ('ready', 'pending', 'failed', 'drift')),
    applied_versions  TEXT NOT NULL DEFAULT '',
    applied_checksums TEXT NOT NULL DEFAULT '',
    last_error        TEXT,
    created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    updated_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
) WITHOUT ROWID;
CREATE TABLE domains (
    domain TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX domains_tenant_idx ON domains (tenant);
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    tenant  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    version INTEGER,
    detail  TEXT
);
"#];

fn err(context: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| error_while(context, db_error(&e))
}

/// Creates or upgrades the registry; concurrent processes serialise on
/// SQLite's write lock.
pub(crate) fn prepare(conn: &mut Connection) -> Result<(), Error> {
    let context = "installing the tenantgate registry";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err(context))?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS registry_version \
           (version INTEGER PRIMARY KEY, installed_on TEXT NOT NULL DEFAULT ({NOW}));"
    ))
    .map_err(err(context))?;
    let current: i64 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM registry_version",
            [],
            |r| r.get(0),
        )
        .map_err(err(context))?;
    for (index, ddl) in REGISTRY_MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        tx.execute_batch(ddl).map_err(err(context))?;
        tx.execute(
            "INSERT INTO registry_version (version) VALUES (?1)",
            [index as i64 + 1],
        )
        .map_err(err(context))?;
    }
    tx.commit().map_err(err(context))
}

/// Every tenant with its domains, or only those named in `only`.
pub(crate) fn tenants(
    conn: &Connection,
    only: Option<&[TenantName]>,
) -> Result<Vec<Tenant>, Error> {
    let context = "reading the registry";
    let wanted: Option<HashSet<&str>> =
        only.map(|names| names.iter().map(TenantName::as_str).collect());
    let mut statement = conn
        .prepare_cached(
            "SELECT t.name, t.placement, t.state, t.applied_versions, t.applied_checksums, t.last_error,
                    t.created_at, t.updated_at, group_concat(d.domain, ' ')
               FROM tenants t LEFT JOIN domains d ON d.tenant = t.name
              GROUP BY t.name ORDER BY t.name",
        )
        .map_err(err(context))?;
    let mut rows = statement.query([]).map_err(err(context))?;
    let mut tenants = Vec::new();
    while let Some(row) = rows.next().map_err(err(context))? {
        let name: String = row.get(0).map_err(err(context))?;
        if wanted.as_ref().is_some_and(|w| !w.contains(name.as_str())) {
            continue;
        }
        let state: String = row.get(2).map_err(err(context))?;
        let versions: String = row.get(3).map_err(err(context))?;
        let checksums: String = row.get(4).map_err(err(context))?;
        let domains: Option<String> = row.get(8).map_err(err(context))?;
        let mut domains: Vec<Domain> = domains
            .unwrap_or_default()
            .split(' ')
            .filter(|d| !d.is_empty())
            .map(|d| read_back("the domain", d, Domain::parse))
            .collect::<Result<_, _>>()?;
        domains.sort();
        tenants.push(Tenant {
            name: read_back("the tenant name", &name, TenantName::parse)?,
            placement: row.get(1).map_err(err(context))?,
            moving_to: None,
            state: TenantState::parse(&state).ok_or_else(|| {
                error_while(
                    context,
                    crate::DbError {
                        code: None,
                        message: format!("unknown tenant state {state:?}"),
                        connection_lost: false,
                    },
                )
            })?,
            applied_versions: versions
                .split(',')
                .filter(|v| !v.is_empty())
                .map(|v| read_back("an applied version", v, str::parse::<i64>))
                .collect::<Result<_, _>>()?,
            applied_checksums: checksums
                .split(',')
                .filter_map(|c| hex::decode(c).ok())
                .filter(|c| !c.is_empty())
                .collect(),
            last_error: row.get(5).map_err(err(context))?,
            created_at: row.get(6).map_err(err(context))?,
            updated_at: row.get(7).map_err(err(context))?,
            domains,
        });
    }
    Ok(tenants)
}

/// The names of every registered tenant.
pub(crate) fn names(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut statement = conn.prepare_cached("SELECT name FROM tenants")?;
    let names = statement.query_map([], |r| r.get(0))?;
    names.collect()
}

/// Whether `tenant` has a registry row.
pub(crate) fn is_registered(conn: &Connection, tenant: &TenantName) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM tenants WHERE name = ?1")?
        .exists([tenant.as_str()])
}

/// Which tenant owns `domain`, if any.
pub(crate) fn domain_owner(conn: &Connection, domain: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT tenant FROM domains WHERE domain = ?1",
        [domain],
        |r| r.get(0),
    )
    .optional()
}

/// Appends an event.
pub(crate) fn record_event(
    conn: &Connection,
    tenant: &str,
    kind: &str,
    version: Option<i64>,
    detail: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO events (tenant, kind, version, detail) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![tenant, kind, version, detail])
    .map(drop)
}

/// The registry's encoding of a ledger: versions and hex checksums, comma-separated.
pub(crate) fn encode_ledger(ledger: &[AppliedMigration]) -> (String, String) {
    let versions: Vec<String> = ledger.iter().map(|a| a.version.to_string()).collect();
    let checksums: Vec<String> = ledger.iter().map(|a| hex::encode(&a.checksum)).collect();
    (versions.join(","), checksums.join(","))
}

/// Brings a tenant's row in step with its ledger after a migration run:
/// state `ready` (or `pending` when `complete` is false) unless it is
/// `drift`, which only a deep verification clears.
pub(crate) fn follow_ledger(
    conn: &Connection,
    tenant: &TenantName,
    ledger: &[AppliedMigration],
    complete: bool,
) -> rusqlite::Result<()> {
    let (versions, checksums) = encode_ledger(ledger);
    let state = if complete { "ready" } else { "pending" };
    conn.prepare_cached(&format!(
        "UPDATE tenants SET
            state = CASE WHEN state = 'drift' THEN 'drift' ELSE ?2 END,
            last_error = CASE WHEN state = 'drift' THEN last_error END,
            applied_versions = ?3, applied_checksums = ?4, updated_at = {NOW}
          WHERE name = ?1"
    ))?
    .execute(params![tenant.as_str(), state, versions, checksums])
    .map(drop)
}

/// Marks a tenant failed, keeps the error, records an event; one transaction.
pub(crate) fn record_failure(
    conn: &mut Connection,
    tenant: &TenantName,
    failure: &TenantFailure,
) -> Result<(), Error> {
    let context = format!("recording the failure of tenant {tenant}");
    let text = failure.to_string();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err(&context))?;
    tx.execute(
        &format!("UPDATE tenants SET state = 'failed', last_error = ?2, updated_at = {NOW} WHERE name = ?1"),
        params![tenant.as_str(), text],
    )
    .map_err(err(&context))?;
    let version = failure.migration.as_ref().map(|m| m.version);
    record_event(&tx, tenant.as_str(), "migration_failed", version, &text)
        .map_err(err(&context))?;
    tx.commit().map_err(err(&context))
}

/// Copies ledgers (read from the tenant files; `None` when the file or its
/// ledger is missing) into the registry rows; one transaction.
pub(crate) fn sync_registry(
    conn: &mut Connection,
    ledgers: &[super::TenantLedger],
) -> Result<(), Error> {
    let context = "bringing the registry in step with the ledgers";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err(context))?;
    for (tenant, ledger) in ledgers {
        match ledger {
            None => tx.execute(
                &format!(
                    "UPDATE tenants SET applied_versions = '', applied_checksums = '', state = 'failed',
                            last_error = 'the tenant file or its ledger is missing', updated_at = {NOW}
                      WHERE name = ?1"
                ),
                [tenant.as_str()],
            ),
            Some(ledger) => {
                let (versions, checksums) = encode_ledger(ledger);
                tx.execute(
                    &format!(
                        "UPDATE tenants SET applied_versions = ?2, applied_checksums = ?3, updated_at = {NOW}
                          WHERE name = ?1"
                    ),
                    params![tenant.as_str(), versions, checksums],
                )
            }
        }
        .map_err(err(context))?;
    }
    tx.commit().map_err(err(context))
}

/// Writes state changes that differ from what is recorded; one transaction.
pub(crate) fn record_states(conn: &mut Connection, changes: &[StateChange]) -> Result<(), Error> {
    let context = "recording tenant states";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err(context))?;
    for change in changes {
        tx.execute(
            &format!(
                "UPDATE tenants SET state = ?2, last_error = ?3, updated_at = {NOW}
                  WHERE name = ?1 AND (state, last_error) IS NOT (?2, ?3)"
            ),
            params![
                change.tenant.as_str(),
                change.state.as_str(),
                change.detail.as_deref()
            ],
        )
        .map_err(err(context))?;
    }
    tx.commit().map_err(err(context))
}
