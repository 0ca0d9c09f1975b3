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

/// Two independent keyed 64-bit hashes of one key: the first places it,
/// the second tells it from the other keys placed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    place: u64,
    check: u64,
}

/// The keyed hashers of one snapshot (SipHash with the process's random keys).
#[derive(Debug, Default, Clone)]
struct Keys {
    place: RandomState,
    check: RandomState,
}

impl Keys {
    fn of(&self, text: &str) -> Key {
        Key {
            place: self.place.hash_one(text),
            check: self.check.hash_one(text),
        }
    }
}

/// What an index slot keeps to tell its key from another placed with the
/// same first hash.
trait Check: Copy + std::fmt::Debug {
    /// The check of a key whose second hash is `hash`.
    fn of(hash: u64) -> Self;
    /// Whether a lookup whose second hash is `hash` takes the slot's entry:
    /// `None` when only the text can tell.
    fn admits(&self, hash: u64) -> Option<bool>;
    /// Marks the slot after a key alike in every hash was spilled.
    fn collided(&mut self, hash: u64);
}

/// The second hash (its low bit replaced by a mark: compare the text).
/// A host that is not a domain matches a slot only by guessing 127 bits of
/// SipHash output made with keys it never sees, so a lookup takes the entry
/// without reading the domain's text (another cache line).
#[derive(Debug, Clone, Copy)]
struct SecondHash(u64);

/// The low bit of a [`SecondHash`]: set, the slot's text must be compared.
const COMPARE_TEXT: u64 = 1;

impl Check for SecondHash {
    fn of(hash: u64) -> Self {
        Self(hash & !COMPARE_TEXT)
    }

    fn admits(&self, hash: u64) -> Option<bool> {
        let hash = hash & !COMPARE_TEXT;
        if self.0 == hash {
            Some(true)
        } else if self.0 == hash | COMPARE_TEXT {
            None
        } else {
            Some(false)
        }
    }

    fn collided(&mut self, hash: u64) {
        if self.0 & !COMPARE_TEXT == hash & !COMPARE_TEXT {
            self.0 |= COMPARE_TEXT;
        }
    }
}

/// No check: the text is always compared (names, which no request looks
/// up, keep their slots small).
impl Check for () {
    fn of(_: u64) -> Self {}

    fn admits(&self, _: u64) -> Option<bool> {
        None
    }

    fn collided(&mut self, _: u64) {}
}

/// Entries by the keyed hashes of one of their keys. The rare second key
/// whose place is taken goes to `spill`, keyed by its text.
#[derive(Debug, Clone)]
struct Index<C> {
    slots: HashMap<u64, (C, Arc<TenantEntry>), BuildHasherDefault<PassThrough>>,
    spill: HashMap<String, Arc<TenantEntry>>,
}

impl<C> Default for Index<C> {
    fn default() -> Self {
        Self {
            slots: HashMap::default(),
            spill: HashMap::default(),
        }
    }
}

impl<C: Check> Index<C> {
    fn get(
        &self,
        key: Key,
        text: &str,
        has_key: impl Fn(&TenantEntry, &str) -> bool,
    ) -> Option<&Arc<TenantEntry>> {
        if let Some((check, entry)) = self.slots.get(&key.place) {
            let taken = check
                .admits(key.check)
                .unwrap_or_else(|| has_key(entry, text));
            if taken {
                return Some(entry);
            }
        }
        if self.spill.is_empty() {
            None
        } else {
            self.spill.get(text)
        }
    }

    fn insert(&mut self, key: Key, text: &str, entry: &Arc<TenantEntry>) {
        match self.slots.entry(key.place) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((C::of(key.check), entry.clone()));
            }
            std::collections::hash_map::Entry::Occupied(mut slot) => {
                slot.get_mut().0.collided(key.check);
                self.spill.insert(text.to_owned(), entry.clone());
            }
        }
    }

    fn remove(&mut self, key: Key, text: &str, entry: &Arc<TenantEntry>) {
        if self
            .slots
            .get(&key.place)
            .is_some_and(|(_, held)| Arc::ptr_eq(held, entry))
        {
            self.slots.remove(&key.place);
        } else {
            self.spill.remove(text);
        }
    }

    fn values(&self) -> impl Iterator<Item = &Arc<TenantEntry>> {
        self.slots
            .values()
            .map(|(_, entry)| entry)
            .chain(self.spill.values())
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
    fn a_key_whose_place_is_taken_is_still_found_and_removed() {
        let (acme, globex) = (
            entry("acme", &["a.example"]),
            entry("globex", &["g.example"]),
        );
        let key = |check| Key { place: 7, check };
        let mut index = Index::<SecondHash>::default();
        // Both keys forced onto one place: the second spills, both are found.
        index.insert(key(2), "a.example", &acme);
        index.insert(key(4), "g.example", &globex);
        assert!(Arc::ptr_eq(
            index.get(key(2), "a.example", has_domain).unwrap(),
            &acme
        ));
        assert!(Arc::ptr_eq(
            index.get(key(4), "g.example", has_domain).unwrap(),
            &globex
        ));
        assert!(index.get(key(6), "x.example", has_domain).is_none());
        assert_eq!(index.values().count(), 2);
        index.remove(key(4), "g.example", &globex);
        assert!(index.get(key(4), "g.example", has_domain).is_none());
        assert!(index.get(key(2), "a.example", has_domain).is_some());
        index.remove(key(2), "a.example", &acme);
        assert_eq!(index.values().count(), 0);
    }

    #[test]
    fn keys_alike_in_both_hashes_are_told_apart_by_their_text() {
        let (acme, globex) = (
            entry("acme", &["a.example"]),
            entry("globex", &["g.example"]),
        );
        let same = Key { place: 7, check: 2 };
        let mut index = Index::<SecondHash>::default();
        index.insert(same, "a.example", &acme);
        index.insert(same, "g.example", &globex);
        assert!(Arc::ptr_eq(
            index.get(same, "a.example", has_domain).unwrap(),
            &acme
        ));
        assert!(Arc::ptr_eq(
            index.get(same, "g.example", has_domain).unwrap(),
            &globex
        ));
        assert!(
            index.get(same, "x.example", has_domain).is_none(),
            "a third text with the same hashes is no one's"
        );
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
