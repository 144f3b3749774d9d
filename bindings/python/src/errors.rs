//! The exception hierarchy and the one function that maps a core error onto it.
//!
//! | core `ErrorKind` | Python                                                   |
//! |------------------|----------------------------------------------------------|
//! | NotFound         | `NotFound(MeshcacheError, KeyError)`                     |
//! | Load             | the loader's own exception, unchanged (same object, same traceback); `LoadError` when the loader ran on another node |
//! | Peer             | `PeerError(MeshcacheError)`                              |
//! | Timeout          | `Timeout(PeerError, TimeoutError)`                       |
//! | InvalidArgument  | `InvalidArgument(MeshcacheError, ValueError)`; wrong Python types raise `TypeError` |
//! | Closed           | `ClosedError(MeshcacheError)`                            |
//! | Panic            | `PanicError(MeshcacheError)`                             |
//!
//! The classes need two bases (`NotFound` is both a `MeshcacheError` and a `KeyError`),
//! which `create_exception!` cannot express, so they are made with `type(...)` when the
//! module is imported, with `__module__ = "meshcache"` so tracebacks name them as users
//! import them.

use std::fmt;

use meshcache::{Error, ErrorKind};
use pyo3::exceptions::{PyException, PyKeyError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

pub(crate) struct Types {
    pub base: Py<PyType>,
    pub not_found: Py<PyType>,
    pub load: Py<PyType>,
    pub peer: Py<PyType>,
    pub timeout: Py<PyType>,
    pub invalid: Py<PyType>,
    pub closed: Py<PyType>,
    pub panic: Py<PyType>,
}

static TYPES: PyOnceLock<Types> = PyOnceLock::new();

fn make<'py>(
    py: Python<'py>,
    name: &str,
    bases: Vec<Bound<'py, PyType>>,
    doc: &str,
) -> PyResult<Bound<'py, PyType>> {
    let ns = PyDict::new(py);
    ns.set_item("__module__", "meshcache")?;
    ns.set_item("__doc__", doc)?;
    let bases = PyTuple::new(py, bases)?;
    let ty = py.get_type::<PyType>().call1((name, bases, ns))?;
    Ok(ty.cast_into::<PyType>()?)
}

fn create(py: Python<'_>) -> PyResult<Types> {
    let base = make(
        py,
        "MeshcacheError",
        vec![py.get_type::<PyException>()],
        "Base class of every error meshcache raises (a loader's own exceptions pass through unchanged).",
    )?;
    let not_found = make(
        py,
        "NotFound",
        vec![base.clone(), py.get_type::<PyKeyError>()],
        "The key does not exist: the loader said so (a loader raises it to say so).",
    )?;
    let load = make(
        py,
        "LoadError",
        vec![base.clone()],
        "A loader failed on another node; its exception could not cross the network.",
    )?;
    let peer = make(
        py,
        "PeerError",
        vec![base.clone()],
        "A peer could not be reached or answered with an error.",
    )?;
    let timeout = make(
        py,
        "Timeout",
        vec![peer.clone(), py.get_type::<PyTimeoutError>()],
        "A deadline passed before the operation completed.",
    )?;
    let invalid = make(
        py,
        "InvalidArgument",
        vec![base.clone(), py.get_type::<PyValueError>()],
        "An unusable argument: an empty or oversized key or value, a bad address or size.",
    )?;
    let closed = make(
        py,
        "ClosedError",
        vec![base.clone()],
        "The cluster or group was closed, or was created in the parent of a fork.",
    )?;
    let panic = make(
        py,
        "PanicError",
        vec![base.clone()],
        "meshcache code run for this call panicked; the process lives on.",
    )?;
    Ok(Types {
        base: base.unbind(),
        not_found: not_found.unbind(),
        load: load.unbind(),
        peer: peer.unbind(),
        timeout: timeout.unbind(),
        invalid: invalid.unbind(),
        closed: closed.unbind(),
        panic: panic.unbind(),
    })
}

pub(crate) fn types(py: Python<'_>) -> &Types {
    TYPES
        .get_or_try_init(py, || create(py))
        .expect("creating the exception classes cannot fail once the module imported")
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let t = TYPES.get_or_try_init(py, || create(py))?;
    for (name, ty) in [
        ("MeshcacheError", &t.base),
        ("NotFound", &t.not_found),
        ("LoadError", &t.load),
        ("PeerError", &t.peer),
        ("Timeout", &t.timeout),
        ("InvalidArgument", &t.invalid),
        ("ClosedError", &t.closed),
        ("PanicError", &t.panic),
    ] {
        m.add(name, ty.clone_ref(py))?;
    }
    Ok(())
}

fn new_err(py: Python<'_>, ty: &Py<PyType>, msg: String) -> PyErr {
    PyErr::from_type(ty.bind(py).clone(), msg)
}

pub(crate) fn closed(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    new_err(py, &types(py).closed, msg.into())
}

pub(crate) fn not_found(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyErr {
    PyErr::from_type(types(py).not_found.bind(py).clone(), (key.clone().unbind(),))
}

pub(crate) fn invalid(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    new_err(py, &types(py).invalid, msg.into())
}

/// A Python loader's exception, carried through the core as the source of an
/// [`ErrorKind::Load`] error and raised again, unchanged, in every waiting caller.
pub(crate) struct LoaderError {
    pub err: PyErr,
    /// `repr` of the exception, taken while attached: `Display` must not need the GIL
    /// (the core formats this on runtime threads).
    text: String,
}

impl LoaderError {
    pub(crate) fn new(py: Python<'_>, err: PyErr) -> Self {
        let text = err
            .value(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "<exception>".into());
        LoaderError { err, text }
    }
}

impl fmt::Debug for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoaderError({})", self.text)
    }
}

impl fmt::Display for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for LoaderError {}

/// Maps a core error to the Python exception DESIGN.md's table gives it. `key` (the
/// caller's own object) becomes `NotFound.args[0]`, like `KeyError`.
pub(crate) fn to_py(py: Python<'_>, e: Error, key: Option<&Bound<'_, PyAny>>) -> PyErr {
    let t = types(py);
    let msg = e.message().to_string();
    match e.kind() {
        ErrorKind::NotFound => match key {
            Some(k) => not_found(py, k),
            None => new_err(py, &t.not_found, msg),
        },
        ErrorKind::Load => match e.cause().and_then(|c| c.downcast_ref::<LoaderError>()) {
            // The same exception object: type, message, attributes and traceback kept.
            Some(le) => le.err.clone_ref(py),
            None => new_err(py, &t.load, msg),
        },
        ErrorKind::Peer => new_err(py, &t.peer, msg),
        ErrorKind::Timeout => new_err(py, &t.timeout, msg),
        ErrorKind::InvalidArgument => new_err(py, &t.invalid, msg),
        ErrorKind::Closed => new_err(py, &t.closed, msg),
        ErrorKind::Panic => new_err(py, &t.panic, msg),
        _ => new_err(py, &t.base, format!("{e}")),
    }
}
