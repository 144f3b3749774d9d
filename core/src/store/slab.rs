//! The slab that holds a shard's entries: slots reused through a free list, with generations.
//!
//! The table and the eviction queues name an entry by its slot. Freeing a slot bumps its
//! generation, so a queue position ([`Pos`]) that names an old occupant is recognised as
//! stale and skipped, and a remove never has to search a queue.

use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;

use super::Tier;
use super::key::Key;
use super::policy::MAX_FREQ;

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: Key,
    /// `None` is a cached "not found" (negative caching).
    pub(super) value: Option<Bytes>,
    pub(super) hash: u64,
    /// Absolute unix milliseconds; `0` never expires.
    pub(super) deadline: u64,
    /// The entry's version (see `crate::entry::Entry::version`).
    pub(super) version: u64,
    /// What the entry costs against the budget (see `accounting.rs`).
    pub(super) charge: u32,
    /// Reads since the eviction policy last looked, capped at [`MAX_FREQ`].
    pub(super) freq: AtomicU8,
    pub(super) tier: Tier,
    /// In its tier's main queue (else in the small one).
    pub(super) in_main: bool,
}

impl Entry {
    #[inline]
    pub(super) fn expired(&self, now_ms: u64) -> bool {
        self.deadline != 0 && self.deadline <= now_ms
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
pub(super) type Pos = (u32, u32);

#[derive(Debug, Default)]
pub(super) struct Slab {
    slots: Vec<Slot>,
    /// Indices of empty slots, reused before the slab grows.
    free: Vec<u32>,
}

impl Slab {
    /// Stores `entry` in a free slot, or a new one, and returns its position.
    pub(super) fn insert(&mut self, entry: Entry) -> Pos {
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
        slot.entry = Some(entry);
        (idx, slot.generation)
    }

    /// The entry in slot `idx`, if the slot is occupied.
    #[inline]
    pub(super) fn get(&self, idx: u32) -> Option<&Entry> {
        self.slots[idx as usize].entry.as_ref()
    }

    #[inline]
    pub(super) fn get_mut(&mut self, idx: u32) -> Option<&mut Entry> {
        self.slots[idx as usize].entry.as_mut()
    }

    /// The live entry at `pos`, or `None` if the position is stale.
    #[inline]
    pub(super) fn live(&self, pos: Pos) -> Option<&Entry> {
        let slot = &self.slots[pos.0 as usize];
        if slot.generation == pos.1 {
            slot.entry.as_ref()
        } else {
            None
        }
    }

    /// Frees occupied slot `idx`; positions that name it go stale.
    pub(super) fn remove(&mut self, idx: u32) -> Entry {
        let slot = &mut self.slots[idx as usize];
        let entry = slot.entry.take().expect("removing an occupied slot");
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(idx);
        entry
    }

    /// The occupied slots' entries.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().filter_map(|s| s.entry.as_ref())
    }

    /// Slots, occupied or free: indices below this are valid.
    pub(super) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(hash: u64) -> Entry {
        Entry {
            key: Key::new(Bytes::from_static(b"k")),
            value: None,
            hash,
            deadline: 0,
            version: 0,
            charge: 0,
            freq: AtomicU8::new(0),
            tier: Tier::Main,
            in_main: false,
        }
    }

    #[test]
    fn a_freed_slot_is_reused_and_its_old_positions_go_stale() {
        let mut slab = Slab::default();
        let a = slab.insert(entry(1));
        let b = slab.insert(entry(2));
        assert_eq!((a, b), ((0, 0), (1, 0)));
        assert_eq!(slab.remove(a.0).hash, 1);
        assert!(slab.get(a.0).is_none() && slab.live(a).is_none());
        let c = slab.insert(entry(3));
        assert_eq!(c, (0, 1), "the free slot is reused with the next generation");
        assert!(
            slab.live(a).is_none(),
            "a position naming the old occupant stays stale"
        );
        assert_eq!(slab.live(c).map(|e| e.hash), Some(3));
        assert_eq!(slab.slot_count(), 2);
        slab.clear();
        assert_eq!(slab.slot_count(), 0);
    }

    #[test]
    fn reads_saturate_and_deadlines_expire() {
        let mut e = entry(1);
        for _ in 0..10 {
            e.touch();
        }
        assert_eq!(e.freq.load(Ordering::Relaxed), MAX_FREQ);
        assert!(!e.expired(u64::MAX), "deadline 0 never expires");
        e.deadline = 50;
        assert!(!e.expired(49) && e.expired(50));
    }
}
