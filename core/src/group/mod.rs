//! A `Group`: one named cache with its loader, store and singleflight.
//!
//! # The get path
//!
//! 1. the store (main tier: keys this node owns; hot tier: mirrors), read lock only;
//! 2. otherwise a singleflight per key, whose one flight checks the store again (another
//!    flight may have filled it between step 1 and joining) and then loads: through the
//!    loader when this node owns the key (always, for a standalone group), or from the
//!    owner, which the group's [`Router`] names.
//!
//! # Where each part lives
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the public API: `peek`, `get`, `get_now`, `set`, `delete`, `stats`, `close` |
//! | `builder.rs` | options, defaults, validation |
//! | `fill.rs` | flights: loads on this node, fetches from the owner, the fallback |
//! | `many.rs` | `get_many`: one call per owner |
//! | `fence.rs` | the write epochs that keep a stale load from undoing a write |
//! | `hot.rs` | which fetched values are mirrored in the hot tier |
//! | `serve.rs` | the answers to other nodes' requests |
//! | `replicate.rs` | `set`/`delete` on every replica, replica reads, warm takeover |
//! | `copies.rs` | copies from other nodes: last writer wins, tombstones, handoff |
//! | `stats.rs`, `limits.rs` | counters and size limits |

mod builder;
mod copies;
mod fence;
mod fill;
mod hot;
mod invalidate;
mod limits;
mod many;
mod replicate;
mod serve;
mod stats;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;

pub use builder::{DEFAULT_CAPACITY, DEFAULT_HOT_TTL, DEFAULT_NEGATIVE_TTL, GroupBuilder};
pub use hot::DEFAULT_HOT_SAMPLE;
pub use limits::{DEFAULT_MAX_KEY_LEN, DEFAULT_MAX_VALUE_LEN, Limits};
pub use stats::GroupStats;

use self::fence::Fence;
use self::hot::HotSampler;
use self::stats::Counters;
use crate::clock::{self, Clock};
use crate::entry::Entry;
use crate::error::{Error, ErrorKind, Result};
use crate::housekeeper::Reapable;
use crate::loader::{DebugLoader, Loader};
use crate::peer::batch::Batchers;
use crate::route::{Route, Router};
use crate::scope;
use crate::singleflight::Singleflight;
use crate::store::{Store, Tier};

/// The rest of a `get` that missed: waits for the load or the owner.
pub type GetFuture = Pin<Box<dyn Future<Output = Result<Bytes>> + Send + 'static>>;

/// What [`Group::get_now`] answers without waiting: the value, or the rest of the get.
#[must_use = "a pending get does nothing unless awaited"]
pub enum Now<T> {
    /// A hit: the answer, found without entering the runtime.
    Ready(T),
    /// A miss: await this (on any runtime, or block on the group's) for the value.
    Pending(GetFuture),
}

impl<T: fmt::Debug> fmt::Debug for Now<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Now::Ready(v) => f.debug_tuple("Ready").field(v).finish(),
            Now::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// One named cache: a store, a loader and a singleflight, standalone or served by a
/// [`crate::Cluster`]. Cheap to clone; clones share everything.
///
/// # Concurrency
///
/// All methods take `&self` and may be called from any thread. `peek` never blocks on a
/// load; `get` waits for at most one load per key at a time in the process.
#[derive(Clone)]
pub struct Group {
    inner: Arc<GroupInner>,
}

