//! The in-memory view of the registry the guard decides from.

mod entries;
mod index;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::SystemTime,
};

pub use entries::TenantRef;
use index::{Index, Keys, SecondHash};
use smallvec::SmallVec;
use tenantgate::{
    migrations::MigrationRef,
    readiness::{Blocked, RequiredSet},
    AppliedMigration, Domain, Tenant, TenantName, TenantState,
};

/// One tenant as the guard sees it: its decision is computed when the
/// snapshot is built, so a request costs one hash lookup (and is decided
/// without reading the entry).
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
/// Domains are indexed by a keyed 128-bit hash of the text, one half
/// placing and the other checking, names by the placing half (the text
/// itself is kept once, in the entry), which keeps a million tenants under
/// a quarter of a gigabyte and a host's decision to the index's slot.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    keys: Keys,
    by_domain: Index<SecondHash>,
    by_name: Index<()>,
    shared_missing: Vec<MigrationRef>,
    refreshed_at: Option<SystemTime>,
    /// Entries replaced or dropped since the chunks were built, counted as
    /// if their chunks still held them (a chunk left with no live entry is
    /// already freed); past the live count, the snapshot is rebuilt into
    /// fresh chunks, so it never holds more than twice its entries.
    garbage: usize,
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
        let entries = tenants
            .iter()
            .map(|tenant| snapshot.entry_of(tenant, required))
            .collect();
        snapshot.index(entries);
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
            if let Some(old) = next.tenant(name) {
                next.by_name
                    .remove(next.keys.of(name.as_str()), name.as_str(), &old);
                for domain in &old.domains {
                    let key = next.keys.of(domain.as_str());
                    next.by_domain.remove(key, domain.as_str(), &old);
                }
                next.garbage += 1;
            }
        }
        let entries = fresh
            .iter()
            .map(|tenant| next.entry_of(tenant, required))
            .collect();
        next.index(entries);
        if next.garbage > next.len() {
            let live = next.tenants().cloned().collect();
            next.by_domain = Index::default();
            next.by_name = Index::default();
            next.garbage = 0;
            next.index(live);
        }
        next
    }

    /// How `tenant` is decided in this snapshot.
    fn entry_of(&self, tenant: &Tenant, required: &RequiredSet) -> TenantEntry {
        TenantEntry {
            name: tenant.name.clone(),
            state: tenant.effective_state(&required.tenant),
            domains: tenant.domains.iter().cloned().collect(),
            blocked: match self.unreachable.why(tenant) {
                Some(why) => Some(Box::new(Blocked::unreachable(tenant, &why))),
                None => required.assess(tenant, &self.shared_missing).map(Box::new),
            },
        }
    }

    /// Adds `entries` (none of them held yet) in chunks sized for the
    /// snapshot they join.
    fn index(&mut self, entries: Vec<TenantEntry>) {
        let chunk_len = entries::chunk_len(self.len() + entries.len());
        for entry in TenantRef::chunked(entries, chunk_len) {
            for domain in &entry.domains {
                let key = self.keys.of(domain.as_str());
                self.by_domain.insert(key, domain.as_str(), &entry);
            }
            let key = self.keys.of(entry.name.as_str());
            self.by_name.insert(key, entry.name.as_str(), &entry);
        }
    }

    /// How many tenants the snapshot holds.
    fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The tenant a normalised host routes to.
    pub fn lookup(&self, host: &str) -> Option<TenantRef> {
        self.by_domain
            .get(self.keys.of(host), host, has_domain)
            .map(|found| found.entry.to_ref())
    }

    /// The tenant a normalised host routes to, only when it may be served:
    /// the same answer as [`Self::lookup`] and the entry's
    /// [`TenantEntry::blocked`], decided (almost always) from the index
    /// alone, without reading the entry.
    pub fn served(&self, host: &str) -> Option<TenantRef> {
        let found = self.by_domain.get(self.keys.of(host), host, has_domain)?;
        found
            .served
            .unwrap_or_else(|| found.entry.get().blocked.is_none())
            .then(|| found.entry.to_ref())
    }

    /// The tenant with this name.
    pub fn tenant(&self, name: &TenantName) -> Option<TenantRef> {
        self.by_name
            .get(self.keys.of(name.as_str()), name.as_str(), has_name)
            .map(|found| found.entry.to_ref())
    }

    /// Every tenant, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &TenantEntry> {
        self.by_name.values().map(|entry| entry.get())
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
        for entry in self.tenants() {
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

    pub(super) fn entry_data(name: &str, domains: &[&str]) -> TenantEntry {
        TenantEntry {
            name: TenantName::parse(name).unwrap(),
            state: TenantState::Ready,
            domains: domains.iter().map(|d| Domain::parse(d).unwrap()).collect(),
            blocked: None,
        }
    }

    pub(super) fn entry(name: &str, domains: &[&str]) -> TenantRef {
        TenantRef::chunked(vec![entry_data(name, domains)], 1).remove(0)
    }

    fn no_migrations() -> RequiredSet {
        RequiredSet {
            tenant: tenantgate::MigrationSet::default(),
            shared: tenantgate::MigrationSet::default(),
        }
    }

    /// Tenant `t{i}` with domain `t{i}.example.com` (and `w{i}.example.com`
    /// when `two_domains`), in `state`.
    fn tenant(i: usize, state: TenantState, two_domains: bool) -> Tenant {
        let mut domains = vec![Domain::parse(&format!("t{i}.example.com")).unwrap()];
        if two_domains {
            domains.push(Domain::parse(&format!("w{i}.example.com")).unwrap());
        }
        Tenant {
            name: TenantName::parse(&format!("t{i}")).unwrap(),
            placement: "default".into(),
            moving_to: None,
            state,
            applied_versions: Vec::new(),
            applied_checksums: Vec::new(),
            domains,
            last_error: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn every_domain_and_name_of_a_large_snapshot_finds_its_own_tenant() {
        let tenants: Vec<Tenant> = (0..20_000)
            .map(|i| tenant(i, TenantState::Ready, false))
            .collect();
        let snapshot = Snapshot::build(tenants, &[], &no_migrations());
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

    /// Thousands of updates (tenants changed, blocked, given or stripped of
    /// a second domain, dropped, added), each checked against a plain map
    /// of what the registry holds: every domain and name finds its tenant's
    /// current entry, nothing dropped is found, `served` agrees with the
    /// entry's decision, and the chunks' dead entries never outnumber the
    /// live ones (the snapshot is rebuilt past that).
    #[test]
    fn updates_keep_every_lookup_current_and_the_dead_entries_bounded() {
        let required = no_migrations();
        let mut truth: std::collections::BTreeMap<usize, Tenant> = (0..3_000)
            .map(|i| (i, tenant(i, TenantState::Ready, i % 3 == 0)))
            .collect();
        let mut snapshot = Snapshot::build(truth.values().cloned().collect(), &[], &required);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        let mut rebuilt = 0;
        for round in 0..400 {
            let mut names = Vec::new();
            let mut fresh = Vec::new();
            for _ in 0..1 + next(30) {
                let i = next(4_000);
                let name = TenantName::parse(&format!("t{i}")).unwrap();
                if names.contains(&name) {
                    continue;
                }
                names.push(name);
                if next(5) == 0 {
                    truth.remove(&i);
                    continue;
                }
                let state = [TenantState::Ready, TenantState::Failed, TenantState::Drift][next(3)];
                let changed = tenant(i, state, next(2) == 0);
                truth.insert(i, changed.clone());
                fresh.push(changed);
            }
            let held = snapshot.lookup("t1.example.com");
            let garbage = snapshot.garbage;
            snapshot = snapshot.updated(&names, fresh, &required);
            rebuilt += usize::from(snapshot.garbage < garbage);
            if let Some(held) = held {
                assert_eq!(held.name.as_str(), "t1", "a handle outlives its snapshot");
            }
            assert!(snapshot.garbage <= snapshot.len(), "round {round}");
            assert_eq!(snapshot.len(), truth.len(), "round {round}");
            for i in 0..4_000 {
                let host = format!("t{i}.example.com");
                let second = format!("w{i}.example.com");
                let name = TenantName::parse(&format!("t{i}")).unwrap();
                match truth.get(&i) {
                    None => {
                        assert!(
                            snapshot.lookup(&host).is_none(),
                            "{host} dropped, round {round}"
                        );
                        assert!(snapshot.lookup(&second).is_none());
                        assert!(snapshot.tenant(&name).is_none());
                    }
                    Some(expected) => {
                        let entry = snapshot.lookup(&host).expect("a current tenant");
                        assert_eq!(entry.name, expected.name, "round {round}");
                        assert_eq!(entry.state, expected.state, "{host}, round {round}");
                        assert_eq!(entry.domains.as_slice(), expected.domains.as_slice());
                        assert!(entry.borrowed().is(&snapshot.tenant(&name).unwrap()));
                        assert_eq!(
                            snapshot.lookup(&second).is_some(),
                            expected.domains.len() == 2,
                            "{second}, round {round}"
                        );
                        assert_eq!(
                            snapshot.served(&host).is_some(),
                            entry.blocked.is_none(),
                            "{host} in state {:?}, round {round}",
                            entry.state
                        );
                    }
                }
            }
        }
        assert!(rebuilt > 0, "the dead entries grew past the live ones");
        assert!(snapshot.tenants().any(|t| t.blocked.is_some()));
    }
}
