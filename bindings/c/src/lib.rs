//! The C ABI of meshcache: `include/meshcache.h` is generated from this crate by cbindgen
//! (`make header`), and every `///` comment on an exported item is its C documentation.
//!
//! The conventions follow rustls-ffi: functions are `meshcache_<object>_<verb>`; objects
//! come in `_new`/`_free` pairs and `_free(NULL)` does nothing; every fallible function
//! returns a [`meshcache_result`] with explicit numbers that are never reused; outputs
//! are written only on success; buffers are `(pointer, length)`; every exported body runs
//! inside a panic boundary ([`error::ffi`]) and checks its pointers before use.
//!
//! Files: `error.rs` (result codes, last error, the panic boundary, argument checks),
//! `value.rs` (owned values and `get_many` results), `cluster.rs` and `group.rs` (the
//! objects' lifecycles and calls), `cluster_options.rs` and `group_options.rs` (their
//! options), `stats.rs` (the stats snapshots in C layout), `ring_stats.rs` (the ring's
//! accessors in a cluster's snapshot), `loader.rs` (the C loader callback), `clock.rs` (a manual clock for TTL tests),
//! `text.rs` (strings the caller owns: the metrics text, the status JSON),
//! `hooks.rs` (test and bench hooks, feature `test-hooks`).

// This is the only crate of the workspace allowed `unsafe`: a C ABI cannot be written
// without it. Every unsafe block says why it is sound (`// Safety:`).
#![allow(unsafe_code)]
// An `unsafe fn` body is not an unsafe block: each unsafe operation in it has its own,
// with its own `// Safety:` note.
#![deny(unsafe_op_in_unsafe_fn)]
// The exported types carry their C names (`meshcache_group`, `MESHCACHE_OK`), as in
// rustls-ffi, so that the Rust source reads like the header.
#![allow(non_camel_case_types)]
// Every exported function checks its pointers itself and documents what it requires.
#![allow(clippy::missing_safety_doc)]

pub mod clock;
pub mod cluster;
pub mod cluster_options;
pub mod error;
pub mod group;
pub mod group_options;
#[cfg(feature = "test-hooks")]
pub mod hooks;
pub mod loader;
pub mod ring_stats;
pub mod stats;
pub mod text;
pub mod value;

pub use clock::meshcache_clock;
pub use cluster::meshcache_cluster;
pub use cluster_options::meshcache_cluster_options;
pub use error::meshcache_result;
pub use group::meshcache_group;
pub use group_options::meshcache_group_options;
pub use loader::{meshcache_loader_fn, meshcache_loader_out, meshcache_user_data_free_fn};
pub use stats::{
    meshcache_cluster_stats, meshcache_group_stats, meshcache_peer_stats, meshcache_server_stats,
    meshcache_tier_stats,
};
pub use value::{meshcache_bytes, meshcache_entries, meshcache_value};
