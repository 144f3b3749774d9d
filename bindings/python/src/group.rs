//! `meshcache.Group`: one named cache of a cluster.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshcache::{GetFuture, Group, LoadScope, Now, deadline};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use tokio::runtime::Handle;

use crate::convert;
use crate::errors;
use crate::exit;
use crate::fork;
use crate::interrupt;
use crate::loader::{LoopThread, PyLoader, same_loop_error};
use crate::scope;
use crate::stats;

/// A named cache served by a `Cluster`: made by `Cluster.group(...)`.
///
/// Every method may be called from any thread. `peek` and a `get` that hits read the
/// store directly; anything that waits releases the GIL.
#[pyclass(frozen, name = "Group", module = "meshcache._native")]
pub struct PyGroup {
    group: Group,
    rt: Handle,
    generation: u64,
    loader: Option<Arc<PyLoader>>,
    loops: Arc<LoopThread>,
}

impl std::fmt::Debug for PyGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyGroup")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl PyGroup {
    pub(crate) fn new(
        group: Group,
        rt: Handle,
        loader: Option<Arc<PyLoader>>,
        loops: Arc<LoopThread>,
    ) -> Self {
        PyGroup {
            group,
            rt,
            generation: fork::generation(),
            loader,
            loops,
        }
    }

    /// Refuses calls in a child process: the runtime and locks belong to the parent.
    #[inline]
    fn check_fork(&self, py: Python<'_>) -> PyResult<()> {
        if self.generation == fork::generation() {
            Ok(())
        } else {
            Err(forked(py))
        }
    }

    /// A sync wait on a loop thread for a coroutine scheduled on that loop never ends.
    ///
    /// Calls into Python only when this group has a loop to compare with: a miss of a
    /// group with a sync loader imports nothing (an import can release the GIL, and a
    /// daemon thread that does so while the interpreter exits is ended by CPython).
    fn check_not_on_loader_loop(&self, py: Python<'_>) -> PyResult<()> {
        let Some(loader) = &self.loader else { return Ok(()) };
        let own = loader.event_loop().map(|l| l.bind(py).clone());
        let fallback = self.loops.started(py);
        if own.is_none() && fallback.is_none() {
            return Ok(());
        }
        let running = py.import("asyncio")?.call_method0("_get_running_loop")?;
        if running.is_none() {
            return Ok(());
        }
        if own.is_some_and(|l| l.is(&running)) || fallback.is_some_and(|l| l.is(&running)) {
            return Err(same_loop_error());
        }
        Ok(())
    }

    /// The load scope of the calling context (see `scope.rs`), for a call that may load.
    fn context_scope(&self, py: Python<'_>) -> PyResult<Option<LoadScope>> {
        if self.loader.is_none() {
            // Without a loader the group runs no load that could be waiting for the caller.
            return Ok(None);
        }
        scope::current(py)
    }

    /// The rest of a get that missed, asked again inside the load scope of the calling
    /// context if it has one (an `async def` loader's task: see `scope.rs`), where core
    /// refuses the key being loaded. `pending` is dropped unpolled: nothing had started.
    fn rescope<R>(
        &self,
        py: Python<'_>,
        key: &[u8],
        pending: GetFuture,
        f: impl FnOnce(&[u8]) -> R,
    ) -> PyResult<meshcache::Result<Now<R>>> {
        let Some(s) = self.context_scope(py)? else {
            return Ok(Ok(Now::Pending(pending)));
        };
        drop(pending);
        let _in_load = s.enter();
        Ok(self.group.get_now_with(key, f))
    }

    /// Waits for a get that missed, with the GIL released, interruptible by Ctrl-C and
    /// bounded by the caller's deadline `limit`. Kept out of `get`'s hit path.
    #[inline(never)]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        k: &[u8],
        pending: GetFuture,
        limit: Option<Duration>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let now = self.rescope(py, k, pending, |v| convert::value_to_py(py, v))?;
        let pending = match now {
            Ok(Now::Ready(v)) => return Ok(v),
            Ok(Now::Pending(p)) => p,
            Err(e) => return Err(errors::to_py(py, e, Some(key))),
        };
        self.check_not_on_loader_loop(py)?;
        // Ctrl-C ends the wait with KeyboardInterrupt (see `interrupt.rs`); the deadline
        // with Timeout, for this caller only (the load goes on).
        match interrupt::block_on(py, &self.rt, None, deadline::within(limit, pending))? {
            Ok(v) => Ok(convert::value_to_py(py, &v)),
            Err(e) => Err(errors::to_py(py, e, Some(key))),
        }
    }

    /// An `asyncio.Future` of the running loop.
    fn loop_future<'py>(py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
        let future = event_loop.call_method0("create_future")?;
        Ok((event_loop, future))
    }

    /// Runs a core future on the runtime for asyncio: `future` (of `event_loop`) is
    /// resolved from a blocking thread with `call_soon_threadsafe`.
    fn spawn<T, F, C>(
        &self,
        event_loop: Bound<'_, PyAny>,
        future: Bound<'_, PyAny>,
        fut: F,
        key: Option<Py<PyAny>>,
        convert: C,
    ) where
        T: Send + 'static,
        F: Future<Output = meshcache::Result<T>> + Send + 'static,
        C: for<'a> FnOnce(Python<'a>, T) -> PyResult<Bound<'a, PyAny>> + Send + 'static,
    {
        let resolver = Resolver {
            target: Some((event_loop.unbind(), future.unbind(), key)),
        };
        // The join handle is not needed: the result goes to the asyncio future.
        drop(self.rt.spawn(async move {
            let r = fut.await;
            resolver.resolve(r, convert);
        }));
    }

    /// `spawn` for a call that has nothing to answer at once (writes, `get_many`).
    fn awaitable<'py, T, F, C>(
        &self,
        py: Python<'py>,
        fut: F,
        key: Option<Py<PyAny>>,
        convert: C,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        T: Send + 'static,
        F: Future<Output = meshcache::Result<T>> + Send + 'static,
        C: for<'a> FnOnce(Python<'a>, T) -> PyResult<Bound<'a, PyAny>> + Send + 'static,
    {
        let (event_loop, future) = Self::loop_future(py)?;
        self.spawn(event_loop, future.clone(), fut, key, convert);
        Ok(future)
    }
}

