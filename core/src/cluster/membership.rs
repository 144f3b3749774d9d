//! Membership: who the nodes are, and so who owns each key. The one place that decides
//! owners; it is the [`Router`] every group of the cluster holds.
//!
//! The member list comes from the builder's `peers` (replaced by `set_peers`), or from
//! a live source (`discovery/`: etcd, DNS) that calls [`Membership::set_peers`] on every
//! change and reports its health here.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::runtime::Handle;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::peer::client::{PeerClient, PeerOptions};
use crate::ring::{HashFn, Ring};
use crate::route::{Remote, Route, Router};

/// Clients of the other nodes, by advertised address.
pub(crate) type Clients = HashMap<String, Arc<PeerClient>>;

/// The ring and a client for every other node, swapped together on a change.
pub(crate) struct Membership {
    self_addr: String,
    /// Swapped whole on a membership change; read without a lock on every miss.
    ring: ArcSwap<Ring>,
    /// Clients of the other nodes, by advertised address. Swapped with the ring.
    peers: ArcSwap<HashMap<String, Arc<PeerClient>>>,
    /// The ring before the last change, with its clients, until the warm window ends.
    previous: ArcSwap<Vec<Arc<Previous>>>,
    warm_window: std::time::Duration,
    /// Serialises membership changes (readers never take it).
    changes: Mutex<()>,
    opts: PeerOptions,
    vnodes: usize,
    hash: HashFn,
    /// Peer clients connect on this runtime.
    runtime: Handle,
    closed: AtomicBool,
    info: Mutex<RingInfo>,
    /// Bumped on every change of the ring or of its source's health.
    changes_seen: tokio::sync::watch::Sender<u64>,
}

/// Rings before the last changes kept for warm takeovers (a key can move twice within a
/// window, say to a node that joins and never asks for it, then on when another leaves).
const MAX_PREVIOUS_RINGS: usize = 4;

/// The ring before a change: a node that newly owns a key asks the key's owner in it
/// before loading (warm takeover), until `until`.
struct Previous {
    ring: Ring,
    clients: HashMap<String, Arc<PeerClient>>,
    until: std::time::Instant,
}

/// What [`RingStats`] reports besides the members.
#[derive(Debug, Clone)]
struct RingInfo {
    source: &'static str,
    epoch: u64,
    changed_at_ms: u64,
    error: Option<String>,
}

/// A node's view of the ring, in [`crate::ClusterStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingStats {
    /// Where membership comes from: `static`, `etcd` or `dns`.
    pub source: String,
    /// The ring's nodes, this one included, sorted.
    pub members: Vec<String>,
    /// Bumped on every change of the member set (starts at 1).
    pub epoch: u64,
    /// When the member set last changed, in unix milliseconds.
    pub changed_at_ms: u64,
    /// Whether the source answers: `false` while etcd or DNS cannot be reached (the
    /// node keeps the last ring it saw meanwhile). Always `true` for `static`.
    pub healthy: bool,
    /// The source's last error while unhealthy.
    pub error: Option<String>,
}

impl RingStats {
    /// The field names, as every binding spells them.
    pub fn fields() -> [&'static str; 6] {
        ["source", "members", "epoch", "changed_at_ms", "healthy", "error"]
    }
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("node", &self.self_addr)
            .field("ring", &self.ring.load())
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// This node alone, until [`Membership::set_peers`].
    pub(crate) fn new(
        self_addr: String,
        opts: PeerOptions,
        vnodes: usize,
        hash: HashFn,
        runtime: Handle,
        warm_window: std::time::Duration,
    ) -> Self {
        Membership {
            ring: ArcSwap::from_pointee(Ring::with_hash([self_addr.clone()], vnodes, hash)),
            self_addr,
            peers: ArcSwap::from_pointee(HashMap::new()),
            previous: ArcSwap::from_pointee(Vec::new()),
            warm_window,
            changes: Mutex::new(()),
            opts,
            vnodes,
            hash,
            runtime,
            closed: AtomicBool::new(false),
            info: Mutex::new(RingInfo {
                source: "static",
                epoch: 1,
                changed_at_ms: SystemClock.now_ms(),
                error: None,
            }),
            changes_seen: tokio::sync::watch::Sender::new(0),
        }
    }

