//! `GroupBuilder`: a group's options, their defaults, and the checks that refuse what can
//! never work.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::runtime::Handle;

use super::hot::{DEFAULT_HOT_SAMPLE, HotSampler};
use super::limits::Limits;
use super::{Group, GroupInner};
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::housekeeper;
use crate::loader::Loader;
use crate::registry::Registry;
use crate::route::Router;
use crate::singleflight::Singleflight;
use crate::store::{Store, StoreConfig};

/// Default time a "not found" from the loader is remembered.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Default longest time a mirror of another node's key is kept in the hot tier (never
/// longer than the owner keeps the key), so that mirrors converge with their owner even
/// when an invalidation was lost.
pub const DEFAULT_HOT_TTL: Duration = Duration::from_secs(60);
/// Default byte budget of a group.
pub const DEFAULT_CAPACITY: usize = 64 * 1024 * 1024;

/// Builds a [`Group`]: standalone with [`Group::builder`], or served by a cluster with
/// [`crate::Cluster::group`].
pub struct GroupBuilder {
    name: String,
    capacity: usize,
    shards: usize,
    default_ttl: Option<Duration>,
    negative_ttl: Duration,
    hot_sample: u32,
    hot_ttl: Duration,
    load_timeout: Option<Duration>,
    replicas: usize,
    replicate_loads: bool,
    limits: Limits,
    clock: Arc<dyn Clock>,
    loader: Option<Arc<dyn Loader>>,
    runtime: Option<Handle>,
    /// Set by a cluster: how the group reaches other nodes, and where it registers.
    cluster: Option<(Arc<dyn Router>, Arc<Registry>)>,
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
    pub(super) fn new(name: String) -> Self {
        GroupBuilder {
            name,
            capacity: DEFAULT_CAPACITY,
            shards: 0,
            default_ttl: None,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            hot_sample: DEFAULT_HOT_SAMPLE,
            hot_ttl: DEFAULT_HOT_TTL,
            load_timeout: None,
            replicas: 1,
            replicate_loads: false,
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            loader: None,
            runtime: None,
            cluster: None,
        }
    }

    /// The byte budget of the group's store (both tiers). Default 64 MiB.
    ///
    /// The budget is split between shards (by default one per MiB, at most 256). An entry
    /// larger than a quarter of a shard is kept beside the shards on bytes they lend it,
    /// so one entry may take up to half the capacity; a larger value is returned to the
    /// caller but not cached, and `set` refuses it. A hot-tier mirror of another node's
    /// key must fit in 1/8 of a shard.
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

    /// Longest time a mirror of another node's key stays in this node's hot tier (the
    /// owner's own expiry still applies when it is sooner). Default [`DEFAULT_HOT_TTL`].
    pub fn hot_ttl(mut self, ttl: Duration) -> Self {
        self.hot_ttl = ttl;
        self
    }

    /// How many nodes hold each key written with `set` (or removed with `delete`): the
    /// key's primary owner and the next `replicas - 1` distinct nodes on the ring. Default
    /// 1 (the owner only). `set` writes to every replica at once and returns when all have
    /// answered; it fails only if the primary failed (a replica's failure is counted in
    /// `replica_write_errors`). A get whose primary cannot be reached asks the next replica
    /// before loading locally, so a written value survives `replicas - 1` dead nodes.
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// Whether values the loader returned are written to the key's replicas too (default
    /// `false`: a loaded value can be loaded again, so replicating it would cost every
    /// miss `replicas - 1` extra writes and the memory of `replicas` copies for nothing a
    /// reload cannot restore; turn it on when loads are expensive enough that a dead
    /// owner's keys should not be reloaded).
    pub fn replicate_loads(mut self, on: bool) -> Self {
        self.replicate_loads = on;
        self
    }

    /// How long a load may take: callers waiting on a loader that has not answered by
    /// then get [`crate::ErrorKind::Timeout`], the key is free for the next get to load
    /// again, and whatever the stuck loader returns later is dropped. Default: none
    /// (a loader may take as long as it takes).
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = Some(timeout);
        self
    }

    /// Longest key accepted. Default [`crate::DEFAULT_MAX_KEY_LEN`].
    pub fn max_key_len(mut self, len: usize) -> Self {
        self.limits.max_key_len = len;
        self
    }

    /// Largest value accepted. Default [`crate::DEFAULT_MAX_VALUE_LEN`].
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

    /// The tokio runtime that runs loads and the housekeeper. Default: the cluster's; for
    /// a standalone group, the runtime current at `build` (or at each call, if there was
    /// none at build time).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Makes the group reach other nodes through `router`, and register in `registry`
    /// (the cluster's groups, which its peer server serves) when built.
    pub(crate) fn routed(
        mut self,
        router: Arc<dyn Router>,
        registry: Arc<Registry>,
        runtime: Handle,
    ) -> Self {
        self.cluster = Some((router, registry));
        self.runtime = Some(runtime);
        self
    }

    /// Builds the group (and registers it with its cluster). If it has a runtime, a
    /// housekeeper task removes expired entries every [`crate::REAP_INTERVAL`] until the
    /// group is dropped or closed.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidArgument`] for an empty name, a zero capacity or zero
    /// limits, or a name the cluster already has; [`crate::ErrorKind::Closed`] if the
    /// cluster was shut down.
    pub fn build(self) -> Result<Group> {
        if self.name.is_empty() {
            return Err(Error::invalid("group name is empty"));
        }
        if self.capacity == 0 {
            return Err(Error::invalid("capacity must be greater than zero"));
        }
        if self.load_timeout.is_some_and(|t| t.is_zero()) || self.hot_ttl.is_zero() {
            return Err(Error::invalid(
                "load_timeout and hot_ttl must be greater than zero",
            ));
        }
        if self.replicas == 0 {
            return Err(Error::invalid("replicas must be at least 1 (the owner)"));
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
        let (router, registry) = match self.cluster {
            Some((router, registry)) => (Some(router), Some(registry)),
            None => (None, None),
        };
        let group = Group {
            inner: Arc::new(GroupInner {
                name: self.name,
                store,
                local_flights: Singleflight::new(),
                remote_flights: Singleflight::new(),
                loader: self.loader.unwrap_or_else(|| Arc::new(crate::loader::NoLoader)),
                default_ttl: self.default_ttl,
                negative_ttl: self.negative_ttl,
                hot: HotSampler::new(self.hot_sample),
                hot_ttl: self.hot_ttl,
                load_timeout: self.load_timeout,
                replicas: self.replicas,
                replicate_loads: self.replicate_loads,
                limits: self.limits,
                hlc: crate::version::Hlc::new(self.clock.clone()),
                clock: self.clock,
                runtime: runtime.clone(),
                router,
                fence: Default::default(),
                tombstones: Default::default(),
                retries: Default::default(),
                batchers: Default::default(),
                peek_batchers: crate::peer::batch::Batchers::of_peeks(),
                counters: Default::default(),
                closed: AtomicBool::new(false),
            }),
        };
        if let Some(registry) = registry {
            registry.insert(&group)?;
        }
        if let Some(rt) = runtime {
            rt.spawn(housekeeper::run(Arc::downgrade(&group.inner)));
        }
        Ok(group)
    }
}
