//! Stats objects: the plain JS objects of `cluster.stats()` and `group.stats()`.
//!
//! One shape and one spelling in every language, defined by the core: the keys are
//! snake_case, named exactly as `GroupStats::counters()`, `TierStats::fields()`,
//! `PeerStats::fields()`, `ServerStats::fields()` and `RingStats::fields()` (they are data, like the JSON a
//! status page serves), in the same order. Hence the `js_name`s: napi would camelCase the
//! field names. The server's counters are built from `ServerStats::fields()` itself (their
//! TypeScript interface is in `node/dts-header.d.ts`). The package's tests compare the
//! keys with the core's lists.

use napi::bindgen_prelude::*;
use napi_derive::napi;

/// Counters of one peer, as this node sees it.
#[napi(object, object_from_js = false)]
pub struct PeerStats {
    /// The peer's advertised address.
    pub addr: String,
    /// `'closed'` (calls go through), `'open'` (failing fast) or `'half_open'` (one probe
    /// let through).
    #[napi(ts_type = "'closed' | 'open' | 'half_open'")]
    pub breaker: String,
    /// Calls sent (each retry counts).
    pub requests: f64,
    /// Calls that got an answer.
    pub successes: f64,
    /// Calls that failed to reach the peer or timed out.
    pub failures: f64,
    /// Of those, calls that hit their deadline.
    pub timeouts: f64,
    /// Retries sent.
    pub retries: f64,
    /// Calls refused by the open breaker.
    pub rejected: f64,
    /// Times the breaker opened.
    #[napi(js_name = "breaker_opened")]
    pub breaker_opened: f64,
}

/// `cluster.stats()`.
#[napi(object, object_from_js = false)]
pub struct ClusterStats {
    /// This node's advertised address.
    pub node: String,
    pub peers: Vec<PeerStats>,
    /// This node's peer server: refused requests and connection events.
    #[napi(ts_type = "ServerStats")]
    pub server: ServerStats,
    /// This node's view of the ring: its members, and the health of their source.
    pub ring: RingStats,
}

/// `cluster.stats().ring`: this node's view of the ring. `error` is `null` while the
/// source is healthy (always, for `'static'`).
#[napi(object, object_from_js = false, use_nullable = true)]
pub struct RingStats {
    /// Where membership comes from: the `membership` option's kind.
    #[napi(ts_type = "'static' | 'etcd' | 'dns'")]
    pub source: String,
    /// The ring's nodes (advertised addresses), this one included, sorted.
    pub members: Vec<String>,
    /// Bumped on every change of the member set (starts at 1).
    pub epoch: f64,
    /// When the member set last changed, in unix milliseconds.
    #[napi(js_name = "changed_at_ms")]
    pub changed_at_ms: f64,
    /// Whether the source answers: `false` while etcd or DNS cannot be reached (the node
    /// keeps serving with the last ring it saw meanwhile).
    pub healthy: bool,
    /// The source's last error while unhealthy, else `null`.
    pub error: Option<String>,
}

/// The server's counters, as a plain object whose keys are core's `ServerStats::fields()`
/// names, in their order.
pub struct ServerStats(meshcache::ServerStats);

impl ToNapiValue for ServerStats {
    unsafe fn to_napi_value(raw_env: napi::sys::napi_env, val: Self) -> Result<napi::sys::napi_value> {
        let env = Env::from_raw(raw_env);
        let mut obj = Object::new(&env)?;
        for (name, n) in val.0.fields() {
            obj.set_named_property(name, n as f64)?;
        }
        // SAFETY: JS thread (ToNapiValue contract), and `obj` was made with this env.
        unsafe { Object::to_napi_value(raw_env, obj) }
    }
}

/// Counters of one store tier.
#[napi(object, object_from_js = false)]
pub struct TierStats {
    /// Entries resident.
    pub items: f64,
    /// Bytes charged (keys, values, overhead).
    pub bytes: f64,
    /// Lookups that consulted this tier.
    pub gets: f64,
    /// Lookups answered from this tier.
    pub hits: f64,
    /// Entries evicted to make room.
    pub evictions: f64,
    /// Entries removed because their deadline passed.
    pub expirations: f64,
}

