//! The routing seam: how a group reaches the rest of the cluster.
//!
//! A [`crate::Group`] never sees the cluster. It holds a [`Router`], which names the owner
//! of a key and hands out a [`Remote`] for each other node; the cluster's membership is
//! one router (`cluster/membership.rs`), and a group test can give its group a fake one
//! (a peer that fails, one that is slow, one that says NotFound) without starting gRPC,
//! the way groupcache tests against its `PeerPicker`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::entry::Entry;
use crate::error::Result;

/// A boxed, sendable future: what the object-safe traits below return.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Another node, as a group sees it: the calls of the peer protocol.
///
/// Every call goes to the node that owns the key and is answered there without being
/// forwarded again. Errors of kind `Peer` or `Timeout` mean "could not be reached": the
/// caller falls back to a local load. Any other error is the owner's answer.
pub(crate) trait Remote: Send + Sync + fmt::Debug + 'static {
    /// The node's advertised address (its name on the ring).
    fn addr(&self) -> &str;

    /// The deadline of one call, if there is one: a get queued behind other calls to
    /// this node waits no longer than this in all.
    fn call_timeout(&self) -> Option<Duration> {
        None
    }

    /// The owner's answer for `key` (loading it there on a miss).
    fn get<'a>(&'a self, group: &'a str, key: Bytes) -> BoxFuture<'a, Result<Entry>>;

    /// The owner's answers for `keys`: one result per key, in order.
    fn get_many<'a>(&'a self, group: &'a str, keys: Vec<Bytes>) -> BoxFuture<'a, Result<Vec<Result<Entry>>>>;

    /// The node's copy of `key` from its store, never loading: `None` if it holds none.
    /// For a node that newly owns a key (warm takeover).
    fn peek<'a>(&'a self, group: &'a str, key: Bytes) -> BoxFuture<'a, Result<Option<Entry>>>;

    /// [`Remote::peek`] of many keys: one answer per key, in order.
    fn peek_many<'a>(
        &'a self,
        group: &'a str,
        keys: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<Vec<Result<Option<Entry>>>>>;

    /// Stores `value` on the node until `deadline` (unix ms, `0` never), with the write's
    /// `version`; `replica`: the node is one of the key's replicas, not its primary.
    fn set<'a>(
        &'a self,
        group: &'a str,
        key: Bytes,
        value: Bytes,
        deadline: u64,
        stamp: Stamp,
    ) -> BoxFuture<'a, Result<()>>;

    /// Removes `key` from the node, whichever tier holds it, if older than `stamp.version`
    /// (`0`: whatever is there). `true` if it was there.
    fn delete<'a>(&'a self, group: &'a str, key: Bytes, stamp: Stamp) -> BoxFuture<'a, Result<bool>>;

    /// Hands `entries` of `group` to the node (a graceful leave). Returns how many it kept.
    fn handoff<'a>(&'a self, group: &'a str, entries: Vec<(Bytes, Entry)>) -> BoxFuture<'a, Result<u64>>;
}

/// What a write to another node carries besides the key and value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// The write's version (`version.rs`); `0`: unversioned.
    pub(crate) version: u64,
    /// A set: the receiver is a replica of the key, not its primary owner.
    pub(crate) replica: bool,
    /// A delete (not an invalidation after a set): the receiver remembers it for a while,
    /// so that an older copy arriving later is refused.
    pub(crate) tombstone: bool,
}

/// Where a key's calls go.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// This node owns it.
    Local,
    /// Another node owns it.
    Remote(Arc<dyn Remote>),
}

/// Owners and peers: what a group asks the cluster.
pub(crate) trait Router: Send + Sync + fmt::Debug + 'static {
    /// Where `key` goes now.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Closed`] once the cluster is shut down.
    fn route(&self, key: &[u8]) -> Result<Route>;

    /// Every other node (for invalidations).
    fn peers(&self) -> Vec<Arc<dyn Remote>>;

    /// Where each of the first `n` distinct owners of `key` is, the primary first
    /// (fewer when the ring has fewer nodes). By default, only the primary.
    ///
    /// # Errors
    ///
    /// As [`Router::route`].
    fn owners(&self, key: &[u8], n: usize) -> Result<Vec<Route>> {
        let _ = n;
        Ok(vec![self.route(key)?])
    }

    /// Within the warm window after ring changes: the nodes that owned `key` before the
    /// last changes, newest first, without this node. By default, none.
    fn previous_owners(&self, key: &[u8]) -> Vec<Arc<dyn Remote>> {
        let _ = key;
        Vec::new()
    }
}
