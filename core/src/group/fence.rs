//! The write-epoch fence: a load that started before a `set` or `delete` of its key never
//! puts the old value back.
//!
//! Every write bumps its key's epoch (striped by key hash) before it writes; a load or a
//! fetch reads the epoch when it starts and caches its result only if the epoch is
//! unchanged, checked under the shard's write lock. The caller that started the load
//! still gets what it loaded.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::Group;
use crate::store::Tier;

/// Stripes of the write epochs (a write makes in-flight loads of 1/64 of the keys skip
/// caching their result; callers still get it).
const EPOCH_STRIPES: usize = 64;

/// The epochs, one per stripe of keys.
#[derive(Debug)]
pub(super) struct Fence {
    epochs: Box<[AtomicU64]>,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            epochs: (0..EPOCH_STRIPES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Fence {
    fn slot(&self, key: &[u8]) -> &AtomicU64 {
        &self.epochs[crate::ring::default_hash(key) as usize % EPOCH_STRIPES]
    }

    /// The epoch of `key` now: read when a load or fetch starts.
    pub(super) fn read(&self, key: &[u8]) -> u64 {
        self.slot(key).load(Ordering::SeqCst)
    }

    pub(super) fn bump(&self, key: &[u8]) {
        self.slot(key).fetch_add(1, Ordering::SeqCst);
    }
}

impl Group {
    /// A write by `set` (or a peer's) with its `version`: bump the epoch, then write.
    pub(super) fn write_local(
        &self,
        tier: Tier,
        key: Bytes,
        value: Option<Bytes>,
        deadline: u64,
        version: u64,
    ) {
        self.inner.fence.bump(&key);
        self.inner
            .store
            .insert_if(tier, key, value, deadline, version, |_| true);
    }

    /// A removal by `delete`, `set` on another owner, or an invalidation: bump, remove.
    pub(super) fn remove_local(&self, key: &[u8]) -> bool {
        self.inner.fence.bump(key);
        self.inner.store.remove(key)
    }

    /// Caches a loaded or fetched value unless a write to its key (stripe) happened since
    /// `epoch` was read at the start of the load.
    pub(super) fn cache_if_unchanged(
        &self,
        tier: Tier,
        key: Bytes,
        value: Option<Bytes>,
        deadline: u64,
        version: u64,
        epoch: u64,
    ) {
        // A mirror lives at most the hot TTL, and never longer than its owner keeps it.
        let deadline = match tier {
            Tier::Main => deadline,
            Tier::Hot => {
                let cap = crate::clock::deadline(self.inner.clock.now_ms(), Some(self.inner.hot_ttl));
                if deadline == 0 { cap } else { deadline.min(cap) }
            }
        };
        let fence = &self.inner.fence;
        let slot = fence.slot(&key);
        self.inner
            .store
            .insert_if(tier, key, value, deadline, version, |_| {
                slot.load(Ordering::SeqCst) == epoch
            });
    }
}
