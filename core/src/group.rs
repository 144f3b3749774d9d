//! A `Group`: one named cache with its loader, store and singleflight.
//!
//! # The get path
//!
//! 1. the store (main tier: keys this node owns; hot tier: mirrors), read lock only;
//! 2. otherwise a singleflight per key, whose one flight checks the store again (another
//!    flight may have filled it between step 1 and joining) and then loads: through the
//!    loader when this node owns the key (always, for a local group), or from the owner.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use tokio::runtime::Handle;

use crate::clock::{self, Clock, SystemClock};
use crate::cluster::{Cluster, ClusterInner, Route};
use crate::error::{Error, ErrorKind, Result};
use crate::loader::{DebugLoader, Loaded, Loader};
use crate::peer::batch::Batcher;
use crate::peer::client::{Found, PeerClient};
use crate::singleflight::Singleflight;
use crate::store::{Store, StoreConfig, StoreStats, Tier};

/// Default longest key, in bytes.
pub const DEFAULT_MAX_KEY_LEN: usize = 1024;
/// Default largest value, in bytes.
pub const DEFAULT_MAX_VALUE_LEN: usize = 8 * 1024 * 1024;
/// Default time a "not found" from the loader is remembered.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// How often a group's reaper removes expired entries, when it has a runtime.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// Default hot-tier sampling: one in this many values fetched from their owner is
/// mirrored in this node's hot tier.
pub const DEFAULT_HOT_SAMPLE: u32 = 10;
/// Stripes of the write epochs (a write makes in-flight loads of 1/64 of the keys skip
/// caching their result; callers still get it).
const EPOCH_STRIPES: usize = 64;
/// Slots of each shard a reaper pass looks at.
const REAP_SCAN: usize = 4096;

/// Counters of one group. A snapshot: fields are read one by one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupStats {
    /// Calls to `get` and `peek`, and keys asked for by `get_many`.
    pub gets: u64,
    /// Gets answered from the main tier without loading.
    pub hits: u64,
    /// Gets answered from the hot tier (mirrors of keys other nodes own).
    pub hot_hits: u64,
    /// Gets that joined a flight another caller had started.
    pub deduplicated: u64,
    /// Loader calls on this node.
    pub loads: u64,
    /// Loader calls that failed (error, panic, or an oversized value).
    pub load_errors: u64,
    /// Loader calls that said NotFound.
    pub not_found: u64,
    /// Values fetched from their owner.
    pub remote_fetches: u64,
    /// Owners' answers that the key does not exist.
    pub remote_not_found: u64,
    /// Owners that could not be reached or timed out (each is followed by a fallback).
    pub remote_errors: u64,
    /// Loads done here because the owner could not be reached.
    pub fallback_loads: u64,
    /// Values mirrored in the hot tier.
    pub hot_inserts: u64,
    /// Gets served to other nodes.
    pub served: u64,
    /// Peers that could not be told to drop a key on `set` or `delete`.
    pub invalidation_errors: u64,
    /// The store's counters.
    pub store: StoreStats,
}

/// Counters of the slow paths. Lookups and hits are counted by the store, per thread, so
/// that a hit writes no shared cache line.
#[derive(Debug, Default)]
struct Counters {
    deduplicated: AtomicU64,
    loads: AtomicU64,
    load_errors: AtomicU64,
    not_found: AtomicU64,
    remote_fetches: AtomicU64,
    remote_not_found: AtomicU64,
    remote_errors: AtomicU64,
    fallback_loads: AtomicU64,
    hot_inserts: AtomicU64,
    served: AtomicU64,
    invalidation_errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Limits and defaults of a group, checked on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key accepted.
    pub max_key_len: usize,
    /// Largest value accepted from `set` or a loader.
    pub max_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_len: DEFAULT_MAX_KEY_LEN,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
        }
    }
}

impl Limits {
    pub(crate) fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid("key is empty"));
        }
        if key.len() > self.max_key_len {
            return Err(Error::invalid(format!(
                "key is {} bytes, over the limit of {}",
                key.len(),
                self.max_key_len
            )));
        }
        Ok(())
    }

    pub(crate) fn check_value(&self, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_len {
            return Err(Error::invalid(format!(
                "value is {} bytes, over the limit of {}",
                value.len(),
                self.max_value_len
            )));
        }
        Ok(())
    }
}

/// Builds a [`Group`]: standalone with [`Group::builder`], or served by a cluster with
/// [`Cluster::group`].
pub struct GroupBuilder {
    name: String,
    capacity: usize,
    shards: usize,
    default_ttl: Option<Duration>,
    negative_ttl: Duration,
    hot_sample: u32,
    limits: Limits,
    clock: Arc<dyn Clock>,
    loader: Option<Arc<dyn Loader>>,
    runtime: Option<Handle>,
    cluster: Option<Weak<ClusterInner>>,
}

