//! Python bindings of meshcache: conversion and error mapping only.
//!
//! The Python package `meshcache` (python/meshcache/) re-exports this module,
//! `meshcache._native`. Every cache behaviour lives in the core crate; this crate turns
//! Python arguments into core calls and core errors into Python exceptions.
//!
//! # Threads and the GIL
//!
//! - A hit (`peek`, and the first step of `get`) reads the store directly, with the GIL
//!   held and without entering the tokio runtime.
//! - Everything that may wait (a miss, `set`, `delete`, starting and stopping a cluster)
//!   releases the GIL first (`py.detach`) and then blocks on the cluster's runtime.
//!   Waiting with the GIL held would deadlock: the loader needs it. The main thread
//!   waits in slices and checks for signals between them, so Ctrl-C interrupts a `get`
//!   (see `interrupt.rs`).
//! - A Python loader runs on a tokio blocking thread that attaches to the interpreter.
//!   An `async def` loader is scheduled on an asyncio loop (see `loader.rs`).
//! - A loader's get of the key it is loading is refused by core (`InvalidArgument`)
//!   instead of waiting for itself; an `async def` loader's load scope reaches core
//!   through a context variable (see `scope.rs`).
//! - Nothing starts at import: the runtime belongs to a `Cluster` and starts with it.
//! - After `os.fork()` the child must not touch the parent's runtime (its threads do
//!   not exist there): every object remembers the fork generation it was made in and
//!   refuses calls from another one (see `fork.rs`).
//! - Once the interpreter exits, no thread but the finalizing one takes the GIL again
//!   (see `exit.rs`): every detach and attach goes through that module.

mod cluster;
mod convert;
mod errors;
mod exit;
mod fork;
mod group;
mod interrupt;
mod loader;
mod scope;
mod stats;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    fork::register(m)?;
    interrupt::register(m)?;
    scope::register(m)?;
    stats::register(m)?;
    m.add_class::<cluster::PyCluster>()?;
    m.add_class::<group::PyGroup>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(convert::parse_size, m)?)?;
    exit::register(m)?;
    Ok(())
}
