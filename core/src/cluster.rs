//! A `Cluster`: this node's gRPC server, its clients to every peer, the consistent-hash
//! ring, its groups and the tokio runtime they all run on.
//!
//! Every process of a service builds one `Cluster` with the same peer list; each key has
//! one owner on the ring, and a miss anywhere is loaded once in the whole cluster, by the
//! owner. A cluster with no peers is an embedded, single-node cache.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind, Result};
use crate::group::{Group, GroupBuilder};
use crate::peer::client::{PeerClient, PeerOptions};
use crate::peer::pb::peer_server::PeerServer;
use crate::peer::server::PeerService;
use crate::peer::{BreakerState, PeerStats};
use crate::ring::{self, HashFn, Ring};

/// Default deadline of a call to a peer.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time to establish a connection to a peer.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default consecutive failures that open a peer's circuit breaker.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// Default time an open breaker waits before letting one probe through.
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(1);
/// Default largest gRPC message, either direction.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Where a key's get goes.
pub(crate) enum Route {
    /// This node owns it.
    Local,
    /// Another node owns it.
    Remote(Arc<PeerClient>),
}

/// Builds a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    listen: String,
    advertise: Option<String>,
    peers: Vec<String>,
    opts: PeerOptions,
    vnodes: usize,
    hash: HashFn,
    worker_threads: usize,
    runtime: Option<Handle>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            listen: "127.0.0.1:0".into(),
            advertise: None,
            peers: Vec::new(),
            opts: PeerOptions {
                timeout: DEFAULT_PEER_TIMEOUT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                retries: 1,
                backoff: Duration::from_millis(10),
                breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
                breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            },
            vnodes: ring::DEFAULT_VNODES,
            hash: ring::default_hash,
            worker_threads: 2,
            runtime: None,
        }
    }
}

impl ClusterBuilder {
    /// The address the peer server binds, `host:port`. Default `127.0.0.1:0` (port 0 picks
    /// a free port; [`Cluster::local_addr`] reports it).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// The address other nodes use to reach this one, and this node's name on the ring.
    /// Default: the bound address (which must then not be a wildcard like `0.0.0.0`).
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// The other nodes' advertised addresses. This node's own address may be in the
    /// list (every node can be given the same list). Default: none.
    pub fn peers<I, S>(mut self, peers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.peers = peers.into_iter().map(Into::into).collect();
        self
    }

