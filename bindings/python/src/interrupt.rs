//! Ctrl-C during a sync wait.
//!
//! A sync call that waits (a `get` that missed, `get_many`) releases the GIL and blocks
//! on the cluster's runtime. CPython's C-level SIGINT handler only sets a flag; the
//! Python handler (which raises `KeyboardInterrupt`) runs later, on the main thread,
//! when Python code runs or something calls `PyErr_CheckSignals`. A main thread blocked
//! in Rust does neither: Ctrl-C would wait for the call to end, and for a hung loader
//! that is never.
//!
//! So the main thread waits in slices of [`SLICE`], attaching between them to run the
//! pending signal handlers (`Python::check_signals`). If one raises (`KeyboardInterrupt`,
//! or whatever a custom handler raises), the wait is dropped and the exception raised:
//! only this caller stops waiting. Core's gets are cancel-safe: the load goes on for its
//! other waiters and its result is still cached.
//!
//! Other threads wait in one piece: Python runs signal handlers on the main thread only
//! (`check_signals` does nothing elsewhere), so waking them would cost GIL round trips
//! for nothing. A hit never waits and never comes here.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use meshcache::LoadScope;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tokio::runtime::Handle;

use crate::exit;

/// How long the main thread waits with the GIL released before it looks for a signal:
/// Ctrl-C is answered within about this long.
const SLICE: Duration = Duration::from_millis(50);

/// `threading.main_thread` and `_thread.get_ident`, looked up at import: the wait path
/// imports nothing (an import may release the GIL; see `exit.rs`).
static THREADS: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

/// Whether the calling thread is Python's main thread, the one signal handlers run on.
fn on_main_thread(py: Python<'_>) -> PyResult<bool> {
    let Some((main_thread, get_ident)) = THREADS.get(py) else {
        return Ok(false);
    };
    // Asked each time: after a fork from another thread, that thread is the child's main.
    let main = main_thread.bind(py).call0()?.getattr("ident")?;
    get_ident.bind(py).call0()?.eq(main)
}

/// Blocks on `fut` on `rt` with the GIL released, inside `scope` (a load scope of the
/// calling context, entered on whichever thread polls; see `scope.rs`) if given. On the
/// main thread a signal handler's exception ends the wait: `fut` is dropped unfinished
/// and the exception returned.
pub(crate) fn block_on<F>(
    py: Python<'_>,
    rt: &Handle,
    scope: Option<&LoadScope>,
    fut: F,
) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let enter = || scope.map(LoadScope::enter);
    if !on_main_thread(py)? {
        return Ok(exit::detach(py, || {
            let _in_load = enter();
            rt.block_on(fut)
        }));
    }
    let mut fut = pin!(fut);
    loop {
        let slice = exit::detach(py, || {
            let _in_load = enter();
            // The timer is made inside block_on: it needs the runtime's context.
            rt.block_on(async { tokio::time::timeout(SLICE, fut.as_mut()).await })
        });
        match slice {
            Ok(v) => return Ok(v),
            Err(_elapsed) => py.check_signals()?,
        }
    }
}

/// Looks up what [`on_main_thread`] needs (it starts nothing).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    THREADS.get_or_try_init(py, || -> PyResult<_> {
        let main_thread = py.import("threading")?.getattr("main_thread")?;
        let get_ident = py.import("_thread")?.getattr("get_ident")?;
        Ok((main_thread.unbind(), get_ident.unbind()))
    })?;
    Ok(())
}
