//! Stats snapshots in C layout: a cluster's (its peers and its server; its ring is read
//! through the accessors of `ring_stats.rs`) and a group's (its tiers).

use std::ffi::{CString, c_char};

use meshcache::{ClusterStats, GroupStats, PeerStats, ServerStats, TierStats};

use crate::error::{arg, ffi, ffi_infallible, invalid, out_arg};
use crate::meshcache_result;
use crate::ring_stats::RingSnapshot;

/// One peer of a cluster, from `meshcache_cluster_stats_peer`: its address, the state of
/// its circuit breaker and the counters of this node's calls to it. The strings belong to
/// the `meshcache_cluster_stats` they came from and are valid until it is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct meshcache_peer_stats {
    /// The peer's advertised address, `"host:port"`.
    pub addr: *const c_char,
    /// The state of its breaker: `"closed"` (calls go through), `"open"` (calls fail at
    /// once until the cooldown ends) or `"half_open"` (one probe call is let through).
    pub breaker: *const c_char,
    /// Calls sent (each retry counts).
    pub requests: u64,
    /// Calls that got an answer (including application errors such as a failed load).
    pub successes: u64,
    /// Calls that failed to reach the peer or timed out.
    pub failures: u64,
    /// Of those, calls that hit their deadline.
    pub timeouts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Calls refused at once because the breaker was open.
    pub rejected: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
}

/// The counters of a node's peer server, from `meshcache_cluster_stats_server`: calls
/// and connections it refused or closed. The field names are the core's
/// (`ServerStats::fields()`), the same in every language.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct meshcache_server_stats {
    /// Calls refused for a missing or wrong cluster token.
    pub rejected_unauthenticated: u64,
    /// Calls refused because the node had as many peer requests in flight as it allows
    /// (`meshcache_cluster_options_set_max_peer_requests`).
    pub rejected_overloaded: u64,
    /// Batched gets refused for carrying more keys (or key bytes) than one answer may.
    pub rejected_too_many_keys: u64,
    /// Accept errors (such as running out of file descriptors), each followed by a pause.
    pub accept_errors: u64,
    /// Connections closed for not sending their first bytes within the handshake timeout.
    pub handshake_timeouts: u64,
    /// Connections closed after serving no request for the idle timeout.
    pub idle_closed: u64,
    /// Connections still open when shutdown's grace period ended, then closed.
    pub closed_at_shutdown: u64,
    /// Connections refused for speaking plaintext to a TLS port, or TLS to a plaintext
    /// one.
    pub rejected_protocol_mismatch: u64,
}

impl From<ServerStats> for meshcache_server_stats {
    fn from(s: ServerStats) -> Self {
        // Every field by name: a counter added to the core fails to compile here.
        let ServerStats {
            rejected_unauthenticated,
            rejected_overloaded,
            rejected_too_many_keys,
            accept_errors,
            handshake_timeouts,
            idle_closed,
            closed_at_shutdown,
            rejected_protocol_mismatch,
        } = s;
        meshcache_server_stats {
            rejected_unauthenticated,
            rejected_overloaded,
            rejected_too_many_keys,
            accept_errors,
            handshake_timeouts,
            idle_closed,
            closed_at_shutdown,
            rejected_protocol_mismatch,
        }
    }
}

/// A snapshot of a cluster's stats, from `meshcache_cluster_stats_get`: this node's
/// advertised address (`meshcache_cluster_stats_node`), one `meshcache_peer_stats` per
/// other node (`meshcache_cluster_stats_peers_len`, `meshcache_cluster_stats_peer`), in
/// address order, this node's server counters (`meshcache_cluster_stats_server`), and
/// this node's view of the ring: `meshcache_cluster_stats_ring_source`, `_ring_members_len`
/// and `_ring_member`, `_ring_epoch`, `_ring_changed_at_ms`, `_ring_healthy`,
/// `_ring_error` (the names of `ring` in every language). Free with
/// `meshcache_cluster_stats_free`.
#[derive(Debug)]
pub struct meshcache_cluster_stats {
    node: CString,
    peers: Vec<PeerSnapshot>,
    server: ServerStats,
    pub(crate) ring: RingSnapshot,
}

#[derive(Debug)]
struct PeerSnapshot {
    addr: CString,
    /// `BreakerState::as_str()`, the state's name in every language.
    breaker: CString,
    stats: PeerStats,
}

impl From<ClusterStats> for meshcache_cluster_stats {
    fn from(s: ClusterStats) -> Self {
        meshcache_cluster_stats {
            node: c_string(&s.node),
            peers: s
                .peers
                .into_iter()
                .map(|(addr, breaker, stats)| PeerSnapshot {
                    addr: c_string(&addr),
                    breaker: c_string(breaker.as_str()),
                    stats,
                })
                .collect(),
            server: s.server,
            ring: s.ring.into(),
        }
    }
}

/// `s` as a C string (an address or a state name never holds a NUL; one would be escaped).
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// This node's advertised address (its name on the ring), NUL-terminated, owned by
/// `stats` (valid until `meshcache_cluster_stats_free`); "" for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_node(
    stats: *const meshcache_cluster_stats,
) -> *const c_char {
    ffi_infallible(c"".as_ptr(), || {
        // Safety: a non-NULL `stats` is live by contract.
        unsafe { stats.as_ref() }.map_or(c"".as_ptr(), |s| s.node.as_ptr())
    })
}

