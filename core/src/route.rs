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

    /// Stores `value` on the owner until `deadline` (unix ms, `0` never).
    fn set<'a>(
        &'a self,
        group: &'a str,
        key: Bytes,
        value: Bytes,
        deadline: u64,
    ) -> BoxFuture<'a, Result<()>>;

    /// Removes `key` from the node, whichever tier holds it. `true` if it was there.
    fn delete<'a>(&'a self, group: &'a str, key: Bytes) -> BoxFuture<'a, Result<bool>>;
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
}
