//! A Python callable as a core [`Loader`].
//!
//! # Where a loader runs
//!
//! - A plain function runs on a tokio blocking thread (`meshcache::blocking_load`) that
//!   attaches to the interpreter. Runtime workers never wait for the GIL.
//! - An `async def` loader (or any loader that returns an awaitable) is called on that
//!   blocking thread too, which only creates the coroutine; the coroutine runs on an
//!   asyncio event loop: the `loop=` given to `Cluster.group`, or else the cluster's own
//!   loop thread, a daemon thread started the first time an async loader runs and
//!   stopped when the cluster closes. So `get` works from a thread that has no loop, and
//!   `aget` works from any loop. Give `loop=` when the loader uses objects bound to your
//!   application's loop (an aiohttp session, an asyncpg pool).
//!
//! A loader's `get` (or `aget`, `get_many`) of the key it is loading would wait for
//! itself: core refuses it with `InvalidArgument`. A plain function runs inside
//! `blocking_load`, which marks its thread; an `async def` loader's task carries its load
//! scope in a context variable (see `scope.rs`).
//!
//! # What a loader returns
//!
//! `bytes` (or any bytes-like), or `(value, ttl_seconds)`; raising `meshcache.NotFound`
//! caches the absence for the group's negative TTL. Anything else it raises, any
//! `BaseException` (`KeyboardInterrupt`, `SystemExit` included), is carried as the source
//! of a core `Load` error and raised again, unchanged (the same object), in every
//! caller; an `async def` loader's never escapes into its event loop (see `capture`).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use meshcache::{Error, ErrorKind, LoadFuture, LoadScope, Loaded, Loader};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::code::PyCodeInput;
use pyo3::types::{PyCFunction, PyCode, PyCodeMethods, PyDict, PyTuple};
use tokio::sync::oneshot;

use crate::convert;
use crate::errors::{self, LoaderError};
use crate::exit;

/// The asyncio loop a cluster runs async loaders on when a group names none: started on
/// first use, by whichever thread first needs it, and stopped by `Cluster.close`.
pub(crate) struct LoopThread {
    /// The loop and the `threading.Thread` running it.
    started: PyOnceLock<(Py<PyAny>, Py<PyAny>)>,
}

impl Default for LoopThread {
    fn default() -> Self {
        LoopThread {
            started: PyOnceLock::new(),
        }
    }
}

impl LoopThread {
    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (lp, _) = self
            .started
            .get_or_try_init(py, || -> PyResult<(Py<PyAny>, Py<PyAny>)> {
                let lp = py.import("asyncio")?.call_method0("new_event_loop")?;
                let kwargs = PyDict::new(py);
                // The thread runs only Python code (no Rust frames), so that the
                // interpreter may end it at exit like any daemon thread.
                kwargs.set_item("target", lp.getattr("run_forever")?)?;
                kwargs.set_item("name", "meshcache-asyncio")?;
                // A daemon thread: it never holds up interpreter exit.
                kwargs.set_item("daemon", true)?;
                let thread = py.import("threading")?.call_method("Thread", (), Some(&kwargs))?;
                thread.call_method0("start")?;
                Ok((lp.unbind(), thread.unbind()))
            })?;
        Ok(lp.bind(py).clone())
    }

    /// The loop, if it was started.
    pub(crate) fn started<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.started.get(py).map(|(l, _)| l.bind(py).clone())
    }

    /// Asks the loop to stop, if it was started. Does not wait.
    pub(crate) fn stop(&self, py: Python<'_>) {
        if let Some((lp, _)) = self.started.get(py) {
            let lp = lp.bind(py);
            if let Ok(stop) = lp.getattr("stop") {
                // Fails only if the loop is already closed: nothing to stop then.
                let _ = lp.call_method1("call_soon_threadsafe", (stop,));
            }
        }
    }

    /// Stops the loop, waits (bounded) for its thread, cancels the coroutines left on it
    /// (their loads fail instead of waiting forever) and closes it.
    pub(crate) fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        let Some((lp, thread)) = self.started.get(py) else {
            return Ok(());
        };
        let (lp, thread) = (lp.bind(py), thread.bind(py));
        if lp.call_method0("is_closed")?.is_truthy()? {
            return Ok(());
        }
        let threading = py.import("threading")?;
        if threading.call_method0("current_thread")?.is(thread) {
            // Closing the cluster from a coroutine on this very loop: just stop it.
            self.stop(py);
            return Ok(());
        }
        self.stop(py);
        thread.call_method1("join", (10.0,))?;
        if thread.call_method0("is_alive")?.is_truthy()? {
            return Ok(()); // a coroutine blocks the loop: leave it, it is a daemon thread
        }
        let asyncio = py.import("asyncio")?;
        let tasks = asyncio.call_method1("all_tasks", (lp,))?;
        if tasks.len()? > 0 {
            let tasks: Vec<_> = tasks.try_iter()?.collect::<PyResult<_>>()?;
            for t in &tasks {
                t.call_method0("cancel")?;
            }
            let kwargs = PyDict::new(py);
            kwargs.set_item("return_exceptions", true)?;
            let all = asyncio.call_method("gather", PyTuple::new(py, tasks)?, Some(&kwargs))?;
            lp.call_method1("run_until_complete", (all,))?;
        }
        lp.call_method0("close")?;
        Ok(())
    }
}

