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
//!   Waiting with the GIL held would deadlock: the loader needs it.
//! - A Python loader runs on a tokio blocking thread that attaches to the interpreter.
//!   An `async def` loader is scheduled on an asyncio loop (see `loader.rs`).
//! - Nothing starts at import: the runtime belongs to a `Cluster` and starts with it.
//! - After `os.fork()` the child must not touch the parent's runtime (its threads do
//!   not exist there): every object remembers the fork generation it was made in and
//!   refuses calls from another one (see `fork.rs`).

mod cluster;
mod convert;
mod errors;
mod fork;
mod group;
mod loader;

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;

/// Set by an `atexit` hook. A thread that takes the GIL while the interpreter finalizes
/// is ended in place (`pthread_exit`), which aborts the process when Rust frames are on
/// its stack; so after this is set, runtime threads no longer take the GIL: loads fail
/// with `ClosedError` and asyncio results are dropped (nobody is left to await them).
static EXITING: AtomicBool = AtomicBool::new(false);

pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

#[pyfunction]
fn _at_exit() {
    EXITING.store(true, Ordering::Release);
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    fork::register(m)?;
    m.add_class::<cluster::PyCluster>()?;
    m.add_class::<group::PyGroup>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(convert::parse_size, m)?)?;
    // Registering the hook starts nothing.
    m.py()
        .import("atexit")?
        .call_method1("register", (wrap_pyfunction!(_at_exit, m)?,))?;
    Ok(())
}
