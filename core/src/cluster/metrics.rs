//! Prometheus metrics of one cluster: a `prometheus-client` registry of its own (never a
//! global one, which could clash with the host application's), rendered in the text
//! exposition format by [`crate::Cluster::metrics_text`] and served at `/metrics` of
//! `metrics_listen`.
//!
//! Everything but the peer latency histogram is read from the stats snapshots at scrape
//! time (a collector), so the get path pays nothing for metrics: the counters it bumps
//! are the ones `stats()` reads. Names follow Prometheus conventions: the `meshcache_`
//! prefix, base units (seconds, bytes), `_total` for counters, and no key in any label.
//!
//! | metric | labels |
//! |---|---|
//! | `meshcache_gets_total` | `group`, `result` = hit, hot_hit, remote, load, not_found, error |
//! | `meshcache_loads_total`, `meshcache_loads_deduplicated_total` | `group` |
//! | `meshcache_store_bytes`, `meshcache_store_items`, `meshcache_evictions_total` | `group`, `tier` |
//! | `meshcache_store_capacity_bytes` | `group` |
//! | `meshcache_replica_writes_total`, `meshcache_handoff_entries_total`, `meshcache_warm_takeovers_total` | `group` (handoff: `direction`) |
//! | `meshcache_peer_request_duration_seconds` (histogram) | `peer` |
//! | `meshcache_peer_breaker_state` (0 closed, 1 half open, 2 open) | `peer` |
//! | `meshcache_ring_members`, `meshcache_ring_epoch`, `meshcache_ring_healthy` | |
//! | `meshcache_rejected_requests_total` | `reason` = unauthenticated, overloaded, too_many_keys, protocol_mismatch |

use std::sync::Weak;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as Prom;

use super::ClusterInner;
use crate::group::GroupStats;
use crate::peer::BreakerState;

/// Label set of the peer latency histogram.
type PeerLabel = [(&'static str, String); 1];

/// The peer latency histogram: fed by every peer client of the cluster.
#[derive(Clone)]
pub(crate) struct PeerLatency(Family<PeerLabel, Histogram, fn() -> Histogram>);

impl std::fmt::Debug for PeerLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerLatency")
    }
}

impl Default for PeerLatency {
    fn default() -> Self {
        // 50 µs .. ~1.6 s.
        fn buckets() -> Histogram {
            Histogram::new(exponential_buckets(50e-6, 2.0, 16))
        }
        PeerLatency(Family::new_with_constructor(buckets))
    }
}

impl PeerLatency {
    /// Records one call to `peer` that took `took`.
    pub(crate) fn observe(&self, peer: &str, took: Duration) {
        self.0
            .get_or_create(&[("peer", peer.to_string())])
            .observe(took.as_secs_f64());
    }
}

/// A cluster's registry: the latency histogram and the collector over its stats.
pub(crate) struct Metrics {
    registry: Prom,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub(crate) fn new(latency: &PeerLatency, cluster: Weak<ClusterInner>) -> Self {
        let mut registry = Prom::default();
        registry.register(
            "meshcache_peer_request_duration_seconds",
            "Duration of calls to each peer, retries included",
            latency.0.clone(),
        );
        registry.register_collector(Box::new(StatsCollector(cluster)));
        Metrics { registry }
    }

