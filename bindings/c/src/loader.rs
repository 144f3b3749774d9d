//! The C loader: a callback run on a blocking thread of the cluster's runtime, through
//! the core's `blocking_load` (which also makes a get of the key being loaded, from the
//! callback, fail instead of waiting for itself).

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshcache::{Error, ErrorKind, LoadFuture, Loaded, Loader};

use crate::error::{arg_mut, bytes_arg, ffi, str_arg};
use crate::meshcache_result;

/// A TTL argument meaning "the group's default" (for a loaded or set value: the group's
/// default TTL; for a NotFound: the group's negative TTL).
pub const MESHCACHE_TTL_DEFAULT: u64 = 0;
/// A TTL argument meaning "never expires" (the entry may still be evicted).
pub const MESHCACHE_TTL_NEVER: u64 = u64::MAX;

/// A TTL in milliseconds as the core takes it.
pub(crate) fn ttl_arg(ms: u64) -> Option<Duration> {
    match ms {
        MESHCACHE_TTL_DEFAULT => None,
        MESHCACHE_TTL_NEVER => Some(Duration::MAX),
        ms => Some(Duration::from_millis(ms)),
    }
}

/// Where a loader puts its answer: exactly one of `meshcache_loader_out_set_value`,
/// `meshcache_loader_out_set_not_found` or `meshcache_loader_out_set_error` (the last
/// call wins). A loader that sets nothing fails the get with `MESHCACHE_LOAD`.
///
/// Owned by meshcache and valid only during the callback.
#[derive(Debug, Default)]
pub struct meshcache_loader_out {
    result: Option<Result<Loaded, Error>>,
    /// Test hook: panic in Rust once the callback returns.
    #[cfg(feature = "test-hooks")]
    pub(crate) inject_panic: bool,
}

/// A loader: called on a miss, for a key this node owns (or any key while its owner is
/// unreachable), with the key's bytes (valid only during the call) and `out`, where it
/// puts the value, NotFound or an error.
///
/// Threads: it runs on a blocking thread of the cluster's runtime (not the thread that
/// called get), so it may block (on a database, a file, a lock). It runs at most once at a
/// time per key in the process, and may run concurrently for different keys: it must be
/// thread-safe, and so must `user_data`.
///
/// Calling back into meshcache from a loader is allowed: a get of another key (in this or
/// another group) works, and may itself load. A get (or get_many) of the very key being
/// loaded, in the same group, would wait for itself: it is detected and returns
/// `MESHCACHE_INVALID_ARGUMENT` instead of deadlocking. A cycle through several keys
/// (A's loader gets B, B's loader gets A) or through another node is not detected and
/// deadlocks. `meshcache_cluster_shutdown` and `meshcache_cluster_free` must not be called
/// from a loader.
pub type meshcache_loader_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const u8,
        key_len: usize,
        out: *mut meshcache_loader_out,
    ),
>;

/// Releases a loader's `user_data` when the last group using the loader is gone.
pub type meshcache_user_data_free_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A C loader and its user data.
#[derive(Debug)]
pub(crate) struct CLoader {
    callback: unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut meshcache_loader_out),
    user_data: *mut c_void,
    free_user_data: meshcache_user_data_free_fn,
}

// Safety: the loader's contract (header) requires the callback and `user_data` to be
// usable from any thread, concurrently.
unsafe impl Send for CLoader {}
// Safety: as above.
unsafe impl Sync for CLoader {}

impl Drop for CLoader {
    fn drop(&mut self) {
        if let Some(free) = self.free_user_data {
            // Safety: the destructor the caller gave for this `user_data`, called once.
            unsafe { free(self.user_data) };
        }
    }
}

impl CLoader {
    pub(crate) fn new(
        callback: meshcache_loader_fn,
        user_data: *mut c_void,
        free_user_data: meshcache_user_data_free_fn,
    ) -> Option<Arc<CLoader>> {
        Some(Arc::new(CLoader {
            callback: callback?,
            user_data,
            free_user_data,
        }))
    }