    /// A receiver that sees every change of the ring or of its source's health.
    pub(crate) fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes_seen.subscribe()
    }

    fn changed(&self) {
        self.changes_seen.send_modify(|n| *n += 1);
    }

    /// Names the source of membership, for stats.
    pub(crate) fn set_source(&self, source: &'static str) {
        self.info.lock().source = source;
    }

    /// The source's health: `Err(why)` while it cannot be reached.
    pub(crate) fn set_health(&self, health: std::result::Result<(), String>) {
        let error = health.err();
        let mut info = self.info.lock();
        if info.error != error {
            info.error = error;
            drop(info);
            self.changed();
        }
    }

    /// This node's view of the ring.
    pub(crate) fn stats(&self) -> RingStats {
        let info = self.info.lock().clone();
        RingStats {
            source: info.source.to_string(),
            members: self.members(),
            epoch: info.epoch,
            changed_at_ms: info.changed_at_ms,
            healthy: info.error.is_none(),
            error: info.error,
        }
    }

    /// This node's name on the ring.
    pub(crate) fn self_addr(&self) -> &str {
        &self.self_addr
    }

    /// The ring's nodes, this one included, sorted.
    pub(crate) fn members(&self) -> Vec<String> {
        self.ring.load().nodes().to_vec()
    }

    /// Each member's share of the keys on the live ring, in [`Membership::members`] order.
    pub(crate) fn shares(&self) -> Vec<f64> {
        self.ring.load().shares()
    }

    /// The node that owns `key` now.
    pub(crate) fn owner_of(&self, key: &[u8]) -> String {
        self.ring.load().owner(key).unwrap_or(&self.self_addr).to_string()
    }

    /// For a graceful leave: the ring now, the ring without this node, and the clients of
    /// the other nodes; `None` when this node is alone.
    pub(crate) fn rings_without_self(&self) -> Option<(Arc<Ring>, Ring, Arc<Clients>)> {
        let now = self.ring.load_full();
        let others: Vec<String> = (now.nodes().iter())
            .filter(|n| **n != self.self_addr)
            .cloned()
            .collect();
        if others.is_empty() {
            return None;
        }
        let after = Ring::with_hash(others, self.vnodes, self.hash);
        Some((now, after, self.peers.load_full()))
    }

    /// Every other node's client.
    pub(crate) fn clients(&self) -> Vec<Arc<PeerClient>> {
        self.peers.load().values().cloned().collect()
    }

    /// Replaces the member list (this node's own address may be in it; it is always a
    /// member). Clients of nodes that stay are kept, with their connections.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for an address that is not `host:port`; `Closed` after
    /// [`Membership::close`].
    pub(crate) fn set_peers(&self, peers: Vec<String>) -> Result<()> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        let _serial = self.changes.lock();
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
        nodes.sort();
        if nodes == self.ring.load().nodes() {
            return Ok(());
        }
        let ring = Ring::with_hash(nodes.clone(), self.vnodes, self.hash);
        // The ring before: for a node that was alone (it just started), the ring without
        // it, which is what the others had.
        let old_ring = self.ring.load_full();
        let previous = if old_ring.nodes().len() <= 1 {
            let others: Vec<String> = nodes.iter().filter(|n| **n != self.self_addr).cloned().collect();
            (!others.is_empty()).then(|| (Ring::with_hash(others, self.vnodes, self.hash), clients.clone()))
        } else {
            Some((Ring::clone(&old_ring), HashMap::clone(&old)))
        };
        if !self.warm_window.is_zero()
            && let Some((ring, clients)) = previous
        {
            // Newest first; rings whose window ended, and the oldest beyond a few, go.
            let now = std::time::Instant::now();
            let mut history = vec![Arc::new(Previous {
                ring,
                clients,
                until: now + self.warm_window,
            })];
            let kept = self.previous.load();
            history.extend(
                kept.iter()
                    .filter(|p| p.until > now)
                    .take(MAX_PREVIOUS_RINGS - 1)
                    .cloned(),
            );
            self.previous.store(Arc::new(history));
        }
        // Clients first, so a route read between the two swaps finds its client (or, for a
        // removed node, falls back to local).
        self.peers.store(Arc::new(clients));
        self.ring.store(Arc::new(ring));
        let mut info = self.info.lock();
        info.epoch += 1;
        info.changed_at_ms = SystemClock.now_ms();
        drop(info);
        self.changed();
        Ok(())
    }

    /// Routes fail with `Closed` from now on; waiters on the ring wake (and see it).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.changed();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl Router for Membership {
    fn route(&self, key: &[u8]) -> Result<Route> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        let ring = self.ring.load();
        Ok(match ring.owner(key) {
            Some(owner) if owner != self.self_addr => match self.peers.load().get(owner) {
                Some(p) => Route::Remote(p.clone()),
                None => Route::Local,
            },
            _ => Route::Local,
        })
    }

    fn peers(&self) -> Vec<Arc<dyn Remote>> {
        self.peers
            .load()
            .values()
            .map(|p| p.clone() as Arc<dyn Remote>)
            .collect()
    }

    fn owners(&self, key: &[u8], n: usize) -> Result<Vec<Route>> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        let ring = self.ring.load();
        let peers = self.peers.load();
        let mut out: Vec<Route> = (ring.owners(key, n).into_iter())
            .filter_map(|node| match peers.get(node) {
                Some(p) if node != self.self_addr => Some(Route::Remote(p.clone())),
                Some(_) => None,
                None => (node == self.self_addr).then_some(Route::Local),
            })
            .collect();
        if out.is_empty() {
            out.push(Route::Local);
        }
        Ok(out)
    }

    fn previous_owners(&self, key: &[u8]) -> Vec<Arc<dyn Remote>> {
        let now = std::time::Instant::now();
        let mut out: Vec<Arc<dyn Remote>> = Vec::new();
        for p in self.previous.load().iter().filter(|p| p.until > now) {
            let Some(owner) = p.ring.owner(key) else { continue };
            if owner == self.self_addr || out.iter().any(|o| o.addr() == owner) {
                continue;
            }
            if let Some(c) = p.clients.get(owner) {
                out.push(c.clone());
            }
        }
        out
    }
}
