//! One shard of the store: a hash table over a slab of entries, evicted by S3-FIFO per tier.
//!
//! The table maps a key's hash to its slot in the [`Slab`]; the [`Policy`] (`policy.rs`)
//! keeps each tier's queues and byte budget and says what to evict.
//!
//! Not safe for concurrent access by itself: [`super::Store`] wraps every shard in a
//! `RwLock`. A read hit needs only the read lock, because the one thing a hit changes,
//! the entry's access frequency, is an atomic. Everything else (insert, remove, eviction,
//! reaping) takes the write lock.

use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use hashbrown::HashTable;

use super::accounting::charge;
use super::key::Key;
use super::policy::Policy;
use super::slab::{Entry, Slab};
use super::{Tier, TierStats};

/// What a write did to the shard, and what it left for the caller to drop.
#[derive(Debug, Default)]
#[must_use]
pub(super) struct InsertOutcome {
    /// `false` when the entry was larger than the shard could ever hold.
    pub(super) stored: bool,
    /// The entry the write replaced, and the caller's key when it was copied inline:
    /// handed back so that their memory is freed after the shard's lock is released,
    /// not while readers wait for it.
    #[allow(dead_code, reason = "held only to be dropped")]
    pub(super) garbage: Garbage,
}

/// Memory a write no longer needs, to be dropped outside the shard's lock.
#[derive(Debug, Default)]
#[allow(dead_code, reason = "held only to be dropped")]
pub(super) struct Garbage {
    replaced: Option<Entry>,
    key: Option<Bytes>,
}

#[derive(Debug)]
pub(super) struct Shard {
    /// Slot indices of the entries, by hash.
    table: HashTable<u32>,
    slab: Slab,
    policy: Policy,
    reap_cursor: usize,
}

/// Drops slot `idx`, holding an entry with `hash`, from `table`.
fn unlink(table: &mut HashTable<u32>, idx: u32, hash: u64) {
    if let Ok(e) = table.find_entry(hash, |&i| i == idx) {
        e.remove();
    }
}

impl Shard {
    pub(super) fn new(capacity: usize, hot_capacity: usize) -> Self {
        Shard {
            table: HashTable::new(),
            slab: Slab::default(),
            policy: Policy::new(capacity, hot_capacity),
            reap_cursor: 0,
        }
    }

    #[inline]
    pub(super) fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        self.slab.get(self.find_index(hash, key)?)
    }

    #[inline]
    fn find_index(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slab = &self.slab;
        self.table
            .find(hash, |&i| {
                // The table only holds indices of occupied slots.
                slab.get(i)
                    .is_some_and(|e| e.hash == hash && e.key.as_slice() == key)
            })
            .copied()
    }

    pub(super) fn used(&self) -> usize {
        self.policy.used()
    }

    /// Whether an entry of `key_len` + `value_len` bytes can ever be stored in `tier`.
    pub(super) fn fits(&self, tier: Tier, key_len: usize, value_len: usize) -> bool {
        let charge = charge(key_len, value_len);
        charge <= self.policy.limit(tier) && charge <= u32::MAX as usize
    }

    /// Inserts or replaces `key` in `tier`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert(
        &mut self,
        tier: Tier,
        hash: u64,
        key: Bytes,
        value: Option<Bytes>,
        deadline: u64,
        version: u64,
        now_ms: impl FnOnce() -> u64,
    ) -> InsertOutcome {
        let charge = charge(key.len(), value.as_ref().map_or(0, Bytes::len));
        let mut garbage = Garbage::default();
        // An existing entry is replaced: it keeps its frequency (it was wanted) but moves
        // to the tier asked for.
        let mut freq = 0;
        let mut was_main = false;
        // The replaced entry's slot: freed here and, the slab's free list being LIFO,
        // taken again by the new entry below, so the table's index for this hash stays
        // as it is (no table remove and re-insert, which would leave a tombstone behind
        // every overwrite).
        let mut freed = None;
        if let Some(idx) = self.find_index(hash, &key) {
            let old = self.slab.remove(idx);
            self.policy.removed(&old);
            freq = old.freq.load(Ordering::Relaxed);
            was_main = old.in_main;
            garbage.replaced = Some(old);
            freed = Some(idx);
        }
        if charge > self.policy.limit(tier) || charge > u32::MAX as usize {
            if let Some(idx) = freed {
                unlink(&mut self.table, idx, hash);
            }
            return InsertOutcome {
                stored: false,
                garbage,
            };
        }
        let in_main = self.policy.admit(tier, hash, charge, was_main, &self.slab);
        let (key, spare) = Key::take(key);
        garbage.key = spare;
        let pos = self.slab.insert(Entry {
            key,
            value,
            hash,
            deadline,
            version,
            charge: charge as u32,
            freq: AtomicU8::new(freq),
            tier,
            in_main,
        });
        self.policy.push(tier, pos, charge, in_main);
        if freed != Some(pos.0) {
            if let Some(idx) = freed {
                unlink(&mut self.table, idx, hash);
            }
            let slab = &self.slab;
            self.table
                .insert_unique(hash, pos.0, |&i| slab.get(i).map_or(0, |e| e.hash));
        }
        let table = &mut self.table;
        self.policy
            .make_room(tier, &mut self.slab, now_ms, |idx, e| unlink(table, idx, e.hash));
        InsertOutcome {
            stored: true,
            garbage,
        }
    }

    /// Lends `bytes` of the budget to the store's large entries and evicts down to what
    /// is left.
    pub(super) fn lend(&mut self, bytes: usize, now_ms: u64) {
        self.policy.set_lent(bytes);
        let table = &mut self.table;
        self.policy.make_room(
            Tier::Main,
            &mut self.slab,
            || now_ms,
            |idx, e| unlink(table, idx, e.hash),
        );
    }

    /// Records what is lent now, without evicting (the insert that follows does).
    pub(super) fn set_lent(&mut self, bytes: usize) {
        self.policy.set_lent(bytes);
    }

    /// Visits every unexpired entry of `tier`.
    pub(super) fn for_each(&self, tier: Tier, now_ms: u64, mut f: impl FnMut(&[u8], &Entry)) {
        for e in self.slab.iter() {
            if e.tier == tier && !e.expired(now_ms) {
                f(e.key.as_slice(), e);
            }
        }
    }

    /// Removes `key`; returns whether it was present.
    pub(super) fn remove(&mut self, hash: u64, key: &[u8]) -> bool {
        match self.find_index(hash, key) {
            Some(idx) => {
                self.remove_index(idx);
                true
            }
            None => false,
        }
    }

    /// Frees slot `idx`; its queue position goes stale and is skipped later.
    fn remove_index(&mut self, idx: u32) {
        let entry = self.slab.remove(idx);
        unlink(&mut self.table, idx, entry.hash);
        self.policy.removed(&entry);
    }

    /// Removes expired entries, looking at no more than `max_scan` slots from where the
    /// last call stopped. Returns how many it removed.
    pub(super) fn reap(&mut self, now_ms: u64, max_scan: usize) -> usize {
        let n = self.slab.slot_count();
        if n == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..max_scan.min(n) {
            let i = self.reap_cursor % n;
            self.reap_cursor = (i + 1) % n;
            let expired_tier = self
                .slab
                .get(i as u32)
                .filter(|e| e.expired(now_ms))
                .map(|e| e.tier);
            if let Some(tier) = expired_tier {
                self.remove_index(i as u32);
                self.policy.expired(tier);
                removed += 1;
            }
        }
        self.policy.compact(&self.slab);
        removed
    }

    pub(super) fn clear(&mut self) {
        self.table.clear();
        self.slab.clear();
        self.policy.clear();
        self.reap_cursor = 0;
    }

    pub(super) fn add_stats(&self, tier: Tier, out: &mut TierStats) {
        self.policy.add_stats(tier, out);
    }

    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let items = self.policy.check_invariants(&self.slab);
        assert_eq!(self.table.len(), items);
    }
}

