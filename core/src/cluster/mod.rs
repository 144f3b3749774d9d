//! A `Cluster`: one node — its peer server, its membership (the ring and a client for
//! every other node), its groups and the tokio runtime they all run on.
//!
//! Every process of a service builds one `Cluster` with the same peer list; each key has
//! one owner on the ring, and a miss anywhere is loaded once in the whole cluster, by the
//! owner. A cluster with no peers is an embedded, single-node cache.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the public API of a running node |
//! | `builder.rs` | options, defaults, validation, start |
//! | `membership.rs` | who the nodes are and who owns a key: the groups' router |
//! | `discovery/` | membership that follows etcd or DNS |
//! | `runtime.rs` | the runtime the node runs on |
//!
//! The peer server itself is started and stopped by `peer/server.rs`.

mod builder;
mod discovery;
mod handoff;
mod http;
mod membership;
mod metrics;
mod runtime;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::runtime::Handle;

pub use builder::{
    ClusterBuilder, DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_THRESHOLD, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HANDOFF_MAX_BYTES, DEFAULT_HANDOFF_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_PEER_REQUESTS, DEFAULT_MAX_STREAMS_PER_CONNECTION,
    DEFAULT_PEER_TIMEOUT, DEFAULT_RETRIES, DEFAULT_RETRY_BACKOFF, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_WARM_WINDOW, DEFAULT_WORKER_THREADS,
};

pub use self::discovery::{DEFAULT_DNS_INTERVAL, DEFAULT_ETCD_LEASE_TTL, Discovery, DnsSpec, EtcdSpec};
pub use self::membership::RingStats;

pub use self::http::STATUS_PAGE;
pub(crate) use self::metrics::PeerLatency;

use self::discovery::Running;
use self::membership::Membership;
use self::runtime::NodeRuntime;
use crate::error::{Error, Result};
use crate::group::{Group, GroupBuilder};
use crate::peer::server::Server;
use crate::peer::{BreakerState, PeerStats, ServerStats};
use crate::registry::Registry;

/// A node of a meshcache cluster. Cheap to clone; clones share the node.
///
/// # Concurrency
///
/// All methods take `&self` and may be called from any thread. The cluster's runtime
/// runs the peer server, the loads and the housekeepers.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<ClusterInner>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("local_addr", &self.inner.local_addr)
            .field("membership", &self.inner.membership)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a cluster's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStats {
    /// This node's advertised address.
    pub node: String,
    /// Every peer: its address, breaker state and call counters.
    pub peers: Vec<(String, BreakerState, PeerStats)>,
    /// This node's server: refused requests and connection events.
    pub server: ServerStats,
    /// This node's view of the ring: members, epoch, and the health of its source.
    pub ring: RingStats,
}

struct ClusterInner {
    /// The etcd or DNS task, if membership is not static.
    discovery: Option<Running>,
    membership: Arc<Membership>,
    /// The groups, which the server finds here.
    registry: Arc<Registry>,
    local_addr: SocketAddr,
    server: Server,
    runtime: NodeRuntime,
    shutdown_grace: std::time::Duration,
    handoff: handoff::Limits,
    /// The Prometheus registry, set right after the cluster is made (it reads the
    /// cluster's stats through a weak reference).
    metrics: std::sync::OnceLock<metrics::Metrics>,
    /// The metrics and status server of `metrics_listen`, if any.
    http: parking_lot::Mutex<Option<http::HttpServer>>,
    closed: AtomicBool,
}

impl Drop for ClusterInner {
    fn drop(&mut self) {
        // Groups that outlive the cluster stop routing (they report Closed).
        self.membership.close();
        self.server.stop();
    }
}

impl Cluster {
    fn from_parts(inner: ClusterInner, latency: &PeerLatency) -> Self {
        let inner = Arc::new(inner);
        let _ = inner
            .metrics
            .set(metrics::Metrics::new(latency, Arc::downgrade(&inner)));
        Cluster { inner }
    }