/// The state of a loader, shared by every load of its group.
pub(crate) struct PyLoader {
    func: Py<PyAny>,
    /// Loader keys as `bytes` instead of `str`.
    bytes_keys: bool,
    /// The loop given as `loop=`, if any.
    event_loop: Option<Py<PyAny>>,
    /// The cluster's own loop, for async loaders without `loop=`.
    fallback: Arc<LoopThread>,
    group: String,
}

/// What calling the loader gave: a result now, or one that an awaitable will send.
enum Call {
    Done(meshcache::Result<Loaded>),
    Pending(oneshot::Receiver<meshcache::Result<Loaded>>),
}

impl PyLoader {
    pub(crate) fn new(
        func: Py<PyAny>,
        bytes_keys: bool,
        event_loop: Option<Py<PyAny>>,
        fallback: Arc<LoopThread>,
        group: String,
    ) -> Self {
        PyLoader {
            func,
            bytes_keys,
            event_loop,
            fallback,
            group,
        }
    }

    fn call(&self, py: Python<'_>, key: &[u8]) -> Call {
        let ret = convert::key_to_py(py, key, self.bytes_keys).and_then(|k| self.func.bind(py).call1((k,)));
        let ret = match ret {
            Ok(r) => r,
            Err(e) => return Call::Done(self.failed(py, e)),
        };
        match is_awaitable(&ret) {
            Ok(false) => Call::Done(self.loaded(py, &ret)),
            Ok(true) => match self.schedule(py, ret) {
                Ok(rx) => Call::Pending(rx),
                Err(e) => Call::Done(self.failed(py, e)),
            },
            Err(e) => Call::Done(self.failed(py, e)),
        }
    }

    /// Runs an awaitable on the loader's loop; its outcome arrives on the receiver.
    fn schedule(
        &self,
        py: Python<'_>,
        awaitable: Bound<'_, PyAny>,
    ) -> PyResult<oneshot::Receiver<meshcache::Result<Loaded>>> {
        let event_loop = match &self.event_loop {
            Some(lp) => lp.bind(py).clone(),
            None => self.fallback.get(py)?,
        };
        let asyncio = py.import("asyncio")?;
        // Never the awaitable itself: see `capture`.
        let coro = capture(py)?.call1((awaitable,))?;
        // The task inherits the context it is scheduled from: schedule it from one that
        // holds this load's scope (set on this thread by `blocking_load`), so that a get
        // of the key being loaded from inside the coroutine is refused (see `scope.rs`).
        let run = asyncio.getattr("run_coroutine_threadsafe")?;
        let scheduled = match LoadScope::current() {
            Some(scope) => crate::scope::call_in(py, scope, &run, &[&coro, &event_loop]),
            None => run.call1((&coro, event_loop)),
        };
        let cfut = scheduled.inspect_err(|_| {
            // Not scheduled (the loop is closed): no "never awaited" warning for it.
            let _ = coro.call_method0("close");
        })?;
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        let group = self.group.clone();
        let done = PyCFunction::new_closure(
            py,
            Some(c"meshcache_load_done"),
            None,
            move |args: &Bound<'_, PyTuple>, _kw: Option<&Bound<'_, PyDict>>| -> PyResult<()> {
                let py = args.py();
                let me = Outcome { group: &group };
                let r = match args.get_item(0)?.call_method0("result") {
                    Ok(v) => match v.extract::<(bool, Bound<'_, PyAny>)>() {
                        Ok((true, v)) => me.loaded(py, &v),
                        // The very object the loader raised, with its traceback.
                        Ok((false, e)) => me.failed(py, PyErr::from_value(e)),
                        Err(e) => me.failed(py, e),
                    },
                    // Cancelled before `capture` ran (the loop shut down).
                    Err(e) => me.failed(py, e),
                };
                if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    // The load's waiters may all be gone: nobody to tell.
                    let _ = tx.send(r);
                }
                Ok(())
            },
        )?;
        cfut.call_method1("add_done_callback", (done,))?;
        Ok(rx)
    }

    fn loaded(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> meshcache::Result<Loaded> {
        self.outcome().loaded(py, v)
    }

    fn failed(&self, py: Python<'_>, e: PyErr) -> meshcache::Result<Loaded> {
        self.outcome().failed(py, e)
    }

    fn outcome(&self) -> Outcome<'_> {
        Outcome { group: &self.group }
    }
}

/// Turns what a loader returned or raised into a core result.
struct Outcome<'a> {
    group: &'a str,
}

