//! The eviction policy of a shard: S3-FIFO per tier, with frequency-based admission from the ghost.
//!
//! Per tier, a small probationary FIFO, a main FIFO with reinsertion, and a ghost FIFO of
//! recently evicted key hashes (`ghost.rs`). The policy owns the queues and the byte
//! budgets; the entries stay in the shard's slab, and the queues name them by [`Pos`].
//!
//! # Why S3-FIFO
//!
//! It is scan-resistant (one-hit wonders leave from the small queue without disturbing
//! the main queue), a hit is a relaxed atomic store into the entry and nothing more, and on
//! the traces in `BENCHMARKS.md` it matches W-TinyLFU within a point or two while being
//! far cheaper per operation. See `examples/hit_ratio.rs`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::accounting::ENTRY_OVERHEAD;
use super::ghost::Ghost;
use super::sketch::Sketch;
use super::slab::{Entry, Pos, Slab};
use super::{Tier, TierStats};

/// An entry leaves the small queue for the main queue once it has been read this often
/// while in the small queue.
const PROMOTE_FREQ: u8 = 1;
/// The small (probationary) queue's share of a tier: 1/SMALL_DIVISOR.
const SMALL_DIVISOR: usize = 50;
/// Frequencies saturate here: a main-queue entry survives at most this many passes of
/// the eviction hand without being read again.
pub(super) const MAX_FREQ: u8 = 3;

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

#[inline]
fn tier_index(t: Tier) -> usize {
    match t {
        Tier::Main => 0,
        Tier::Hot => 1,
    }
}

/// One shard's queues, byte budgets and admission history, for both tiers.
#[derive(Debug)]
pub(super) struct Policy {
    tiers: [TierState; 2],
    capacity: usize,
    hot_capacity: usize,
    /// Bytes of the budget lent to the store's large entries (see `large.rs`).
    lent: usize,
    /// Insert frequencies, for admission from the ghost into a full main queue.
    sketch: Sketch,
}

impl Policy {
    pub(super) fn new(capacity: usize, hot_capacity: usize) -> Self {
        Policy {
            tiers: Default::default(),
            capacity,
            hot_capacity,
            lent: 0,
            sketch: Sketch::new(capacity / (ENTRY_OVERHEAD + 64)),
        }
    }

    /// Bytes charged now, both tiers.
    pub(super) fn used(&self) -> usize {
        self.tiers[0].bytes() + self.tiers[1].bytes()
    }

    /// The largest charge an entry of `tier` can have.
    pub(super) fn limit(&self, tier: Tier) -> usize {
        match tier {
            Tier::Main => self.capacity,
            Tier::Hot => self.hot_capacity,
        }
    }

    /// The bytes tier `t` may fill: the hot tier its cap, the main tier what the hot tier
    /// and the lent bytes leave.
    fn budget(&self, t: usize) -> usize {
        if t == 1 {
            self.hot_capacity
        } else {
            self.own_capacity().saturating_sub(self.tiers[1].bytes())
        }
    }

    /// The budget less what is lent to large entries.
    fn own_capacity(&self) -> usize {
        self.capacity.saturating_sub(self.lent)
    }

    /// Lends `bytes` of this shard's budget to the store's large entries; the next
    /// [`Policy::make_room`] evicts down to what is left.
    pub(super) fn set_lent(&mut self, bytes: usize) {
        self.lent = bytes;
    }

    /// Records the insert of `hash` into `tier` and decides its queue: `true` for main.
    /// An entry that replaces one from the main queue (`was_main`) stays there.
    pub(super) fn admit(
        &mut self,
        tier: Tier,
        hash: u64,
        charge: usize,
        was_main: bool,
        slab: &Slab,
    ) -> bool {
        let t = tier_index(tier);
        self.sketch.increment(hash);
        if self.tiers[t].ghost.contains_and_remove(hash) && !was_main {
            return self.admit_to_main(t, hash, charge, slab);
        }
        was_main
    }

