//! The snapshot's indexes: tenants by the keyed hashes of a domain or a
//! name, in one flat table, so a request's lookup reads one slot (one
//! cache line, usually) and decides without reading the tenant's entry.

use std::{
    collections::{hash_map::RandomState, HashMap},
    hash::{BuildHasher, Hasher},
    sync::Arc,
};

use siphasher::sip128::{Hasher128, SipHasher13};

use super::{
    entries::{Chunk, EntryIn},
    TenantEntry, TenantRef,
};

/// Two independent keyed 64-bit hashes of one key: the first places it,
/// the second tells it from the other keys placed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    place: u64,
    check: u64,
}

/// The key of one snapshot's hashes: 128 random bits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Keys(u64, u64);

impl Default for Keys {
    fn default() -> Self {
        // The process's random SipHash keys, hashed: random bits without
        // another source of randomness.
        let random = RandomState::new();
        Self(random.hash_one(0_u8), random.hash_one(1_u8))
    }
}

impl Keys {
    /// SipHash-1-3 with 128 bits of output: one pass over the text gives
    /// both halves of the [`Key`].
    pub(super) fn of(&self, text: &str) -> Key {
        let mut hasher = SipHasher13::new_with_keys(self.0, self.1);
        hasher.write(text.as_bytes());
        let hash = hasher.finish128();
        Key {
            place: hash.h1 & PLACE,
            check: hash.h2,
        }
    }
}

/// What an index slot keeps to tell its key from another placed with the
/// same first hash.
pub(super) trait Check: Copy + std::fmt::Debug {
    /// The check of a key whose second hash is `hash`, for an entry that
    /// is `served` or not.
    fn of(hash: u64, served: bool) -> Self;
    /// Whether a lookup whose second hash is `hash` takes the slot's entry:
    /// `None` when only the text can tell.
    fn admits(&self, hash: u64) -> Option<bool>;
    /// Marks the slot after a key alike in every hash was spilled.
    fn collided(&mut self, hash: u64);
    /// Whether the slot's entry may be served, when the slot knows.
    fn served(&self) -> Option<bool>;
}

/// The second hash, its two low bits replaced by marks: compare the text,
/// and the entry may be served. A host that is not a domain matches a slot
/// only by guessing 118 bits of SipHash output (56 placing, 62 checking)
/// made with a key it never sees, so a lookup takes the entry, and a
/// request its decision, without reading the domain's text or the entry
/// (other cache lines).
#[derive(Debug, Clone, Copy)]
pub(super) struct SecondHash(u64);

/// Set, the slot's text must be compared.
const COMPARE_TEXT: u64 = 1;
/// Set, the slot's entry may be served.
const SERVED: u64 = 2;
/// The bits of a [`SecondHash`] that are marks, not hash.
const MARKS: u64 = COMPARE_TEXT | SERVED;

impl Check for SecondHash {
    fn of(hash: u64, served: bool) -> Self {
        Self(hash & !MARKS | if served { SERVED } else { 0 })
    }

    fn admits(&self, hash: u64) -> Option<bool> {
        if self.0 & !MARKS != hash & !MARKS {
            Some(false)
        } else if self.0 & COMPARE_TEXT != 0 {
            None
        } else {
            Some(true)
        }
    }

    fn collided(&mut self, hash: u64) {
        if self.0 & !MARKS == hash & !MARKS {
            self.0 |= COMPARE_TEXT;
        }
    }

    fn served(&self) -> Option<bool> {
        Some(self.0 & SERVED != 0)
    }
}

/// No check: the text is always compared (names, which no request looks
/// up, keep their slots small).
impl Check for () {
    fn of(_: u64, _: bool) -> Self {}

    fn admits(&self, _: u64) -> Option<bool> {
        None
    }

    fn collided(&mut self, _: u64) {}

    fn served(&self) -> Option<bool> {
        None
    }
}

