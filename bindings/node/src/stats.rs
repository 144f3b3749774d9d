//! Stats objects: the plain JS objects of `cluster.stats()` and `group.stats()`.

use napi_derive::napi;

/// Counters of one peer, as this node sees it.
#[napi(object)]
pub struct PeerStats {
    /// The peer's advertised address.
    pub addr: String,
    /// `'closed'` (calls go through), `'open'` (failing fast) or `'half-open'`.
    pub breaker: String,
    pub requests: f64,
    pub successes: f64,
    pub failures: f64,
    pub timeouts: f64,
    pub retries: f64,
    /// Calls refused by the open breaker.
    pub rejected: f64,
    pub breaker_opened: f64,
}

/// `cluster.stats()`.
#[napi(object)]
pub struct ClusterStats {
    /// This node's advertised address.
    pub node: String,
    pub peers: Vec<PeerStats>,
}

/// Counters of one store tier.
#[napi(object)]
pub struct TierStats {
    /// Entries resident.
    pub items: f64,
    /// Bytes charged (keys, values, overhead).
    pub bytes: f64,
    pub gets: f64,
    pub hits: f64,
    pub evictions: f64,
    pub expirations: f64,
}

/// `group.stats()`: counters since the group was created.
#[napi(object)]
pub struct GroupStats {
    /// `get`s, `peek`s and keys asked for by `getMany`.
    pub gets: f64,
    /// Answered from the main tier.
    pub hits: f64,
    /// Answered from the hot tier (mirrors of keys other nodes own).
    pub hot_hits: f64,
    /// Gets that waited for a load another caller started.
    pub deduplicated: f64,
    /// Loader calls on this node.
    pub loads: f64,
    pub load_errors: f64,
    /// Loader calls that said NotFound.
    pub not_found: f64,
    /// Values fetched from their owner.
    pub remote_fetches: f64,
    pub remote_not_found: f64,
    /// Owners that could not be reached (each followed by a local fallback load).
    pub remote_errors: f64,
    pub fallback_loads: f64,
    pub hot_inserts: f64,
    /// Gets this node served to other nodes.
    pub served: f64,
    pub invalidation_errors: f64,
    /// The byte budget.
    pub capacity: f64,
    pub main: TierStats,
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
                    breaker: match breaker {
                        meshcache::BreakerState::Closed => "closed",
                        meshcache::BreakerState::Open => "open",
                        meshcache::BreakerState::HalfOpen => "half-open",
                    }
                    .to_string(),
                    requests: p.requests as f64,
                    successes: p.successes as f64,
                    failures: p.failures as f64,
                    timeouts: p.timeouts as f64,
                    retries: p.retries as f64,
                    rejected: p.rejected as f64,
                    breaker_opened: p.breaker_opened as f64,
                })
                .collect(),
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