    /// Deadline of every call to a peer. Default [`DEFAULT_PEER_TIMEOUT`].
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.opts.timeout = timeout;
        self
    }

    /// Time to establish a connection. Default [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.opts.connect_timeout = timeout;
        self
    }

    /// Retries of an idempotent call that could not reach its peer, with exponential
    /// backoff starting at `backoff`. Default 1 retry after 10 ms.
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.opts.retries = retries;
        self.opts.backoff = backoff;
        self
    }

    /// Consecutive failures that open a peer's breaker, and how long it stays open before
    /// one probe is let through. Default [`DEFAULT_BREAKER_THRESHOLD`],
    /// [`DEFAULT_BREAKER_COOLDOWN`].
    pub fn breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.opts.breaker_threshold = threshold;
        self.opts.breaker_cooldown = cooldown;
        self
    }

    /// Largest gRPC message sent or accepted. Default [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.opts.max_message_size = bytes;
        self
    }

    /// Points per node on the ring. Default [`ring::DEFAULT_VNODES`]. Every node of a
    /// cluster must use the same value.
    pub fn vnodes(mut self, vnodes: usize) -> Self {
        self.vnodes = vnodes;
        self
    }

    /// The ring's hash function (tests use an identity hash). Every node must agree.
    pub fn ring_hash(mut self, hash: HashFn) -> Self {
        self.hash = hash;
        self
    }

    /// Worker threads of the runtime the cluster creates for itself. Default 2.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n.max(1);
        self
    }

    /// Run on an existing tokio runtime instead of creating one.
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Starts the cluster from synchronous code: creates its own runtime (unless
    /// [`ClusterBuilder::runtime`] was given), binds the listener and starts serving.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for an address that does not parse or cannot be
    /// bound, or a wildcard listen address without `advertise`.
    ///
    /// # Panics
    ///
    /// Called from inside an async context, where it cannot block: use
    /// [`ClusterBuilder::start`] there.
    pub fn build(self) -> Result<Cluster> {
        match self.runtime.clone() {
            Some(handle) => handle.block_on(self.start_on(handle.clone(), None)),
            None => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(self.worker_threads)
                    .thread_name("meshcache")
                    .enable_all()
                    .build()
                    .map_err(|e| Error::new(ErrorKind::Closed, format!("cannot start a runtime: {e}")))?;
                let handle = rt.handle().clone();
                // The runtime is handed to the cluster only on success: on an error it must
                // be dropped here, outside `block_on` (dropping a runtime inside an async
                // context panics).
                let cluster = handle.block_on(self.start_on(handle.clone(), None))?;
                *cluster.inner.owned_runtime.lock() = Some(rt);
                Ok(cluster)
            }
        }
    }

    /// Starts the cluster on the current tokio runtime (or the one given with
    /// [`ClusterBuilder::runtime`]).
    ///
    /// # Errors
    ///
    /// As [`ClusterBuilder::build`].
    pub async fn start(self) -> Result<Cluster> {
        let handle = match self.runtime.clone() {
            Some(h) => h,
            None => Handle::current(),
        };
        self.start_on(handle, None).await
    }

    /// Options that can never work are refused here, once for every language.
    fn validate(&self) -> Result<()> {
        let o = &self.opts;
        if o.timeout.is_zero() || o.connect_timeout.is_zero() {
            return Err(Error::invalid(
                "peer_timeout and connect_timeout must be greater than zero",
            ));
        }
        if o.max_message_size == 0 {
            return Err(Error::invalid("max_message_size must be greater than zero"));
        }
        if self.vnodes == 0 {
            return Err(Error::invalid("vnodes must be greater than zero"));
        }
        if o.breaker_threshold == 0 {
            return Err(Error::invalid("the breaker threshold must be greater than zero"));
        }
        Ok(())
    }

    async fn start_on(self, handle: Handle, owned: Option<Runtime>) -> Result<Cluster> {
        self.validate()?;
        let listen: SocketAddr = tokio::net::lookup_host(&self.listen)
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::invalid(format!("cannot resolve listen address {:?}", self.listen)))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::invalid(format!("cannot listen on {listen}: {e}")))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::invalid(format!("listener has no address: {e}")))?;
        let advertise = match self.advertise {
            Some(a) => a,
            None if local_addr.ip().is_unspecified() => {
                return Err(Error::invalid(format!(
                    "listening on {local_addr}: give an advertise address other nodes can reach"
                )));
            }
            None => local_addr.to_string(),
        };
        let inner = Arc::new(ClusterInner {
            self_addr: advertise,
            local_addr,
            ring: ArcSwap::from_pointee(Ring::with_hash(Vec::<String>::new(), self.vnodes, self.hash)),
            peers: ArcSwap::from_pointee(HashMap::new()),
            membership: Mutex::new(()),
            groups: RwLock::new(HashMap::new()),
            opts: self.opts,
            vnodes: self.vnodes,
            hash: self.hash,
            runtime: handle.clone(),
            owned_runtime: Mutex::new(owned),
            shutdown_tx: Mutex::new(None),
            server_task: tokio::sync::Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        inner.set_peers(self.peers)?;

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<PeerServer<PeerService>>().await;
        let service = PeerServer::new(PeerService {
            cluster: Arc::downgrade(&inner),
            max_message_size: inner.opts.max_message_size,
        })
        .max_decoding_message_size(inner.opts.max_message_size)
        .max_encoding_message_size(inner.opts.max_message_size);
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let (tx, rx) = oneshot::channel::<()>();
        let task = handle.spawn(async move {
            let result = tonic::transport::Server::builder()
                // Large values in GetMany answers must not stall on 64 KiB windows.
                .initial_stream_window_size(Some(2 << 20))
                .initial_connection_window_size(Some(8 << 20))
                .max_frame_size(Some(256 << 10))
                .add_service(health_service)
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = rx.await;
                    health.set_not_serving::<PeerServer<PeerService>>().await;
                })
                .await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "meshcache peer server stopped");
            }
            result.map_err(|e| Error::new(ErrorKind::Peer, format!("peer server failed: {e}")))
        });
        *inner.shutdown_tx.lock() = Some(tx);
        *inner.server_task.lock().await = Some(task);
        Ok(Cluster { inner })
    }
}