    /// Whether a key back from the ghost may enter tier `t`'s main queue: yes while the
    /// main queue is below its 90% share, else only if the key was inserted more often than
    /// the entry it would displace was inserted and read. Ties keep the incumbent, which is
    /// what keeps a loop slightly larger than the cache from churning the main queue.
    fn admit_to_main(&self, t: usize, hash: u64, charge: usize, slab: &Slab) -> bool {
        let budget = self.budget(t);
        let state = &self.tiers[t];
        if (state.main_bytes + charge) * SMALL_DIVISOR <= budget * (SMALL_DIVISOR - 1) {
            return true;
        }
        match state.main.iter().find_map(|&p| slab.live(p)) {
            None => true,
            Some(v) => {
                let incumbent = self.sketch.estimate(v.hash) + v.freq.load(Ordering::Relaxed);
                self.sketch.estimate(hash) > incumbent
            }
        }
    }

    /// Queues a newly stored entry of `tier` at `pos` and charges it.
    pub(super) fn push(&mut self, tier: Tier, pos: Pos, charge: usize, in_main: bool) {
        let state = &mut self.tiers[tier_index(tier)];
        if in_main {
            state.main.push_back(pos);
            state.main_bytes += charge;
        } else {
            state.small.push_back(pos);
            state.small_bytes += charge;
        }
        state.items += 1;
    }

    /// Uncharges an entry that left the slab. Its queue position goes stale and is skipped
    /// later.
    pub(super) fn removed(&mut self, entry: &Entry) {
        let state = &mut self.tiers[tier_index(entry.tier)];
        if entry.in_main {
            state.main_bytes -= entry.charge as usize;
        } else {
            state.small_bytes -= entry.charge as usize;
        }
        state.items -= 1;
    }

    /// Counts an expired entry of `tier` that the shard removed.
    pub(super) fn expired(&mut self, tier: Tier) {
        self.tiers[tier_index(tier)].expirations += 1;
    }

    /// Evicts until both budgets hold again after an insert into `tier`. Every entry it
    /// takes out of `slab` is passed to `unlink` (slot index and entry) before it is dropped.
    /// `now_ms` is called (once) only if something has to go: an insert that fits reads no
    /// clock.
    pub(super) fn make_room(
        &mut self,
        tier: Tier,
        slab: &mut Slab,
        now_ms: impl FnOnce() -> u64,
        mut unlink: impl FnMut(u32, &Entry),
    ) {
        let hot_over = tier == Tier::Hot && self.tiers[1].bytes() > self.hot_capacity;
        if !hot_over && self.used() <= self.own_capacity() {
            return;
        }
        let now_ms = now_ms();
        if tier == Tier::Hot {
            while self.tiers[1].bytes() > self.hot_capacity {
                if !self.evict_from(1, slab, now_ms, &mut unlink) {
                    break;
                }
            }
        }
        while self.used() > self.own_capacity() {
            // The hot tier gives way first while it is over its share, so mirrors of other
            // nodes' keys never crowd out the keys this node owns.
            let hot = &self.tiers[1];
            let t = if hot.bytes() > self.hot_capacity || self.tiers[0].items == 0 {
                1
            } else {
                0
            };
            if !self.evict_from(t, slab, now_ms, &mut unlink)
                && !self.evict_from(1 - t, slab, now_ms, &mut unlink)
            {
                break;
            }
        }
    }

    /// Takes the entry in slot `idx` out of `slab` and uncharges it.
    fn remove(&mut self, slab: &mut Slab, idx: u32, unlink: &mut impl FnMut(u32, &Entry)) -> Entry {
        let entry = slab.remove(idx);
        self.removed(&entry);
        unlink(idx, &entry);
        entry
    }