#[cfg(test)]
mod tests {
    use super::super::key::INLINE_KEY;
    use super::*;

    fn key(i: u64) -> Bytes {
        Bytes::from(format!("k{i}"))
    }

    #[test]
    fn insert_find_remove() {
        let mut s = Shard::new(100_000, 10_000);
        let _ = s.insert(Tier::Main, 1, key(1), Some(Bytes::from_static(b"v")), 0, 0, || 0);
        assert_eq!(s.find(1, b"k1").unwrap().value.as_deref(), Some(&b"v"[..]));
        assert!(s.find(1, b"k2").is_none());
        assert!(s.remove(1, b"k1"));
        assert!(s.find(1, b"k1").is_none());
        s.check_invariants();
    }

    #[test]
    fn finds_inline_and_heap_keys_exactly() {
        let mut s = Shard::new(100_000, 10_000);
        let short = Bytes::from(vec![b's'; INLINE_KEY]);
        let long = Bytes::from(vec![b'l'; INLINE_KEY + 1]);
        for (h, k) in [(1, &short), (2, &long)] {
            let _ = s.insert(
                Tier::Main,
                h,
                k.clone(),
                Some(Bytes::from_static(b"v")),
                0,
                0,
                || 0,
            );
            assert_eq!(s.find(h, k).unwrap().key.as_slice(), &k[..]);
            assert!(s.find(h, &k[..k.len() - 1]).is_none(), "a prefix is another key");
        }
        assert!(matches!(s.find(1, &short).unwrap().key, Key::Inline { .. }));
        assert!(matches!(s.find(2, &long).unwrap().key, Key::Heap(_)));
        assert!(s.remove(2, &long) && s.remove(1, &short));
        s.check_invariants();
    }

    #[test]
    fn oversized_entry_is_not_stored() {
        let mut s = Shard::new(1000, 100);
        let out = s.insert(
            Tier::Main,
            1,
            key(1),
            Some(Bytes::from(vec![0; 2000])),
            0,
            0,
            || 0,
        );
        assert!(!out.stored);
        assert_eq!(s.used(), 0);
    }

    #[test]
    fn reap_frees_expired_entries() {
        let mut s = Shard::new(1 << 20, 1 << 17);
        for i in 0..100 {
            let deadline = if i % 2 == 0 { 50 } else { 0 };
            let _ = s.insert(
                Tier::Main,
                i,
                key(i),
                Some(Bytes::from_static(b"x")),
                deadline,
                0,
                || 0,
            );
        }
        assert_eq!(s.reap(100, 1000), 50);
        s.check_invariants();
        let mut st = TierStats::default();
        s.add_stats(Tier::Main, &mut st);
        assert_eq!((st.items, st.expirations), (50, 50));
    }
}
