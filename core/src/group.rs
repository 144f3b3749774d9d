//! A `Group`: one named cache with its loader, store and singleflight.
//!
//! # The get path
//!
//! 1. the store (main tier: keys this node owns; hot tier: mirrors), read lock only;
//! 2. otherwise a singleflight per key, whose one flight checks the store again (another
//!    flight may have filled it between step 1 and joining) and then loads: through the
//!    loader when this node owns the key (always, for a local group), or from the owner.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;

use crate::clock::{self, Clock, SystemClock};
use crate::error::{Error, ErrorKind, Result};
use crate::loader::{DebugLoader, Loaded, Loader};
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
/// Slots of each shard a reaper pass looks at.
const REAP_SCAN: usize = 4096;

/// Counters of one group. A snapshot: fields are read one by one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupStats {
    /// Calls to `get` and keys asked for by `get_many`.
    pub gets: u64,
    /// Gets answered from the main tier without loading.
    pub hits: u64,
    /// Gets answered from the hot tier (mirrors of keys other nodes own).
    pub hot_hits: u64,
    /// Gets that joined a flight another caller had started.
    pub deduplicated: u64,
    /// Loader calls on this node.
    pub loads: u64,
    /// Loader calls that failed (error or panic).
    pub load_errors: u64,
    /// Loader calls that said NotFound.
    pub not_found: u64,
    /// The store's counters.
    pub store: StoreStats,
}

#[derive(Debug, Default)]
struct Counters {
    gets: AtomicU64,
    hits: AtomicU64,
    hot_hits: AtomicU64,
    deduplicated: AtomicU64,
    loads: AtomicU64,
    load_errors: AtomicU64,
    not_found: AtomicU64,
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

/// Builds a [`Group`].
pub struct GroupBuilder {
    name: String,
    capacity: usize,
    shards: usize,
    default_ttl: Option<Duration>,
    negative_ttl: Duration,
    limits: Limits,
    clock: Arc<dyn Clock>,
    loader: Option<Arc<dyn Loader>>,
    runtime: Option<Handle>,
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

    /// The tokio runtime that runs loads and the reaper. Default: the runtime current at
    /// `build` (or at each call, if there was none at build time).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Builds the group. If it has a runtime, a reaper task removes expired entries every
    /// [`REAP_INTERVAL`] until the group is dropped.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for an empty name, a zero capacity or zero limits.
    pub fn build(self) -> Result<Group> {
        if self.name.is_empty() {
            return Err(Error::invalid("group name is empty"));
        }
        if self.capacity == 0 {
            return Err(Error::invalid("capacity must be greater than zero"));
        }
        if self.limits.max_key_len == 0 || self.limits.max_value_len == 0 {
            return Err(Error::invalid("max_key_len and max_value_len must be greater than zero"));
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
            flights: Singleflight::new(),
            loader: self.loader.unwrap_or_else(|| Arc::new(crate::loader::NoLoader)),
            default_ttl: self.default_ttl,
            negative_ttl: self.negative_ttl,
            limits: self.limits,
            clock: self.clock,
            runtime: runtime.clone(),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
        });
        if let Some(rt) = runtime {
            rt.spawn(reaper(Arc::downgrade(&inner)));
        }
        Ok(Group { inner })
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

/// One named cache: a store, a loader and a singleflight. Cheap to clone; clones share
/// everything.
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
    flights: Singleflight<Bytes, Option<Bytes>>,
    loader: Arc<dyn Loader>,
    default_ttl: Option<Duration>,
    negative_ttl: Duration,
    pub(crate) limits: Limits,
    clock: Arc<dyn Clock>,
    runtime: Option<Handle>,
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

fn hit_to_result(value: Option<Bytes>) -> Result<Bytes> {
    value.ok_or_else(Error::not_found)
}

impl Group {
    /// A builder for a group called `name` (64 MiB, no default TTL, no loader).
    pub fn builder(name: impl Into<String>) -> GroupBuilder {
        GroupBuilder {
            name: name.into(),
            capacity: 64 * 1024 * 1024,
            shards: 0,
            default_ttl: None,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            loader: None,
            runtime: None,
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
    pub fn peek(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        Ok(self.lookup(key).and_then(|v| v))
    }

    /// Alias of [`Group::peek`].
    pub fn get_if_present(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.peek(key)
    }

    /// Store lookup with counting: `Some(None)` is a cached NotFound.
    #[inline]
    fn lookup(&self, key: &[u8]) -> Option<Option<Bytes>> {
        let c = &self.inner.counters;
        c.gets.fetch_add(1, Ordering::Relaxed);
        let hit = self.inner.store.get(key)?;
        match hit.tier {
            Tier::Main => c.hits.fetch_add(1, Ordering::Relaxed),
            Tier::Hot => c.hot_hits.fetch_add(1, Ordering::Relaxed),
        };
        Some(hit.value)
    }

    /// The value of `key`: from the store, or loaded (once per key at a time) and cached.
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
            return hit_to_result(v);
        }
        self.load(Bytes::copy_from_slice(key)).await
    }