    /// Evicts one entry from tier `t` (an expired one counts). Returns `false` when the
    /// tier is empty.
    fn evict_from(
        &mut self,
        t: usize,
        slab: &mut Slab,
        now_ms: u64,
        unlink: &mut impl FnMut(u32, &Entry),
    ) -> bool {
        let budget = self.budget(t);
        loop {
            let state = &mut self.tiers[t];
            let from_small = !state.small.is_empty()
                && (state.small_bytes * SMALL_DIVISOR >= budget || state.main.is_empty());
            let pos = if from_small {
                state.small.pop_front()
            } else {
                state.main.pop_front()
            };
            let Some(pos) = pos else { return false };
            let Some(entry) = slab.live(pos) else { continue };
            if entry.expired(now_ms) {
                self.remove(slab, pos.0, unlink);
                self.tiers[t].expirations += 1;
                return true;
            }
            let freq = entry.freq.load(Ordering::Relaxed);
            let charge = entry.charge as usize;
            if from_small {
                if freq >= PROMOTE_FREQ {
                    // Read while on probation: promote, with its count reset.
                    let e = slab.get_mut(pos.0).expect("live");
                    e.freq.store(0, Ordering::Relaxed);
                    e.in_main = true;
                    let state = &mut self.tiers[t];
                    state.small_bytes -= charge;
                    state.main_bytes += charge;
                    state.main.push_back(pos);
                    continue;
                }
                let entry = self.remove(slab, pos.0, unlink);
                let state = &mut self.tiers[t];
                let ghost_cap = state.items.max(16);
                state.ghost.push(entry.hash, ghost_cap);
                state.evictions += 1;
                return true;
            }
            if freq > 0 {
                // Read since the hand last passed: reinsert, one read poorer.
                entry.freq.store(freq - 1, Ordering::Relaxed);
                self.tiers[t].main.push_back(pos);
                continue;
            }
            self.remove(slab, pos.0, unlink);
            self.tiers[t].evictions += 1;
            return true;
        }
    }

    /// Drops stale positions once they dominate a queue, so a delete-heavy workload does
    /// not grow the queues without bound.
    pub(super) fn compact(&mut self, slab: &Slab) {
        for state in &mut self.tiers {
            if state.small.len() + state.main.len() > 2 * state.items + 64 {
                let keep = |p: &Pos| slab.live(*p).is_some();
                state.small.retain(keep);
                state.main.retain(keep);
            }
        }
    }

    /// Forgets every entry and ghost; the eviction and expiration counters stay.
    pub(super) fn clear(&mut self) {
        for t in &mut self.tiers {
            let (evictions, expirations) = (t.evictions, t.expirations);
            *t = TierState::default();
            t.evictions = evictions;
            t.expirations = expirations;
        }
    }

    pub(super) fn add_stats(&self, tier: Tier, out: &mut TierStats) {
        let t = &self.tiers[tier_index(tier)];
        out.items += t.items as u64;
        out.bytes += t.bytes() as u64;
        out.evictions += t.evictions;
        out.expirations += t.expirations;
    }

    /// Checks the queues and budgets against `slab`; returns the number of entries.
    #[cfg(test)]
    pub(super) fn check_invariants(&self, slab: &Slab) -> usize {
        for t in &self.tiers {
            let live = |q: &VecDeque<Pos>| q.iter().filter(|p| slab.live(**p).is_some()).count();
            assert_eq!(live(&t.small) + live(&t.main), t.items);
        }
        assert!(
            self.used() <= self.capacity,
            "used {} > capacity {}",
            self.used(),
            self.capacity
        );
        assert!(self.tiers[1].bytes() <= self.hot_capacity);
        self.tiers[0].items + self.tiers[1].items
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::super::accounting::charge;
    use super::super::shard::Shard;
    use super::*;

    fn key(i: u64) -> Bytes {
        Bytes::from(format!("k{i}"))
    }

    #[test]
    fn a_read_entry_survives_a_scan() {
        let per = charge(2, 10);
        let mut s = Shard::new(per * 20, per * 2);
        let v = Some(Bytes::from(vec![0; 10]));
        let _ = s.insert(Tier::Main, 0, key(0), v.clone(), 0, 0, || 0);
        s.find(0, b"k0").unwrap().touch();
        for i in 1..200 {
            let _ = s.insert(Tier::Main, i, key(i), v.clone(), 0, 0, || 0);
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
            let _ = s.insert(Tier::Hot, i, key(i), v.clone(), 0, 0, || 0);
        }
        s.check_invariants();
        let mut st = TierStats::default();
        s.add_stats(Tier::Hot, &mut st);
        assert!(st.items <= 10);
        assert!(st.evictions >= 90);
    }
}