/// The bits of a first hash that place a key: the top byte of a slot's
/// copy holds its entry's position in its chunk, so a slot is three words.
const PLACE: u64 = (1 << 56) - 1;

/// One occupied place in the table.
#[derive(Debug, Clone)]
struct Slot<C> {
    /// The first hash, its top byte the entry's position in `chunk`.
    place_and_position: u64,
    check: C,
    chunk: Arc<Chunk>,
}

impl<C> Slot<C> {
    fn place(&self) -> u64 {
        self.place_and_position & PLACE
    }

    fn entry(&self) -> EntryIn<'_> {
        // The top byte, shifted down, fits in 32 bits.
        EntryIn::new(&self.chunk, (self.place_and_position >> 56) as u32)
    }
}

/// What a lookup found.
pub(super) struct Found<'a> {
    /// The entry.
    pub(super) entry: EntryIn<'a>,
    /// Whether it may be served, when its slot knows without reading it.
    pub(super) served: Option<bool>,
}

/// The fewest slots a table that holds anything has.
const MIN_SLOTS: usize = 16;

/// Entries by the keyed hashes of one of their keys: an open-addressing
/// table probed linearly from the first hash, at most three quarters full,
/// with no two slots of one first hash. The rare second key whose first
/// hash is taken goes to `spill`, keyed by its text.
#[derive(Debug, Clone)]
pub(super) struct Index<C> {
    /// Empty, or a power of two long.
    slots: Vec<Option<Slot<C>>>,
    occupied: usize,
    spill: HashMap<String, TenantRef>,
}

impl<C> Default for Index<C> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            occupied: 0,
            spill: HashMap::default(),
        }
    }
}