impl fmt::Debug for GroupBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupBuilder")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl GroupBuilder {
    /// The byte budget of the group's store (both tiers). Default 64 MiB.
    ///
    /// The budget is split between shards (by default one per MiB, at most 256), and a
    /// value larger than its shard's budget (1/8 of it for a hot-tier mirror) is returned
    /// to the caller but not cached. To cache values of several MiB, raise the capacity or
    /// lower [`GroupBuilder::shards`].
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Number of store shards (a power of two). Default: chosen from capacity and CPUs.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// TTL for values whose loader or `set` gives none. Default: no expiry.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// How long a NotFound is remembered. Default [`DEFAULT_NEGATIVE_TTL`]; zero disables
    /// negative caching.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Mirror one in `n` values fetched from their owner in this node's hot tier (the
    /// owner's expiry is kept). `1` mirrors every fetch, `0` none. Default
    /// [`DEFAULT_HOT_SAMPLE`]. Sampling keeps one-off reads out of the hot tier, while a
    /// key read often here gets mirrored after about `n` reads.
    pub fn hot_sample(mut self, n: u32) -> Self {
        self.hot_sample = n;
        self
    }

    /// Longest key accepted. Default [`DEFAULT_MAX_KEY_LEN`].
    pub fn max_key_len(mut self, len: usize) -> Self {
        self.limits.max_key_len = len;
        self
    }

    /// Largest value accepted. Default [`DEFAULT_MAX_VALUE_LEN`].
    pub fn max_value_len(mut self, len: usize) -> Self {
        self.limits.max_value_len = len;
        self
    }

    /// The loader called on a miss. Default: none, every miss is NotFound.
    pub fn loader(mut self, loader: impl Loader) -> Self {
        self.loader = Some(Arc::new(loader));
        self
    }

    /// The loader, already shared.
    pub fn loader_arc(mut self, loader: Arc<dyn Loader>) -> Self {
        self.loader = Some(loader);
        self
    }

    /// The clock for TTLs. Default: the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The tokio runtime that runs loads and the reaper. Default: the cluster's; for a
    /// standalone group, the runtime current at `build` (or at each call, if there was
    /// none at build time).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    pub(crate) fn in_cluster(mut self, cluster: Weak<ClusterInner>, runtime: Handle) -> Self {
        self.cluster = Some(cluster);
        self.runtime = Some(runtime);
        self
    }

    /// Builds the group (and registers it with its cluster). If it has a runtime, a
    /// reaper task removes expired entries every [`REAP_INTERVAL`] until the group is
    /// dropped or closed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for an empty name, a zero capacity or zero limits,
    /// or a name the cluster already has; [`ErrorKind::Closed`] if the cluster was shut
    /// down.
    pub fn build(self) -> Result<Group> {
        if self.name.is_empty() {
            return Err(Error::invalid("group name is empty"));
        }
        if self.capacity == 0 {
            return Err(Error::invalid("capacity must be greater than zero"));
        }
        if self.limits.max_key_len == 0 || self.limits.max_value_len == 0 {
            return Err(Error::invalid(
                "max_key_len and max_value_len must be greater than zero",
            ));
        }
        let runtime = self.runtime.or_else(|| Handle::try_current().ok());
        let store = Store::new(
            StoreConfig {
                capacity: self.capacity,
                shards: self.shards,
                hot_divisor: 8,
            },
            self.clock.clone(),
        );
        let inner = Arc::new(GroupInner {
            name: self.name,
            store,
            local_flights: Singleflight::new(),
            remote_flights: Singleflight::new(),
            loader: self.loader.unwrap_or_else(|| Arc::new(crate::loader::NoLoader)),
            default_ttl: self.default_ttl,
            negative_ttl: self.negative_ttl,
            hot_sample: self.hot_sample,
            hot_tick: AtomicU64::new(0),
            limits: self.limits,
            clock: self.clock,
            runtime: runtime.clone(),
            cluster: self.cluster.clone(),
            epochs: (0..EPOCH_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            batchers: Default::default(),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
        });
        let group = Group { inner };
        if let Some(cluster) = &self.cluster {
            Cluster::register(cluster, &group)?;
        }
        if let Some(rt) = runtime {
            rt.spawn(reaper(Arc::downgrade(&group.inner)));
        }
        Ok(group)
    }
}

async fn reaper(group: Weak<GroupInner>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(g) = group.upgrade() else { return };
        if g.closed.load(Ordering::Relaxed) {
            return;
        }
        g.store.reap(REAP_SCAN);
    }
}

