//! The sharded, byte-bounded in-memory store.
//!
//! Keys hash to one of a power-of-two number of shards; each shard is a
//! `parking_lot::RwLock` around a `Shard` (`shard.rs`) with its own share of the byte
//! budget.
//! Two tiers share every shard's budget: **main** holds keys this node owns, **hot**
//! holds mirrors of other nodes' hot keys and is capped at 1/8 of the budget.
//! A main-tier entry larger than a quarter of a shard lives beside the shards
//! (`large.rs`), up to half the capacity, on bytes the shards lend it.
//!
//! # Eviction policy
//!
//! S3-FIFO per tier and shard (see `policy.rs`): scan-resistant, and a read hit takes only
//! the shard's read lock and does at most one relaxed atomic store.
//!
//! # Memory accounting
//!
//! Every entry is charged its key and value bytes as the allocator rounds them plus a fixed
//! overhead for the slab slot, the table slot, its queue positions and its ghost, so that
//! the process's resident memory tracks the configured capacity (measured in
//! `BENCHMARKS.md`; see `accounting.rs`).
//!
//! # Expiry
//!
//! Deadlines are absolute unix milliseconds. A read never returns an expired entry (lazy
//! expiry); [`Store::reap`] removes expired entries so they stop holding memory, and
//! eviction removes expired entries it meets first.

mod accounting;
mod ghost;
mod key;
mod large;
mod policy;
mod shard;
mod sketch;
mod slab;

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;

use crate::clock::Clock;
use accounting::charge;
use large::Large;
use shard::Shard;
use slab::Entry;

/// Which tier an entry lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Keys this node owns.
    Main,
    /// Mirrors of keys other nodes own, kept because they are read often here.
    Hot,
}

/// Counters for one tier.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TierStats {
    /// Entries resident now.
    pub items: u64,
    /// Bytes charged against the budget now (keys, values and overhead).
    pub bytes: u64,
    /// Lookups that consulted this tier (one lookup consults both tiers at once, so this
    /// equals the store's total lookups).
    pub gets: u64,
    /// Lookups answered from this tier.
    pub hits: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries removed because their deadline passed.
    pub expirations: u64,
}

impl TierStats {
    /// The counters by name, in the order every language lists them.
    pub fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("items", self.items),
            ("bytes", self.bytes),
            ("gets", self.gets),
            ("hits", self.hits),
            ("evictions", self.evictions),
            ("expirations", self.expirations),
        ]
    }
}

/// A snapshot of the store's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// The byte budget.
    pub capacity: u64,
    /// The main tier.
    pub main: TierStats,
    /// The hot tier.
    pub hot: TierStats,
}

/// Counters bumped on the read path, striped per thread so that readers on different
/// cores never write the same cache line.
#[derive(Default)]
#[repr(align(128))]
struct Stripe {
    hits_main: AtomicU64,
    hits_hot: AtomicU64,
    misses: AtomicU64,
}

const STRIPES: usize = 16;

fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

#[repr(align(128))]
struct Padded<T>(T);

/// A hit on `e`: shares its value (a refcount increment, no copy).
#[inline]
fn hit(e: &Entry) -> crate::entry::Entry {
    crate::entry::Entry {
        value: e.value.clone(),
        deadline: e.deadline,
        version: e.version,
    }
}

/// The entry a [`Store::insert_if`] would replace, as its condition sees it.
pub struct Held<'a> {
    shard: &'a Shard,
    large: &'a Large,
    hash: u64,
    key: &'a [u8],
    clock: &'a dyn Clock,
}

impl fmt::Debug for Held<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("hash", &self.hash)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Held<'_> {
    /// The version of the unexpired entry held for the key, if any.
    pub fn version(&self) -> Option<u64> {
        let now = self.clock.now_ms();
        match self.shard.find(self.hash, self.key) {
            Some(e) if !e.expired(now) => Some(e.version),
            Some(_) => None,
            None => self.large.read(self.hash, self.key, now, |e| e.version),
        }
    }
}

/// Options for a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The byte budget shared by both tiers.
    pub capacity: usize,
    /// Number of shards, rounded up to a power of two. `0` picks one from the capacity
    /// and the number of CPUs.
    pub shards: usize,
    /// The hot tier's share of the budget, as a divisor (8 means 1/8).
    pub hot_divisor: usize,
}

