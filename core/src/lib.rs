//! meshcache: an embedded, distributed, read-through cache.
//!
//! Every process of a service embeds a [`Cluster`] and is a peer. Each key has one owner
//! on a consistent-hash [`ring`]; a miss anywhere is loaded **once in the whole cluster**,
//! by the owner, through the application's [`Loader`], cached there in a sharded,
//! byte-bounded [`store`] (TTLs, scan-resistant S3-FIFO eviction), and served to the other
//! peers over a gRPC [`peer`] protocol. Keys read often on a node that does not own them
//! are mirrored in its hot tier. A [`Group`] is one named cache; it also works standalone,
//! without a cluster.
//!
//! ```
//! use bytes::Bytes;
//! use meshcache::{Cluster, Loaded};
//!
//! # fn main() -> meshcache::Result<()> {
//! // One node per process; give every node the same peer list (its own address included).
//! let cluster = Cluster::builder().listen("127.0.0.1:0").build()?;
//! let users = cluster
//!     .group("users")
//!     .capacity(64 << 20)
//!     .loader(|key: Bytes| async move { Ok(Loaded::value(format!("user {key:?}"))) })
//!     .build()?;
//! let v = cluster.runtime().block_on(users.get(b"42"))?;
//! assert_eq!(users.peek(b"42")?, Some(v));
//! cluster.shutdown_blocking()?;
//! # Ok(())
//! # }
//! ```
//!
//! The get path: main tier (keys this node owns) → hot tier (mirrors) → one flight per
//! key → the owner: this node's loader, or a gRPC call to the owning peer. A group
//! reaches other nodes only through a small routing seam (`route.rs`), which the
//! cluster's membership implements; `docs/ARCHITECTURE.md` maps every file. An owner that
//! cannot be reached makes the caller load locally (and keep the value only in its hot
//! tier); a per-peer circuit breaker keeps a dead peer from costing a timeout per request.
//!
//! # Concurrency
//!
//! Every type is `Send + Sync` and every method takes `&self`. A read hit takes one shard's
//! read lock and never waits for a writer longer than one insert; loads run as tokio tasks
//! on the group's runtime. There is no process-global state: any number of groups (with
//! the same name, too) live side by side.
//!
//! # Cancel safety
//!
//! Every async method is cancel-safe. Dropping a `get` that started a load does not cancel
//! the load: it finishes, is cached, and reaches every other caller waiting for that key.

pub mod clock;
mod cluster;
pub mod deadline;
mod entry;
mod error;
mod group;
mod housekeeper;
#[doc(hidden)]
pub mod http_server;
mod loader;
pub mod peer;
mod registry;
pub mod ring;
mod route;
pub mod scope;
pub mod singleflight;
mod size;
mod spawn;
pub mod store;
mod version;

pub use clock::{Clock, ManualClock, SystemClock};
pub use cluster::{
    Cluster, ClusterBuilder, ClusterStats, DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_THRESHOLD,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DNS_INTERVAL, DEFAULT_ETCD_LEASE_TTL, DEFAULT_HANDOFF_MAX_BYTES,
    DEFAULT_HANDOFF_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_PEER_REQUESTS, DEFAULT_MAX_STREAMS_PER_CONNECTION, DEFAULT_PEER_TIMEOUT, DEFAULT_RETRIES,
    DEFAULT_RETRY_BACKOFF, DEFAULT_SHUTDOWN_GRACE, DEFAULT_WARM_WINDOW, DEFAULT_WORKER_THREADS, Discovery,
    DnsSpec, EtcdSpec, RingStats, STATUS_PAGE,
};
pub use entry::Entry;
pub use error::{BoxError, Error, ErrorKind, Result, panic_message};
pub use group::{
    DEFAULT_CAPACITY, DEFAULT_HOT_SAMPLE, DEFAULT_HOT_TTL, DEFAULT_MAX_KEY_LEN, DEFAULT_MAX_VALUE_LEN,
    DEFAULT_NEGATIVE_TTL, GetFuture, Group, GroupBuilder, GroupStats, Limits, Now,
};
pub use housekeeper::REAP_INTERVAL;
pub use loader::{LoadFuture, Loaded, Loader, NoLoader};
pub use peer::{BreakerState, MAX_KEYS_PER_GET_MANY, PeerProtocol, PeerStats, ServerStats};
pub use scope::{LoadScope, blocking_load};
pub use size::parse_size;
pub use spawn::spawn_polled;
pub use store::{StoreStats, Tier, TierStats};

/// The crate README's Rust examples (the repository README's, verbatim) run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