/// Hands a result to an asyncio future from a runtime task. If the task is dropped
/// first (the runtime shut down), the future gets `ClosedError` instead of waiting
/// forever (`PanicError` if the task panicked).
struct Resolver {
    target: Option<Target>,
}

/// The loop, the asyncio future on it, and the caller's key (for `NotFound.args`).
type Target = (Py<PyAny>, Py<PyAny>, Option<Py<PyAny>>);

impl Resolver {
    fn resolve<T, C>(mut self, r: meshcache::Result<T>, convert: C)
    where
        T: Send + 'static,
        C: for<'a> FnOnce(Python<'a>, T) -> PyResult<Bound<'a, PyAny>> + Send + 'static,
    {
        let Some(target) = self.target.take() else { return };
        if exit::exiting() {
            return; // nobody is left to await it
        }
        // Taking the GIL may wait: do it on a blocking thread, not a runtime worker.
        // The join handle is not needed: the result goes to the asyncio future.
        drop(tokio::task::spawn_blocking(move || {
            exit::attach(|py| {
                let (ok, v) = outcome(py, r, target.2.as_ref().map(|k| k.bind(py)), convert);
                deliver(py, &target.0, &target.1, ok, v);
            })
        }));
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if let Some((lp, fut, _)) = self.target.take() {
            // The task was dropped unfinished: the runtime shut down, or (a bug) it panicked.
            let panicked = std::thread::panicking();
            // Once the interpreter exits, nobody is left to await it: no attach then.
            exit::attach(|py| {
                let e = if panicked {
                    errors::to_py(
                        py,
                        meshcache::Error::new(meshcache::ErrorKind::Panic, "meshcache task panicked"),
                        None,
                    )
                } else {
                    errors::closed(py, "the cluster shut down before the call finished")
                };
                deliver(py, &lp, &fut, false, e.into_value(py).into_bound(py).into_any());
            });
        }
    }
}