impl StoreConfig {
    /// A budget of `capacity` bytes with default sharding and a 1/8 hot tier.
    pub fn new(capacity: usize) -> Self {
        StoreConfig {
            capacity,
            shards: 0,
            hot_divisor: 8,
        }
    }
}

/// The sharded, byte-bounded store. Safe to share between threads.
pub struct Store {
    shards: Box<[Padded<RwLock<Shard>>]>,
    shard_mask: u64,
    hasher: foldhash::fast::RandomState,
    clock: Arc<dyn Clock>,
    stripes: Box<[Stripe]>,
    capacity: usize,
    /// Main-tier entries charged more than this go to `large`.
    large_above: usize,
    large: Large,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// Smallest budget a shard gets when the shard count is chosen automatically: a shard
/// must hold many entries for its eviction to approximate a global one.
const MIN_AUTO_SHARD_BYTES: usize = 1024 * 1024;
const MAX_AUTO_SHARDS: usize = 256;

impl Store {
    /// A store with `config`, reading time from `clock`.
    pub fn new(config: StoreConfig, clock: Arc<dyn Clock>) -> Self {
        let shards = if config.shards == 0 {
            let by_cpu = std::thread::available_parallelism().map_or(4, |n| n.get()) * 64;
            let by_size = (config.capacity / MIN_AUTO_SHARD_BYTES).max(1);
            by_cpu.min(by_size).min(MAX_AUTO_SHARDS)
        } else {
            config.shards.min(1 << 16)
        };
        let shards = shards.max(1).next_power_of_two();
        let per_shard = config.capacity / shards;
        let hot = per_shard / config.hot_divisor.max(1);
        Store {
            shards: (0..shards)
                .map(|_| Padded(RwLock::new(Shard::new(per_shard, hot))))
                .collect(),
            shard_mask: (shards - 1) as u64,
            hasher: foldhash::fast::RandomState::default(),
            clock,
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            capacity: config.capacity,
            large_above: per_shard / 4,
            large: Large::new(config.capacity / 2, shards),
        }
    }

    /// The byte budget.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // hashbrown uses the low bits for the bucket and the top 7 for its tag: pick the
        // shard from bits in between so neither loses entropy within a shard.
        &self.shards[((hash >> 32) & self.shard_mask) as usize].0
    }

