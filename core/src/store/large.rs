//! Entries too large for a shard: one table beside the shards, charged against the same
//! byte budget.
//!
//! A shard holds entries up to a quarter of its budget (a larger one would push out most
//! of the shard for one key). Larger main-tier entries, up to half the store's capacity,
//! live here instead. What they cost is *lent* by the shards: every shard's main budget
//! shrinks by an equal share of the bytes held here ([`Large::share`]), and the store makes
//! every shard evict down to its smaller budget after a large insert, so both together
//! never hold more than the capacity.
//!
//! Large entries are few (each is at least a quarter of a shard), so eviction can afford a
//! scan: expired entries go first, then the least-read, oldest first. A read takes the read
//! lock and records the read in the entry, as in a shard.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use hashbrown::HashTable;
use parking_lot::RwLock;

use super::key::Key;
use super::slab::Entry;
use super::{Tier, TierStats};

/// An entry and when it came, for the oldest-first rule.
#[derive(Debug)]
struct Big {
    entry: Entry,
    seq: u64,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashTable<Big>,
    next_seq: u64,
    evictions: u64,
    expirations: u64,
}

#[derive(Debug)]
pub(super) struct Large {
    table: RwLock<Table>,
    /// Bytes charged now (also read without the lock by [`Large::share`]).
    bytes: AtomicUsize,
    /// Entries now, so a miss in a store without large entries skips the lock.
    count: AtomicUsize,
    /// The most this area may hold.
    limit: usize,
    shards: usize,
}

impl Large {
    pub(super) fn new(limit: usize, shards: usize) -> Self {
        Large {
            table: RwLock::default(),
            bytes: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            limit,
            shards: shards.max(1),
        }
    }