pub(crate) struct GroupInner {
    name: String,
    store: Store,
    /// Loads on this node (as owner, for peers, or standalone). Never forwards, so a
    /// peer's forwarded get can join it without any chance of a cycle between nodes.
    local_flights: Singleflight<Bytes, Entry>,
    /// Fetches from the owner (with local fallback), for this node's own callers.
    remote_flights: Singleflight<Bytes, Entry>,
    loader: Arc<dyn Loader>,
    default_ttl: Option<Duration>,
    negative_ttl: Duration,
    hot: HotSampler,
    /// Longest life of a hot-tier mirror.
    hot_ttl: Duration,
    /// Longest a load may take, if bounded.
    load_timeout: Option<Duration>,
    /// Nodes that hold each written key (`replicas`), and whether loads are replicated.
    replicas: usize,
    replicate_loads: bool,
    limits: Limits,
    /// Versions of this group's writes and loads.
    hlc: crate::version::Hlc,
    clock: Arc<dyn Clock>,
    runtime: Option<Handle>,
    /// How keys reach their owners; `None` for a standalone group (every key is local).
    router: Option<Arc<dyn Router>>,
    fence: Fence,
    /// Deletes remembered against late copies.
    tombstones: copies::Tombstones,
    /// Invalidations that did not get through, retried.
    retries: invalidate::Retries,
    /// Coalesces this group's gets to each peer.
    batchers: Batchers,
    /// Coalesces warm takeovers' peeks to each previous owner.
    peek_batchers: Batchers,
    counters: Counters,
    closed: AtomicBool,
}

impl Reapable for GroupInner {
    fn store(&self) -> &Store {
        &self.store
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.inner.name)
            .field("store", &self.inner.store)
            .field("loader", &DebugLoader)
            .finish_non_exhaustive()
    }
}