    /// Looks `key` up in both tiers. Never returns an expired entry. Takes only a read lock.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<crate::entry::Entry> {
        self.read(key, true, hit)
    }

    /// [`Store::get`] without counting the lookup in [`Store::stats`] (the entry's
    /// frequency still counts the read): for the internal re-checks of the get path and
    /// for peers' requests, which are counted elsewhere.
    #[inline]
    pub fn get_uncounted(&self, key: &[u8]) -> Option<crate::entry::Entry> {
        self.read(key, false, hit)
    }

    /// Looks `key` up like [`Store::get`] (counted), but lends the value to `f` under the
    /// shard's read lock instead of cloning its `Bytes`: no refcount traffic, for callers
    /// that copy the bytes out anyway (the bindings). `f` gets `None` for a cached
    /// "not found". Keep `f` short: writers to this shard wait while it runs.
    #[inline]
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Option<R> {
        self.read(key, true, |e| f(e.value.as_deref()))
    }

    /// The one read path: finds `key` under the shard's read lock, skips it if expired,
    /// records the read in the entry, hands the entry to `f` while the lock is held, and
    /// (if `count`) counts the hit or miss after releasing it.
    #[inline]
    fn read<R>(&self, key: &[u8], count: bool, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let hash = self.hash(key);
        let shard = self.shard(hash).read();
        let found = match shard.find(hash, key) {
            Some(e) if !(e.deadline != 0 && e.expired(self.clock.now_ms())) => {
                e.touch();
                Ok((f(e), e.tier))
            }
            _ => Err(f),
        };
        drop(shard);
        let found = match found {
            Ok(found) => Some(found),
            Err(f) if !self.large.is_empty() => self
                .large
                .read(hash, key, self.clock.now_ms(), |e| (f(e), Tier::Main)),
            Err(_) => None,
        };
        match found {
            Some((out, tier)) => {
                if count {
                    let stripe = &self.stripes[stripe_index()];
                    match tier {
                        Tier::Main => stripe.hits_main.fetch_add(1, Ordering::Relaxed),
                        Tier::Hot => stripe.hits_hot.fetch_add(1, Ordering::Relaxed),
                    };
                }
                Some(out)
            }
            None => {
                if count {
                    self.stripes[stripe_index()]
                        .misses
                        .fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        }
    }

    /// The tier holding `key`, if it is resident and unexpired, without counting a lookup
    /// or a read.
    pub fn tier_of(&self, key: &[u8]) -> Option<Tier> {
        let hash = self.hash(key);
        let now = self.clock.now_ms();
        self.shard(hash)
            .read()
            .find(hash, key)
            .filter(|e| !e.expired(now))
            .map(|e| e.tier)
            .or_else(|| self.large.read(hash, key, now, |_| Tier::Main))
    }

    /// Whether `key` is resident and unexpired, without counting a lookup or a read.
    pub fn contains(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let now = self.clock.now_ms();
        self.shard(hash)
            .read()
            .find(hash, key)
            .is_some_and(|e| !e.expired(now))
            || self.large.read(hash, key, now, |_| ()).is_some()
    }

    /// Inserts (or replaces) `key` in `tier` with an absolute `deadline` in unix ms
    /// (`0`: never expires). `value: None` caches a "not found". Evicts as needed.
    /// Returns `false` if the entry is larger than the store can hold (see [`Store::fits`];
    /// it is not stored, and any older value for the key is removed).
    pub fn insert(&self, tier: Tier, key: Bytes, value: Option<Bytes>, deadline: u64) -> bool {
        self.insert_if(tier, key, value, deadline, 0, |_| true)
    }

    /// [`Store::insert`] of an entry with `version`, only if `cond` holds, evaluated under
    /// the shard's write lock; `cond` may ask [`Held::version`] for the entry it would
    /// replace (looked up only then). A writer that changes what `cond` reads *before*
    /// writing the same key (under the same lock) can therefore never be overwritten by
    /// an insert that checked earlier.
    pub fn insert_if(
        &self,
        tier: Tier,
        key: Bytes,
        value: Option<Bytes>,
        deadline: u64,
        version: u64,
        cond: impl FnOnce(Held<'_>) -> bool,
    ) -> bool {
        let hash = self.hash(&key);
        // The clock is read only where it is needed (a deadline to check, an eviction, a
        // condition that asks): a plain write into a shard with room reads none.
        let clock = &*self.clock;
        let charge = charge(key.len(), value.as_ref().map_or(0, Bytes::len));
        let mut shard = self.shard(hash).write();
        let held = Held {
            shard: &shard,
            large: &self.large,
            hash,
            key: &key,
            clock,
        };
        if !cond(held) {
            return false;
        }
        // Lock order: a shard, then the large area.
        if deadline != 0 && deadline <= clock.now_ms() {
            shard.remove(hash, &key);
            self.large.remove(hash, &key);
            return false;
        }
        match value {
            Some(value) if tier == Tier::Main && charge > self.large_above => {
                shard.remove(hash, &key);
                if charge > self.large.limit() || charge > u32::MAX as usize {
                    self.large.remove(hash, &key);
                    return false;
                }
                let now = clock.now_ms();
                self.large
                    .insert(hash, key, value, deadline, version, now, charge);
                drop(shard);
                self.lend(now);
                true
            }
            value => {
                self.large.remove(hash, &key);
                shard.set_lent(self.large.share());
                let out = shard.insert(tier, hash, key, value, deadline, version, || clock.now_ms());
                // The replaced entry and the spare key are freed after the lock is released.
                drop(shard);
                out.stored
            }
        }
    }

    /// Makes every shard evict down to its budget less its share of the large entries'
    /// bytes, so that shards and large entries together stay within the capacity.
    fn lend(&self, now_ms: u64) {
        let share = self.large.share();
        for s in self.shards.iter() {
            s.0.write().lend(share, now_ms);
        }
    }

    /// Whether an entry with a key of `key_len` and a value of `value_len` bytes can be
    /// stored in `tier` at all: a larger one is never cached. The main tier holds entries
    /// up to half the capacity ([`Store::max_entry`]); a hot-tier mirror must fit in a
    /// shard's hot share.
    pub fn fits(&self, tier: Tier, key_len: usize, value_len: usize) -> bool {
        match tier {
            Tier::Main => charge(key_len, value_len) <= self.max_entry(),
            Tier::Hot => self.shards[0].0.read().fits(tier, key_len, value_len),
        }
    }

    /// The largest charge (value, key and per-entry overhead) a main-tier entry may have.
    pub fn max_entry(&self) -> usize {
        self.large.limit().max(self.large_above).min(u32::MAX as usize)
    }

    /// Removes `key` if its entry's version is below `version` (or it has expired).
    /// Returns whether it removed it.
    pub fn remove_older(&self, key: &[u8], version: u64) -> bool {
        let hash = self.hash(key);
        let now = self.clock.now_ms();
        let mut shard = self.shard(hash).write();
        let current = match shard.find(hash, key) {
            Some(e) => Some(e.version),
            None => self.large.read(hash, key, now, |e| e.version),
        };
        match current {
            Some(v) if v < version => shard.remove(hash, key) | self.large.remove(hash, key),
            _ => false,
        }
    }

    /// Visits every unexpired entry of `tier` (key, entry), a shard at a time under its
    /// read lock: `f` should be quick (a copy). For handing entries off to other nodes.
    pub fn for_each(&self, tier: Tier, mut f: impl FnMut(&[u8], crate::entry::Entry)) {
        let now = self.clock.now_ms();
        for s in self.shards.iter() {
            s.0.read().for_each(tier, now, |k, e| f(k, hit(e)));
        }
        if tier == Tier::Main {
            self.large.for_each(now, |k, e| f(k, hit(e)));
        }
    }

    /// Removes `key` from whichever tier holds it. Returns whether it was present.
    pub fn remove(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let mut shard = self.shard(hash).write();
        shard.remove(hash, key) | self.large.remove(hash, key)
    }

    /// Removes `key` only if it is in `tier`.
    pub fn remove_from(&self, tier: Tier, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let mut shard = self.shard(hash).write();
        if shard.find(hash, key).is_some_and(|e| e.tier == tier) {
            shard.remove(hash, key)
        } else {
            tier == Tier::Main && self.large.remove(hash, key)
        }
    }

    /// Removes expired entries, scanning at most `max_scan_per_shard` slots of each shard
    /// (continuing where the previous call stopped). Returns how many were removed.
    /// Each shard's write lock is held only for its own scan.
    pub fn reap(&self, max_scan_per_shard: usize) -> usize {
        let now = self.clock.now_ms();
        let reaped: usize = self
            .shards
            .iter()
            .map(|s| s.0.write().reap(now, max_scan_per_shard))
            .sum();
        reaped + self.large.reap(now)
    }

    /// Removes every entry.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.0.write().clear();
        }
        self.large.clear();
    }

    /// Bytes charged against the budget now, both tiers.
    pub fn used_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.0.read().used()).sum::<usize>() + self.large.bytes()
    }

    /// A snapshot of the counters (each shard read under its lock in turn, so the totals
    /// are not one atomic snapshot).
    pub fn stats(&self) -> StoreStats {
        let mut out = StoreStats {
            capacity: self.capacity as u64,
            ..Default::default()
        };
        for s in self.shards.iter() {
            let s = s.0.read();
            s.add_stats(Tier::Main, &mut out.main);
            s.add_stats(Tier::Hot, &mut out.hot);
        }
        self.large.add_stats(&mut out.main);
        let (mut hm, mut hh, mut miss) = (0, 0, 0);
        for st in self.stripes.iter() {
            hm += st.hits_main.load(Ordering::Relaxed);
            hh += st.hits_hot.load(Ordering::Relaxed);
            miss += st.misses.load(Ordering::Relaxed);
        }
        out.main.hits = hm;
        out.hot.hits = hh;
        out.main.gets = hm + hh + miss;
        out.hot.gets = out.main.gets;
        out
    }

    #[cfg(test)]
    fn check_invariants(&self) {
        for s in self.shards.iter() {
            s.0.read().check_invariants();
        }
    }
}

#[cfg(test)]
mod tests;