    /// The text exposition format (`text/plain; version=0.0.4` compatible OpenMetrics).
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Reads the cluster's stats at scrape time.
#[derive(Debug)]
struct StatsCollector(Weak<ClusterInner>);

/// A counter family `name` (the encoder adds `_total` to each sample).
fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Vec<(&str, String)>, u64)],
) -> std::fmt::Result {
    let c = ConstCounter::new(0u64);
    let name = name.strip_suffix("_total").unwrap_or(name);
    let mut m = e.encode_descriptor(name, help, None, c.metric_type())?;
    for (labels, v) in rows {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Vec<(&str, String)>, i64)],
) -> std::fmt::Result {
    let g = ConstGauge::new(0i64);
    let mut m = e.encode_descriptor(name, help, None, g.metric_type())?;
    for (labels, v) in rows {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        ConstGauge::new(*v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `group` (and more) labels.
fn l(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let Some(cluster) = self.0.upgrade() else {
            return Ok(());
        };
        let groups: Vec<(String, GroupStats)> = (cluster.registry.groups().iter())
            .map(|g| (g.name().to_string(), g.stats()))
            .collect();
        let mut gets = Vec::new();
        for (g, s) in &groups {
            let by = [
                ("hit", s.hits),
                ("hot_hit", s.hot_hits),
                ("remote", s.remote_fetches),
                ("load", s.loads.saturating_sub(s.load_errors + s.not_found)),
                ("not_found", s.not_found + s.remote_not_found),
                (
                    "error",
                    s.load_errors + s.remote_errors.saturating_sub(s.fallback_loads),
                ),
            ];
            for (result, v) in by {
                gets.push((l(&[("group", g), ("result", result)]), v));
            }
        }
        counter(&mut e, "meshcache_gets_total", "Gets by result", &gets)?;
        let per_group = |f: &dyn Fn(&GroupStats) -> u64| -> Vec<(Vec<(&str, String)>, u64)> {
            groups.iter().map(|(g, s)| (l(&[("group", g)]), f(s))).collect()
        };
        counter(
            &mut e,
            "meshcache_loads_total",
            "Loader calls",
            &per_group(&|s| s.loads),
        )?;
        counter(
            &mut e,
            "meshcache_loads_deduplicated_total",
            "Gets that joined a load or fetch already running",
            &per_group(&|s| s.deduplicated),
        )?;
        counter(
            &mut e,
            "meshcache_replica_writes_total",
            "Writes applied by replicas",
            &per_group(&|s| s.replica_writes),
        )?;
        counter(
            &mut e,
            "meshcache_warm_takeovers_total",
            "Misses answered by a previous owner",
            &per_group(&|s| s.warm_takeovers),
        )?;
        let mut handoff = Vec::new();
        for (g, s) in &groups {
            handoff.push((l(&[("group", g), ("direction", "sent")]), s.handoff_sent));
            handoff.push((l(&[("group", g), ("direction", "received")]), s.handoff_received));
        }
        counter(
            &mut e,
            "meshcache_handoff_entries_total",
            "Entries handed off on graceful leaves",
            &handoff,
        )?;
        let (mut bytes, mut items, mut evictions) = (Vec::new(), Vec::new(), Vec::new());
        for (g, s) in &groups {
            for (tier, t) in s.tiers() {
                bytes.push((l(&[("group", g), ("tier", tier)]), t.bytes as i64));
                items.push((l(&[("group", g), ("tier", tier)]), t.items as i64));
                evictions.push((l(&[("group", g), ("tier", tier)]), t.evictions));
            }
        }
        gauge(
            &mut e,
            "meshcache_store_bytes",
            "Bytes charged against the budget",
            &bytes,
        )?;
        gauge(&mut e, "meshcache_store_items", "Entries resident", &items)?;
        counter(
            &mut e,
            "meshcache_evictions_total",
            "Entries evicted to stay within the budget",
            &evictions,
        )?;
        let capacity: Vec<_> = groups
            .iter()
            .map(|(g, s)| (l(&[("group", g)]), s.capacity as i64))
            .collect();
        gauge(
            &mut e,
            "meshcache_store_capacity_bytes",
            "The byte budget",
            &capacity,
        )?;
        let peers: Vec<_> = (cluster.membership.clients().iter())
            .map(|p| {
                let state = match p.breaker_state() {
                    BreakerState::Closed => 0,
                    BreakerState::HalfOpen => 1,
                    BreakerState::Open => 2,
                };
                (l(&[("peer", p.addr())]), state)
            })
            .collect();
        gauge(
            &mut e,
            "meshcache_peer_breaker_state",
            "Circuit breaker: 0 closed, 1 half open, 2 open",
            &peers,
        )?;
        let ring = cluster.membership.stats();
        gauge(
            &mut e,
            "meshcache_ring_members",
            "Nodes on this node's ring",
            &[(vec![], ring.members.len() as i64)],
        )?;
        gauge(
            &mut e,
            "meshcache_ring_epoch",
            "Changes of this node's ring",
            &[(vec![], ring.epoch as i64)],
        )?;
        gauge(
            &mut e,
            "meshcache_ring_healthy",
            "Whether the membership source answers",
            &[(vec![], i64::from(ring.healthy))],
        )?;
        let s = cluster.server.stats();
        let rejected = [
            ("unauthenticated", s.rejected_unauthenticated),
            ("overloaded", s.rejected_overloaded),
            ("too_many_keys", s.rejected_too_many_keys),
            ("protocol_mismatch", s.rejected_protocol_mismatch),
        ];
        let rejected: Vec<_> = rejected.iter().map(|(r, v)| (l(&[("reason", r)]), *v)).collect();
        counter(
            &mut e,
            "meshcache_rejected_requests_total",
            "Peer requests refused",
            &rejected,
        )?;
        Ok(())
    }
}
