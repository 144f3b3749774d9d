//! Result codes, the per-thread last error, the panic boundary and argument checks.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

use meshcache::{Error, ErrorKind, panic_message};

/// The result of every fallible meshcache function. The numbers are part of the ABI:
/// they are never changed nor reused, and new codes only get new numbers.
///
/// The message of the last failure on the calling thread is available from
/// `meshcache_last_error_message()`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum meshcache_result {
    /// Success. Outputs were written.
    MESHCACHE_OK = 0,
    /// The key does not exist (the loader said so, possibly on another node, or remembered
    /// from a recent load), or for `peek`, is not resident; for
    /// `meshcache_cluster_metrics_addr`, there is no metrics server.
    MESHCACHE_NOT_FOUND = 1,
    /// The loader failed (it called `meshcache_loader_out_set_error`, or set nothing).
    MESHCACHE_LOAD = 2,
    /// A peer could not be reached or answered with an error.
    MESHCACHE_PEER = 3,
    /// A deadline passed before the operation completed.
    MESHCACHE_TIMEOUT = 4,
    /// A NULL pointer, a string that is not UTF-8, an empty or oversized key or value, an
    /// address that does not parse, a duplicate group name, or a call that would deadlock.
    MESHCACHE_INVALID_ARGUMENT = 5,
    /// The cluster (or the group) was shut down.
    MESHCACHE_CLOSED = 6,
    /// Rust code panicked; the panic was caught and the process lives on.
    MESHCACHE_PANIC = 7,
    /// An output buffer was too small; nothing was written.
    MESHCACHE_INSUFFICIENT_SIZE = 8,
    /// An error of a kind this version of the header does not know.
    MESHCACHE_UNKNOWN = 99,
}

use meshcache_result::*;

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure of an exported function: an error, and the code to return for it (its
/// kind's code, or one with no kind such as `MESHCACHE_INSUFFICIENT_SIZE`).
#[derive(Debug)]
pub(crate) struct Fail {
    code: meshcache_result,
    error: Error,
}

impl From<Error> for Fail {
    fn from(error: Error) -> Self {
        Fail {
            code: code_of(error.kind()),
            error,
        }
    }
}

/// The C code of an error kind (the table in DESIGN.md).
pub(crate) fn code_of(kind: ErrorKind) -> meshcache_result {
    match kind {
        ErrorKind::NotFound => MESHCACHE_NOT_FOUND,
        ErrorKind::Load => MESHCACHE_LOAD,
        ErrorKind::Peer => MESHCACHE_PEER,
        ErrorKind::Timeout => MESHCACHE_TIMEOUT,
        ErrorKind::InvalidArgument => MESHCACHE_INVALID_ARGUMENT,
        ErrorKind::Closed => MESHCACHE_CLOSED,
        ErrorKind::Panic => MESHCACHE_PANIC,
        _ => MESHCACHE_UNKNOWN,
    }
}

/// The last failure on this thread: kept as the error itself and turned into a C string
/// only when asked for, so that a NotFound on a hot path costs no formatting.
struct LastError {
    error: Option<Error>,
    text: Option<CString>,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = const { RefCell::new(LastError { error: None, text: None }) };
}

fn set_last_error(error: Error) {
    // `try_with`: a thread being torn down has no last error to keep.
    let _ = LAST_ERROR.try_with(|l| {
        if let Ok(mut l) = l.try_borrow_mut() {
            l.error = Some(error);
            l.text = None;
        }
    });
}

/// The panic boundary every exported function runs its body in: maps an error to its
/// code and records it as this thread's last error; maps a panic to `MESHCACHE_PANIC`.
pub(crate) fn ffi(body: impl FnOnce() -> Result<(), Fail>) -> meshcache_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => MESHCACHE_OK,
        Ok(Err(Fail { code, error })) => {
            set_last_error(error);
            code
        }
        Err(payload) => {
            set_last_error(Error::new(
                ErrorKind::Panic,
                format!("panic in meshcache: {}", panic_message(&*payload)),
            ));
            MESHCACHE_PANIC
        }
    }
}

/// The panic boundary of functions that cannot fail (`_free`, getters): a panic is
/// recorded as the last error and `fallback` returned.
pub(crate) fn ffi_infallible<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(payload) => {
            set_last_error(Error::new(
                ErrorKind::Panic,
                format!("panic in meshcache: {}", panic_message(&*payload)),
            ));
            fallback
        }
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

/// `ptr` as a shared reference, or InvalidArgument naming `what` if it is NULL.
///
/// # Safety
///
/// A non-NULL `ptr` must point to a live `T` for `'a`.
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, what: &str) -> Result<&'a T> {
    // Safety: non-NULL and live by the caller's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// `ptr` as an exclusive reference, or InvalidArgument naming `what` if it is NULL.