    /// The values of `keys` that exist, in the order asked, each key once. Misses load
    /// concurrently.
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
        let mut slots: Vec<(Bytes, Option<Result<Bytes>>)> = Vec::with_capacity(keys.len());
        for k in keys {
            let k = k.as_ref();
            if !seen.insert(k) {
                continue;
            }
            let cached = self.lookup(k).map(hit_to_result);
            slots.push((Bytes::copy_from_slice(k), cached));
        }
        let misses = slots
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.is_none())
            .map(|(i, (k, _))| {
                let k = k.clone();
                async move { (i, self.load(k).await) }
            });
        for (i, r) in futures_util::future::join_all(misses).await {
            slots[i].1 = Some(r);
        }
        let mut out = Vec::with_capacity(slots.len());
        for (k, v) in slots {
            match v.expect("every slot resolved") {
                Ok(v) => out.push((k, v)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Caches `value` for `key` for `ttl` (the group's default TTL when `None`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a bad key or an oversized value;
    /// [`ErrorKind::Closed`] after shutdown.
    pub async fn set(&self, key: &[u8], value: Bytes, ttl: Option<Duration>) -> Result<()> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        self.inner.limits.check_value(&value)?;
        self.set_local(Tier::Main, Bytes::copy_from_slice(key), Some(value), ttl.or(self.inner.default_ttl));
        Ok(())
    }

    /// Removes `key`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidArgument`] for a bad key; [`ErrorKind::Closed`] after shutdown.
    pub async fn delete(&self, key: &[u8]) -> Result<()> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        self.inner.store.remove(key);
        Ok(())
    }

    /// The group's counters.
    pub fn stats(&self) -> GroupStats {
        let c = &self.inner.counters;
        GroupStats {
            gets: c.gets.load(Ordering::Relaxed),
            hits: c.hits.load(Ordering::Relaxed),
            hot_hits: c.hot_hits.load(Ordering::Relaxed),
            deduplicated: c.deduplicated.load(Ordering::Relaxed),
            loads: c.loads.load(Ordering::Relaxed),
            load_errors: c.load_errors.load(Ordering::Relaxed),
            not_found: c.not_found.load(Ordering::Relaxed),
            store: self.inner.store.stats(),
        }
    }

    /// Stops the group: every later call returns [`ErrorKind::Closed`], and the store is
    /// emptied. Loads in flight finish for their waiters.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.store.clear();
    }

    /// Whether [`Group::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn set_local(&self, tier: Tier, key: Bytes, value: Option<Bytes>, ttl: Option<Duration>) {
        let deadline = clock::deadline(self.inner.clock.now_ms(), ttl);
        self.inner.store.insert(tier, key, value, deadline);
    }

    fn runtime(&self) -> Result<Handle> {
        match &self.inner.runtime {
            Some(h) => Ok(h.clone()),
            None => Handle::try_current()
                .map_err(|_| Error::new(ErrorKind::Closed, "no tokio runtime to run the load on")),
        }
    }

    /// The singleflight part of the get path.
    async fn load(&self, key: Bytes) -> Result<Bytes> {
        let rt = self.runtime()?;
        let mut leader = false;
        let result = self
            .inner
            .flights
            .run(&rt, key.clone(), || {
                leader = true;
                let this = self.clone();
                async move { this.load_and_cache(key).await }
            })
            .await;
        if !leader {
            self.inner.counters.deduplicated.fetch_add(1, Ordering::Relaxed);
        }
        hit_to_result(result?)
    }

    /// Runs inside the flight: checks the store again, then loads and caches.
    async fn load_and_cache(&self, key: Bytes) -> Result<Option<Bytes>> {
        // A flight that ended between our lookup and our joining may have cached it.
        if let Some(hit) = self.inner.store.get(&key) {
            return Ok(hit.value);
        }
        let c = &self.inner.counters;
        c.loads.fetch_add(1, Ordering::Relaxed);
        let loaded = match self.inner.loader.load(key.clone()).await {
            Ok(l) => l,
            Err(e) => {
                c.load_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        match loaded {
            Loaded::Value { value, ttl } => {
                if let Err(e) = self.inner.limits.check_value(&value) {
                    c.load_errors.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::new(e.kind(), format!("loader returned a value too large: {}", e.message())));
                }
                if !self.is_closed() {
                    self.set_local(Tier::Main, key, Some(value.clone()), ttl.or(self.inner.default_ttl));
                }
                Ok(Some(value))
            }
            Loaded::NotFound { ttl } => {
                c.not_found.fetch_add(1, Ordering::Relaxed);
                if !self.is_closed() {
                    self.set_local(Tier::Main, key, None, Some(ttl.unwrap_or(self.inner.negative_ttl)));
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
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
        g.set(b"k", Bytes::from_static(b"x"), Some(Duration::from_millis(5))).await.unwrap();
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
        assert_eq!(kind(g.set(b"k", Bytes::from_static(b"abcde"), None).await), ErrorKind::InvalidArgument);
        assert_eq!(kind(g.set(b"123456789", Bytes::new(), None).await), ErrorKind::InvalidArgument);
        assert_eq!(kind(g.set(b"", Bytes::new(), None).await), ErrorKind::InvalidArgument);
        assert_eq!(g.get(b"123456789").await.unwrap_err().kind(), ErrorKind::InvalidArgument);
        // A loader returning more than max_value_len is an error, not a cached value.
        assert_eq!(g.get(b"toolong").await.unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(g.peek(b"toolong").unwrap(), None);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(Group::builder("").build().unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(Group::builder("x").capacity(0).build().unwrap_err().kind(), ErrorKind::InvalidArgument);
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
        assert_eq!(g.get_many(&["a", "fail"]).await.unwrap_err().kind(), ErrorKind::Load);
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
            while g.inner.flights.waiters(&key) < 64 {
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
}