fn outcome<'py, T, C>(
    py: Python<'py>,
    r: meshcache::Result<T>,
    key: Option<&Bound<'py, PyAny>>,
    convert: C,
) -> (bool, Bound<'py, PyAny>)
where
    C: for<'a> FnOnce(Python<'a>, T) -> PyResult<Bound<'a, PyAny>>,
{
    match r
        .map_err(|e| errors::to_py(py, e, key))
        .and_then(|v| convert(py, v))
    {
        Ok(v) => (true, v),
        Err(e) => (false, e.into_value(py).into_bound(py).into_any()),
    }
}

fn deliver(py: Python<'_>, lp: &Py<PyAny>, fut: &Py<PyAny>, ok: bool, v: Bound<'_, PyAny>) {
    let resolve = match wrap_pyfunction!(_resolve_future, py) {
        Ok(f) => f,
        Err(e) => return e.write_unraisable(py, None),
    };
    // Fails only when the loop is closed: then nobody is waiting.
    let _ = lp.call_method1(py, "call_soon_threadsafe", (resolve, fut, ok, v));
}

/// Runs on the loop's thread.
#[pyfunction]
fn _resolve_future(fut: &Bound<'_, PyAny>, ok: bool, value: &Bound<'_, PyAny>) -> PyResult<()> {
    // A cancelled future is done: set_result would raise InvalidStateError.
    if fut.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    fut.call_method1(if ok { "set_result" } else { "set_exception" }, (value,))?;
    Ok(())
}

pub(crate) fn forked(py: Python<'_>) -> PyErr {
    errors::closed(
        py,
        "this meshcache object was created before os.fork() in the parent process and cannot be \
         used in the child: create a new Cluster in the child (for gunicorn, in post_fork)",
    )
}

fn bytes_out(py: Python<'_>, v: Bytes) -> PyResult<Bound<'_, PyAny>> {
    Ok(convert::value_to_py(py, &v).into_any())
}

fn unit(py: Python<'_>, (): ()) -> PyResult<Bound<'_, PyAny>> {
    Ok(py.None().into_bound(py))
}

/// Pairs the found `(key, value)` list (a subsequence of the unique keys, in order) with
/// the caller's own key objects.
fn many_out<'py>(
    py: Python<'py>,
    keys: &[(Vec<u8>, Py<PyAny>)],
    found: Vec<(Bytes, Bytes)>,
) -> PyResult<Bound<'py, PyAny>> {
    let out = PyDict::new(py);
    let mut i = 0;
    for (k, v) in found {
        while i < keys.len() && keys[i].0 != k[..] {
            i += 1;
        }
        if let Some((_, obj)) = keys.get(i) {
            out.set_item(obj.bind(py), convert::value_to_py(py, &v))?;
        }
    }
    Ok(out.into_any())
}

type ManyFuture = Pin<Box<dyn Future<Output = meshcache::Result<Vec<(Bytes, Bytes)>>> + Send>>;

fn many_keys(keys: &Bound<'_, PyAny>) -> PyResult<Vec<(Vec<u8>, Py<PyAny>)>> {
    if keys.is_instance_of::<PyString>() || keys.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "get_many takes an iterable of keys, not a single str or bytes: use get_many([key])",
        ));
    }
    let mut out = Vec::new();
    for k in keys.try_iter()? {
        let k = k?;
        let b = convert::key(&k)?.into_owned();
        out.push((b, k.unbind()));
    }
    Ok(out)
}