/// A node of a meshcache cluster. Cheap to clone; clones share the node.
///
/// # Concurrency
///
/// All methods take `&self` and may be called from any thread. The cluster's runtime
/// runs the peer server, the loads and the reapers.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<ClusterInner>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("advertise", &self.inner.self_addr)
            .field("local_addr", &self.inner.local_addr)
            .field("ring", &self.inner.ring.load())
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
}

pub(crate) struct ClusterInner {
    self_addr: String,
    local_addr: SocketAddr,
    /// Swapped whole on a membership change; read without a lock on every miss.
    ring: ArcSwap<Ring>,
    /// Clients of the other nodes, by advertised address. Swapped with the ring.
    peers: ArcSwap<HashMap<String, Arc<PeerClient>>>,
    /// Serialises membership changes (readers never take it).
    membership: Mutex<()>,
    /// Guards the group registry.
    groups: RwLock<HashMap<String, Group>>,
    opts: PeerOptions,
    vnodes: usize,
    hash: HashFn,
    runtime: Handle,
    /// The runtime this cluster created, if it did; shut down when the cluster is dropped.
    owned_runtime: Mutex<Option<Runtime>>,
    shutdown_tx: Mutex<Option<oneshot::Sender<()>>>,
    server_task: tokio::sync::Mutex<Option<JoinHandle<Result<()>>>>,
    closed: AtomicBool,
}

impl fmt::Debug for ClusterInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterInner")
            .field("node", &self.self_addr)
            .finish_non_exhaustive()
    }
}

impl ClusterInner {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn route(&self, key: &[u8]) -> Route {
        let ring = self.ring.load();
        match ring.owner(key) {
            Some(owner) if owner != self.self_addr => match self.peers.load().get(owner) {
                Some(p) => Route::Remote(p.clone()),
                None => Route::Local,
            },
            _ => Route::Local,
        }
    }

    /// Every other node's client.
    pub(crate) fn all_peers(&self) -> Vec<Arc<PeerClient>> {
        self.peers.load().values().cloned().collect()
    }

    pub(crate) fn group_by_name(&self, name: &str) -> Option<Group> {
        self.groups.read().get(name).cloned()
    }

    fn set_peers(&self, peers: Vec<String>) -> Result<()> {
        let _serial = self.membership.lock();
        let _rt = self.runtime.enter();
        let old = self.peers.load_full();
        let mut clients = HashMap::new();
        for p in peers {
            if p == self.self_addr || clients.contains_key(&p) {
                continue;
            }
            let client = match old.get(&p) {
                Some(c) => c.clone(),
                None => Arc::new(PeerClient::new(&p, self.opts.clone())?),
            };
            clients.insert(p, client);
        }
        let mut nodes: Vec<String> = clients.keys().cloned().collect();
        nodes.push(self.self_addr.clone());
        let ring = Ring::with_hash(nodes, self.vnodes, self.hash);
        // Clients first, so a route read between the two swaps finds its client (or, for a
        // removed node, falls back to local).
        self.peers.store(Arc::new(clients));
        self.ring.store(Arc::new(ring));
        Ok(())
    }
}

