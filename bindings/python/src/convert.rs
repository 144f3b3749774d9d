//! Python values in, Python values out. Keys are `str` (encoded as UTF-8) or `bytes`;
//! values are bytes-like in (`bytes`, `bytearray`, `memoryview`) and `bytes` out.
//! Anything else is a `TypeError` that names what was expected and what was given.

use std::time::Duration;

use bytes::Bytes;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyFloat, PyInt, PyMemoryView, PyString};

use crate::errors;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The bytes of a key, borrowed from the caller's object for the length of a call.
///
/// A `bytes` key is borrowed as is. A `str` key is encoded to UTF-8 once, into a
/// `bytes` object that lives as long as this value: the abi3-py39 limited API has no
/// borrowed UTF-8 view of a `str` (`PyUnicode_AsUTF8AndSize` joined it in 3.10), and
/// borrowing the encoded object saves the second copy into a Rust `String` that
/// `PyString::to_cow` makes.
pub(crate) enum Key<'a, 'py> {
    Borrowed(&'a [u8]),
    Encoded(Bound<'py, PyBytes>),
}

impl std::ops::Deref for Key<'_, '_> {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Key::Borrowed(b) => b,
            Key::Encoded(b) => b.as_bytes(),
        }
    }
}

impl Key<'_, '_> {
    /// A copy that outlives the call (for futures that run on the runtime).
    pub(crate) fn into_owned(self) -> Vec<u8> {
        self.to_vec()
    }
}

/// The bytes of a key: borrowed from a `bytes` object, or the UTF-8 of a `str`.
///
/// This is on the hit path, so the checks are ordered by likelihood and cost: an exact
/// `str`/`bytes` type check is a pointer comparison.
#[inline]
pub(crate) fn key<'a, 'py>(obj: &'a Bound<'py, PyAny>) -> PyResult<Key<'a, 'py>> {
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Ok(Key::Encoded(s.encode_utf8()?));
    }
    if let Ok(b) = obj.cast_exact::<PyBytes>() {
        return Ok(Key::Borrowed(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Key::Encoded(s.encode_utf8()?));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Key::Borrowed(b.as_bytes()));
    }
    Err(PyTypeError::new_err(format!(
        "key must be str or bytes, not {}",
        type_name(obj)
    )))
}

/// A key back in Python: the loader's argument. `str` (UTF-8, with `surrogateescape`
/// for bytes that are not UTF-8) unless the group was built with `bytes_keys=True`.
pub(crate) fn key_to_py<'py>(py: Python<'py>, key: &[u8], as_bytes: bool) -> PyResult<Bound<'py, PyAny>> {
    if as_bytes {
        return Ok(PyBytes::new(py, key).into_any());
    }
    match std::str::from_utf8(key) {
        Ok(s) => Ok(PyString::new(py, s).into_any()),
        Err(_) => PyBytes::new(py, key).call_method1("decode", ("utf-8", "surrogateescape")),
    }
}

/// A value from Python: any bytes-like object, copied into the cache.
pub(crate) fn value(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Bytes::from(b.to_vec()));
    }
    if obj.cast::<PyMemoryView>().is_ok() {
        let b = obj.call_method0("tobytes")?;
        return Ok(Bytes::copy_from_slice(b.cast::<PyBytes>()?.as_bytes()));
    }
    let hint = if obj.is_instance_of::<PyString>() {
        " (encode str values first, e.g. value.encode())"
    } else {
        ""
    };
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes, bytearray or memoryview, not {}{hint}",
        type_name(obj)
    )))
}

/// A value out to Python: one copy into a new `bytes`.
#[inline]
pub(crate) fn value_to_py<'py>(py: Python<'py>, v: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, v)
}

/// A number of seconds (int or float, not bool) or `None`; `TypeError` for anything else.
fn seconds(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<f64>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if obj.is_instance_of::<pyo3::types::PyBool>()
        || !(obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>())
    {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a number of seconds (int or float) or None, not {}",
            type_name(obj)
        )));
    }
    obj.extract().map(Some)
}

/// A TTL in seconds (int or float) or `None`.
pub(crate) fn ttl(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Duration>> {
    let Some(secs) = seconds(obj, what)? else {
        return Ok(None);
    };
    Duration::try_from_secs_f64(secs).map(Some).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a finite, non-negative number of seconds, not {secs}"
        ))
    })
}

/// A duration in seconds where zero turns a feature off (`warm_window`,
/// `handoff_timeout`), or `None` (core's default). Negative, infinite or NaN raise
/// `InvalidArgument` (a `ValueError`).
pub(crate) fn off_or_seconds(
    py: Python<'_>,
    obj: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<Duration>> {
    let Some(secs) = seconds(obj, what)? else {
        return Ok(None);
    };
    Duration::try_from_secs_f64(secs).map(Some).map_err(|_| {
        errors::invalid(
            py,
            format!("{what} must be a finite, non-negative number of seconds (0 turns it off), not {secs}"),
        )
    })
}

/// A timeout or deadline in seconds: a positive `int` or `float`, or `None` (none).
/// Zero, negative, infinite or NaN raise `InvalidArgument` (a `ValueError`).
pub(crate) fn timeout(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Duration>> {
    let Some(obj) = obj else { return Ok(None) };
    let Some(secs) = seconds(Some(obj), what)? else {
        return Ok(None);
    };
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(Some(d)),
        _ => Err(errors::invalid(
            obj.py(),
            format!("{what} must be a finite number of seconds greater than zero, or None, not {secs}"),
        )),
    }
}

/// A byte size: an `int`, or a string like `"64MiB"` parsed by the core's `parse_size`.
pub(crate) fn size(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<usize> {
    let py = obj.py();
    if let Ok(s) = obj.cast::<PyString>() {
        return meshcache::parse_size(&s.to_cow()?).map_err(|e| errors::to_py(py, e, None));
    }
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<pyo3::types::PyBool>() {
        let n: i128 = obj.extract()?;
        return usize::try_from(n).map_err(|_| {
            errors::invalid(
                py,
                format!("{what} must be a non-negative number of bytes, not {n}"),
            )
        });
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be an int number of bytes or a string like \"64MiB\", not {}",
        type_name(obj)
    )))
}

/// Parses a byte size like "64MiB", "1.5 GiB" or "512kB" (units as in the Rust core).
#[pyfunction]
pub(crate) fn parse_size(text: &Bound<'_, PyAny>) -> PyResult<usize> {
    size(text, "size")
}