impl<C: Check> Index<C> {
    /// The entry whose key is `key` (and, where the hashes cannot tell,
    /// `text`, as `has_key` compares it), with whether it may be served
    /// when the slot knows.
    pub(super) fn get(
        &self,
        key: Key,
        text: &str,
        has_key: impl Fn(&TenantEntry, &str) -> bool,
    ) -> Option<Found<'_>> {
        if let Some(slot) = self.find(key.place).and_then(|at| self.slots[at].as_ref()) {
            let taken = slot
                .check
                .admits(key.check)
                .unwrap_or_else(|| has_key(slot.entry().get(), text));
            if taken {
                return Some(Found {
                    entry: slot.entry(),
                    served: slot.check.served(),
                });
            }
        }
        if self.spill.is_empty() {
            None
        } else {
            self.spill.get(text).map(|entry| Found {
                entry: entry.borrowed(),
                served: None,
            })
        }
    }

    /// Adds `entry` under `key` (its text `text`).
    pub(super) fn insert(&mut self, key: Key, text: &str, entry: &TenantRef) {
        if (self.occupied + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mut at = self.home(key.place);
        while let Some(slot) = &mut self.slots[at] {
            if slot.place() == key.place {
                slot.check.collided(key.check);
                self.spill.insert(text.to_owned(), entry.clone());
                return;
            }
            at = self.next(at);
        }
        let (chunk, position) = entry.borrowed().parts();
        let position = u64::from(u8::try_from(position).expect("a chunk holds at most 64 entries"));
        self.slots[at] = Some(Slot {
            place_and_position: key.place | position << 56,
            check: C::of(key.check, entry.blocked.is_none()),
            chunk: chunk.clone(),
        });
        self.occupied += 1;
    }

    /// Removes `entry`, which was inserted under `key` and `text`.
    pub(super) fn remove(&mut self, key: Key, text: &str, entry: &TenantRef) {
        let held = self.find(key.place).filter(|&at| {
            self.slots[at]
                .as_ref()
                .is_some_and(|slot| slot.entry().is(entry))
        });
        match held {
            Some(at) => self.vacate(at),
            None => {
                self.spill.remove(text);
            }
        }
    }

    /// How many entries the index holds.
    pub(super) fn len(&self) -> usize {
        self.occupied + self.spill.len()
    }

    /// Every entry, in no particular order.
    pub(super) fn values(&self) -> impl Iterator<Item = EntryIn<'_>> {
        self.slots
            .iter()
            .flatten()
            .map(Slot::entry)
            .chain(self.spill.values().map(TenantRef::borrowed))
    }

    /// Where the slot of first hash `place` is, if there is one.
    fn find(&self, place: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mut at = self.home(place);
        loop {
            match &self.slots[at] {
                None => return None,
                Some(slot) if slot.place() == place => return Some(at),
                Some(_) => at = self.next(at),
            }
        }
    }

    /// Empties slot `at` and moves later slots of the same run back into
    /// the hole where their home allows, so every probe still ends at the
    /// first empty slot (no tombstones).
    fn vacate(&mut self, at: usize) {
        self.slots[at] = None;
        self.occupied -= 1;
        let mask = self.slots.len() - 1;
        let mut hole = at;
        let mut next = self.next(at);
        while let Some(slot) = &self.slots[next] {
            let home = self.home(slot.place());
            // The slot may fill the hole when the hole lies on its probe
            // path: no farther from its home than the slot itself.
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.slots[hole] = self.slots[next].take();
                hole = next;
            }
            next = self.next(next);
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(
            &mut self.slots,
            std::iter::repeat_with(|| None).take(size).collect(),
        );
        for slot in old.into_iter().flatten() {
            let mut at = self.home(slot.place());
            while self.slots[at].is_some() {
                at = self.next(at);
            }
            self.slots[at] = Some(slot);
        }
    }

    fn home(&self, place: u64) -> usize {
        // Truncation keeps the low bits, which the mask keeps anyway.
        (place as usize) & (self.slots.len() - 1)
    }

    fn next(&self, at: usize) -> usize {
        (at + 1) & (self.slots.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{has_domain, tests::entry};

    fn key(place: u64, check: u64) -> Key {
        Key { place, check }
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
        assert!(index
            .get(key(2), "a.example", has_domain)
            .unwrap()
            .entry
            .is(&acme));
        assert!(index
            .get(key(4), "g.example", has_domain)
            .unwrap()
            .entry
            .is(&globex));
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
        assert!(index
            .get(same, "a.example", has_domain)
            .unwrap()
            .entry
            .is(&acme));
        assert!(index
            .get(same, "g.example", has_domain)
            .unwrap()
            .entry
            .is(&globex));
        assert!(
            index.get(same, "x.example", has_domain).is_none(),
            "a third text with the same hashes is no one's"
        );
    }

    #[test]
    fn removing_from_a_crowded_run_keeps_every_other_key_found() {
        // Forty keys whose first hashes differ only above the bits a table
        // of 64 slots looks at: five homes, two at the table's end, so the
        // runs are long and wrap around. Removing them in several orders
        // must leave every other key found.
        let entries: Vec<_> = (0..40)
            .map(|i| entry(&format!("t{i}"), &[&format!("t{i}.example")]))
            .collect();
        let keys: Vec<Key> = (0..40_u64)
            .map(|i| {
                key(
                    [0, 1, 2, 62, 63][(i % 5) as usize] | ((i + 1) << 32),
                    i * 2 + 2,
                )
            })
            .collect();
        for stride in [1, 7, 13] {
            let mut index = Index::<SecondHash>::default();
            for ((k, e), i) in keys.iter().zip(&entries).zip(0..) {
                index.insert(*k, &format!("t{i}.example"), e);
            }
            let mut removed = vec![false; keys.len()];
            for step in 0..keys.len() {
                let i = step * stride % keys.len();
                index.remove(keys[i], &format!("t{i}.example"), &entries[i]);
                removed[i] = true;
                for (j, gone) in removed.iter().enumerate() {
                    let found = index.get(keys[j], &format!("t{j}.example"), has_domain);
                    assert_eq!(found.is_none(), *gone, "key {j} after removing {i}");
                }
            }
            assert_eq!(index.values().count(), 0);
        }
    }
}
