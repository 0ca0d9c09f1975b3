//! The in-memory view of the registry the guard decides from.

use std::{
    collections::{hash_map::RandomState, BTreeMap, HashMap},
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    sync::Arc,
    time::SystemTime,
};

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
/// Domains and names are indexed by a keyed 64-bit hash of the text (the
/// text itself is kept once, in the entry, and compared on lookup), which
/// keeps a million tenants in about a quarter of a gigabyte.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    hasher: RandomState,
    by_domain: Index,
    by_name: Index,
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

/// Entries by the keyed hash of one of their keys. The rare second key
/// with a hash already taken goes to `spill`, keyed by its text.
#[derive(Debug, Default, Clone)]
struct Index {
    slots: HashMap<u64, Arc<TenantEntry>, BuildHasherDefault<PassThrough>>,
    spill: HashMap<String, Arc<TenantEntry>>,
}

impl Index {
    fn get(
        &self,
        hash: u64,
        key: &str,
        has_key: impl Fn(&TenantEntry, &str) -> bool,
    ) -> Option<&Arc<TenantEntry>> {
        match self.slots.get(&hash) {
            Some(entry) if has_key(entry, key) => Some(entry),
            _ if self.spill.is_empty() => None,
            _ => self.spill.get(key),
        }
    }

    fn insert(&mut self, hash: u64, key: &str, entry: &Arc<TenantEntry>) {
        match self.slots.entry(hash) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(entry.clone());
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.spill.insert(key.to_owned(), entry.clone());
            }
        }
    }

    fn remove(&mut self, hash: u64, key: &str, entry: &Arc<TenantEntry>) {
        if self
            .slots
            .get(&hash)
            .is_some_and(|held| Arc::ptr_eq(held, entry))
        {
            self.slots.remove(&hash);
        } else {
            self.spill.remove(key);
        }
    }

    fn values(&self) -> impl Iterator<Item = &Arc<TenantEntry>> {
        self.slots.values().chain(self.spill.values())
    }
}

/// A hasher for keys that are already keyed hashes.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
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
                    .remove(next.hasher.hash_one(name.as_str()), name.as_str(), &old);
                for domain in &old.domains {
                    let hash = next.hasher.hash_one(domain.as_str());
                    next.by_domain.remove(hash, domain.as_str(), &old);
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
            let hash = self.hasher.hash_one(domain.as_str());
            self.by_domain.insert(hash, domain.as_str(), &entry);
        }
        let hash = self.hasher.hash_one(entry.name.as_str());
        self.by_name.insert(hash, entry.name.as_str(), &entry);
    }

    /// The tenant a normalised host routes to.
    pub fn lookup(&self, host: &str) -> Option<&Arc<TenantEntry>> {
        self.by_domain
            .get(self.hasher.hash_one(host), host, has_domain)
    }

    /// The tenant with this name.
    pub fn tenant(&self, name: &TenantName) -> Option<&Arc<TenantEntry>> {
        self.by_name
            .get(self.hasher.hash_one(name.as_str()), name.as_str(), has_name)
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
mod tests {
    use super::*;

    fn entry(name: &str, domains: &[&str]) -> Arc<TenantEntry> {
        Arc::new(TenantEntry {
            name: TenantName::parse(name).unwrap(),
            state: TenantState::Ready,
            domains: domains.iter().map(|d| Domain::parse(d).unwrap()).collect(),
            blocked: None,
        })
    }

    #[test]
    fn a_key_whose_hash_is_taken_is_still_found_and_removed() {
        let (acme, globex) = (
            entry("acme", &["a.example"]),
            entry("globex", &["g.example"]),
        );
        let mut index = Index::default();
        // Both keys forced onto one hash: the second spills, both are found.
        index.insert(7, "a.example", &acme);
        index.insert(7, "g.example", &globex);
        assert!(Arc::ptr_eq(
            index.get(7, "a.example", has_domain).unwrap(),
            &acme
        ));
        assert!(Arc::ptr_eq(
            index.get(7, "g.example", has_domain).unwrap(),
            &globex
        ));
        assert!(index.get(7, "x.example", has_domain).is_none());
        assert_eq!(index.values().count(), 2);
        index.remove(7, "g.example", &globex);
        assert!(index.get(7, "g.example", has_domain).is_none());
        assert!(index.get(7, "a.example", has_domain).is_some());
        index.remove(7, "a.example", &acme);
        assert_eq!(index.values().count(), 0);
    }
}