    /// The cluster's metrics in the Prometheus text exposition format: what
    /// `metrics_listen` serves at `/metrics`, for an application that serves its own
    /// metrics endpoint (append it to yours). See `cluster/metrics.rs` for the names.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.get().map(|m| m.text()).unwrap_or_default()
    }

    /// The node's status as JSON, what `/v1/status` of `metrics_listen` answers and the
    /// status page ([`STATUS_PAGE`]) reads: this node, its ring (members with their share
    /// of the keys, epoch, health), its peers (breaker, counters) and its groups' stats.
    pub fn status_json(&self) -> serde_json::Value {
        http::status_json(&self.inner)
    }

    /// The address of the metrics and status server (`metrics_listen`), if it runs.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.inner.http.lock().as_ref().map(|h| h.addr())
    }

    /// A builder with the defaults: listen on `127.0.0.1:0`, no peers.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The address the server is bound to (with the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// This node's name on the ring: its advertised address.
    pub fn advertise_addr(&self) -> &str {
        self.inner.membership.self_addr()
    }

    /// The runtime the cluster runs on.
    pub fn runtime(&self) -> &Handle {
        self.inner.runtime.handle()
    }

    /// The ring's nodes, this one included, sorted.
    pub fn members(&self) -> Vec<String> {
        self.inner.membership.members()
    }

    /// Waits until `ready(&ring)` holds for this node's view of the ring, for at most
    /// `timeout`; returns the ring then (or, on timeout, [`crate::ErrorKind::Timeout`]).
    /// Wakes on every ring change and every change of the source's health, never by
    /// polling: for tests, tools and applications that must know when a node has joined
    /// or left.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Timeout`] if `ready` did not hold in time;
    /// [`crate::ErrorKind::Closed`] after shutdown (a wait in progress ends then too).
    pub async fn wait_for_ring(
        &self,
        timeout: std::time::Duration,
        mut ready: impl FnMut(&RingStats) -> bool,
    ) -> Result<RingStats> {
        let mut changes = self.inner.membership.watch();
        let wait = async {
            loop {
                changes.borrow_and_update();
                let ring = self.inner.membership.stats();
                if ready(&ring) {
                    return Ok(ring);
                }
                if self.inner.membership.is_closed() || changes.changed().await.is_err() {
                    return Err(Error::closed());
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                crate::ErrorKind::Timeout,
                format!(
                    "the ring did not reach the state waited for in {timeout:?}: {:?}",
                    self.members()
                ),
            )),
        }
    }

    /// [`Cluster::wait_for_ring`] until the ring has exactly `n` members: "the cluster
    /// has formed". Returns the members.
    ///
    /// # Errors
    ///
    /// As [`Cluster::wait_for_ring`].
    pub async fn wait_for_members(&self, n: usize, timeout: std::time::Duration) -> Result<Vec<String>> {
        Ok(self
            .wait_for_ring(timeout, |r| r.members.len() == n)
            .await?
            .members)
    }

    /// Which node owns `key` now.
    pub fn owner_of(&self, key: &[u8]) -> String {
        self.inner.membership.owner_of(key)
    }

    /// Replaces the peer list (this node's own address may be included). The ring is
    /// swapped atomically; connections to nodes that stay are kept.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidArgument`] for an address that is not `host:port`;
    /// [`crate::ErrorKind::Closed`] after shutdown.
    pub fn set_peers<I, S>(&self, peers: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if self.is_closed() {
            return Err(Error::closed());
        }
        if self.inner.discovery.is_some() {
            return Err(Error::invalid(
                "set_peers is for a static membership: this node follows etcd or DNS",
            ));
        }
        self.inner
            .membership
            .set_peers(peers.into_iter().map(Into::into).collect())
    }

    /// A builder for a group served by this cluster. `build()` registers it.
    pub fn group(&self, name: impl Into<String>) -> GroupBuilder {
        Group::builder(name).routed(
            self.inner.membership.clone(),
            self.inner.registry.clone(),
            self.runtime().clone(),
        )
    }

    /// The group registered under `name`.
    pub fn get_group(&self, name: &str) -> Option<Group> {
        self.inner.registry.get(name)
    }

    /// Peer counters and breaker states.
    pub fn stats(&self) -> ClusterStats {
        let mut peers: Vec<_> = self
            .inner
            .membership
            .clients()
            .iter()
            .map(|p| (p.addr().to_string(), p.breaker_state(), p.stats()))
            .collect();
        peers.sort_by(|a, b| a.0.cmp(&b.0));
        ClusterStats {
            node: self.advertise_addr().to_string(),
            peers,
            server: self.inner.server.stats(),
            ring: self.inner.membership.stats(),
        }
    }

    /// Whether the cluster was shut down.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Shuts down gracefully: stops accepting connections, lets calls in flight finish
    /// for up to the shutdown grace period ([`ClusterBuilder::shutdown_grace`]), closes
    /// every connection still open, then closes every group (later calls return
    /// [`crate::ErrorKind::Closed`]). Always returns within about the grace period plus a
    /// second, whatever the peers do. Idempotent.
    ///
    /// # Errors
    ///
    /// The server's own error, if it failed while serving.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the shutdown half done: the server stops anyway, but
    /// groups may stay open until the cluster is dropped.
    pub async fn shutdown(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Leave the ring first (an etcd node revokes its lease), so that the other nodes
        // stop routing here before the server stops answering.
        if let Some(d) = &self.inner.discovery {
            d.stop().await;
            // Then hand what this node holds to the keys' new owners, while its server
            // still answers the warm takeovers of those that miss meanwhile.
            handoff::run(&self.inner.membership, &self.inner.registry, &self.inner.handoff).await;
            // And until the peers whose rings still name it have stopped calling.
            self.inner.server.until_quiet(self.inner.shutdown_grace).await;
        }
        self.inner.membership.close();
        let http = self.inner.http.lock().take();
        if let Some(h) = http {
            h.stop().await;
        }
        let result = self.inner.server.shutdown(self.inner.shutdown_grace).await;
        self.inner.registry.close_all();
        result
    }

    /// [`Cluster::shutdown`] for synchronous code: blocks until done.
    ///
    /// # Errors
    ///
    /// As [`Cluster::shutdown`]; [`crate::ErrorKind::InvalidArgument`] when called from
    /// inside an async context (a loader, say), where blocking would deadlock.
    pub fn shutdown_blocking(&self) -> Result<()> {
        if Handle::try_current().is_ok() {
            return Err(Error::invalid(
                "shutdown_blocking called from async code: await Cluster::shutdown instead",
            ));
        }
        self.runtime().block_on(self.shutdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn options_that_can_never_work_are_refused_for_every_language() {
        let refused = |b: ClusterBuilder| b.build().unwrap_err().kind();
        assert_eq!(
            refused(Cluster::builder().worker_threads(0)),
            ErrorKind::InvalidArgument
        );
        assert_eq!(refused(Cluster::builder().vnodes(0)), ErrorKind::InvalidArgument);
        assert_eq!(
            refused(Cluster::builder().peer_timeout(std::time::Duration::ZERO)),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn a_builder_never_prints_its_tokens() {
        let b = Cluster::builder().token("s3cret-a").previous_token("s3cret-b");
        let text = format!("{b:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("<set>"));
    }

    #[test]
    fn build_with_a_bad_address_is_an_error_not_a_panic() {
        let err = Cluster::builder().listen("not an address").build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}