    /// Runs the callback for `key` on this (blocking) thread.
    fn call(&self, key: &Bytes) -> Result<Loaded, Error> {
        let mut out = meshcache_loader_out::default();
        // Safety: the callback's contract; `key` and `out` stay valid during the call.
        unsafe { (self.callback)(self.user_data, key.as_ptr(), key.len(), &mut out) };
        #[cfg(feature = "test-hooks")]
        if out.inject_panic {
            panic!("panic injected in the loader path by a test");
        }
        out.result.unwrap_or_else(|| {
            Err(Error::new(
                ErrorKind::Load,
                "the loader set no result (call meshcache_loader_out_set_value, _set_not_found or _set_error)",
            ))
        })
    }
}

/// The core `Loader` of a C loader: the callback runs through `meshcache::blocking_load`,
/// on the runtime's blocking pool (so it may block without stalling the runtime's
/// workers), inside the load's scope (so a get of its own key fails with
/// `MESHCACHE_INVALID_ARGUMENT`), and a panic on the way is `MESHCACHE_PANIC`.
#[derive(Debug)]
pub(crate) struct BlockingLoader(pub(crate) Arc<CLoader>);

impl Loader for BlockingLoader {
    fn load(&self, key: Bytes) -> LoadFuture {
        let loader = self.0.clone();
        Box::pin(async move { meshcache::blocking_load(move || loader.call(&key)).await? })
    }
}

/// The loader found the key: cache `len` bytes at `data` (copied) for `ttl_ms`
/// milliseconds (`MESHCACHE_TTL_DEFAULT`: the group's default TTL; `MESHCACHE_TTL_NEVER`).
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for a NULL `out`, or a NULL `data` with a
/// non-zero `len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_loader_out_set_value(
    out: *mut meshcache_loader_out,
    data: *const u8,
    len: usize,
    ttl_ms: u64,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `out` is the live loader output by contract.
        let out = unsafe { arg_mut(out, "out") }?;
        // Safety: `(data, len)` is readable by contract.
        let data = unsafe { bytes_arg(data, len, "data") }?;
        let mut loaded = Loaded::value(Bytes::copy_from_slice(data));
        if let Some(ttl) = ttl_arg(ttl_ms) {
            loaded = loaded.with_ttl(ttl);
        }
        out.result = Some(Ok(loaded));
        Ok(())
    })
}

/// The key does not exist: remember that for `ttl_ms` milliseconds
/// (`MESHCACHE_TTL_DEFAULT`: the group's negative TTL). Callers get `MESHCACHE_NOT_FOUND`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_loader_out_set_not_found(
    out: *mut meshcache_loader_out,
    ttl_ms: u64,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `out` is the live loader output by contract.
        let out = unsafe { arg_mut(out, "out") }?;
        let mut loaded = Loaded::not_found();
        if let Some(ttl) = ttl_arg(ttl_ms) {
            loaded = loaded.with_ttl(ttl);
        }
        out.result = Some(Ok(loaded));
        Ok(())
    })
}

/// The load failed with `message` (a NUL-terminated UTF-8 string, copied; NULL for none).
/// Every caller waiting for the key gets `MESHCACHE_LOAD` and the message in
/// `meshcache_last_error_message()`; nothing is cached, the next get loads again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_loader_out_set_error(
    out: *mut meshcache_loader_out,
    message: *const c_char,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `out` is the live loader output by contract.
        let out = unsafe { arg_mut(out, "out") }?;
        let message = if message.is_null() {
            "loader error".to_string()
        } else {
            // Safety: a non-NULL `message` is NUL-terminated by contract.
            unsafe { str_arg(message, "message") }?.to_string()
        };
        out.result = Some(Err(Error::load(message)));
        Ok(())
    })
}
