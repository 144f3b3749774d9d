//! `ClusterBuilder`: a node's options, their defaults, the checks that refuse what can
//! never work, and the start: bind, membership, server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::runtime::Handle;

use super::membership::Membership;
use super::runtime::{self, NodeRuntime};
use super::{Cluster, ClusterInner};
use crate::error::{Error, Result};
use crate::peer::client::PeerOptions;
use crate::peer::server;
use crate::registry::Registry;
use crate::ring::{self, HashFn};

/// Default deadline of a call to a peer.
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time to establish a connection to a peer.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default retries of an idempotent call that could not reach its peer.
pub const DEFAULT_RETRIES: u32 = 1;
/// Default backoff before the first retry (it doubles with each retry).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// Default consecutive failures that open a peer's circuit breaker.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 5;
/// Default time an open breaker waits before letting one probe through.
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(1);
/// Default largest gRPC message, either direction.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// Default worker threads of the runtime a cluster creates for itself.
pub const DEFAULT_WORKER_THREADS: usize = 2;

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
                retries: DEFAULT_RETRIES,
                backoff: DEFAULT_RETRY_BACKOFF,
                breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
                breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            },
            vnodes: ring::DEFAULT_VNODES,
            hash: ring::default_hash,
            worker_threads: DEFAULT_WORKER_THREADS,
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
    /// backoff starting at `backoff`. Default [`DEFAULT_RETRIES`] after
    /// [`DEFAULT_RETRY_BACKOFF`].
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

    /// Worker threads of the runtime the cluster creates for itself. Default
    /// [`DEFAULT_WORKER_THREADS`]; zero is
    /// refused by `build`.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
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
    /// [`crate::ErrorKind::InvalidArgument`] for an address that does not parse or cannot be
    /// bound, or a wildcard listen address without `advertise`.
    ///
    /// # Panics
    ///
    /// Called from inside an async context, where it cannot block: use
    /// [`ClusterBuilder::start`] there.
    pub fn build(self) -> Result<Cluster> {
        self.validate()?;
        match self.runtime.clone() {
            Some(handle) => handle.block_on(self.start_on(NodeRuntime::borrowed(handle.clone()))),
            None => {
                let rt = runtime::create(self.worker_threads)?;
                let handle = rt.handle().clone();
                // The runtime is handed to the cluster only on success: on an error it must
                // be dropped here, outside `block_on` (dropping a runtime inside an async
                // context panics).
                let cluster = handle.block_on(self.start_on(NodeRuntime::borrowed(handle.clone())))?;
                cluster.inner.runtime.adopt(rt);
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
        self.validate()?;
        self.start_on(NodeRuntime::borrowed(handle)).await
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
        if self.worker_threads == 0 && self.runtime.is_none() {
            return Err(Error::invalid("worker_threads must be greater than zero"));
        }
        Ok(())
    }

    async fn start_on(self, runtime: NodeRuntime) -> Result<Cluster> {
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
        let handle = runtime.handle().clone();
        let membership = Arc::new(Membership::new(
            advertise,
            self.opts.clone(),
            self.vnodes,
            self.hash,
            handle.clone(),
        ));
        membership.set_peers(self.peers)?;
        let registry = Arc::new(Registry::default());
        let server = server::serve(
            listener,
            Arc::downgrade(&registry),
            self.opts.max_message_size,
            &handle,
        )
        .await;
        Ok(Cluster::from_parts(ClusterInner {
            membership,
            registry,
            local_addr,
            server,
            runtime,
            closed: AtomicBool::new(false),
        }))
    }
}