impl Group {
    /// A builder for a standalone group called `name` (64 MiB, no default TTL, no loader).
    pub fn builder(name: impl Into<String>) -> GroupBuilder {
        GroupBuilder::new(name.into())
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The group's limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// This group's identity, for load scopes.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::closed())
        } else {
            Ok(())
        }
    }

    /// The cached value of `key` if it is resident, without loading, without waiting, and
    /// without entering the runtime. A cached "not found" reads as `None`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for an empty or oversized key;
    /// [`ErrorKind::Closed`] after shutdown.
    #[inline]
    pub fn peek(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        Ok(self.inner.store.get(key).and_then(|e| e.value))
    }

    /// [`Group::peek`] that lends the cached bytes to `f` instead of returning a `Bytes`
    /// handle: `Ok(None)` if not resident (or cached as not found), else `Ok(Some(f(bytes)))`.
    /// Saves the refcount traffic of a clone for callers that copy the bytes out anyway;
    /// `f` runs under a shard read lock, so keep it to a copy.
    ///
    /// # Errors
    ///
    /// As [`Group::peek`].
    #[inline]
    pub fn peek_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        Ok(self.inner.store.get_with(key, |v| v.map(f)).flatten())
    }

    /// Alias of [`Group::peek`].
    pub fn get_if_present(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.peek(key)
    }

    /// The value of `key`: from the store, or from the key's owner, which loads it once
    /// in the whole cluster; a standalone group (or the owner) loads it itself, once per
    /// key at a time. If the owner cannot be reached, the value is loaded here and kept
    /// only in the hot tier.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] if the loader says so (also when remembered from a recent
    /// load); the loader's own error ([`ErrorKind::Load`]), or [`ErrorKind::Panic`] if it
    /// panicked; [`ErrorKind::InvalidArgument`] for a bad key, an oversized loaded value,
    /// or a loader asking for the very key it is loading (that get would wait for itself);
    /// [`ErrorKind::Closed`] after shutdown or without a runtime.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future abandons only this caller's wait; a load it
    /// started completes for the others and is cached.
    pub async fn get(&self, key: &[u8]) -> Result<Bytes> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        if let Some(e) = self.inner.store.get(key) {
            return e.into_result();
        }
        scope::check_not_loading(self.id(), key)?;
        self.get_missed(Bytes::copy_from_slice(key)).await
    }

    /// A `get` for callers outside async code (the bindings): a hit is answered here and
    /// now, on the calling thread, without entering the runtime; a miss returns the rest of
    /// the get as a future, to await or block on.
    ///
    /// # Errors
    ///
    /// As [`Group::get`], for what can be known without waiting: a bad key, a cached
    /// "not found", a closed group, a loader asking for its own key.
    #[inline]
    pub fn get_now(&self, key: &[u8]) -> Result<Now<Bytes>> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        match self.inner.store.get(key) {
            Some(e) => e.into_result().map(Now::Ready),
            None => self.pending(key).map(Now::Pending),
        }
    }

    /// [`Group::get_now`] that lends a hit's bytes to `f` (under the shard's read lock, so
    /// keep it to a copy) instead of cloning a `Bytes` handle.
    ///
    /// # Errors
    ///
    /// As [`Group::get_now`].
    #[inline]
    pub fn get_now_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Now<R>> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        match self.inner.store.get_with(key, |v| v.map(f)) {
            Some(Some(r)) => Ok(Now::Ready(r)),
            Some(None) => Err(Error::not_found()),
            None => self.pending(key).map(Now::Pending),
        }
    }

    /// The rest of a get that missed, as an owned future.
    fn pending(&self, key: &[u8]) -> Result<GetFuture> {
        scope::check_not_loading(self.id(), key)?;
        let (group, key) = (self.clone(), Bytes::copy_from_slice(key));
        Ok(Box::pin(async move { group.get_missed(key).await }))
    }

    async fn get_missed(&self, key: Bytes) -> Result<Bytes> {
        match self.route(&key)? {
            Route::Local => self.load_local(key).await,
            Route::Remote(peer) => self.fetch_remote(peer, key).await,
        }?
        .into_result()
    }

    fn route(&self, key: &[u8]) -> Result<Route> {
        match &self.inner.router {
            None => Ok(Route::Local),
            Some(router) => router.route(key),
        }
    }

    /// Caches `value` for `key` for `ttl` (the group's default TTL when `None`), on the
    /// key's owner and its replicas (see [`GroupBuilder::replicas`]). Other nodes drop any
    /// mirror of the key.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a bad key, a value over `max_value_len`, or a
    /// value larger than this group's store can hold (half its capacity: it could never
    /// be cached; see [`GroupBuilder::capacity`]); [`ErrorKind::Peer`] or
    /// [`ErrorKind::Timeout`] if the owner could not be reached (nothing is cached there;
    /// replicas that answered hold the value);
    /// [`ErrorKind::Closed`] after shutdown.
    pub async fn set(&self, key: &[u8], value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        self.inner.limits.check_value(&value)?;
        self.check_storable(key, &value)?;
        let key = Bytes::copy_from_slice(key);
        let deadline = clock::deadline(self.inner.clock.now_ms(), ttl.or(self.inner.default_ttl));
        self.set_on_owners(key, value, deadline).await
    }

    /// `InvalidArgument` for a value this group's store can never hold: a `set` that
    /// reports success must have stored what it was given.
    pub(crate) fn check_storable(&self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.inner.store.fits(Tier::Main, key.len(), value.len()) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "a value of {} bytes is larger than this group's store can hold (an entry may take \
             at most half of its {} bytes of capacity): raise the capacity",
            value.len(),
            self.inner.store.capacity()
        )))
    }

    /// Removes `key` on its owner, its replicas and every mirror of it on every node.
    /// Each owner remembers the delete for a minute, so that an older copy arriving later
    /// (a handoff, a late replica write) does not bring the value back.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a bad key; [`ErrorKind::Peer`] or
    /// [`ErrorKind::Timeout`] if the owner could not be reached (mirrors are removed
    /// anyway); [`ErrorKind::Closed`] after shutdown.
    pub async fn delete(&self, key: &[u8]) -> Result<()> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        self.delete_on_owners(Bytes::copy_from_slice(key)).await
    }

    /// The group's counters.
    pub fn stats(&self) -> GroupStats {
        self.inner.counters.snapshot(self.inner.store.stats())
    }

    /// Stops the group: every later call returns [`ErrorKind::Closed`], every call still
    /// waiting for a load or an owner returns [`ErrorKind::Closed`] at once, and the
    /// store is emptied. Loads already running are not interrupted; what they return is
    /// dropped. A cluster closes its groups when it shuts down.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        // Callers waiting on a load (or on an owner) are released with Closed; a loader
        // that is stuck cannot hold them.
        self.inner.local_flights.close();
        self.inner.remote_flights.close();
        self.inner.store.clear();
    }

    /// Whether the group was closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn runtime(&self) -> Result<Handle> {
        match &self.inner.runtime {
            Some(h) => Ok(h.clone()),
            None => Handle::try_current()
                .map_err(|_| Error::new(ErrorKind::Closed, "no tokio runtime to run the load on")),
        }
    }
}
