//! The in-memory view of the registry the guard decides from.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::SystemTime,
};

use tenantgate::{
    migrations::MigrationRef,
    readiness::{Blocked, RequiredSet},
    AppliedMigration, Domain, Tenant, TenantName, TenantState,
};

/// One tenant as the guard sees it: its decision is computed when the
/// snapshot is built, so a request costs one hash lookup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantEntry {
    /// The tenant's name (and schema).
    pub name: TenantName,
    /// Its registry state.
    pub state: TenantState,
    /// Domains that route to it.
    pub domains: Vec<Domain>,
    /// Why it may not be served; `None` when it may (boxed: most tenants
    /// are served, and the snapshot holds one entry per tenant).
    pub blocked: Option<Box<Blocked>>,
}

/// An immutable view of the registry, swapped whole when it changes.
#[derive(Debug, Default)]
pub struct Snapshot {
    by_domain: HashMap<String, Arc<TenantEntry>>,
    by_name: HashMap<TenantName, Arc<TenantEntry>>,
    shared_missing: Vec<MigrationRef>,
    refreshed_at: Option<SystemTime>,
}

impl Snapshot {
    /// Builds a snapshot from the whole registry.
    pub fn build(
        tenants: Vec<Tenant>,
        shared_ledger: &[AppliedMigration],
        required: &RequiredSet,
    ) -> Self {
        let mut snapshot = Self {
            shared_missing: required.shared_missing(shared_ledger),
            refreshed_at: Some(SystemTime::now()),
            ..Self::default()
        };
        for tenant in tenants {
            snapshot.insert(&tenant, required);
        }
        snapshot
    }

    /// A copy in which the tenants named in `names` are replaced by `fresh`
    /// (a name missing from `fresh` was dropped).
    pub fn updated(
        &self,
        names: &[TenantName],
        fresh: Vec<Tenant>,
        required: &RequiredSet,
    ) -> Self {
        let mut next = Self {
            by_domain: self.by_domain.clone(),
            by_name: self.by_name.clone(),
            shared_missing: self.shared_missing.clone(),
            refreshed_at: Some(SystemTime::now()),
        };
        for name in names {
            if let Some(old) = next.by_name.remove(name) {
                for domain in &old.domains {
                    next.by_domain.remove(domain.as_str());
                }
            }
        }
        for tenant in fresh {
            next.insert(&tenant, required);
        }
        next
    }

    fn insert(&mut self, tenant: &Tenant, required: &RequiredSet) {
        let entry = Arc::new(TenantEntry {
            name: tenant.name.clone(),
            state: tenant.effective_state(&required.tenant),
            domains: tenant.domains.clone(),
            blocked: required.assess(tenant, &self.shared_missing).map(Box::new),
        });
        for domain in &tenant.domains {
            self.by_domain
                .insert(domain.as_str().to_owned(), entry.clone());
        }
        self.by_name.insert(tenant.name.clone(), entry);
    }

    /// The tenant a normalised host routes to.
    pub fn lookup(&self, host: &str) -> Option<&Arc<TenantEntry>> {
        self.by_domain.get(host)
    }

    /// The tenant with this name.
    pub fn tenant(&self, name: &TenantName) -> Option<&Arc<TenantEntry>> {
        self.by_name.get(name)
    }

    /// Every tenant, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<TenantEntry>> {
        self.by_name.values()
    }

    /// Tenants per registry state.
    pub fn counts_by_state(&self) -> BTreeMap<TenantState, usize> {
        let mut counts = BTreeMap::new();
        for state in [
            TenantState::Ready,
            TenantState::Pending,
            TenantState::Failed,
            TenantState::Drift,
        ] {
            counts.insert(state, 0);
        }
        for entry in self.by_name.values() {
            *counts.entry(entry.state).or_default() += 1;
        }
        counts
    }

    /// Required shared migrations the shared schema lacks.
    pub fn shared_missing(&self) -> &[MigrationRef] {
        &self.shared_missing
    }

    /// When the registry was last read into this snapshot.
    pub fn refreshed_at(&self) -> Option<SystemTime> {
        self.refreshed_at
    }
}