/// The number of peers in `stats` (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_peers_len(stats: *const meshcache_cluster_stats) -> usize {
    ffi_infallible(0, || {
        // Safety: a non-NULL `stats` is live by contract.
        unsafe { stats.as_ref() }.map_or(0, |s| s.peers.len())
    })
}

/// Peer `index` of `stats` into `*out`; its strings are owned by `stats`.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for NULL pointers or an index out of range.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_peer(
    stats: *const meshcache_cluster_stats,
    index: usize,
    out: *mut meshcache_peer_stats,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `stats` is live by contract.
        let s = unsafe { arg(stats, "stats") }?;
        out_arg(out, "out")?;
        let p = s
            .peers
            .get(index)
            .ok_or_else(|| invalid(format!("index {index} out of range ({} peers)", s.peers.len())))?;
        // Every field by name: a counter added to the core fails to compile here.
        let PeerStats {
            requests,
            successes,
            failures,
            timeouts,
            retries,
            rejected,
            breaker_opened,
        } = p.stats;
        let peer = meshcache_peer_stats {
            addr: p.addr.as_ptr(),
            breaker: p.breaker.as_ptr(),
            requests,
            successes,
            failures,
            timeouts,
            retries,
            rejected,
            breaker_opened,
        };
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = peer };
        Ok(())
    })
}

/// This node's server counters in `stats` into `*out` (see `meshcache_server_stats`).
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for NULL pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_server(
    stats: *const meshcache_cluster_stats,
    out: *mut meshcache_server_stats,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `stats` is live by contract.
        let s = unsafe { arg(stats, "stats") }?;
        out_arg(out, "out")?;
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = s.server.into() };
        Ok(())
    })
}

/// Frees `stats`. Does nothing for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_free(stats: *mut meshcache_cluster_stats) {
    ffi_infallible((), || {
        if !stats.is_null() {
            // Safety: a non-NULL `stats` came from `Box::into_raw` in
            // meshcache_cluster_stats_get and is freed once by contract.
            drop(unsafe { Box::from_raw(stats) });
        }
    })
}

/// Counters of one tier of a group's store (`main` or `hot` in `meshcache_group_stats`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct meshcache_tier_stats {
    /// Entries resident now.
    pub items: u64,
    /// Bytes charged against the budget now (keys, values and overhead).
    pub bytes: u64,
    /// Lookups that consulted this tier (a lookup consults both tiers at once, so both
    /// tiers count every lookup).
    pub gets: u64,
    /// Lookups answered from this tier.
    pub hits: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries removed because their TTL passed.
    pub expirations: u64,
}

impl From<TierStats> for meshcache_tier_stats {
    fn from(t: TierStats) -> Self {
        // Every field by name: a counter added to the core fails to compile here.
        let TierStats {
            items,
            bytes,
            gets,
            hits,
            evictions,
            expirations,
        } = t;
        meshcache_tier_stats {
            items,
            bytes,
            gets,
            hits,
            evictions,
            expirations,
        }
    }
}

/// Counters of a group, a snapshot (fields are read one by one). The same names, in the
/// same shape, as in every language: the group's counters, then its two tiers.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct meshcache_group_stats {
    /// Calls to get and peek, and keys asked for by get_many.
    pub gets: u64,
    /// Gets answered from this node's main tier without loading.
    pub hits: u64,
    /// Gets answered from the hot tier (mirrors of keys other nodes own).
    pub hot_hits: u64,
    /// Gets that joined a load another caller had started.
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
    /// Owners that could not be reached or timed out.
    pub remote_errors: u64,
    /// Loads done here because the owner could not be reached.
    pub fallback_loads: u64,
    /// Values mirrored in the hot tier.
    pub hot_inserts: u64,
    /// Gets served to other nodes.
    pub served: u64,
    /// Peers that could not be told to drop a key on set or delete.
    pub invalidation_errors: u64,
    /// Invalidations delivered on a retry, after a first attempt failed.
    pub invalidations_retried: u64,
    /// Invalidations given up because the retry queue was full.
    pub invalidations_dropped: u64,
    /// Writes (set, delete) this node sent to a key's replicas that they applied.
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
    /// The byte budget of the store (both tiers).
    pub capacity: u64,
    /// The main tier: keys this node owns.
    pub main: meshcache_tier_stats,
    /// The hot tier: mirrors of keys other nodes own.
    pub hot: meshcache_tier_stats,
}

impl From<GroupStats> for meshcache_group_stats {
    fn from(s: GroupStats) -> Self {
        // Every field by name: a counter added to the core fails to compile here.
        let GroupStats {
            gets,
            hits,
            hot_hits,
            deduplicated,
            loads,
            load_errors,
            not_found,
            remote_fetches,
            remote_not_found,
            remote_errors,
            fallback_loads,
            hot_inserts,
            served,
            invalidation_errors,
            invalidations_retried,
            invalidations_dropped,
            replica_writes,
            replica_write_errors,
            replica_reads,
            handoff_sent,
            handoff_received,
            warm_takeovers,
            capacity,
            main,
            hot,
        } = s;
        meshcache_group_stats {
            gets,
            hits,
            hot_hits,
            deduplicated,
            loads,
            load_errors,
            not_found,
            remote_fetches,
            remote_not_found,
            remote_errors,
            fallback_loads,
            hot_inserts,
            served,
            invalidation_errors,
            invalidations_retried,
            invalidations_dropped,
            replica_writes,
            replica_write_errors,
            replica_reads,
            handoff_sent,
            handoff_received,
            warm_takeovers,
            capacity,
            main: main.into(),
            hot: hot.into(),
        }
    }
}