/// `group.stats()`: counters since the group was created.
#[napi(object, object_from_js = false)]
pub struct GroupStats {
    /// `get`s, `peek`s and keys asked for by `getMany`.
    pub gets: f64,
    /// Answered from the main tier.
    pub hits: f64,
    /// Answered from the hot tier (mirrors of keys other nodes own).
    #[napi(js_name = "hot_hits")]
    pub hot_hits: f64,
    /// Gets that waited for a load another caller started.
    pub deduplicated: f64,
    /// Loader calls on this node.
    pub loads: f64,
    /// Loader calls that failed (an error, or an unusable result).
    #[napi(js_name = "load_errors")]
    pub load_errors: f64,
    /// Loader calls that said NotFound.
    #[napi(js_name = "not_found")]
    pub not_found: f64,
    /// Values fetched from their owner.
    #[napi(js_name = "remote_fetches")]
    pub remote_fetches: f64,
    /// Owners' answers that the key does not exist.
    #[napi(js_name = "remote_not_found")]
    pub remote_not_found: f64,
    /// Owners that could not be reached (each followed by a local fallback load).
    #[napi(js_name = "remote_errors")]
    pub remote_errors: f64,
    /// Loads done here because the owner could not be reached.
    #[napi(js_name = "fallback_loads")]
    pub fallback_loads: f64,
    /// Values mirrored in the hot tier.
    #[napi(js_name = "hot_inserts")]
    pub hot_inserts: f64,
    /// Gets this node served to other nodes.
    pub served: f64,
    /// Peers that could not be told to drop a key on `set` or `delete`.
    #[napi(js_name = "invalidation_errors")]
    pub invalidation_errors: f64,
    /// Invalidations delivered on a retry, after a first attempt failed.
    #[napi(js_name = "invalidations_retried")]
    pub invalidations_retried: f64,
    /// Invalidations given up because the retry queue was full.
    #[napi(js_name = "invalidations_dropped")]
    pub invalidations_dropped: f64,
    /// Writes (`set`, `delete`) this node sent to a key's replicas that they applied.
    #[napi(js_name = "replica_writes")]
    pub replica_writes: f64,
    /// Writes to a replica that failed (the owner still holds the value).
    #[napi(js_name = "replica_write_errors")]
    pub replica_write_errors: f64,
    /// Gets answered by a replica because the key's owner could not be reached.
    #[napi(js_name = "replica_reads")]
    pub replica_reads: f64,
    /// Entries this node handed to their new owners when it left the ring gracefully.
    #[napi(js_name = "handoff_sent")]
    pub handoff_sent: f64,
    /// Entries other nodes handed to this one that it kept (newer than what it held).
    #[napi(js_name = "handoff_received")]
    pub handoff_received: f64,
    /// Misses of newly owned keys answered by the key's previous owner (warm takeover)
    /// instead of the loader.
    #[napi(js_name = "warm_takeovers")]
    pub warm_takeovers: f64,
    /// The byte budget of the store (both tiers).
    pub capacity: f64,
    /// The main tier: keys this node owns.
    pub main: TierStats,
    /// The hot tier: mirrors of keys other nodes own.
    pub hot: TierStats,
}

impl From<meshcache::ClusterStats> for ClusterStats {
    fn from(s: meshcache::ClusterStats) -> Self {
        ClusterStats {
            node: s.node,
            peers: s
                .peers
                .into_iter()
                .map(|(addr, breaker, p)| PeerStats {
                    addr,
                    breaker: breaker.as_str().to_string(),
                    requests: p.requests as f64,
                    successes: p.successes as f64,
                    failures: p.failures as f64,
                    timeouts: p.timeouts as f64,
                    retries: p.retries as f64,
                    rejected: p.rejected as f64,
                    breaker_opened: p.breaker_opened as f64,
                })
                .collect(),
            server: ServerStats(s.server),
            ring: s.ring.into(),
        }
    }
}

impl From<meshcache::RingStats> for RingStats {
    fn from(r: meshcache::RingStats) -> Self {
        RingStats {
            source: r.source,
            members: r.members,
            epoch: r.epoch as f64,
            changed_at_ms: r.changed_at_ms as f64,
            healthy: r.healthy,
            error: r.error,
        }
    }
}

impl From<meshcache::GroupStats> for GroupStats {
    fn from(s: meshcache::GroupStats) -> Self {
        GroupStats {
            gets: s.gets as f64,
            hits: s.hits as f64,
            hot_hits: s.hot_hits as f64,
            deduplicated: s.deduplicated as f64,
            loads: s.loads as f64,
            load_errors: s.load_errors as f64,
            not_found: s.not_found as f64,
            remote_fetches: s.remote_fetches as f64,
            remote_not_found: s.remote_not_found as f64,
            remote_errors: s.remote_errors as f64,
            fallback_loads: s.fallback_loads as f64,
            hot_inserts: s.hot_inserts as f64,
            served: s.served as f64,
            invalidation_errors: s.invalidation_errors as f64,
            invalidations_retried: s.invalidations_retried as f64,
            invalidations_dropped: s.invalidations_dropped as f64,
            replica_writes: s.replica_writes as f64,
            replica_write_errors: s.replica_write_errors as f64,
            replica_reads: s.replica_reads as f64,
            handoff_sent: s.handoff_sent as f64,
            handoff_received: s.handoff_received as f64,
            warm_takeovers: s.warm_takeovers as f64,
            capacity: s.capacity as f64,
            main: s.main.into(),
            hot: s.hot.into(),
        }
    }
}

impl From<meshcache::TierStats> for TierStats {
    fn from(t: meshcache::TierStats) -> Self {
        TierStats {
            items: t.items as f64,
            bytes: t.bytes as f64,
            gets: t.gets as f64,
            hits: t.hits as f64,
            evictions: t.evictions as f64,
            expirations: t.expirations as f64,
        }
    }
}
