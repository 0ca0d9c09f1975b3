//! Where a snapshot's entries live: in chunks built together and shared
//! by reference count, so that handing a request its tenant counts a
//! reference to its chunk (one of few counters, which stay in cache)
//! instead of to the entry (a cache miss per request in a large fleet).

use std::{ops::Deref, sync::Arc};

use super::TenantEntry;

/// Entries built together; never changed once built.
#[derive(Debug)]
pub(super) struct Chunk(Box<[TenantEntry]>);

/// One tenant's entry, kept alive (with the chunk it was built in) for as
/// long as the handle is held, whatever snapshots replace the one it came
/// from.
#[derive(Debug, Clone)]
pub struct TenantRef {
    chunk: Arc<Chunk>,
    at: u32,
}

impl Deref for TenantRef {
    type Target = TenantEntry;

    fn deref(&self) -> &TenantEntry {
        self.borrowed().get()
    }
}

impl TenantRef {
    /// The handle, borrowed.
    pub(super) fn borrowed(&self) -> EntryIn<'_> {
        EntryIn {
            chunk: &self.chunk,
            at: self.at,
        }
    }

    /// Handles to `entries`, built into chunks of `chunk_len` (at least one).
    pub(super) fn chunked(entries: Vec<TenantEntry>, chunk_len: usize) -> Vec<TenantRef> {
        let chunk_len = chunk_len.max(1);
        let mut refs = Vec::with_capacity(entries.len());
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let chunk = Arc::new(Chunk(entries.by_ref().take(chunk_len).collect()));
            refs.extend((0..chunk.0.len()).map(|at| TenantRef {
                chunk: chunk.clone(),
                at: u32::try_from(at).expect("a chunk's positions fit 32 bits"),
            }));
        }
        refs
    }
}

/// An entry of a chunk someone else holds: what an index slot keeps, a
/// handle without its own count.
#[derive(Debug, Clone, Copy)]
pub(super) struct EntryIn<'a> {
    chunk: &'a Arc<Chunk>,
    at: u32,
}

impl<'a> EntryIn<'a> {
    /// Entry `at` of `chunk`.
    pub(super) fn new(chunk: &'a Arc<Chunk>, at: u32) -> Self {
        Self { chunk, at }
    }

    /// Its chunk and position.
    pub(super) fn parts(self) -> (&'a Arc<Chunk>, u32) {
        (self.chunk, self.at)
    }

    /// The entry.
    pub(super) fn get(self) -> &'a TenantEntry {
        &self.chunk.0[self.at as usize]
    }

    /// A handle of its own: keeps the chunk alive.
    pub(super) fn to_ref(self) -> TenantRef {
        TenantRef {
            chunk: self.chunk.clone(),
            at: self.at,
        }
    }

    /// Whether it is the entry `handle` is to.
    pub(super) fn is(self, handle: &TenantRef) -> bool {
        Arc::ptr_eq(self.chunk, &handle.chunk) && self.at == handle.at
    }
}

/// How many entries a snapshot of `tenants` builds into one chunk: one for
/// a small fleet, whose entries stay in cache anyway (and whose requests
/// on different cores then share no counter); up to 64 for a large one, so
/// its chunks' counters stay few (about 1,600 for 100,000 tenants). The
/// index keeps a position in a byte: never more than 64.
pub(super) fn chunk_len(tenants: usize) -> usize {
    (tenants / 1024).clamp(1, 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tests::entry_data;

    #[test]
    fn every_entry_is_reached_through_its_own_handle() {
        for (n, len) in [(0, 1), (1, 1), (5, 2), (130, 64), (129, 64)] {
            let entries: Vec<_> = (0..n).map(|i| entry_data(&format!("t{i}"), &[])).collect();
            let refs = TenantRef::chunked(entries, len);
            assert_eq!(refs.len(), n);
            for (i, handle) in refs.iter().enumerate() {
                assert_eq!(handle.name.as_str(), format!("t{i}"));
                assert!(handle.borrowed().is(&handle.clone()));
            }
            for pair in refs.windows(2) {
                assert!(!pair[0].borrowed().is(&pair[1]));
            }
        }
    }

    #[test]
    fn chunks_grow_with_the_fleet_up_to_64() {
        assert_eq!(chunk_len(10), 1);
        assert_eq!(chunk_len(10_000), 9);
        assert_eq!(chunk_len(100_000), 64);
        assert_eq!(chunk_len(1_000_000), 64);
    }
}