///
/// # Safety
///
/// A non-NULL `ptr` must point to a live `T`, not aliased during `'a`.
pub(crate) unsafe fn arg_mut<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T> {
    // Safety: non-NULL, live and unaliased by the caller's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// Checks that an output pointer is not NULL (it is written later, on success only).
pub(crate) fn out_arg<T>(ptr: *mut T, what: &str) -> Result<()> {
    if ptr.is_null() {
        Err(invalid(format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// The buffer `(ptr, len)`. NULL is accepted only with a length of 0.
///
/// # Safety
///
/// A non-NULL `ptr` must point to `len` readable bytes that stay valid for `'a`.
pub(crate) unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if ptr.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(invalid(format!("{what} is NULL with a length of {len}")))
        };
    }
    if len > isize::MAX as usize {
        return Err(invalid(format!("{what} length {len} is too large")));
    }
    // Safety: non-NULL, `len` readable bytes by the caller's contract, len <= isize::MAX.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The NUL-terminated UTF-8 string at `ptr`.
///
/// # Safety
///
/// A non-NULL `ptr` must point to a NUL-terminated string that stays valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(invalid(format!("{what} is NULL")));
    }
    // Safety: non-NULL and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|_| invalid(format!("{what} is not UTF-8")))
}

/// Writes `s` and a NUL into `(buf, len)`, and its length (without the NUL) to `out_len`.
///
/// # Safety
///
/// `buf` must point to `len` writable bytes; `out_len` must be writable.
pub(crate) unsafe fn write_str(
    s: &str,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> Result<(), Fail> {
    out_arg(buf, "buf")?;
    out_arg(out_len, "out_len")?;
    if s.len() >= len {
        return Err(Fail {
            code: MESHCACHE_INSUFFICIENT_SIZE,
            error: invalid(format!(
                "buffer of {len} bytes is too small for {} bytes and a NUL",
                s.len()
            )),
        });
    }
    // Safety: `buf` has `len > s.len()` writable bytes; `out_len` is writable.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
        *out_len = s.len();
    }
    Ok(())
}

/// The message of the last failure of a meshcache function on the calling thread, as a
/// NUL-terminated string, or "" if none failed yet. Only meaningful right after a
/// function returned something other than `MESHCACHE_OK` (success does not clear it).
///
/// The string is owned by meshcache and valid until the next meshcache call on this
/// thread; copy it to keep it. The text is for people, not API: match on the result code.
#[unsafe(no_mangle)]
pub extern "C" fn meshcache_last_error_message() -> *const c_char {
    ffi_infallible(c"".as_ptr(), || {
        LAST_ERROR
            .try_with(|l| {
                let Ok(mut l) = l.try_borrow_mut() else {
                    return c"".as_ptr();
                };
                if l.text.is_none() {
                    let text = l.error.as_ref().map(|e| e.to_string()).unwrap_or_default();
                    l.text = Some(CString::new(text.replace('\0', "\\0")).unwrap_or_default());
                }
                l.text.as_ref().map_or(c"".as_ptr(), |t| t.as_ptr())
            })
            .unwrap_or(c"".as_ptr())
    })
}

/// The name of a result code (`"MESHCACHE_NOT_FOUND"`), or `"MESHCACHE_UNKNOWN"` for a
/// number that is not one. A static string: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn meshcache_result_name(result: c_int) -> *const c_char {
    let name: &'static CStr = match result {
        0 => c"MESHCACHE_OK",
        1 => c"MESHCACHE_NOT_FOUND",
        2 => c"MESHCACHE_LOAD",
        3 => c"MESHCACHE_PEER",
        4 => c"MESHCACHE_TIMEOUT",
        5 => c"MESHCACHE_INVALID_ARGUMENT",
        6 => c"MESHCACHE_CLOSED",
        7 => c"MESHCACHE_PANIC",
        8 => c"MESHCACHE_INSUFFICIENT_SIZE",
        _ => c"MESHCACHE_UNKNOWN",
    };
    name.as_ptr()
}

/// The library version, e.g. `"0.1.0"`. A static string: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn meshcache_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// Parses a byte size such as `"64MiB"`, `"1.5 GiB"`, `"512kB"` or `"4096"` (the same
/// rules in every language) into `*out`.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for NULL pointers or text that is not a size.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_parse_size(text: *const c_char, out: *mut usize) -> meshcache_result {
    ffi(|| {
        // Safety: `text` is NUL-terminated by contract.
        let text = unsafe { str_arg(text, "text") }?;
        out_arg(out, "out")?;
        let n = meshcache::parse_size(text)?;
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = n };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_code_named_after_the_kind() {
        for kind in ErrorKind::ALL {
            let code = code_of(kind);
            assert_ne!(code, MESHCACHE_UNKNOWN, "{kind:?} has no C code");
            // Safety: meshcache_result_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(meshcache_result_name(code as c_int)) };
            assert_eq!(name.to_str().unwrap(), format!("MESHCACHE_{}", kind.as_str()));
        }
    }
}