impl Outcome<'_> {
    fn loaded(&self, py: Python<'_>, v: &Bound<'_, PyAny>) -> meshcache::Result<Loaded> {
        match self.convert(v) {
            Ok(l) => Ok(l),
            Err(e) => self.failed(py, e),
        }
    }

    fn convert(&self, v: &Bound<'_, PyAny>) -> PyResult<Loaded> {
        let what = || format!("the loader of group {:?} returned a value that", self.group);
        if let Ok(t) = v.cast::<PyTuple>() {
            if t.len() != 2 {
                return Err(PyTypeError::new_err(format!(
                    "{} is a tuple of {} items; return bytes or (bytes, ttl_seconds)",
                    what(),
                    t.len()
                )));
            }
            let value = convert::value(&t.get_item(0)?, "a loader's value")?;
            let ttl = convert::ttl(Some(&t.get_item(1)?), "a loader's ttl")?;
            let loaded = Loaded::value(value);
            return Ok(match ttl {
                Some(ttl) => loaded.with_ttl(ttl),
                None => loaded,
            });
        }
        match convert::value(v, "a loader's return value") {
            Ok(b) => Ok(Loaded::value(b)),
            Err(e) => Err(PyTypeError::new_err(format!(
                "{} is not bytes: {}; return bytes or (bytes, ttl_seconds), or raise meshcache.NotFound",
                what(),
                e.value(v.py())
            ))),
        }
    }

    fn failed(&self, py: Python<'_>, e: PyErr) -> meshcache::Result<Loaded> {
        if e.is_instance(py, errors::types(py).not_found.bind(py)) {
            return Ok(Loaded::not_found());
        }
        Err(Error::load(LoaderError::new(py, e)))
    }
}

/// `capture(awaitable)`: a coroutine that awaits a loader's awaitable and returns
/// `(True, value)` or `(False, exception)`, whatever it raised, `BaseException`s included.
///
/// The loader's coroutine is never run as a task itself: an asyncio task that raises
/// `KeyboardInterrupt` or `SystemExit` re-raises it out of the loop's `run_forever`,
/// which would end the cluster's loop thread (every later async load would wait forever)
/// or the application's own loop, and the result would never reach the callers. Every
/// other exception would pass, but `CancelledError` would reach them as another object
/// (`concurrent.futures.CancelledError`). Caught here, each one is handed to the callers
/// unchanged. `capture` also turns any awaitable into the coroutine
/// `run_coroutine_threadsafe` requires.
fn capture(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    const CODE: &std::ffi::CStr = c"
async def capture(awaitable):
    try:
        return True, await awaitable
    except BaseException as e:
        return False, e
";
    static CAPTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let f = CAPTURE.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        let globals = PyDict::new(py);
        globals.set_item("__name__", "meshcache")?;
        PyCode::compile(py, CODE, c"<meshcache: async loader>", PyCodeInput::File)?
            .run(Some(&globals), None)?;
        let f = globals.get_item("capture")?;
        Ok(
            f.ok_or_else(|| PyRuntimeError::new_err("meshcache: capture was not defined"))?
                .unbind(),
        )
    })?;
    Ok(f.bind(py).clone())
}

fn inspect_fn<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static INSPECT: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    INSPECT
        .get_or_try_init(py, || py.import("inspect").map(Bound::unbind))?
        .bind(py)
        .getattr(name)
}

fn is_awaitable(v: &Bound<'_, PyAny>) -> PyResult<bool> {
    // Fast answer for the common case: a sync loader returning bytes.
    if v.is_instance_of::<pyo3::types::PyBytes>() || v.is_instance_of::<PyTuple>() {
        return Ok(false);
    }
    inspect_fn(v.py(), "isawaitable")?.call1((v,))?.is_truthy()
}

/// The core-facing loader: one per group, shared by its loads.
pub(crate) struct SharedLoader(pub Arc<PyLoader>);

impl Loader for SharedLoader {
    fn load(&self, key: Bytes) -> LoadFuture {
        let loader = self.0.clone();
        Box::pin(async move {
            if exit::exiting() {
                return Err(exiting_error());
            }
            // A blocking thread runs the call, inside the load's scope: a `get` of the key
            // being loaded from the loader is refused by core instead of waiting for itself.
            let call = meshcache::blocking_load(move || exit::attach(|py| loader.call(py, &key)))
                .await?
                .ok_or_else(exiting_error)?;
            match call {
                Call::Done(r) => r,
                Call::Pending(rx) => rx.await.unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Closed,
                        "the event loop running an async loader stopped before it finished",
                    ))
                }),
            }
        })
    }
}

fn exiting_error() -> Error {
    Error::new(ErrorKind::Closed, "the Python interpreter is exiting")
}

/// Raised when a sync `get` on a loop thread would wait for a coroutine scheduled on
/// that same loop.
pub(crate) fn same_loop_error() -> PyErr {
    PyRuntimeError::new_err(
        "get() called on the event loop its async loader runs on would deadlock: use `await group.aget(key)`",
    )
}

impl PyLoader {
    pub(crate) fn event_loop(&self) -> Option<&Py<PyAny>> {
        self.event_loop.as_ref()
    }
}
