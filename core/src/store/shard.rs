//! One shard of the store: a hash table over a slab of entries, and per tier an S3-FIFO
//! eviction policy (a small probationary FIFO, a main FIFO with reinsertion, and a ghost
//! FIFO of recently evicted key hashes).
//!
//! Not safe for concurrent access by itself: [`super::Store`] wraps every shard in a
//! `RwLock`. A read hit needs only the read lock, because the one thing a hit changes,
//! the entry's access frequency, is an atomic. Everything else (insert, remove, eviction,
//! reaping) takes the write lock.
//!
//! # Why S3-FIFO
//!
//! It is scan-resistant (one-hit wonders leave from the small queue without disturbing
//! the main queue), a hit is a relaxed atomic store into the entry and nothing more, and on
//! the traces in `BENCHMARKS.md` it matches W-TinyLFU within a point or two while being
//! far cheaper per operation. See `examples/hit_ratio.rs`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use hashbrown::HashTable;

use super::sketch::Sketch;
use super::{ENTRY_OVERHEAD, Tier, TierStats};

/// An entry leaves the small queue for the main queue once it has been read this often
/// while in the small queue.
const PROMOTE_FREQ: u8 = 1;
/// The small (probationary) queue's share of a tier: 1/SMALL_DIVISOR.
const SMALL_DIVISOR: usize = 50;
/// Frequencies saturate here: a main-queue entry survives at most this many passes of
/// the eviction hand without being read again.
const MAX_FREQ: u8 = 3;

/// Keys up to this many bytes are stored inside the entry.
const INLINE_KEY: usize = 23;

/// An entry's key. Short keys (the common case: ids, hashes, short names) live inline,
/// so a lookup compares them without following a pointer to another allocation (one
/// cache miss fewer per get, measured in `examples/throughput.rs`) and the store holds no
/// allocation for them; longer keys keep the caller's `Bytes`.
#[derive(Debug)]
pub(super) enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Bytes),
}

impl Key {
    fn new(key: Bytes) -> Self {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(&key);
            Key::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(key)
        }
    }

    #[inline]
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(b) => b,
        }
    }
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: Key,
    /// `None` is a cached "not found" (negative caching).
    pub(super) value: Option<Bytes>,
    pub(super) hash: u64,
    /// Absolute unix milliseconds; `0` never expires.
    pub(super) deadline: u64,
    charge: u32,
    freq: AtomicU8,
    tier: Tier,
    in_main: bool,
}

impl Entry {
    #[inline]
    pub(super) fn expired(&self, now_ms: u64) -> bool {
        self.deadline != 0 && self.deadline <= now_ms
    }

    #[inline]
    pub(super) fn tier(&self) -> Tier {
        self.tier
    }