#[pymethods]
impl PyGroup {
    /// The group's name.
    #[getter]
    fn name(&self) -> &str {
        self.group.name()
    }

    /// Whether the group (or its cluster) was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.group.is_closed()
    }

    /// The value of `key` if it is cached here; never loads, never waits.
    fn peek<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.check_fork(py)?;
        let k = convert::key(key)?;
        // The bytes are copied into the new `bytes` under the store's read lock (no
        // refcount traffic); a `bytes` is not GC-tracked, so creating it runs no Python code.
        match self.group.peek_with(&k, |v| convert::value_to_py(py, v)) {
            Ok(v) => Ok(v),
            Err(e) => Err(errors::to_py(py, e, Some(key))),
        }
    }

    /// `group[key]`: the value of `key` if it is cached here, like `peek`; never loads.
    /// A key that is not cached raises `NotFound` (a `KeyError`).
    ///
    /// The fastest read: the subscript slot takes the key alone, with no argument tuple
    /// to build and parse (abi3-py39 methods are called with one).
    fn __getitem__<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        self.check_fork(py)?;
        let k = convert::key(key)?;
        match self.group.peek_with(&k, |v| convert::value_to_py(py, v)) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(errors::not_found(py, key)),
            Err(e) => Err(errors::to_py(py, e, Some(key))),
        }
    }

    /// `key in group`: whether `key` has a value cached here; never loads.
    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.check_fork(py)?;
        let k = convert::key(key)?;
        match self.group.peek_with(&k, |_| ()) {
            Ok(v) => Ok(v.is_some()),
            Err(e) => Err(errors::to_py(py, e, Some(key))),
        }
    }

    /// The value of `key`, loaded once in the whole cluster on a miss. `timeout`
    /// (seconds) bounds this caller's wait on a miss: then `Timeout`, while the load goes on.
    #[pyo3(signature = (key, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.check_fork(py)?;
        let k = convert::key(key)?;
        let limit = convert::timeout(timeout, "timeout")?;
        // A hit is copied into the new `bytes` under the store's read lock, as by `peek`.
        match self.group.get_now_with(&k, |v| convert::value_to_py(py, v)) {
            Ok(Now::Ready(v)) => Ok(v),
            Ok(Now::Pending(pending)) => self.wait(py, key, &k, pending, limit),
            Err(e) => Err(errors::to_py(py, e, Some(key))),
        }
    }

    /// `get` for asyncio: `await group.aget(key)`. A hit (or an error known at once)
    /// resolves the future before it is returned. `timeout` as for `get`.
    #[pyo3(signature = (key, timeout=None))]
    fn aget<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_fork(py)?;
        let k = convert::key(key)?;
        let limit = convert::timeout(timeout, "timeout")?;
        let (event_loop, future) = Self::loop_future(py)?;
        let mut now = self.group.get_now_with(&k, |v| convert::value_to_py(py, v));
        if let Ok(Now::Pending(pending)) = now {
            now = self.rescope(py, &k, pending, |v| convert::value_to_py(py, v))?;
        }
        match now {
            Ok(Now::Ready(v)) => {
                future.call_method1("set_result", (v,))?;
            }
            Err(e) => {
                future.call_method1("set_exception", (errors::to_py(py, e, Some(key)).into_value(py),))?;
            }
            Ok(Now::Pending(pending)) => {
                self.spawn(
                    event_loop,
                    future.clone(),
                    deadline::within(limit, pending),
                    Some(key.clone().unbind()),
                    bytes_out,
                );
            }
        }
        Ok(future)
    }

    /// The values of the keys that exist, as a dict keyed by the caller's key objects.
    /// Misses load concurrently; keys owned by other nodes take one call per node.
    /// `timeout` (seconds) bounds this caller's wait: then `Timeout`, while loads go on.
    #[pyo3(signature = (keys, timeout=None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_fork(py)?;
        let keys = many_keys(keys)?;
        let limit = convert::timeout(timeout, "timeout")?;
        let raw: Vec<&[u8]> = keys.iter().map(|(k, _)| &k[..]).collect();
        // Inside an async loader's context, core refuses the key being loaded.
        let in_load = self.context_scope(py)?;
        self.check_not_on_loader_loop(py)?;
        // Ctrl-C ends the wait with KeyboardInterrupt (see `interrupt.rs`).
        let get_many = deadline::within(limit, self.group.get_many(&raw));
        match interrupt::block_on(py, &self.rt, in_load.as_ref(), get_many)? {
            Ok(found) => many_out(py, &keys, found),
            Err(e) => Err(errors::to_py(py, e, None)),
        }
    }

    /// `get_many` for asyncio.
    #[pyo3(signature = (keys, timeout=None))]
    fn aget_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_fork(py)?;
        let keys = many_keys(keys)?;
        let limit = convert::timeout(timeout, "timeout")?;
        let owned: Vec<Vec<u8>> = keys.iter().map(|(k, _)| k.clone()).collect();
        let g = self.group.clone();
        let get_many = async move { deadline::within(limit, g.get_many(&owned)).await };
        // Inside an async loader's context, core refuses the key being loaded.
        let get_many: ManyFuture = match self.context_scope(py)? {
            Some(s) => Box::pin(s.run(get_many)),
            None => Box::pin(get_many),
        };
        self.awaitable(py, get_many, None, move |py, found| many_out(py, &keys, found))
    }

    /// Stores `value` under `key` on its owner, for `ttl` seconds (default: the group's).
    #[pyo3(signature = (key, value, ttl=None))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.check_fork(py)?;
        let k = convert::key(key)?;
        let v = convert::value(value, "value")?;
        let ttl = convert::ttl(ttl, "ttl")?;
        let (k, g, rt): (&[u8], _, _) = (&k, &self.group, &self.rt);
        let r = exit::detach(py, || rt.block_on(g.set(k, v, ttl)));
        r.map_err(|e| errors::to_py(py, e, Some(key)))
    }

    /// `set` for asyncio.
    #[pyo3(signature = (key, value, ttl=None))]
    fn aset<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        value: &Bound<'py, PyAny>,
        ttl: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.check_fork(py)?;
        let k = convert::key(key)?.into_owned();
        let v = convert::value(value, "value")?;
        let ttl = convert::ttl(ttl, "ttl")?;
        let g = self.group.clone();
        self.awaitable(
            py,
            async move { g.set(&k, v, ttl).await },
            Some(key.clone().unbind()),
            unit,
        )
    }

    /// Removes `key` from its owner and from every node's mirrors.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_fork(py)?;
        let k = convert::key(key)?;
        let (k, g, rt): (&[u8], _, _) = (&k, &self.group, &self.rt);
        let r = exit::detach(py, || rt.block_on(g.delete(k)));
        r.map_err(|e| errors::to_py(py, e, Some(key)))
    }

    /// `delete` for asyncio.
    fn adelete<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.check_fork(py)?;
        let k = convert::key(key)?.into_owned();
        let g = self.group.clone();
        self.awaitable(
            py,
            async move { g.delete(&k).await },
            Some(key.clone().unbind()),
            unit,
        )
    }

    /// The group's counters: core's counters, and each tier's under "main" and "hot".
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.check_fork(py)?;
        stats::group(py, &self.group.stats())
    }

    /// Closes the group: later calls raise ClosedError and the store is emptied.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.check_fork(py)?;
        self.group.close();
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("<meshcache.Group {:?}>", self.group.name())
    }
}

impl Drop for PyGroup {
    fn drop(&mut self) {
        if self.generation != fork::generation() {
            // In a forked child: dropping could take a lock a vanished thread held.
            std::mem::forget(self.group.clone());
            std::mem::forget(self.rt.clone());
        }
    }
}
