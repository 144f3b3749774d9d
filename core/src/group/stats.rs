//! A group's counters, and the one list of their names that every language shows.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::store::{StoreStats, TierStats};

/// Counters of one group. A snapshot: fields are read one by one.
///
/// Every binding shows these under the same names, in the same shape: the counters of
/// [`GroupStats::counters`] at the top level, and `main` and `hot` holding the fields of
/// [`TierStats::fields`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupStats {
    /// Calls to `get` and `peek`, and keys asked for by `get_many`.
    pub gets: u64,
    /// Gets answered from the main tier without loading.
    pub hits: u64,
    /// Gets answered from the hot tier (mirrors of keys other nodes own).
    pub hot_hits: u64,
    /// Gets that joined a flight another caller had started.
    pub deduplicated: u64,
    /// Loader calls on this node.
    pub loads: u64,
    /// Loader calls that failed (error, panic, or an oversized value).
    pub load_errors: u64,
    /// Loader calls that said NotFound.
    pub not_found: u64,
    /// Values fetched from their owner.
    pub remote_fetches: u64,
    /// Owners' answers that the key does not exist.
    pub remote_not_found: u64,
    /// Owners that could not be reached or timed out (each is followed by a fallback).
    pub remote_errors: u64,
    /// Loads done here because the owner could not be reached.
    pub fallback_loads: u64,
    /// Values mirrored in the hot tier.
    pub hot_inserts: u64,
    /// Gets served to other nodes.
    pub served: u64,
    /// Peers that could not be told to drop a key on `set` or `delete` (each is retried).
    pub invalidation_errors: u64,
    /// Invalidations delivered on a retry, after a first attempt failed.
    pub invalidations_retried: u64,
    /// Invalidations given up because the retry queue was full (the mirror still
    /// expires within the hot TTL).
    pub invalidations_dropped: u64,
    /// Writes (`set`, `delete`) this node sent to a key's replicas that they applied.
    pub replica_writes: u64,
    /// Writes to a replica that failed (the primary still holds the value).
    pub replica_write_errors: u64,
    /// Gets answered by a replica because the key's primary could not be reached.
    pub replica_reads: u64,
    /// Entries this node handed to new owners when it left the ring gracefully.
    pub handoff_sent: u64,
    /// Entries other nodes handed to this one that it kept (newer than what it held).
    pub handoff_received: u64,
    /// Misses of newly owned keys answered by the key's previous owner (warm takeover)
    /// instead of the loader.
    pub warm_takeovers: u64,
    /// The byte budget of the group's store (both tiers).
    pub capacity: u64,
    /// The main tier: keys this node owns.
    pub main: TierStats,
    /// The hot tier: mirrors of keys other nodes own.
    pub hot: TierStats,
}

impl GroupStats {
    /// The top-level counters by name, in the order every language lists them.
    pub fn counters(&self) -> [(&'static str, u64); 23] {
        [
            ("gets", self.gets),
            ("hits", self.hits),
            ("hot_hits", self.hot_hits),
            ("deduplicated", self.deduplicated),
            ("loads", self.loads),
            ("load_errors", self.load_errors),
            ("not_found", self.not_found),
            ("remote_fetches", self.remote_fetches),
            ("remote_not_found", self.remote_not_found),
            ("remote_errors", self.remote_errors),
            ("fallback_loads", self.fallback_loads),
            ("hot_inserts", self.hot_inserts),
            ("served", self.served),
            ("invalidation_errors", self.invalidation_errors),
            ("invalidations_retried", self.invalidations_retried),
            ("invalidations_dropped", self.invalidations_dropped),
            ("replica_writes", self.replica_writes),
            ("replica_write_errors", self.replica_write_errors),
            ("replica_reads", self.replica_reads),
            ("handoff_sent", self.handoff_sent),
            ("handoff_received", self.handoff_received),
            ("warm_takeovers", self.warm_takeovers),
            ("capacity", self.capacity),
        ]
    }

    /// The tiers by name: `("main", ..)`, `("hot", ..)`.
    pub fn tiers(&self) -> [(&'static str, &TierStats); 2] {
        [("main", &self.main), ("hot", &self.hot)]
    }
}

/// Counters of the slow paths. Lookups and hits are counted by the store, per thread, so
/// that a hit writes no shared cache line.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) deduplicated: AtomicU64,
    pub(super) loads: AtomicU64,
    pub(super) load_errors: AtomicU64,
    pub(super) not_found: AtomicU64,
    pub(super) remote_fetches: AtomicU64,
    pub(super) remote_not_found: AtomicU64,
    pub(super) remote_errors: AtomicU64,
    pub(super) fallback_loads: AtomicU64,
    pub(super) hot_inserts: AtomicU64,
    pub(super) served: AtomicU64,
    pub(super) invalidation_errors: AtomicU64,
    pub(super) invalidations_retried: AtomicU64,
    pub(super) invalidations_dropped: AtomicU64,
    pub(super) replica_writes: AtomicU64,
    pub(super) replica_write_errors: AtomicU64,
    pub(super) replica_reads: AtomicU64,
    pub(super) handoff_sent: AtomicU64,
    pub(super) handoff_received: AtomicU64,
    pub(super) warm_takeovers: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// The snapshot, with the store's own counters.
    pub(super) fn snapshot(&self, store: StoreStats) -> GroupStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GroupStats {
            gets: store.main.gets,
            hits: store.main.hits,
            hot_hits: store.hot.hits,
            deduplicated: l(&self.deduplicated),
            loads: l(&self.loads),
            load_errors: l(&self.load_errors),
            not_found: l(&self.not_found),
            remote_fetches: l(&self.remote_fetches),
            remote_not_found: l(&self.remote_not_found),
            remote_errors: l(&self.remote_errors),
            fallback_loads: l(&self.fallback_loads),
            hot_inserts: l(&self.hot_inserts),
            served: l(&self.served),
            invalidation_errors: l(&self.invalidation_errors),
            invalidations_retried: l(&self.invalidations_retried),
            invalidations_dropped: l(&self.invalidations_dropped),
            replica_writes: l(&self.replica_writes),
            replica_write_errors: l(&self.replica_write_errors),
            replica_reads: l(&self.replica_reads),
            handoff_sent: l(&self.handoff_sent),
            handoff_received: l(&self.handoff_received),
            warm_takeovers: l(&self.warm_takeovers),
            capacity: store.capacity,
            main: store.main,
            hot: store.hot,
        }
    }
}