    /// Records a read. A relaxed load first, so that a hot entry (already at the cap)
    /// costs no write and no cache-line ping-pong between readers.
    #[inline]
    pub(super) fn touch(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < MAX_FREQ {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct Slot {
    /// Bumped whenever the slot is freed, so queue positions that name an old occupant
    /// are recognised as stale and skipped.
    generation: u32,
    entry: Option<Entry>,
}

/// A queue position: slot index and the generation it was pushed with.
type Pos = (u32, u32);

/// Ghost FIFO: hashes of keys recently evicted from the small queue. A key that comes
/// back while its ghost is remembered goes straight to the main queue.
#[derive(Debug, Default)]
struct Ghost {
    order: VecDeque<u64>,
    /// hash -> number of times it is in `order` (hash collisions and re-evictions).
    counts: HashTable<(u64, u32)>,
}

impl Ghost {
    fn contains_and_remove(&mut self, hash: u64) -> bool {
        // The FIFO keeps its copy; the count decides membership.
        match self.counts.find_entry(hash, |e| e.0 == hash) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    fn push(&mut self, hash: u64, cap: usize) {
        self.order.push_back(hash);
        match self.counts.find_mut(hash, |e| e.0 == hash) {
            Some(e) => e.1 += 1,
            None => {
                self.counts.insert_unique(hash, (hash, 1), |e| e.0);
            }
        }
        while self.order.len() > cap.max(1) {
            let Some(old) = self.order.pop_front() else { break };
            if let Ok(mut e) = self.counts.find_entry(old, |e| e.0 == old) {
                if e.get().1 <= 1 {
                    e.remove();
                } else {
                    e.get_mut().1 -= 1;
                }
            }
        }
    }

    fn clear(&mut self) {
        self.order.clear();
        self.counts.clear();
    }
}

#[derive(Debug, Default)]
struct TierState {
    small: VecDeque<Pos>,
    main: VecDeque<Pos>,
    small_bytes: usize,
    main_bytes: usize,
    items: usize,
    ghost: Ghost,
    evictions: u64,
    expirations: u64,
}

impl TierState {
    fn bytes(&self) -> usize {
        self.small_bytes + self.main_bytes
    }
}

/// What a write did to the shard, for the store's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct InsertOutcome {
    /// `false` when the entry was larger than the shard could ever hold.
    pub(super) stored: bool,
}

#[derive(Debug)]
pub(super) struct Shard {
    table: HashTable<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    tiers: [TierState; 2],
    capacity: usize,
    hot_capacity: usize,
    reap_cursor: usize,
    /// Miss frequencies, for admission from the ghost into a full main queue.
    sketch: Sketch,
}

#[inline]
fn tier_index(t: Tier) -> usize {
    match t {
        Tier::Main => 0,
        Tier::Hot => 1,
    }
}

/// What an entry costs against the budget: its bytes, what the allocator adds to each
/// allocation, and the fixed per-entry overhead of the table, slab and queues.
#[inline]
pub(super) fn charge(key_len: usize, value_len: usize) -> usize {
    let key_alloc = if key_len <= INLINE_KEY {
        0
    } else {
        alloc_size(key_len)
    };
    key_alloc + alloc_size(value_len) + ENTRY_OVERHEAD
}

/// glibc-style malloc chunk size for an `n`-byte allocation (8-byte header, 16-byte
/// alignment, 32-byte minimum).
#[inline]
fn alloc_size(n: usize) -> usize {
    if n == 0 { 0 } else { ((n + 8 + 15) & !15).max(32) }
}

impl Shard {
    pub(super) fn new(capacity: usize, hot_capacity: usize) -> Self {
        Shard {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            tiers: Default::default(),
            capacity,
            hot_capacity,
            reap_cursor: 0,
            sketch: Sketch::new(capacity / (ENTRY_OVERHEAD + 64)),
        }
    }

    #[inline]
    pub(super) fn find(&self, hash: u64, key: &[u8]) -> Option<&Entry> {
        let slots = &self.slots;
        let idx = self.table.find(hash, |&i| {
            // Safe indexing: the table only holds indices of occupied slots.
            slots[i as usize]
                .entry
                .as_ref()
                .is_some_and(|e| e.hash == hash && e.key.as_slice() == key)
        })?;
        self.slots[*idx as usize].entry.as_ref()
    }

    fn find_index(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| {
                slots[i as usize]
                    .entry
                    .as_ref()
                    .is_some_and(|e| e.hash == hash && e.key.as_slice() == key)
            })
            .copied()
    }

    pub(super) fn used(&self) -> usize {
        self.tiers[0].bytes() + self.tiers[1].bytes()
    }

    /// Inserts or replaces `key` in `tier`.
    pub(super) fn insert(
        &mut self,
        tier: Tier,
        hash: u64,
        key: Bytes,
        value: Option<Bytes>,
        deadline: u64,
        now_ms: u64,
    ) -> InsertOutcome {
        let charge = charge(key.len(), value.as_ref().map_or(0, Bytes::len));
        let limit = match tier {
            Tier::Main => self.capacity,
            Tier::Hot => self.hot_capacity,
        };
        // An existing entry is replaced: it keeps its frequency (it was wanted) but moves
        // to the tier asked for.
        let mut freq = 0;
        let mut from_ghost = false;
        if let Some(idx) = self.find_index(hash, &key) {
            let e = self.slots[idx as usize]
                .entry
                .as_ref()
                .expect("indexed slot is occupied");
            freq = e.freq.load(Ordering::Relaxed);
            from_ghost = e.in_main;
            self.remove_index(idx);
        }
        if charge > limit || charge > u32::MAX as usize {
            return InsertOutcome { stored: false };
        }
        let t = tier_index(tier);
        self.sketch.increment(hash);
        if self.tiers[t].ghost.contains_and_remove(hash) && !from_ghost {
            from_ghost = self.admit_to_main(t, hash, charge);
        }

        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[idx as usize];
        slot.entry = Some(Entry {
            key: Key::new(key),
            value,
            hash,
            deadline,
            charge: charge as u32,
            freq: AtomicU8::new(freq),
            tier,
            in_main: from_ghost,
        });
        let pos = (idx, slot.generation);
        let state = &mut self.tiers[t];
        if from_ghost {
            state.main.push_back(pos);
            state.main_bytes += charge;
        } else {
            state.small.push_back(pos);
            state.small_bytes += charge;
        }
        state.items += 1;
        let slots = &self.slots;
        self.table.insert_unique(hash, idx, |&i| {
            slots[i as usize].entry.as_ref().map_or(0, |e| e.hash)
        });

        if tier == Tier::Hot {
            while self.tiers[1].bytes() > self.hot_capacity {
                if !self.evict_from(1, now_ms) {
                    break;
                }
            }
        }
        while self.used() > self.capacity {
            // The hot tier gives way first while it is over its share, so mirrors of other
            // nodes' keys never crowd out the keys this node owns.
            let hot = &self.tiers[1];
            let t = if hot.bytes() > self.hot_capacity || self.tiers[0].items == 0 {
                1
            } else {
                0
            };
            if !self.evict_from(t, now_ms) && !self.evict_from(1 - t, now_ms) {
                break;
            }
        }
        InsertOutcome { stored: true }
    }

    /// Whether a key back from the ghost may enter tier `t`'s main queue: yes while the
    /// main queue is below its 90% share, else only if the key was missed more often than
    /// the entry it would displace was missed and read. Ties keep the incumbent, which is
    /// what keeps a loop slightly larger than the cache from churning the main queue.
    fn admit_to_main(&self, t: usize, hash: u64, charge: usize) -> bool {
        let budget = if t == 1 {
            self.hot_capacity
        } else {
            self.capacity.saturating_sub(self.tiers[1].bytes())
        };
        let state = &self.tiers[t];
        if (state.main_bytes + charge) * SMALL_DIVISOR <= budget * (SMALL_DIVISOR - 1) {
            return true;
        }
        match state.main.iter().find_map(|&p| self.live(p)) {
            None => true,
            Some(v) => {
                let incumbent = self.sketch.estimate(v.hash) + v.freq.load(Ordering::Relaxed);
                self.sketch.estimate(hash) > incumbent
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
    fn remove_index(&mut self, idx: u32) -> Entry {
        let slot = &mut self.slots[idx as usize];
        let entry = slot.entry.take().expect("removing an occupied slot");
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(idx);
        if let Ok(e) = self.table.find_entry(entry.hash, |&i| i == idx) {
            e.remove();
        }
        let state = &mut self.tiers[tier_index(entry.tier)];
        if entry.in_main {
            state.main_bytes -= entry.charge as usize;
        } else {
            state.small_bytes -= entry.charge as usize;
        }
        state.items -= 1;
        entry
    }

    /// The live entry at `pos`, or `None` if the position is stale.
    fn live(&self, pos: Pos) -> Option<&Entry> {
        let slot = &self.slots[pos.0 as usize];
        if slot.generation == pos.1 {
            slot.entry.as_ref()
        } else {
            None
        }
    }

    /// Evicts one entry from tier `t` (an expired one counts). Returns `false` when the
    /// tier is empty.
    fn evict_from(&mut self, t: usize, now_ms: u64) -> bool {
        let budget = if t == 1 {
            self.hot_capacity
        } else {
            self.capacity.saturating_sub(self.tiers[1].bytes())
        };
        loop {
            let state = &self.tiers[t];
            let from_small = !state.small.is_empty()
                && (state.small_bytes * SMALL_DIVISOR >= budget || state.main.is_empty());
            let pos = if from_small {
                self.tiers[t].small.pop_front()
            } else {
                self.tiers[t].main.pop_front()
            };
            let Some(pos) = pos else { return false };
            let Some(entry) = self.live(pos) else { continue };
            if entry.expired(now_ms) {
                self.remove_index(pos.0);
                self.tiers[t].expirations += 1;
                return true;
            }
            let freq = entry.freq.load(Ordering::Relaxed);
            let charge = entry.charge as usize;
            if from_small {
                if freq >= PROMOTE_FREQ {
                    // Read while on probation: promote, with its count reset.
                    let slot = &mut self.slots[pos.0 as usize];
                    let e = slot.entry.as_mut().expect("live");
                    e.freq.store(0, Ordering::Relaxed);
                    e.in_main = true;
                    let state = &mut self.tiers[t];
                    state.small_bytes -= charge;
                    state.main_bytes += charge;
                    state.main.push_back(pos);
                    continue;
                }
                let entry = self.remove_index(pos.0);
                let state = &mut self.tiers[t];
                let ghost_cap = state.items.max(16);
                state.ghost.push(entry.hash, ghost_cap);
                state.evictions += 1;
                return true;
            }
            if freq > 0 {
                entry.freq.store(freq - 1, Ordering::Relaxed);
                self.tiers[t].main.push_back(pos);
                continue;
            }
            self.remove_index(pos.0);
            self.tiers[t].evictions += 1;
            return true;
        }
    }

    /// Removes expired entries, looking at no more than `max_scan` slots from where the
    /// last call stopped. Returns how many it removed.
    pub(super) fn reap(&mut self, now_ms: u64, max_scan: usize) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..max_scan.min(n) {
            let i = self.reap_cursor % n;
            self.reap_cursor = (i + 1) % n;
            let expired_tier = self.slots[i]
                .entry
                .as_ref()
                .filter(|e| e.expired(now_ms))
                .map(|e| e.tier);
            if let Some(tier) = expired_tier {
                self.remove_index(i as u32);
                self.tiers[tier_index(tier)].expirations += 1;
                removed += 1;
            }
        }
        self.compact_queues();
        removed
    }

    /// Drops stale positions once they dominate a queue, so a delete-heavy workload does
    /// not grow the queues without bound.
    fn compact_queues(&mut self) {
        let slots = &self.slots;
        for state in &mut self.tiers {
            let live = state.items;
            if state.small.len() + state.main.len() > 2 * live + 64 {
                let keep =
                    |p: &Pos| slots[p.0 as usize].generation == p.1 && slots[p.0 as usize].entry.is_some();
                state.small.retain(keep);
                state.main.retain(keep);
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.table.clear();
        self.slots.clear();
        self.free.clear();
        for t in &mut self.tiers {
            let (evictions, expirations) = (t.evictions, t.expirations);
            *t = TierState::default();
            t.evictions = evictions;
            t.expirations = expirations;
            t.ghost.clear();
        }
        self.reap_cursor = 0;
    }

    pub(super) fn add_stats(&self, tier: Tier, out: &mut TierStats) {
        let t = &self.tiers[tier_index(tier)];
        out.items += t.items as u64;
        out.bytes += t.bytes() as u64;
        out.evictions += t.evictions;
        out.expirations += t.expirations;
    }

    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        for t in &self.tiers {
            let live = |q: &VecDeque<Pos>| q.iter().filter(|p| self.live(**p).is_some()).count();
            assert_eq!(live(&t.small) + live(&t.main), t.items);
        }
        assert_eq!(self.table.len(), self.tiers[0].items + self.tiers[1].items);
        assert!(
            self.used() <= self.capacity,
            "used {} > capacity {}",
            self.used(),
            self.capacity
        );
        assert!(self.tiers[1].bytes() <= self.hot_capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Bytes {
        Bytes::from(format!("k{i}"))
    }

    #[test]
    fn insert_find_remove() {
        let mut s = Shard::new(100_000, 10_000);
        s.insert(Tier::Main, 1, key(1), Some(Bytes::from_static(b"v")), 0, 0);
        assert_eq!(s.find(1, b"k1").unwrap().value.as_deref(), Some(&b"v"[..]));
        assert!(s.find(1, b"k2").is_none());
        assert!(s.remove(1, b"k1"));
        assert!(s.find(1, b"k1").is_none());
        s.check_invariants();
    }

    #[test]
    fn short_keys_inline_and_long_keys_on_the_heap() {
        let mut s = Shard::new(100_000, 10_000);
        let short = Bytes::from(vec![b's'; INLINE_KEY]);
        let long = Bytes::from(vec![b'l'; INLINE_KEY + 1]);
        for (h, k) in [(1, &short), (2, &long)] {
            s.insert(Tier::Main, h, k.clone(), Some(Bytes::from_static(b"v")), 0, 0);
            assert_eq!(s.find(h, k).unwrap().key.as_slice(), &k[..]);
            assert!(s.find(h, &k[..k.len() - 1]).is_none(), "a prefix is another key");
        }
        assert!(matches!(s.find(1, &short).unwrap().key, Key::Inline { .. }));
        assert!(matches!(s.find(2, &long).unwrap().key, Key::Heap(_)));
        // An inline key costs no allocation, so it is not charged one.
        assert_eq!(charge(INLINE_KEY, 0), ENTRY_OVERHEAD);
        assert!(charge(INLINE_KEY + 1, 0) > ENTRY_OVERHEAD);
        assert!(s.remove(2, &long) && s.remove(1, &short));
        s.check_invariants();
    }

    #[test]
    fn oversized_entry_is_not_stored() {
        let mut s = Shard::new(1000, 100);
        let out = s.insert(Tier::Main, 1, key(1), Some(Bytes::from(vec![0; 2000])), 0, 0);
        assert!(!out.stored);
        assert_eq!(s.used(), 0);
    }

    #[test]
    fn a_read_entry_survives_a_scan() {
        let per = charge(2, 10);
        let mut s = Shard::new(per * 20, per * 2);
        let v = Some(Bytes::from(vec![0; 10]));
        s.insert(Tier::Main, 0, key(0), v.clone(), 0, 0);
        s.find(0, b"k0").unwrap().touch();
        for i in 1..200 {
            s.insert(Tier::Main, i, key(i), v.clone(), 0, 0);
            s.check_invariants();
        }
        assert!(
            s.find(0, b"k0").is_some(),
            "a read entry was evicted by a one-pass scan"
        );
    }

    #[test]
    fn hot_tier_is_capped() {
        let per = charge(2, 10);
        let mut s = Shard::new(per * 80, per * 10);
        let v = Some(Bytes::from(vec![0; 10]));
        for i in 0..100 {
            s.insert(Tier::Hot, i, key(i), v.clone(), 0, 0);
        }
        s.check_invariants();
        let mut st = TierStats::default();
        s.add_stats(Tier::Hot, &mut st);
        assert!(st.items <= 10);
        assert!(st.evictions >= 90);
    }

    #[test]
    fn reap_frees_expired_entries() {
        let mut s = Shard::new(1 << 20, 1 << 17);
        for i in 0..100 {
            let deadline = if i % 2 == 0 { 50 } else { 0 };
            s.insert(Tier::Main, i, key(i), Some(Bytes::from_static(b"x")), deadline, 0);
        }
        assert_eq!(s.reap(100, 1000), 50);
        s.check_invariants();
        let mut st = TierStats::default();
        s.add_stats(Tier::Main, &mut st);
        assert_eq!((st.items, st.expirations), (50, 50));
    }
}
