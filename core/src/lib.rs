//! meshcache: an embedded, distributed, read-through cache.
//!
//! A service embeds a [`Group`] per kind of data. A miss is loaded once (per key, at a
//! time) through the application's [`Loader`] and cached in a sharded, byte-bounded
//! [`store`] with TTLs and scan-resistant eviction. In a cluster (later), each key has one
//! owner and a miss anywhere is loaded once in the whole cluster.
//!
//! ```
//! use bytes::Bytes;
//! use meshcache::{Group, Loaded};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let users = Group::builder("users")
//!     .capacity(64 << 20)
//!     .loader(|key: Bytes| async move { Ok(Loaded::value(format!("user {key:?}"))) })
//!     .build()?;
//! let v = users.get(b"42").await?;
//! assert_eq!(users.peek(b"42")?, Some(v));
//! # Ok::<(), meshcache::Error>(())
//! # }).unwrap();
//! ```
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
mod error;
mod group;
mod loader;
pub mod peer;
pub mod ring;
pub mod singleflight;
mod size;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use cluster::{
    Cluster, ClusterBuilder, ClusterStats, DEFAULT_BREAKER_COOLDOWN, DEFAULT_BREAKER_THRESHOLD,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PEER_TIMEOUT,
};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use group::{
    DEFAULT_HOT_SAMPLE, DEFAULT_MAX_KEY_LEN, DEFAULT_MAX_VALUE_LEN, DEFAULT_NEGATIVE_TTL, Group,
    GroupBuilder, GroupStats, Limits, REAP_INTERVAL,
};
pub use loader::{LoadFuture, Loaded, Loader, NoLoader};
pub use peer::{BreakerState, PeerStats};
pub use size::parse_size;
pub use store::{StoreStats, Tier, TierStats};
