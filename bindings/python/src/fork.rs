//! Fork detection.
//!
//! `os.fork()` copies the process but not its threads: a child holds the parent's
//! clusters, whose tokio workers, peer server and locks' owners are gone. Any call that
//! entered the runtime there would wait forever, and a lock held at fork time would
//! never be released. So every object records the fork generation it was created in, and
//! each call compares it with the current one (one relaxed atomic load) and raises
//! `ClosedError` in a child. A child that builds its own `Cluster` gets a fresh runtime.
//!
//! The generation is bumped by an `os.register_at_fork(after_in_child=...)` hook
//! registered at import: it covers `os.fork`, `multiprocessing` (fork start method) and
//! gunicorn/uWSGI-style pre-fork servers. Registering a hook starts nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::PyDict;

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current fork generation: 0 in the process that imported meshcache, +1 per fork.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

#[pyfunction]
fn _after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let hook = wrap_pyfunction!(_after_fork_in_child, m)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("after_in_child", hook)?;
    // Not on every platform (Windows has no fork, and needs no hook).
    let os = py.import("os")?;
    if os.hasattr("register_at_fork")? {
        os.call_method("register_at_fork", (), Some(&kwargs))?;
    }
    Ok(())
}
