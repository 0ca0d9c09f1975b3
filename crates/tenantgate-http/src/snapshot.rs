//! The in-memory view of the registry the guard decides from.

mod index;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::SystemTime,
};

use index::{Index, Keys, SecondHash};
use smallvec::SmallVec;
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
    /// Domains that route to it (up to two held inline, so a lookup reads
    /// the entry and the domain's text, nothing between).
    pub domains: SmallVec<[Domain; 2]>,
    /// Why it may not be served; `None` when it may (boxed: most tenants
    /// are served, and the snapshot holds one entry per tenant).
    pub blocked: Option<Box<Blocked>>,
}

/// An immutable view of the registry, swapped whole when it changes.
///
/// Domains are indexed by two keyed 64-bit hashes of the text, names by
/// one (the text itself is kept once, in the entry), which keeps a million
/// tenants under a quarter of a gigabyte and a host's lookup to the
/// index's slot and the entry.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    keys: Keys,
    by_domain: Index<SecondHash>,
    by_name: Index<()>,
    shared_missing: Vec<MigrationRef>,
    refreshed_at: Option<SystemTime>,
    /// What does not answer: those tenants are blocked with "state unknown".
    unreachable: Arc<Unreachable>,
}

/// What the guard's last check found not answering, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unreachable {
    /// Placements whose server does not answer.
    pub placements: HashMap<String, String>,
    /// Tenants that cannot be reached although their placement answers
    /// (on Citus: those a down worker holds), by name.
    pub tenants: HashMap<String, String>,
}

impl Unreachable {
    /// Why `tenant` cannot be reached, if it cannot.
    fn why(&self, tenant: &Tenant) -> Option<String> {
        if let Some(why) = self.tenants.get(tenant.name.as_str()) {
            return Some(why.clone());
        }
        self.placements
            .get(&tenant.placement)
            .map(|why| format!("placement {} does not answer: {why}", tenant.placement))
    }
}

fn has_domain(entry: &TenantEntry, host: &str) -> bool {
    entry.domains.iter().any(|d| d.as_str() == host)
}

fn has_name(entry: &TenantEntry, name: &str) -> bool {
    entry.name.as_str() == name
}

impl Snapshot {
    /// Builds a snapshot from the whole registry.
    pub fn build(
        tenants: Vec<Tenant>,
        shared_ledger: &[AppliedMigration],
        required: &RequiredSet,
    ) -> Self {
        Self::build_placed(tenants, shared_ledger, required, Unreachable::default())
    }

    /// [`Self::build`] with what does not answer: those tenants are blocked
    /// with "state unknown", the others decided as usual.
    pub fn build_placed(
        tenants: Vec<Tenant>,
        shared_ledger: &[AppliedMigration],
        required: &RequiredSet,
        unreachable: Unreachable,
    ) -> Self {
        let mut snapshot = Self {
            shared_missing: required.shared_missing(shared_ledger),
            refreshed_at: Some(SystemTime::now()),
            unreachable: Arc::new(unreachable),
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
            refreshed_at: Some(SystemTime::now()),
            ..self.clone()
        };
        for name in names {
            if let Some(old) = next.tenant(name).cloned() {
                next.by_name
                    .remove(next.keys.of(name.as_str()), name.as_str(), &old);
                for domain in &old.domains {
                    let key = next.keys.of(domain.as_str());
                    next.by_domain.remove(key, domain.as_str(), &old);
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
            domains: tenant.domains.iter().cloned().collect(),
            blocked: match self.unreachable.why(tenant) {
                Some(why) => Some(Box::new(Blocked::unreachable(tenant, &why))),
                None => required.assess(tenant, &self.shared_missing).map(Box::new),
            },
        });
        for domain in &entry.domains {
            let key = self.keys.of(domain.as_str());
            self.by_domain.insert(key, domain.as_str(), &entry);
        }
        let key = self.keys.of(entry.name.as_str());
        self.by_name.insert(key, entry.name.as_str(), &entry);
    }

    /// The tenant a normalised host routes to.
    pub fn lookup(&self, host: &str) -> Option<&Arc<TenantEntry>> {
        self.by_domain.get(self.keys.of(host), host, has_domain)
    }

    /// The tenant with this name.
    pub fn tenant(&self, name: &TenantName) -> Option<&Arc<TenantEntry>> {
        self.by_name
            .get(self.keys.of(name.as_str()), name.as_str(), has_name)
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

    /// What did not answer when this snapshot was built.
    pub fn unreachable(&self) -> &Unreachable {
        &self.unreachable
    }

    /// When the registry was last read into this snapshot.
    pub fn refreshed_at(&self) -> Option<SystemTime> {
        self.refreshed_at
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn entry(name: &str, domains: &[&str]) -> Arc<TenantEntry> {
        Arc::new(TenantEntry {
            name: TenantName::parse(name).unwrap(),
            state: TenantState::Ready,
            domains: domains.iter().map(|d| Domain::parse(d).unwrap()).collect(),
            blocked: None,
        })
    }

    #[test]
    fn every_domain_and_name_of_a_large_snapshot_finds_its_own_tenant() {
        let required = RequiredSet {
            tenant: tenantgate::MigrationSet::default(),
            shared: tenantgate::MigrationSet::default(),
        };
        let tenants: Vec<Tenant> = (0..20_000)
            .map(|i| Tenant {
                name: TenantName::parse(&format!("t{i}")).unwrap(),
                placement: "default".into(),
                moving_to: None,
                state: TenantState::Ready,
                applied_versions: Vec::new(),
                applied_checksums: Vec::new(),
                domains: vec![Domain::parse(&format!("t{i}.example.com")).unwrap()],
                last_error: None,
                created_at: String::new(),
                updated_at: String::new(),
            })
            .collect();
        let snapshot = Snapshot::build(tenants, &[], &required);
        for i in 0..20_000 {
            let name = format!("t{i}");
            assert_eq!(
                snapshot
                    .lookup(&format!("t{i}.example.com"))
                    .unwrap()
                    .name
                    .as_str(),
                name
            );
            assert_eq!(
                snapshot
                    .tenant(&TenantName::parse(&name).unwrap())
                    .unwrap()
                    .name
                    .as_str(),
                name
            );
        }
        assert!(snapshot.lookup("t20000.example.com").is_none());
        assert!(
            snapshot.lookup("T1.example.com").is_none(),
            "lookups take normal form"
        );
    }
}
