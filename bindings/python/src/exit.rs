//! Interpreter exit: no meshcache thread takes the GIL once the interpreter finalizes.
//!
//! CPython 3.9–3.13 ends a thread that takes the GIL while the interpreter finalizes
//! (`PyEval_RestoreThread`, `PyGILState_Ensure`) with `pthread_exit`. The forced unwind
//! that runs through Rust frames (which cannot unwind across `extern "C"`) aborts the
//! whole process: "FATAL: exception not rethrown". Two kinds of threads would do it:
//!
//! - a Python thread (typically a daemon thread) blocked in a `get` with the GIL
//!   released, whose wait ends during finalization and which wants the GIL back;
//! - a runtime thread that attaches to run a loader or to resolve an asyncio future.
//!
//! pyo3 0.30 does not guard either: `Python::detach` reattaches unconditionally, and
//! `Python::attach` refuses (with a panic) only on 3.13+, where `Py_IsFinalizing` is in
//! the limited API. So the binding guards both itself: an `atexit` hook, which runs on
//! the finalizing thread just before finalization starts, sets [`exiting`]; after that a
//! thread other than the finalizing one never takes the GIL: a detached caller parks
//! forever instead of returning to Python (the process is ending; CPython 3.14 hangs such
//! threads the same way), and a runtime thread skips its Python work.
//!
//! A thread that checked the flag just before the hook set it may be on its way to the
//! GIL: each one is counted from before its check until it holds the GIL, and the hook
//! releases the GIL and waits (bounded) for the count to reach zero before finalization
//! goes on.
//!
//! Not covered: Python code of a loader that releases the GIL itself (I/O, `time.sleep`)
//! and takes it back during finalization; CPython ends that thread with Rust frames below
//! it. See the README's Python section.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use pyo3::prelude::*;

/// Set by the `atexit` hook; read without a lock on every path that may take the GIL.
static EXITING: AtomicBool = AtomicBool::new(false);
/// The thread that ran the hook: the one finalizing the interpreter, which may attach.
static FINALIZER: OnceLock<ThreadId> = OnceLock::new();
/// Guards the count of threads between their check of `EXITING` and holding the GIL.
static ATTACHING: Mutex<usize> = Mutex::new(0);
static ATTACHED: Condvar = Condvar::new();
/// How long the hook waits for counted threads: they only wait for the GIL, which the
/// hook releases, so this bounds only pathological cases.
const DRAIN: Duration = Duration::from_secs(2);

/// Whether the interpreter is exiting: after this, runtime threads stay out of Python.
pub(crate) fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// Permission to take the GIL, held until the thread has it.
#[derive(Debug)]
pub(crate) struct Attaching(());

impl Attaching {
    /// `None` once the interpreter is exiting, unless this is the finalizing thread.
    fn begin() -> Option<Attaching> {
        let mut n = ATTACHING.lock().unwrap_or_else(PoisonError::into_inner);
        if EXITING.load(Ordering::Acquire) && FINALIZER.get() != Some(&std::thread::current().id()) {
            return None;
        }
        *n += 1;
        Some(Attaching(()))
    }
}

impl Drop for Attaching {
    fn drop(&mut self) {
        let mut n = ATTACHING.lock().unwrap_or_else(PoisonError::into_inner);
        *n -= 1;
        if *n == 0 {
            ATTACHED.notify_all();
        }
    }
}

/// `py.detach(f)` that does not take the GIL back if the interpreter began exiting while
/// `f` ran: then this thread parks forever (the process is ending) instead of being ended
/// inside Rust frames by CPython.
pub(crate) fn detach<T, F>(py: Python<'_>, f: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    let (r, attaching) = py.detach(|| {
        let r = f();
        match Attaching::begin() {
            Some(a) => (r, a),
            None => park_forever(),
        }
    });
    drop(attaching); // attached again
    r
}

/// `Python::attach(f)` for runtime threads: `None` (and no attach) once the interpreter
/// is exiting.
pub(crate) fn attach<R>(f: impl FnOnce(Python<'_>) -> R) -> Option<R> {
    let attaching = Attaching::begin()?;
    Some(Python::attach(|py| {
        drop(attaching);
        f(py)
    }))
}

fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}

#[pyfunction]
fn _at_exit(py: Python<'_>) {
    let _ = FINALIZER.set(std::thread::current().id());
    {
        let _n = ATTACHING.lock().unwrap_or_else(PoisonError::into_inner);
        EXITING.store(true, Ordering::Release);
    }
    // Threads counted before the flag was set are waiting for the GIL: let them have it.
    py.detach(|| {
        let n = ATTACHING.lock().unwrap_or_else(PoisonError::into_inner);
        let _n = ATTACHED
            .wait_timeout_while(n, DRAIN, |n| *n > 0)
            .unwrap_or_else(PoisonError::into_inner);
    });
}

/// Registers the hook (it starts nothing).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.py()
        .import("atexit")?
        .call_method1("register", (wrap_pyfunction!(_at_exit, m)?,))?;
    Ok(())
}
