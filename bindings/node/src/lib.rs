//! Node.js bindings of meshcache: conversion and error mapping only.
//!
//! The package's `index.js` loads this addon; `lib.cjs` / `lib.mjs` add the loader
//! adapter and `NotFoundError` (see `node/`).
//!
//! # Threads and the event loop
//!
//! Each `Cluster` runs on its own tokio runtime (created by the core). JS code runs only
//! on the JS thread: a loader is called through a *weak* thread-safe function, which
//! never keeps the event loop alive by itself. A pending `get` keeps it alive only while
//! it waits for Rust work (a peer, the core), not while it waits for a JS loader that
//! has not settled (see `promise::Gets`): a loader that is doing something keeps the
//! process alive by itself, and one that never settles does not hang it. Other pending
//! calls (`set`, `delete`, `getMany`, `close`, `waitForMembers`, which ends by its
//! deadline or with `close()`) hold their promise's (ref'd) deferred. So the process
//! waits for answers it is owed and for nothing else.
//!
//! `get` asks the core's `Group::get_now` on the JS thread: a hit (or an error known at
//! once) settles the promise there and then, without a trip through the runtime; a miss
//! (`Now::Pending`) and every other async method run on the runtime. A loader's load
//! scope travels to JS and back (see `loader.rs`), so that the core refuses a loader's
//! get of its own key.
//!
//! # Files
//!
//! Named like the Python binding's (`bindings/python/src`):
//!
//! - `cluster.rs`: `Cluster`, `ClusterOptions` (with `membership`) and
//!   `cluster.waitForMembers()`;
//! - `group.rs`: `Group`, `GroupOptions` and `SetOptions`;
//! - `fast.rs`: the hit fast path of `group.peek` / `group.get` (`group._fast()`), and
//!   the miss of a `get` made inside a loader;
//! - `loader.rs`: a JS loader as a core loader, through a thread-safe function;
//! - `promise.rs`: how an async method's promise is settled, and when a pending `get`
//!   keeps the process alive;
//! - `convert.rs`: keys, values and options from JS, values to JS;
//! - `errors.rs`: the JS class and `code` of every error;
//! - `stats.rs`: the objects of `cluster.stats()` and `group.stats()`.

// napi's `#[napi]` expansions are unsafe FFI glue, and the hot paths read string keys
// with the raw napi API into a stack buffer and build buffers and Maps with it. Every
// raw call in this crate runs on the JS thread, with the `napi_env` of the current call.
#![allow(unsafe_code)]
// The exported types are JS classes and plain JS objects; Node prints them, not Rust.
#![allow(missing_debug_implementations)]

mod cluster;
mod convert;
mod errors;
mod fast;
mod group;
mod loader;
mod promise;
mod stats;

pub use cluster::{Cluster, ClusterOptions, WaitOptions};
pub use group::{Group, GroupOptions, SetOptions};
pub use loader::{LoaderReply, Returned};
pub use stats::{ClusterStats, GroupStats, PeerStats, RingStats, ServerStats, TierStats};