impl Drop for ClusterInner {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown_tx.get_mut().take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.owned_runtime.get_mut().take() {
            // Dropping a runtime blocks, which panics inside async code (and a loader may
            // hold the last handle): let it wind down in the background.
            rt.shutdown_background();
        }
    }
}

impl Cluster {
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
        &self.inner.self_addr
    }

    /// The runtime the cluster runs on.
    pub fn runtime(&self) -> &Handle {
        &self.inner.runtime
    }

    /// The ring's nodes, this one included, sorted.
    pub fn members(&self) -> Vec<String> {
        self.inner.ring.load().nodes().to_vec()
    }

    /// Which node owns `key` now.
    pub fn owner_of(&self, key: &[u8]) -> String {
        self.inner
            .ring
            .load()
            .owner(key)
            .unwrap_or(&self.inner.self_addr)
            .to_string()
    }

    /// Replaces the peer list (this node's own address may be included). The ring is
    /// swapped atomically; connections to nodes that stay are kept.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for an address that is not `host:port`;
    /// [`ErrorKind::Closed`] after shutdown.
    pub fn set_peers<I, S>(&self, peers: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if self.inner.is_closed() {
            return Err(Error::closed());
        }
        self.inner.set_peers(peers.into_iter().map(Into::into).collect())
    }

    /// A builder for a group served by this cluster. `build()` registers it.
    pub fn group(&self, name: impl Into<String>) -> GroupBuilder {
        Group::builder(name).in_cluster(Arc::downgrade(&self.inner), self.inner.runtime.clone())
    }

    /// The group registered under `name`.
    pub fn get_group(&self, name: &str) -> Option<Group> {
        self.inner.group_by_name(name)
    }

    pub(crate) fn register(inner: &Weak<ClusterInner>, group: &Group) -> Result<()> {
        let inner = inner.upgrade().ok_or_else(Error::closed)?;
        if inner.is_closed() {
            return Err(Error::closed());
        }
        let mut groups = inner.groups.write();
        if groups.contains_key(group.name()) {
            return Err(Error::invalid(format!(
                "group {:?} already exists in this cluster",
                group.name()
            )));
        }
        groups.insert(group.name().to_string(), group.clone());
        Ok(())
    }

    /// Peer counters and breaker states.
    pub fn stats(&self) -> ClusterStats {
        let mut peers: Vec<_> = self
            .inner
            .all_peers()
            .iter()
            .map(|p| (p.addr().to_string(), p.breaker_state(), p.stats()))
            .collect();
        peers.sort_by(|a, b| a.0.cmp(&b.0));
        ClusterStats {
            node: self.inner.self_addr.clone(),
            peers,
        }
    }

    /// Whether the cluster was shut down.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Shuts down gracefully: stops accepting connections, lets calls in flight finish,
    /// then closes every group (later calls return [`ErrorKind::Closed`]). Idempotent.
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
        if let Some(tx) = self.inner.shutdown_tx.lock().take() {
            let _ = tx.send(());
        }
        let task = self.inner.server_task.lock().await.take();
        let result = match task {
            Some(t) => t
                .await
                .unwrap_or_else(|e| Err(Error::new(ErrorKind::Panic, format!("peer server task: {e}")))),
            None => Ok(()),
        };
        for g in self.inner.groups.read().values() {
            g.close();
        }
        result
    }

    /// [`Cluster::shutdown`] for synchronous code: blocks until done.
    ///
    /// # Errors
    ///
    /// As [`Cluster::shutdown`]; [`ErrorKind::InvalidArgument`] when called from inside
    /// an async context (a loader, say), where blocking would deadlock.
    pub fn shutdown_blocking(&self) -> Result<()> {
        if Handle::try_current().is_ok() {
            return Err(Error::invalid(
                "shutdown_blocking called from async code: await Cluster::shutdown instead",
            ));
        }
        self.inner.runtime.block_on(self.shutdown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_with_a_bad_address_is_an_error_not_a_panic() {
        let err = Cluster::builder().listen("not an address").build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}