/// One named cache: a store, a loader and a singleflight, standalone or served by a
/// [`Cluster`]. Cheap to clone; clones share everything.
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
    pub(crate) store: Store,
    /// Loads on this node (as owner, for peers, or standalone). Never forwards, so a
    /// peer's forwarded get can join it without any chance of a cycle between nodes.
    local_flights: Singleflight<Bytes, Option<Found>>,
    /// Fetches from the owner (with local fallback), for this node's own callers.
    remote_flights: Singleflight<Bytes, Option<Found>>,
    loader: Arc<dyn Loader>,
    default_ttl: Option<Duration>,
    negative_ttl: Duration,
    hot_sample: u32,
    hot_tick: AtomicU64,
    pub(crate) limits: Limits,
    clock: Arc<dyn Clock>,
    runtime: Option<Handle>,
    cluster: Option<Weak<ClusterInner>>,
    /// Write epochs, striped by key hash: bumped by every set, delete and invalidation
    /// before it writes, and checked (under the shard lock) by a load or fetch before it
    /// caches, so a load that started before a write cannot put back the old value.
    epochs: Box<[AtomicU64]>,
    /// Guards the per-peer get coalescers, by peer address.
    batchers: parking_lot::Mutex<std::collections::HashMap<String, Arc<Batcher>>>,
    counters: Counters,
    closed: AtomicBool,
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

