//! Membership: who the nodes are, and so who owns each key. The one place that decides
//! owners; it is the [`Router`] every group of the cluster holds.
//!
//! Today the member list is static (the builder's `peers`, replaced by `set_peers`);
//! live sources of membership plug in here by calling [`Membership::set_peers`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::peer::client::{PeerClient, PeerOptions};
use crate::ring::{HashFn, Ring};
use crate::route::{Remote, Route, Router};

/// The ring and a client for every other node, swapped together on a change.
pub(crate) struct Membership {
    self_addr: String,
    /// Swapped whole on a membership change; read without a lock on every miss.
    ring: ArcSwap<Ring>,
    /// Clients of the other nodes, by advertised address. Swapped with the ring.
    peers: ArcSwap<HashMap<String, Arc<PeerClient>>>,
    /// Serialises membership changes (readers never take it).
    changes: Mutex<()>,
    opts: PeerOptions,
    vnodes: usize,
    hash: HashFn,
    /// Peer clients connect on this runtime.
    runtime: Handle,
    closed: AtomicBool,
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
    ) -> Self {
        Membership {
            ring: ArcSwap::from_pointee(Ring::with_hash([self_addr.clone()], vnodes, hash)),
            self_addr,
            peers: ArcSwap::from_pointee(HashMap::new()),
            changes: Mutex::new(()),
            opts,
            vnodes,
            hash,
            runtime,
            closed: AtomicBool::new(false),
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

    /// The node that owns `key` now.
    pub(crate) fn owner_of(&self, key: &[u8]) -> String {
        self.ring.load().owner(key).unwrap_or(&self.self_addr).to_string()
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
        let ring = Ring::with_hash(nodes, self.vnodes, self.hash);
        // Clients first, so a route read between the two swaps finds its client (or, for a
        // removed node, falls back to local).
        self.peers.store(Arc::new(clients));
        self.ring.store(Arc::new(ring));
        Ok(())
    }

    /// Routes fail with `Closed` from now on.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
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
}
