//! Which ledger a tenant schema holds: tenantgate's own, or one another tool
//! wrote (sqlx's `_sqlx_migrations`, Django's `django_migrations`).
//!
//! The ledger in each tenant schema is the truth about what it holds. A
//! fleet built by sqlx or django-tenants already keeps one; tenantgate reads
//! it where it is instead of asking for a second one.
//!
//! ```
//! use tenantgate::ledger::LedgerKind;
//!
//! let kind: LedgerKind = "django".parse().unwrap();
//! assert_eq!(kind.table(), "django_migrations");
//! assert!(kind.is_foreign() && !kind.applies_migrations());
//! assert!(LedgerKind::Sqlx.applies_migrations());
//! assert!("flyway".parse::<LedgerKind>().is_err());
//! ```

use std::{fmt, str::FromStr};

use crate::{
    backend::{Ledgers, StateChange},
    Backend, Error, MigrationSet, Tenant, TenantName, TenantState,
};

/// The kind of ledger each tenant schema holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// `_tenantgate_migrations`, written by tenantgate in the transaction
    /// that applies the migrations it records.
    #[default]
    Tenantgate,
    /// `_sqlx_migrations`, as sqlx writes it (the same six columns); keyed
    /// by version, with sqlx's SHA-384 checksums.
    Sqlx,
    /// `django_migrations (app, name)`, as Django writes it; keyed by
    /// `app.name`, without checksums.
    Django,
}

impl LedgerKind {
    /// Every kind, in the order help texts list them.
    pub const ALL: [LedgerKind; 3] = [LedgerKind::Tenantgate, LedgerKind::Sqlx, LedgerKind::Django];

    /// The kind's name, as on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Tenantgate => "tenantgate",
            LedgerKind::Sqlx => "sqlx",
            LedgerKind::Django => "django",
        }
    }

    /// The ledger table's name in each tenant schema.
    pub fn table(self) -> &'static str {
        match self {
            LedgerKind::Tenantgate => "_tenantgate_migrations",
            LedgerKind::Sqlx => "_sqlx_migrations",
            LedgerKind::Django => "django_migrations",
        }
    }

    /// True when another tool writes the ledger, so the registry's copy of
    /// it is kept by reading the ledgers (not by the migrating transaction).
    pub fn is_foreign(self) -> bool {
        self != LedgerKind::Tenantgate
    }

    /// True when tenantgate applies the migrations itself, writing the
    /// ledger rows as the ledger's own tool would; Django's migrations run
    /// only through Django (`migrate --exec`).
    pub fn applies_migrations(self) -> bool {
        self != LedgerKind::Django
    }
}

impl fmt::Display for LedgerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LedgerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown ledger kind {s:?}; expected tenantgate, sqlx or django")
            })
    }
}

/// Brings registry rows whose copy of the ledger is out of step (a schema
/// edited by hand, a restore) back in step with the ledgers, the truth, so
/// the guard decides from what the schemas really hold. Returns the tenants
/// corrected.
pub async fn reconcile(
    backend: &dyn Backend,
    tenants: &[Tenant],
    ledgers: &Ledgers,
) -> Result<Vec<TenantName>, Error> {
    let stale: Vec<TenantName> = tenants
        .iter()
        .filter(|t| match ledgers.get(&t.name) {
            Some(Some(ledger)) => {
                ledger.len() != t.applied_versions.len()
                    || ledger
                        .iter()
                        .zip(t.applied_versions.iter().zip(&t.applied_checksums))
                        .any(|(applied, (version, checksum))| {
                            applied.version != *version || &applied.checksum != checksum
                        })
            }
            Some(None) => !t.applied_versions.is_empty(),
            None => false,
        })
        .map(|t| t.name.clone())
        .collect();
    backend.sync_registry(&stale).await?;
    Ok(stale)
}

/// Reads every registered tenant's ledger and brings the registry in step
/// with it (see [`bring_in_step`]): what a server does on each poll and
/// what `notify` does before announcing.
pub async fn refresh(backend: &dyn Backend, set: &MigrationSet) -> Result<Refreshed, Error> {
    let tenants = backend.tenants().await?;
    let everyone: Vec<&Tenant> = tenants.iter().collect();
    let (ledgers, unreachable) =
        crate::fleet::read_ledgers_by_placement(backend, &everyone).await?;
    Ok(Refreshed {
        tenants: bring_in_step(backend, set, tenants, &ledgers).await?,
        unreachable,
    })
}

/// What [`refresh`] found.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// Every tenant as the registry now records it (those whose ledger
    /// could not be read, as it recorded them before).
    pub tenants: Vec<Tenant>,
    /// Tenants whose ledgers could not be read (their placement, or on
    /// Citus their worker, does not answer), with why.
    pub unreachable: std::collections::HashMap<TenantName, String>,
}

/// Copies each ledger into its registry row where the copy is out of step
/// ([`reconcile`]); for ledgers another tool writes, also derives each
/// tenant's state from its ledger against `set`: `ready` once it holds the
/// whole set, `pending` while it lacks some; `failed` stays until the ledger
/// holds the set, `drift` until a deep verification clears it. Returns the
/// tenants as the registry now records them (rows it corrected read again).
pub async fn bring_in_step(
    backend: &dyn Backend,
    set: &MigrationSet,
    mut tenants: Vec<Tenant>,
    ledgers: &Ledgers,
) -> Result<Vec<Tenant>, Error> {
    let corrected = reconcile(backend, &tenants, ledgers).await?;
    if !corrected.is_empty() {
        let mut fresh: std::collections::HashMap<TenantName, Tenant> = backend
            .tenants_named(&corrected)
            .await?
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        for tenant in &mut tenants {
            if let Some(row) = fresh.remove(&tenant.name) {
                *tenant = row;
            }
        }
    }
    if !backend.ledger_kind().is_foreign() {
        return Ok(tenants);
    }
    let mut changes = Vec::new();
    for tenant in &mut tenants {
        let Some(Some(ledger)) = ledgers.get(&tenant.name) else {
            continue;
        };
        let complete = set.compare(ledger).missing.is_empty();
        let state = match (tenant.state, complete) {
            (TenantState::Pending | TenantState::Failed, true) => TenantState::Ready,
            (TenantState::Ready, false) => TenantState::Pending,
            (state, _) => state,
        };
        if state != tenant.state {
            tenant.state = state;
            tenant.last_error = None;
            changes.push(StateChange {
                tenant: tenant.name.clone(),
                state,
                detail: None,
            });
        }
    }
    backend.record_states(&changes).await?;
    Ok(tenants)
}