fn into_value(found: Option<Found>) -> Result<Bytes> {
    found.map(|f| f.value).ok_or_else(Error::not_found)
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Results of a `get_many` job, by position in the request.
type Answers = Vec<(usize, Result<Option<Found>>)>;

impl Group {
    /// A builder for a standalone group called `name` (64 MiB, no default TTL, no loader).
    pub fn builder(name: impl Into<String>) -> GroupBuilder {
        GroupBuilder {
            name: name.into(),
            capacity: 64 * 1024 * 1024,
            shards: 0,
            default_ttl: None,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            hot_sample: DEFAULT_HOT_SAMPLE,
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            loader: None,
            runtime: None,
            cluster: None,
        }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The group's limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
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
        Ok(self.lookup(key).and_then(|v| v))
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

    /// Store lookup, counted: `Some(None)` is a cached NotFound.
    #[inline]
    fn lookup(&self, key: &[u8]) -> Option<Option<Bytes>> {
        Some(self.inner.store.get(key)?.value)
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
    /// panicked; [`ErrorKind::InvalidArgument`] for a bad key or an oversized loaded
    /// value; [`ErrorKind::Closed`] after shutdown or without a runtime.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future abandons only this caller's wait; a load it
    /// started completes for the others and is cached.
    pub async fn get(&self, key: &[u8]) -> Result<Bytes> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        if let Some(v) = self.lookup(key) {
            return v.ok_or_else(Error::not_found);
        }
        let key = Bytes::copy_from_slice(key);
        into_value(match self.route(&key)? {
            Route::Local => self.load_local(key).await?,
            Route::Remote(peer) => self.fetch_remote(peer, key).await?,
        })
    }

    fn cluster(&self) -> Result<Option<Arc<ClusterInner>>> {
        match &self.inner.cluster {
            None => Ok(None),
            Some(weak) => match weak.upgrade() {
                Some(c) if !c.is_closed() => Ok(Some(c)),
                _ => Err(Error::closed()),
            },
        }
    }

    fn route(&self, key: &[u8]) -> Result<Route> {
        Ok(match self.cluster()? {
            None => Route::Local,
            Some(c) => c.route(key),
        })
    }

    /// The values of `keys` that exist, in the order asked, each key once. Misses load
    /// concurrently; keys owned by another node are fetched with one call per owner.
    ///
    /// # Errors
    ///
    /// The first error other than NotFound, as for [`Group::get`].
    pub async fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<(Bytes, Bytes)>> {
        self.check_open()?;
        for k in keys {
            self.inner.limits.check_key(k.as_ref())?;
        }
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        let mut slots: Vec<(Bytes, Option<Result<Option<Found>>>)> = Vec::with_capacity(keys.len());
        for k in keys {
            let k = k.as_ref();
            if !seen.insert(k) {
                continue;
            }
            let cached = self
                .lookup(k)
                .map(|v| Ok(v.map(|value| Found { value, deadline: 0 })));
            slots.push((Bytes::copy_from_slice(k), cached));
        }
        // Misses: local ones load one by one (concurrently); remote ones go in one call
        // per owner.
        let mut jobs: Vec<BoxFut<'_, Answers>> = Vec::new();
        let mut by_peer: std::collections::HashMap<String, (Arc<PeerClient>, Vec<usize>)> =
            Default::default();
        for (i, (k, v)) in slots.iter().enumerate() {
            if v.is_some() {
                continue;
            }
            match self.route(k)? {
                Route::Local => {
                    let k = k.clone();
                    jobs.push(Box::pin(async move { vec![(i, self.load_local(k).await)] }));
                }
                Route::Remote(peer) => {
                    by_peer
                        .entry(peer.addr().to_string())
                        .or_insert_with(|| (peer.clone(), Vec::new()))
                        .1
                        .push(i);
                }
            }
        }
        for (_, (peer, idxs)) in by_peer {
            let keys: Vec<Bytes> = idxs.iter().map(|&i| slots[i].0.clone()).collect();
            jobs.push(Box::pin(self.fetch_many_remote(peer, idxs, keys)));
        }
        for (i, r) in join_all(jobs).await.into_iter().flatten() {
            slots[i].1 = Some(r);
        }
        let mut out = Vec::with_capacity(slots.len());
        for (k, v) in slots {
            match v.expect("every slot resolved") {
                Ok(Some(f)) => out.push((k, f.value)),
                Ok(None) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn fetch_many_remote(&self, peer: Arc<PeerClient>, idxs: Vec<usize>, keys: Vec<Bytes>) -> Answers {
        let epochs: Vec<u64> = keys
            .iter()
            .map(|k| self.epoch(k).load(Ordering::SeqCst))
            .collect();
        let results = match peer.get_many(&self.inner.name, keys.clone()).await {
            Ok(results) => results,
            Err(e) => vec![Err(e); keys.len()],
        };
        // A key the owner could not answer (unreachable, timed out, closing) takes the
        // single-key path: its own flight, and the local fallback if the owner is still
        // out of reach, so a failed batch neither fails the call nor loads a key twice.
        let answers = idxs
            .into_iter()
            .zip(keys)
            .zip(results)
            .zip(epochs)
            .map(|(((i, key), r), epoch)| {
                let peer = peer.clone();
                async move {
                    match r {
                        Err(e) if is_unreachable(&e) => (i, self.fetch_remote(peer, key).await),
                        r => (i, r.map(|found| self.remote_answer(key, found, epoch))),
                    }
                }
            });
        join_all(answers).await
    }

    /// Caches `value` for `key` for `ttl` (the group's default TTL when `None`), on the
    /// key's owner. Other nodes drop any mirror of the key.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a bad key or an oversized value;
    /// [`ErrorKind::Peer`] or [`ErrorKind::Timeout`] if the owner could not be reached
    /// (nothing is cached then); [`ErrorKind::Closed`] after shutdown.
    pub async fn set(&self, key: &[u8], value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        self.inner.limits.check_value(&value)?;
        let key = Bytes::copy_from_slice(key);
        let deadline = clock::deadline(self.inner.clock.now_ms(), ttl.or(self.inner.default_ttl));
        match self.route(&key)? {
            Route::Local => {
                self.write_local(Tier::Main, key.clone(), Some(value), deadline);
                self.invalidate_peers(&key, None).await;
                Ok(())
            }
            Route::Remote(owner) => {
                self.remove_local(&key);
                let result = owner.set(&self.inner.name, key.clone(), value, deadline).await;
                self.invalidate_peers(&key, Some(owner.addr())).await;
                result
            }
        }
    }

    /// Removes `key` on its owner and every mirror of it on every node.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a bad key; [`ErrorKind::Peer`] or
    /// [`ErrorKind::Timeout`] if the owner could not be reached (mirrors are removed
    /// anyway); [`ErrorKind::Closed`] after shutdown.
    pub async fn delete(&self, key: &[u8]) -> Result<()> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        let key = Bytes::copy_from_slice(key);
        self.remove_local(&key);
        match self.route(&key)? {
            Route::Local => {
                self.invalidate_peers(&key, None).await;
                Ok(())
            }
            Route::Remote(owner) => {
                let (result, ()) = tokio::join!(
                    owner.delete(&self.inner.name, key.clone()),
                    self.invalidate_peers(&key, Some(owner.addr()))
                );
                result.map(|_| ())
            }
        }
    }

    /// Tells every peer but `except` to drop `key`; failures are counted, not returned.
    async fn invalidate_peers(&self, key: &Bytes, except: Option<&str>) {
        let Ok(Some(cluster)) = self.cluster() else { return };
        let peers = cluster.all_peers();
        let calls = peers
            .iter()
            .filter(|p| Some(p.addr()) != except)
            .map(|p| p.delete(&self.inner.name, key.clone()));
        for r in join_all(calls).await {
            if let Err(e) = r {
                bump(&self.inner.counters.invalidation_errors);
                tracing::warn!(group = %self.inner.name, error = %e, "could not invalidate a peer's copy");
            }
        }
    }

    /// The group's counters.
    pub fn stats(&self) -> GroupStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let store = self.inner.store.stats();
        GroupStats {
            gets: store.main.gets,
            hits: store.main.hits,
            hot_hits: store.hot.hits,
            deduplicated: l(&c.deduplicated),
            loads: l(&c.loads),
            load_errors: l(&c.load_errors),
            not_found: l(&c.not_found),
            remote_fetches: l(&c.remote_fetches),
            remote_not_found: l(&c.remote_not_found),
            remote_errors: l(&c.remote_errors),
            fallback_loads: l(&c.fallback_loads),
            hot_inserts: l(&c.hot_inserts),
            served: l(&c.served),
            invalidation_errors: l(&c.invalidation_errors),
            store,
        }
    }

    /// Stops the group: every later call returns [`ErrorKind::Closed`], and the store is
    /// emptied. Loads in flight finish for their waiters. A cluster closes its groups
    /// when it shuts down.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
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

    /// Runs `body` in `flights` for `key`, counting followers as deduplicated.
    async fn flight<F, Fut>(&self, remote: bool, key: Bytes, body: F) -> Result<Option<Found>>
    where
        F: FnOnce(Group, Bytes) -> Fut,
        Fut: Future<Output = Result<Option<Found>>> + Send + 'static,
    {
        let rt = self.runtime()?;
        let flights = if remote {
            &self.inner.remote_flights
        } else {
            &self.inner.local_flights
        };
        let mut leader = false;
        let result = flights
            .run(&rt, key.clone(), || {
                leader = true;
                body(self.clone(), key)
            })
            .await;
        if !leader {
            bump(&self.inner.counters.deduplicated);
        }
        result
    }

    /// Loads `key` on this node (once per key at a time) into the main tier.
    async fn load_local(&self, key: Bytes) -> Result<Option<Found>> {
        self.flight(false, key, |g, key| async move {
            g.load_and_cache(key, Tier::Main).await
        })
        .await
    }

    /// Fetches `key` from its owner (once per key at a time); loads it here if the owner
    /// cannot be reached.
    async fn fetch_remote(&self, peer: Arc<PeerClient>, key: Bytes) -> Result<Option<Found>> {
        self.flight(true, key, |g, key| async move {
            if let Some(hit) = g.inner.store.get_uncounted(&key) {
                return Ok(hit.value.map(|value| Found {
                    value,
                    deadline: hit.deadline,
                }));
            }
            let c = &g.inner.counters;
            let batcher = g.batcher(&peer)?;
            let epoch = g.epoch(&key).load(Ordering::SeqCst);
            match batcher.get(key.clone()).await {
                Ok(found) => Ok(g.remote_answer(key, found, epoch)),
                Err(e) if is_unreachable(&e) => {
                    bump(&c.remote_errors);
                    bump(&c.fallback_loads);
                    tracing::debug!(group = %g.inner.name, error = %e, "owner unreachable, loading locally");
                    g.load_and_cache(key, Tier::Hot).await
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// The get coalescer for `peer` (a new one if the peer's client was replaced).
    fn batcher(&self, peer: &Arc<PeerClient>) -> Result<Arc<Batcher>> {
        let mut map = self.inner.batchers.lock();
        if let Some(b) = map.get(peer.addr())
            && Arc::ptr_eq(b.peer(), peer)
        {
            return Ok(b.clone());
        }
        let b = Arc::new(Batcher::new(
            peer.clone(),
            Arc::from(self.inner.name.as_str()),
            &self.runtime()?,
        ));
        map.insert(peer.addr().to_string(), b.clone());
        Ok(b)
    }

    fn epoch(&self, key: &[u8]) -> &AtomicU64 {
        &self.inner.epochs[crate::ring::default_hash(key) as usize % EPOCH_STRIPES]
    }

    /// A write by `set` (or a peer's): bump the epoch, then write.
    fn write_local(&self, tier: Tier, key: Bytes, value: Option<Bytes>, deadline: u64) {
        self.epoch(&key).fetch_add(1, Ordering::SeqCst);
        self.inner.store.insert(tier, key, value, deadline);
    }

    /// A removal by `delete`, `set` on another owner, or an invalidation: bump, remove.
    fn remove_local(&self, key: &[u8]) -> bool {
        self.epoch(key).fetch_add(1, Ordering::SeqCst);
        self.inner.store.remove(key)
    }

    /// Caches a loaded or fetched value unless a write to its key (stripe) happened since
    /// `epoch` was read at the start of the load.
    fn cache_if_unchanged(&self, tier: Tier, key: Bytes, value: Option<Bytes>, deadline: u64, epoch: u64) {
        let slot = self.epoch(&key);
        self.inner.store.insert_if(tier, key, value, deadline, || {
            slot.load(Ordering::SeqCst) == epoch
        });
    }

    /// Counts an owner's answer and mirrors a sample of values in the hot tier.
    fn remote_answer(&self, key: Bytes, found: Option<Found>, epoch: u64) -> Option<Found> {
        let c = &self.inner.counters;
        match &found {
            Some(f) => {
                bump(&c.remote_fetches);
                let n = self.inner.hot_sample as u64;
                if n != 0
                    && self
                        .inner
                        .hot_tick
                        .fetch_add(1, Ordering::Relaxed)
                        .is_multiple_of(n)
                {
                    bump(&c.hot_inserts);
                    self.cache_if_unchanged(Tier::Hot, key, Some(f.value.clone()), f.deadline, epoch);
                }
            }
            None => bump(&c.remote_not_found),
        }
        found
    }

    /// Checks the store again, then loads through the loader and caches in `tier`.
    async fn load_and_cache(&self, key: Bytes, tier: Tier) -> Result<Option<Found>> {
        // A flight that ended between our lookup and our joining may have cached it.
        if let Some(hit) = self.inner.store.get_uncounted(&key) {
            return Ok(hit.value.map(|value| Found {
                value,
                deadline: hit.deadline,
            }));
        }
        let c = &self.inner.counters;
        bump(&c.loads);
        let epoch = self.epoch(&key).load(Ordering::SeqCst);
        let loaded = match self.inner.loader.load(key.clone()).await {
            Ok(l) => l,
            Err(e) => {
                bump(&c.load_errors);
                return Err(e);
            }
        };
        let now = self.inner.clock.now_ms();
        match loaded {
            Loaded::Value { value, ttl } => {
                if let Err(e) = self.inner.limits.check_value(&value) {
                    bump(&c.load_errors);
                    return Err(Error::new(
                        e.kind(),
                        format!("loader returned a value too large: {}", e.message()),
                    ));
                }
                let deadline = clock::deadline(now, ttl.or(self.inner.default_ttl));
                if !self.is_closed() {
                    self.cache_if_unchanged(tier, key, Some(value.clone()), deadline, epoch);
                }
                Ok(Some(Found { value, deadline }))
            }
            Loaded::NotFound { ttl } => {
                bump(&c.not_found);
                if !self.is_closed() {
                    let deadline = clock::deadline(now, Some(ttl.unwrap_or(self.inner.negative_ttl)));
                    self.cache_if_unchanged(tier, key, None, deadline, epoch);
                }
                Ok(None)
            }
        }
    }

    /// A get forwarded by a peer: answered from the store or loaded here, and never
    /// forwarded again, even if this node's ring names another owner (rings disagree
    /// while membership changes; forwarding again could bounce the key between nodes).
    pub(crate) async fn serve_get(&self, key: Bytes) -> Result<Option<Found>> {
        self.check_open()?;
        self.inner.limits.check_key(&key)?;
        bump(&self.inner.counters.served);
        if let Some(hit) = self.inner.store.get_uncounted(&key) {
            return Ok(hit.value.map(|value| Found {
                value,
                deadline: hit.deadline,
            }));
        }
        self.load_local(key).await
    }

    /// A `set` sent by a peer to this node as the owner.
    pub(crate) fn serve_set(&self, key: Bytes, value: Bytes, deadline: u64) -> Result<()> {
        self.check_open()?;
        self.inner.limits.check_key(&key)?;
        self.inner.limits.check_value(&value)?;
        self.write_local(Tier::Main, key, Some(value), deadline);
        Ok(())
    }

    /// A `delete` (or an invalidation) sent by a peer.
    pub(crate) fn serve_delete(&self, key: &[u8]) -> Result<bool> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        Ok(self.remove_local(key))
    }
}

/// Errors after which a caller loads locally instead.
fn is_unreachable(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Peer | ErrorKind::Timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::cluster::Cluster;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Notify;

    fn counting_loader(calls: Arc<AtomicUsize>) -> impl Loader {
        move |key: Bytes| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                match &key[..] {
                    b"missing" => Ok(Loaded::not_found()),
                    b"fail" => Err(Error::load(std::io::Error::other("db down"))),
                    b"short" => Ok(Loaded::value(Bytes::from_static(b"s")).with_ttl(Duration::from_secs(1))),
                    _ => Ok(Loaded::value([b"v:", &key[..]].concat())),
                }
            }
        }
    }

    fn group(calls: Arc<AtomicUsize>, clock: &ManualClock) -> Group {
        Group::builder("g")
            .capacity(1 << 20)
            .clock(Arc::new(clock.clone()))
            .loader(counting_loader(calls))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn loads_once_then_hits() {
        let calls = Arc::new(AtomicUsize::new(0));
        let g = group(calls.clone(), &ManualClock::default());
        assert_eq!(g.peek(b"a").unwrap(), None);
        assert_eq!(&g.get(b"a").await.unwrap()[..], b"v:a");
        assert_eq!(&g.get(b"a").await.unwrap()[..], b"v:a");
        assert_eq!(g.peek(b"a").unwrap().as_deref(), Some(&b"v:a"[..]));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let st = g.stats();
        assert_eq!((st.gets, st.hits, st.loads), (4, 2, 1));
    }

    #[tokio::test]
    async fn not_found_is_cached_negatively_and_errors_are_not() {
        let calls = Arc::new(AtomicUsize::new(0));
        let clock = ManualClock::default();
        let g = group(calls.clone(), &clock);
        assert!(g.get(b"missing").await.unwrap_err().is_not_found());
        assert!(g.get(b"missing").await.unwrap_err().is_not_found());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(g.peek(b"missing").unwrap(), None);
        clock.advance(DEFAULT_NEGATIVE_TTL);
        assert!(g.get(b"missing").await.unwrap_err().is_not_found());
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let e = g.get(b"fail").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Load);
        assert!(e.cause().unwrap().downcast_ref::<std::io::Error>().is_some());
        g.get(b"fail").await.unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(g.stats().load_errors, 2);
    }

    #[tokio::test]
    async fn loader_ttl_and_default_ttl_expire_with_the_clock() {
        let calls = Arc::new(AtomicUsize::new(0));
        let clock = ManualClock::default();
        let g = Group::builder("g")
            .clock(Arc::new(clock.clone()))
            .default_ttl(Duration::from_secs(10))
            .loader(counting_loader(calls.clone()))
            .build()
            .unwrap();
        g.get(b"short").await.unwrap();
        g.get(b"long").await.unwrap();
        clock.advance(Duration::from_secs(1));
        assert_eq!(g.peek(b"short").unwrap(), None);
        assert!(g.peek(b"long").unwrap().is_some());
        clock.advance(Duration::from_secs(9));
        assert_eq!(g.peek(b"long").unwrap(), None);
        g.set(b"k", Bytes::from_static(b"x"), Some(Duration::from_millis(5)))
            .await
            .unwrap();
        assert!(g.peek(b"k").unwrap().is_some());
        clock.advance(Duration::from_millis(5));
        assert_eq!(g.peek(b"k").unwrap(), None);
    }

    #[tokio::test]
    async fn set_delete_and_limits() {
        let calls = Arc::new(AtomicUsize::new(0));
        let g = Group::builder("g")
            .max_key_len(8)
            .max_value_len(4)
            .loader(counting_loader(calls.clone()))
            .build()
            .unwrap();
        g.set(b"k", Bytes::from_static(b"abcd"), None).await.unwrap();
        assert_eq!(&g.get(b"k").await.unwrap()[..], b"abcd");
        g.delete(b"k").await.unwrap();
        assert_eq!(g.peek(b"k").unwrap(), None);
        let kind = |r: Result<()>| r.unwrap_err().kind();
        assert_eq!(
            kind(g.set(b"k", Bytes::from_static(b"abcde"), None).await),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(g.set(b"123456789", Bytes::new(), None).await),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(g.set(b"", Bytes::new(), None).await),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            g.get(b"123456789").await.unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        // A loader returning more than max_value_len is an error, not a cached value.
        assert_eq!(
            g.get(b"toolong").await.unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(g.peek(b"toolong").unwrap(), None);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            Group::builder("").build().unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            Group::builder("x").capacity(0).build().unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[tokio::test]
    async fn get_many_dedups_skips_not_found_and_loads_misses() {
        let calls = Arc::new(AtomicUsize::new(0));
        let g = group(calls.clone(), &ManualClock::default());
        g.get(b"a").await.unwrap();
        let got = g.get_many(&["a", "b", "missing", "b"]).await.unwrap();
        let keys: Vec<_> = got.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys, vec![&b"a"[..], b"b"]);
        assert_eq!(&got[1].1[..], b"v:b");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            g.get_many(&["a", "fail"]).await.unwrap_err().kind(),
            ErrorKind::Load
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixty_four_concurrent_gets_load_once() {
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let g = {
            let (calls, gate) = (calls.clone(), gate.clone());
            Group::builder("g")
                .loader(move |_k: Bytes| {
                    let (calls, gate) = (calls.clone(), gate.clone());
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok(Loaded::value(Bytes::from_static(b"v")))
                    }
                })
                .build()
                .unwrap()
        };
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.get(b"k").await })
            })
            .collect();
        let key = Bytes::from_static(b"k");
        tokio::time::timeout(Duration::from_secs(10), async {
            while g.inner.local_flights.waiters(&key) < 64 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("64 waiters");
        gate.notify_one();
        for t in tasks {
            assert_eq!(&t.await.unwrap().unwrap()[..], b"v");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(g.stats().deduplicated, 63);
    }

    #[tokio::test]
    async fn a_panicking_loader_errors_and_the_next_get_loads_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let g = {
            let calls = calls.clone();
            Group::builder("g")
                .loader(move |_k: Bytes| {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n == 0 {
                            panic!("loader bug");
                        }
                        Ok(Loaded::value(Bytes::from_static(b"ok")))
                    }
                })
                .build()
                .unwrap()
        };
        assert_eq!(g.get(b"k").await.unwrap_err().kind(), ErrorKind::Panic);
        assert_eq!(&g.get(b"k").await.unwrap()[..], b"ok");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_in_flight_never_overwrites_a_later_set_or_delete() {
        let started = Arc::new(Notify::new());
        let gate = Arc::new(Notify::new());
        let g = {
            let (started, gate) = (started.clone(), gate.clone());
            Group::builder("g")
                .loader(move |_k: Bytes| {
                    let (started, gate) = (started.clone(), gate.clone());
                    async move {
                        started.notify_one();
                        gate.notified().await;
                        Ok(Loaded::value("old"))
                    }
                })
                .build()
                .unwrap()
        };
        for write_is_delete in [false, true] {
            let key: &[u8] = if write_is_delete { b"d" } else { b"s" };
            let get = {
                let g = g.clone();
                tokio::spawn(async move { g.get(key).await })
            };
            started.notified().await;
            if write_is_delete {
                g.delete(key).await.unwrap();
            } else {
                g.set(key, Bytes::from_static(b"new"), None).await.unwrap();
            }
            gate.notify_one();
            // The caller that started the load gets what it loaded...
            assert_eq!(&get.await.unwrap().unwrap()[..], b"old");
            // ...but the cache keeps the write.
            let want: Option<&[u8]> = if write_is_delete { None } else { Some(b"new") };
            assert_eq!(g.peek(key).unwrap().as_deref(), want);
        }
    }

    #[tokio::test]
    async fn a_default_group_caches_values_of_half_a_mebibyte() {
        let g = Group::builder("g")
            .loader(|_k: Bytes| async { Ok(Loaded::value(vec![7u8; 512 * 1024])) })
            .build()
            .unwrap();
        g.get(b"big").await.unwrap();
        assert_eq!(g.peek(b"big").unwrap().map(|v| v.len()), Some(512 * 1024));
        assert_eq!(g.stats().loads, 1);
    }

    #[tokio::test]
    async fn peek_with_lends_what_peek_returns() {
        let g = Group::builder("g").build().unwrap();
        g.set(b"k", Bytes::from_static(b"abc"), None).await.unwrap();
        assert_eq!(g.peek_with(b"k", <[u8]>::len).unwrap(), Some(3));
        assert_eq!(g.peek_with(b"x", <[u8]>::len).unwrap(), None);
        assert_eq!(
            g.peek_with(b"", <[u8]>::len).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[tokio::test]
    async fn closed_groups_refuse_calls() {
        let g = Group::builder("g").build().unwrap();
        g.close();
        assert_eq!(g.get(b"k").await.unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(g.peek(b"k").unwrap_err().kind(), ErrorKind::Closed);
    }

    #[test]
    fn get_without_a_runtime_reports_it() {
        let g = Group::builder("g").build().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        // A runtime that is not current at build time is still found at call time.
        assert!(rt.block_on(g.get(b"k")).unwrap_err().is_not_found());
    }

    #[test]
    fn independent_groups_share_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let a = Group::builder("same").build().unwrap();
            let b = Group::builder("same").build().unwrap();
            a.set(b"k", Bytes::from_static(b"1"), None).await.unwrap();
            assert_eq!(b.peek(b"k").unwrap(), None);
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_remote_gets_share_calls() {
        use crate::peer::batch::{MAX_BATCH, MAX_IN_FLIGHT};
        let a = Cluster::builder().start().await.unwrap();
        let b = Cluster::builder().start().await.unwrap();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        for c in [&a, &b] {
            c.set_peers([a.advertise_addr().to_string(), b.advertise_addr().to_string()])
                .unwrap();
        }
        let ga = a.group("g").hot_sample(0).build().unwrap();
        let g2 = gate.clone();
        let gb = b
            .group("g")
            .loader(move |k: Bytes| {
                let gate = g2.clone();
                async move {
                    let _ = gate.acquire().await.unwrap();
                    Ok(Loaded::value(k))
                }
            })
            .build()
            .unwrap();
        let keys: Vec<String> = (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| a.owner_of(k.as_bytes()) == b.advertise_addr())
            .take(200)
            .collect();
        let tasks: Vec<_> = keys
            .iter()
            .map(|k| {
                let (ga, k) = (ga.clone(), k.clone());
                tokio::spawn(async move { ga.get(k.as_bytes()).await.map(|v| v == k) })
            })
            .collect();
        // Every get is waiting: MAX_IN_FLIGHT calls are held at b's loader, the rest queue.
        let queued = 200 - MAX_IN_FLIGHT;
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let q = ga
                    .inner
                    .batchers
                    .lock()
                    .values()
                    .map(|b| b.queued())
                    .sum::<usize>();
                if q == queued && gb.stats().served as usize == MAX_IN_FLIGHT {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("gets did not queue up");
        gate.add_permits(1 << 20);
        for t in tasks {
            assert!(t.await.unwrap().unwrap());
        }
        let requests = a.stats().peers[0].2.requests as usize;
        assert_eq!(
            requests,
            MAX_IN_FLIGHT + queued.div_ceil(MAX_BATCH),
            "200 gets should share calls"
        );
        assert_eq!(gb.stats().loads, 200);
    }
}
