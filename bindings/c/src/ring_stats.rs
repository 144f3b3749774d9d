//! The ring in a cluster's stats snapshot: where membership comes from, the members, the
//! epoch and the health of the source, read through `meshcache_cluster_stats_ring_*`.
//! The names are the core's (`RingStats::fields()`), the same in every language.

use std::ffi::{CString, c_char};

use meshcache::RingStats;

use crate::error::ffi_infallible;
use crate::stats::{c_string, meshcache_cluster_stats};

/// `RingStats` with its strings as C strings, owned by the `meshcache_cluster_stats` they
/// are read from.
#[derive(Debug)]
pub(crate) struct RingSnapshot {
    source: CString,
    members: Vec<CString>,
    epoch: u64,
    changed_at_ms: u64,
    healthy: bool,
    error: Option<CString>,
}

impl From<RingStats> for RingSnapshot {
    fn from(r: RingStats) -> Self {
        // Every field by name: a field added to the core fails to compile here.
        let RingStats {
            source,
            members,
            epoch,
            changed_at_ms,
            healthy,
            error,
        } = r;
        RingSnapshot {
            source: c_string(&source),
            members: members.iter().map(|m| c_string(m)).collect(),
            epoch,
            changed_at_ms,
            healthy,
            error: error.map(|e| c_string(&e)),
        }
    }
}

/// `f` of the ring in `stats`, or `null` for a NULL `stats`.
fn ring<T>(stats: *const meshcache_cluster_stats, null: T, f: impl FnOnce(&RingSnapshot) -> T) -> T
where
    T: Copy,
{
    ffi_infallible(null, || {
        // Safety: a non-NULL `stats` is live by contract (every caller's contract).
        unsafe { stats.as_ref() }.map_or(null, |s| f(&s.ring))
    })
}

/// Where this node's membership comes from: `"static"` (a peer list), `"etcd"` or `"dns"`
/// (`meshcache_cluster_options_set_membership`). NUL-terminated, owned by `stats` (valid
/// until `meshcache_cluster_stats_free`); "" for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_ring_source(
    stats: *const meshcache_cluster_stats,
) -> *const c_char {
    ring(stats, c"".as_ptr(), |r| r.source.as_ptr())
}

/// The number of nodes on this node's ring, this one included (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_ring_members_len(
    stats: *const meshcache_cluster_stats,
) -> usize {
    ring(stats, 0, |r| r.members.len())
}

/// Member `index` of the ring (advertised addresses, `"host:port"`, sorted), NUL-terminated,
/// owned by `stats` (valid until `meshcache_cluster_stats_free`); NULL for a NULL `stats`
/// or an `index` out of range.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_ring_member(
    stats: *const meshcache_cluster_stats,
    index: usize,
) -> *const c_char {
    ring(stats, std::ptr::null(), |r| {
        r.members.get(index).map_or(std::ptr::null(), |m| m.as_ptr())
    })
}

/// The ring's epoch: 1 at start, bumped on every change of the member set (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_ring_epoch(stats: *const meshcache_cluster_stats) -> u64 {
    ring(stats, 0, |r| r.epoch)
}

/// When the member set last changed (or the node started), in milliseconds since the
/// Unix epoch (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_ring_changed_at_ms(
    stats: *const meshcache_cluster_stats,
) -> u64 {
    ring(stats, 0, |r| r.changed_at_ms)
}

/// Whether the membership source answers: `false` while etcd or DNS cannot be reached
/// (the node keeps the last ring it saw meanwhile; `meshcache_cluster_stats_ring_error`
/// says why). Always `true` for `"static"`; `false` for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_ring_healthy(stats: *const meshcache_cluster_stats) -> bool {
    ring(stats, false, |r| r.healthy)
}

/// The membership source's last error while it is unhealthy, NUL-terminated, owned by
/// `stats` (valid until `meshcache_cluster_stats_free`); NULL when healthy, and for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_ring_error(
    stats: *const meshcache_cluster_stats,
) -> *const c_char {
    ring(stats, std::ptr::null(), |r| {
        r.error.as_ref().map_or(std::ptr::null(), |e| e.as_ptr())
    })
}