    /// The most one entry (and all of them together) may be charged.
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// The bytes every shard lends this area now.
    #[inline]
    pub(super) fn share(&self) -> usize {
        self.bytes.load(Ordering::Relaxed).div_ceil(self.shards)
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// Finds `key`, records the read and hands the entry to `f` under the read lock.
    /// Expired entries are not found.
    #[inline]
    pub(super) fn read<R>(
        &self,
        hash: u64,
        key: &[u8],
        now_ms: u64,
        f: impl FnOnce(&Entry) -> R,
    ) -> Option<R> {
        if self.is_empty() {
            return None;
        }
        let table = self.table.read();
        let big = table.entries.find(hash, |b| b.entry.key.as_slice() == key)?;
        if big.entry.expired(now_ms) {
            return None;
        }
        big.entry.touch();
        Some(f(&big.entry))
    }

    /// Stores `key` (replacing any older entry for it), evicting others as needed.
    /// `charge` must be at most [`Large::limit`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert(
        &self,
        hash: u64,
        key: Bytes,
        value: Bytes,
        deadline: u64,
        version: u64,
        now_ms: u64,
        charge: usize,
    ) {
        debug_assert!(charge <= self.limit);
        let mut table = self.table.write();
        self.remove_locked(&mut table, hash, &key);
        while self.bytes() + charge > self.limit {
            if !self.evict_one(&mut table, now_ms) {
                break;
            }
        }
        let seq = table.next_seq;
        table.next_seq += 1;
        let entry = Entry {
            key: Key::new(key),
            value: Some(value),
            hash,
            deadline,
            version,
            charge: charge as u32,
            freq: Default::default(),
            tier: Tier::Main,
            in_main: true,
        };
        table
            .entries
            .insert_unique(hash, Big { entry, seq }, |b| b.entry.hash);
        self.bytes.fetch_add(charge, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes `key`; returns whether it was present.
    pub(super) fn remove(&self, hash: u64, key: &[u8]) -> bool {
        if self.is_empty() {
            return false;
        }
        self.remove_locked(&mut self.table.write(), hash, key)
    }

    fn remove_locked(&self, table: &mut Table, hash: u64, key: &[u8]) -> bool {
        match table.entries.find_entry(hash, |b| b.entry.key.as_slice() == key) {
            Ok(found) => {
                let (big, _) = found.remove();
                self.uncharge(&big.entry);
                true
            }
            Err(_) => false,
        }
    }

    fn uncharge(&self, entry: &Entry) {
        self.bytes.fetch_sub(entry.charge as usize, Ordering::Relaxed);
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Evicts one entry: an expired one if any, else the least-read, oldest first.
    fn evict_one(&self, table: &mut Table, now_ms: u64) -> bool {
        let victim = table
            .entries
            .iter()
            .min_by_key(|b| {
                let live = !b.entry.expired(now_ms);
                (live, b.entry.freq.load(Ordering::Relaxed), b.seq)
            })
            .map(|b| (b.entry.hash, b.seq, b.entry.expired(now_ms)));
        let Some((hash, seq, expired)) = victim else {
            return false;
        };
        if let Ok(found) = table.entries.find_entry(hash, |b| b.seq == seq) {
            let (big, _) = found.remove();
            self.uncharge(&big.entry);
        }
        if expired {
            table.expirations += 1;
        } else {
            table.evictions += 1;
        }
        true
    }

    /// Visits every unexpired entry.
    pub(super) fn for_each(&self, now_ms: u64, mut f: impl FnMut(&[u8], &Entry)) {
        if self.is_empty() {
            return;
        }
        for b in self.table.read().entries.iter() {
            if !b.entry.expired(now_ms) {
                f(b.entry.key.as_slice(), &b.entry);
            }
        }
    }

    /// Removes expired entries; returns how many.
    pub(super) fn reap(&self, now_ms: u64) -> usize {
        if self.is_empty() {
            return 0;
        }
        let mut table = self.table.write();
        let mut removed = Vec::new();
        table.entries.retain(|b| {
            let expired = b.entry.expired(now_ms);
            if expired {
                removed.push(b.entry.charge);
            }
            !expired
        });
        for charge in &removed {
            self.bytes.fetch_sub(*charge as usize, Ordering::Relaxed);
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        table.expirations += removed.len() as u64;
        removed.len()
    }

    pub(super) fn clear(&self) {
        let mut table = self.table.write();
        table.entries.clear();
        self.bytes.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
    }

    /// Adds this area's entries to the main tier's counters.
    pub(super) fn add_stats(&self, out: &mut TierStats) {
        let table = self.table.read();
        out.items += table.entries.len() as u64;
        out.bytes += self.bytes() as u64;
        out.evictions += table.evictions;
        out.expirations += table.expirations;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(n: usize) -> Bytes {
        Bytes::from(vec![7; n])
    }

    #[test]
    fn holds_replaces_and_removes() {
        let large = Large::new(1000, 4);
        large.insert(1, Bytes::from_static(b"a"), big(10), 0, 0, 0, 400);
        assert_eq!(large.read(1, b"a", 0, |e| e.value.clone()), Some(Some(big(10))));
        assert_eq!(large.share(), 100);
        large.insert(1, Bytes::from_static(b"a"), big(20), 0, 0, 0, 500);
        assert_eq!(large.bytes(), 500, "a replaced entry is uncharged");
        assert!(large.remove(1, b"a"));
        assert!(large.is_empty() && large.bytes() == 0);
    }

    #[test]
    fn evicts_expired_then_least_read_oldest_first() {
        let large = Large::new(1000, 1);
        large.insert(1, Bytes::from_static(b"old"), big(1), 0, 0, 0, 300);
        large.insert(2, Bytes::from_static(b"read"), big(1), 0, 0, 0, 300);
        large.insert(3, Bytes::from_static(b"gone"), big(1), 50, 0, 0, 300);
        large.read(2, b"read", 0, |_| ());
        // 100 ms later "gone" has expired: it makes room first, then "old" (unread).
        large.insert(4, Bytes::from_static(b"new"), big(1), 0, 0, 100, 600);
        assert!(large.read(2, b"read", 100, |_| ()).is_some());
        assert!(large.read(1, b"old", 100, |_| ()).is_none());
        let mut st = TierStats::default();
        large.add_stats(&mut st);
        assert_eq!((st.items, st.bytes, st.evictions, st.expirations), (2, 900, 1, 1));
    }

    #[test]
    fn reaps_expired_entries() {
        let large = Large::new(1000, 1);
        large.insert(1, Bytes::from_static(b"a"), big(1), 10, 0, 0, 300);
        large.insert(2, Bytes::from_static(b"b"), big(1), 0, 0, 0, 300);
        assert!(large.read(1, b"a", 10, |_| ()).is_none(), "expired is not found");
        assert_eq!(large.reap(10), 1);
        assert_eq!(large.bytes(), 300);
    }

    mod in_the_store {
        use std::sync::Arc;
        use std::time::Duration;

        use bytes::Bytes;

        use super::super::super::{Store, StoreConfig, Tier};
        use crate::clock::ManualClock;

        fn store(capacity: usize) -> (Store, ManualClock) {
            let clock = ManualClock::new(1_000);
            let store = Store::new(StoreConfig::new(capacity), Arc::new(clock.clone()));
            (store, clock)
        }

        fn key(i: usize) -> Bytes {
            Bytes::from(format!("key-{i}"))
        }

        #[test]
        fn a_value_of_megabytes_is_held_and_read() {
            let (s, _) = store(256 << 20);
            let big = Bytes::from(vec![3u8; 4 << 20]);
            assert!(s.fits(Tier::Main, 3, big.len()));
            assert!(s.insert(Tier::Main, key(0), Some(big.clone()), 0));
            assert_eq!(s.get(b"key-0").unwrap().value, Some(big));
            assert_eq!(s.tier_of(b"key-0"), Some(Tier::Main));
            let st = s.stats();
            assert_eq!(st.main.items, 1);
            assert!(st.main.bytes >= 4 << 20);
            assert!(s.remove(b"key-0") && s.get(b"key-0").is_none());
            assert_eq!(s.used_bytes(), 0);
        }

        #[test]
        fn over_half_the_capacity_is_not_held_and_hot_mirrors_stay_small() {
            let (s, _) = store(8 << 20);
            assert!(!s.fits(Tier::Main, 3, 5 << 20));
            assert!(!s.insert(Tier::Main, key(0), Some(Bytes::from(vec![0; 5 << 20])), 0));
            assert!(
                !s.fits(Tier::Hot, 3, 1 << 20),
                "a mirror must fit a shard's hot share"
            );
        }

        #[test]
        fn small_and_large_entries_together_stay_within_the_capacity() {
            let cap = 16 << 20;
            let (s, _) = store(cap);
            for i in 0..40_000 {
                s.insert(Tier::Main, key(i), Some(Bytes::from(vec![1; 1000])), 0);
            }
            assert!(s.used_bytes() <= cap);
            for i in 0..6 {
                let big = Bytes::from(vec![2; (1 << 20) + i]);
                assert!(s.insert(Tier::Main, key(100_000 + i), Some(big), 0));
                assert!(s.used_bytes() <= cap, "{} > {cap}", s.used_bytes());
            }
            // Half the capacity at most: the oldest unread large entries made room.
            assert!(s.large.bytes() <= cap / 2);
            assert!(s.get(b"key-100005").is_some());
            s.check_invariants();
        }

        #[test]
        fn a_key_moves_between_a_shard_and_the_large_area() {
            let (s, clock) = store(16 << 20);
            let k = key(1);
            s.insert(Tier::Main, k.clone(), Some(Bytes::from(vec![1; 2 << 20])), 0);
            s.insert(Tier::Main, k.clone(), Some(Bytes::from_static(b"small")), 0);
            assert_eq!(s.get(&k).unwrap().value.as_deref(), Some(&b"small"[..]));
            assert!(s.large.is_empty(), "the large copy went");
            s.insert(Tier::Main, k.clone(), Some(Bytes::from(vec![1; 2 << 20])), 2_000);
            assert_eq!(s.get(&k).unwrap().value.unwrap().len(), 2 << 20);
            assert_eq!(s.stats().main.items, 1, "the small copy went");
            clock.advance(Duration::from_secs(1));
            assert!(s.get(&k).is_none(), "expired");
            assert_eq!(s.reap(16), 1);
            assert_eq!(s.used_bytes(), 0);
        }
    }
}
