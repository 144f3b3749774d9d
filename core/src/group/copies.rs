//! Copies of keys that come from other nodes — a replica write, a handoff entry, a warm
//! takeover's answer — and the deletes that must outlive them.
//!
//! Every entry carries a version (`version.rs`). A copy is stored only if it is newer than
//! the entry held for its key and than any delete of the key remembered here (a
//! *tombstone*), checked under the shard's write lock; so a handed-off or replicated value
//! never overwrites a newer `set` and never undoes a `delete` (last writer wins).
//! Tombstones live [`TOMBSTONE_TTL`] (as long as the warm window, during which late copies
//! can arrive), at most [`MAX_TOMBSTONES`] per group, the oldest dropped first.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use super::Group;
use super::stats::bump;
use crate::entry::Entry;
use crate::store::Tier;

/// How long a delete is remembered against late copies.
pub(crate) const TOMBSTONE_TTL: Duration = Duration::from_secs(60);
/// Most deletes remembered per group.
const MAX_TOMBSTONES: usize = 100_000;

/// A group's remembered deletes.
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    inner: Mutex<Tombs>,
}

#[derive(Debug, Default)]
struct Tombs {
    /// Key -> (version of the delete, until when it is remembered).
    by_key: HashMap<Bytes, (u64, u64)>,
    /// Keys in the order they were recorded, with the expiry they were recorded with.
    order: VecDeque<(Bytes, u64)>,
}

impl Tombstones {
    /// Remembers a delete of `key` at `version` until `until_ms`.
    fn record(&self, key: &[u8], version: u64, now_ms: u64, until_ms: u64) {
        let mut t = self.inner.lock();
        while let Some((k, until)) = t.order.front() {
            if *until > now_ms && t.order.len() < MAX_TOMBSTONES {
                break;
            }
            let (k, until) = (k.clone(), *until);
            t.order.pop_front();
            if t.by_key.get(&k).is_some_and(|(_, u)| *u == until) {
                t.by_key.remove(&k);
            }
        }
        let key = Bytes::copy_from_slice(key);
        let v = t.by_key.get(&key).map_or(version, |(v, _)| version.max(*v));
        t.by_key.insert(key.clone(), (v, until_ms));
        t.order.push_back((key, until_ms));
    }

    /// Whether a remembered delete of `key` is at least as new as `version`.
    fn refuses(&self, key: &[u8], version: u64, now_ms: u64) -> bool {
        let t = self.inner.lock();
        t.by_key
            .get(key)
            .is_some_and(|(v, until)| *until > now_ms && *v >= version)
    }
}

impl Group {
    /// Stores `entry`, a copy of `key` from another node, in the main tier if it is newer
    /// than what this node holds and than any delete it remembers. Returns whether it did.
    pub(crate) fn accept_copy(&self, key: Bytes, entry: Entry) -> bool {
        let inner = &self.inner;
        inner.hlc.observe(entry.version);
        let now = inner.clock.now_ms();
        if entry.deadline != 0 && entry.deadline <= now {
            return false;
        }
        if let Some(v) = &entry.value
            && (inner.limits.check_value(v).is_err() || self.check_storable(&key, v).is_err())
        {
            return false;
        }
        // A load in flight for this key must not put an older answer over the copy.
        inner.fence.bump(&key);
        let version = entry.version;
        let tombstones = &inner.tombstones;
        let check = key.clone();
        inner
            .store
            .insert_if(Tier::Main, key, entry.value, entry.deadline, version, |held| {
                held.version().is_none_or(|h| h < version) && !tombstones.refuses(&check, version, now)
            })
    }

    /// Removes `key` if the copy held is older than `version` (`0`: whatever is held). A
    /// `tombstone` (a delete, not an invalidation) is also remembered against copies of
    /// the key at or below `version` that arrive later. Returns whether it removed one.
    pub(crate) fn remove_versioned(&self, key: &[u8], version: u64, tombstone: bool) -> bool {
        let inner = &self.inner;
        inner.hlc.observe(version);
        if tombstone && version != 0 {
            let now = inner.clock.now_ms();
            let until = crate::clock::deadline(now, Some(TOMBSTONE_TTL));
            inner.tombstones.record(key, version, now, until);
        }
        inner.fence.bump(key);
        if version == 0 {
            inner.store.remove(key)
        } else {
            inner.store.remove_older(key, version)
        }
    }

    /// Entries of a handoff: stores each that is newer (see [`Group::accept_copy`]).
    /// Returns how many it stored.
    pub(crate) fn accept_handoff(&self, entries: impl IntoIterator<Item = (Bytes, Entry)>) -> u64 {
        let mut kept = 0;
        for (key, entry) in entries {
            if self.inner.limits.check_key(&key).is_ok() && self.accept_copy(key, entry) {
                kept += 1;
            }
        }
        for _ in 0..kept {
            bump(&self.inner.counters.handoff_received);
        }
        kept
    }

    /// Every unexpired entry of the main tier (the keys this node owns or replicates).
    pub(crate) fn main_entries(&self, mut f: impl FnMut(&[u8], Entry)) {
        self.inner.store.for_each(Tier::Main, |k, e| f(k, e));
    }

    /// How many nodes hold each key written with `set` (the group's `replicas`).
    pub(crate) fn replicas(&self) -> usize {
        self.inner.replicas
    }

    /// Counts `n` entries handed to other nodes.
    pub(crate) fn count_handoff_sent(&self, n: u64) {
        self.inner
            .counters
            .handoff_sent
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tombstone_refuses_older_copies_until_it_expires_and_the_oldest_go_first() {
        let t = Tombstones::default();
        t.record(b"k", 10, 0, 100);
        assert!(t.refuses(b"k", 10, 50) && t.refuses(b"k", 3, 50));
        assert!(!t.refuses(b"k", 11, 50), "a newer copy is kept");
        assert!(!t.refuses(b"k", 3, 100), "expired");
        assert!(!t.refuses(b"other", 1, 50));
        // Recording again keeps the newest version.
        t.record(b"k", 5, 0, 200);
        assert!(t.refuses(b"k", 10, 150));
        // Expired tombstones are dropped as new ones come.
        t.record(b"j", 1, 300, 400);
        assert_eq!(t.inner.lock().by_key.len(), 1);
    }
}
