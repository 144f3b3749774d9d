//! The load scope of an `async def` loader, carried in a `contextvars.ContextVar`.
//!
//! Core refuses a loader's get of the key it is loading (it would wait for itself) by
//! load scopes (`meshcache::scope`). A plain-function loader runs inside
//! `meshcache::blocking_load`, which marks its thread: nothing to do here. An `async def`
//! loader's coroutine runs as an asyncio task on an event loop's thread, out of core's
//! sight, so the scope travels with it in a context variable: the coroutine is scheduled
//! from a copy of the current context in which the variable holds the scope, the task
//! copies that context (asyncio copies the context a callback was scheduled from), and so
//! does every task or `asyncio.to_thread` call the loader starts.
//!
//! A `get` that misses reads the variable; if it holds a scope, core is asked again
//! inside that scope, and answers `InvalidArgument` for the loader's own key. A hit never
//! reads it.

use meshcache::LoadScope;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

/// The value of the context variable: one load's scope. Private (not exported by the
/// `meshcache` package) and made only by meshcache.
#[pyclass(frozen, name = "_LoadScope", module = "meshcache._native")]
pub(crate) struct PyLoadScope(LoadScope);

#[pymethods]
impl PyLoadScope {
    fn __repr__(&self) -> String {
        format!(
            "<meshcache load scope of key {:?}>",
            String::from_utf8_lossy(self.0.key())
        )
    }
}

/// `contextvars.ContextVar("meshcache_load_scope")`, made when the first async loader is
/// scheduled: until then no context can hold a scope.
static VAR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Calls `f(*args)` in a copy of the current context in which the variable holds `scope`:
/// what `f` schedules (`asyncio.run_coroutine_threadsafe`) runs in that context. The
/// calling context is left as it was.
pub(crate) fn call_in<'py>(
    py: Python<'py>,
    scope: LoadScope,
    f: &Bound<'py, PyAny>,
    args: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    let contextvars = py.import("contextvars")?;
    let var = VAR.get_or_try_init(py, || {
        contextvars
            .getattr("ContextVar")?
            .call1(("meshcache_load_scope",))
            .map(Bound::unbind)
    })?;
    let ctx = contextvars.call_method0("copy_context")?;
    ctx.call_method1("run", (var.bind(py).getattr("set")?, PyLoadScope(scope)))?;
    let run_args: Vec<_> = std::iter::once(f).chain(args.iter().copied()).collect();
    ctx.getattr("run")?.call1(PyTuple::new(py, run_args)?)
}

/// The load scope of the calling context (an async loader's task, or a thread it started
/// with its context), if any. Imports nothing and runs no Python code but the lookup.
pub(crate) fn current(py: Python<'_>) -> PyResult<Option<LoadScope>> {
    let Some(var) = VAR.get(py) else { return Ok(None) };
    let v = var.bind(py).call_method1("get", (py.None(),))?;
    match v.cast::<PyLoadScope>() {
        Ok(s) => Ok(Some(s.get().0.clone())),
        Err(_) => Ok(None),
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLoadScope>()
}
