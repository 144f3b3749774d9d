//! Hot sampling: which values fetched from their owner are mirrored in this node's hot tier.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::Group;
use super::stats::bump;
use crate::entry::Entry;
use crate::store::Tier;

/// Default hot-tier sampling: one in this many values fetched from their owner is
/// mirrored in this node's hot tier.
pub const DEFAULT_HOT_SAMPLE: u32 = 10;

/// One in `every` fetched values is mirrored (`0`: none).
#[derive(Debug)]
pub(super) struct HotSampler {
    every: u32,
    tick: AtomicU64,
}

impl HotSampler {
    pub(super) fn new(every: u32) -> Self {
        HotSampler {
            every,
            tick: AtomicU64::new(0),
        }
    }

    /// Whether this fetch is the one in `every` to mirror. Sampling keeps one-off reads
    /// out of the hot tier, while a key read often here is mirrored after about `every`
    /// reads.
    fn pick(&self) -> bool {
        let n = u64::from(self.every);
        n != 0 && self.tick.fetch_add(1, Ordering::Relaxed).is_multiple_of(n)
    }
}

impl Group {
    /// Counts an owner's answer and mirrors a sample of values in the hot tier (with the
    /// owner's expiry), unless a write to the key happened since `epoch`.
    pub(super) fn remote_answer(&self, key: Bytes, found: Entry, epoch: u64) -> Entry {
        let c = &self.inner.counters;
        match &found.value {
            Some(value) => {
                bump(&c.remote_fetches);
                if self.inner.hot.pick() {
                    bump(&c.hot_inserts);
                    // A fetched value is a slice of the answer it came in, which for a
                    // GetMany holds many values: the mirror gets its own bytes so that it
                    // does not keep the whole answer alive (the store counts only this
                    // value).
                    let own = Bytes::copy_from_slice(value);
                    self.inner.hlc.observe(found.version);
                    self.cache_if_unchanged(Tier::Hot, key, Some(own), found.deadline, found.version, epoch);
                }
            }
            None => bump(&c.remote_not_found),
        }
        found
    }
}
