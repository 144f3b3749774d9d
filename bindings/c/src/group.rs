//! Groups: creation, get/peek/get_many/set/delete, the stats call, free.

use std::ffi::c_char;
use std::time::Duration;

use bytes::Bytes;
use meshcache::deadline::within;
use meshcache::{Group, Now};
use tokio::runtime::Handle;

use crate::cluster::meshcache_cluster;
use crate::error::{Fail, arg, bytes_arg, ffi, ffi_infallible, invalid, out_arg, str_arg};
use crate::group_options::meshcache_group_options;
use crate::loader::ttl_arg;
use crate::meshcache_result;
use crate::stats::meshcache_group_stats;
use crate::value::{meshcache_bytes, meshcache_entries, meshcache_value};

/// One named cache served by a cluster: a byte-bounded store, a loader, TTLs.
/// Thread-safe: every function may be called from any thread, concurrently.
#[derive(Debug)]
pub struct meshcache_group {
    pub(crate) group: Group,
    /// The cluster's runtime, which calls that wait block on.
    pub(crate) rt: Handle,
}

/// Creates the group `name` (a NUL-terminated UTF-8 string) in `cluster`, into `*out`.
/// `options` may be NULL for the defaults, and is not taken. Every node of a cluster
/// creates its groups with the same names. Free with `meshcache_group_free`.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for NULL pointers, an empty name or one the
/// cluster already has, a zero capacity, key or value limit, load timeout or replica
/// count; `MESHCACHE_CLOSED` after shutdown.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_new(
    cluster: *const meshcache_cluster,
    name: *const c_char,
    options: *const meshcache_group_options,
    out: *mut *mut meshcache_group,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        // Safety: `name` is NUL-terminated by contract.
        let name = unsafe { str_arg(name, "name") }?;
        out_arg(out, "out")?;
        let defaults = meshcache_group_options::default();
        // Safety: a non-NULL `options` is live by contract.
        let o = unsafe { options.as_ref() }.unwrap_or(&defaults);
        let group = o.apply(c.cluster.group(name)).build()?;
        let g = Box::new(meshcache_group {
            group,
            rt: c.cluster.runtime().clone(),
        });
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = Box::into_raw(g) };
        Ok(())
    })
}

/// Frees the handle `group`. The group stays in its cluster until the cluster is freed.
/// Values already returned stay readable. Does nothing for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_free(group: *mut meshcache_group) {
    ffi_infallible((), || {
        if !group.is_null() {
            // Safety: came from `Box::into_raw` in meshcache_group_new, freed once.
            drop(unsafe { Box::from_raw(group) });
        }
    })
}

/// The value of the key `(key, key_len)` into `*out` (an owned value: release it with
/// `meshcache_value_free`): from this node's store, else from the key's owner, which loads
/// it once in the whole cluster (or from the loader here, if this node owns it).
///
/// A hit returns at once without entering the runtime. A miss blocks the calling thread
/// until the value is loaded or fetched; the loader runs on another thread (see
/// `meshcache_loader_fn`).
///
/// Returns `MESHCACHE_NOT_FOUND` if the loader says so (also when remembered for the
/// negative TTL), `MESHCACHE_LOAD` if it failed, `MESHCACHE_PANIC` if Rust code on the
/// load path panicked, `MESHCACHE_INVALID_ARGUMENT` for NULL pointers, an empty or
/// oversized key, an oversized loaded value, or a loader getting its own key;
/// `MESHCACHE_PEER`/`MESHCACHE_TIMEOUT` if the owner failed; `MESHCACHE_CLOSED` after
/// shutdown.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_get(
    group: *const meshcache_group,
    key: *const u8,
    key_len: usize,
    out: *mut meshcache_value,
) -> meshcache_result {
    ffi(|| {
        // Safety: by this function's contract.
        unsafe { get(group, key, key_len, out, None) }
    })
}

/// As `meshcache_group_get`, but this caller waits at most `timeout_ms` milliseconds
/// (> 0) for a miss. Blocks the calling thread, like `meshcache_group_get`; a hit
/// returns at once, whatever the deadline.
///
/// On expiry returns `MESHCACHE_TIMEOUT`: only this caller stops waiting. The load it
/// waited for (or started) goes on, on the loader's thread, and its value is cached and
/// returned to every other caller waiting for it. (For a limit on the load itself, see
/// `meshcache_group_options_set_load_timeout_ms`.)
///
/// Returns what `meshcache_group_get` returns, `MESHCACHE_TIMEOUT`, and
/// `MESHCACHE_INVALID_ARGUMENT` for a zero `timeout_ms`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_get_with_timeout(
    group: *const meshcache_group,
    key: *const u8,
    key_len: usize,
    timeout_ms: u64,
    out: *mut meshcache_value,
) -> meshcache_result {
    ffi(|| {
        let limit = deadline_arg(timeout_ms)?;
        // Safety: by this function's contract.
        unsafe { get(group, key, key_len, out, Some(limit)) }
    })
}

/// A caller's deadline in milliseconds: zero is refused.
fn deadline_arg(timeout_ms: u64) -> Result<Duration, Fail> {
    if timeout_ms == 0 {
        return Err(invalid("timeout_ms must be greater than zero").into());
    }
    Ok(Duration::from_millis(timeout_ms))
}

/// The body of `meshcache_group_get` and `_with_timeout`; `limit` bounds a miss's wait.
///
/// # Safety
///
/// As `meshcache_group_get`.
unsafe fn get(
    group: *const meshcache_group,
    key: *const u8,
    key_len: usize,
    out: *mut meshcache_value,
    limit: Option<Duration>,
) -> Result<(), Fail> {
    // Safety: a non-NULL `group` is live by contract.
    let g = unsafe { arg(group, "group") }?;
    // Safety: `(key, key_len)` is readable by contract.
    let key = unsafe { bytes_arg(key, key_len, "key") }?;
    out_arg(out, "out")?;
    // A hit is answered here, on this thread; only a miss enters the runtime (and only a
    // miss is bounded by the deadline). A loader's get of its own key is refused by the
    // core (`Err`) instead of waiting.
    let v = match g.group.get_now(key)? {
        Now::Ready(v) => v,
        Now::Pending(rest) => g.rt.block_on(within(limit, rest))?,
    };
    // Safety: `out` is non-NULL and writable by contract.
    unsafe { meshcache_value::write(out, v) };
    Ok(())
}

/// The value of the key if it is resident on this node, into `*out`, without loading,
/// without asking other nodes and without waiting.
///
/// Returns `MESHCACHE_NOT_FOUND` if it is not resident (or cached as not existing),
/// `MESHCACHE_INVALID_ARGUMENT` for NULL pointers or a bad key, `MESHCACHE_CLOSED` after
/// shutdown.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_peek(
    group: *const meshcache_group,
    key: *const u8,
    key_len: usize,
    out: *mut meshcache_value,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `group` is live by contract.
        let g = unsafe { arg(group, "group") }?;
        // Safety: `(key, key_len)` is readable by contract.
        let key = unsafe { bytes_arg(key, key_len, "key") }?;
        out_arg(out, "out")?;
        let v = g.group.peek(key)?.ok_or_else(meshcache::Error::not_found)?;
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { meshcache_value::write(out, v) };
        Ok(())
    })
}

/// The values of the `n_keys` keys at `keys` that exist, into `*out` (free with
/// `meshcache_entries_free`), in the order asked, each key once. Misses load
/// concurrently; keys owned by another node are fetched with one call per node. Keys that
/// do not exist are left out (not an error).
///
/// Returns the first error other than NotFound, as `meshcache_group_get`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_get_many(
    group: *const meshcache_group,
    keys: *const meshcache_bytes,
    n_keys: usize,
    out: *mut *mut meshcache_entries,
) -> meshcache_result {
    ffi(|| {
        // Safety: by this function's contract.
        unsafe { get_many(group, keys, n_keys, out, None) }
    })
}

/// As `meshcache_group_get_many`, but this caller waits at most `timeout_ms`
/// milliseconds (> 0) for all the keys. Blocks the calling thread.
///
/// On expiry returns `MESHCACHE_TIMEOUT` (and no entries, not even the keys already
/// answered): only this caller stops waiting; the loads and fetches it started or joined
/// go on, and their values are cached and returned to every other caller waiting.
///
/// Returns what `meshcache_group_get_many` returns, `MESHCACHE_TIMEOUT`, and
/// `MESHCACHE_INVALID_ARGUMENT` for a zero `timeout_ms`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_get_many_with_timeout(
    group: *const meshcache_group,
    keys: *const meshcache_bytes,
    n_keys: usize,
    timeout_ms: u64,
    out: *mut *mut meshcache_entries,
) -> meshcache_result {
    ffi(|| {
        let limit = deadline_arg(timeout_ms)?;
        // Safety: by this function's contract.
        unsafe { get_many(group, keys, n_keys, out, Some(limit)) }
    })
}

/// The body of `meshcache_group_get_many` and `_with_timeout`; `limit` bounds the wait.
///
/// # Safety
///
/// As `meshcache_group_get_many`.
unsafe fn get_many(
    group: *const meshcache_group,
    keys: *const meshcache_bytes,
    n_keys: usize,
    out: *mut *mut meshcache_entries,
    limit: Option<Duration>,
) -> Result<(), Fail> {
    // Safety: a non-NULL `group` is live by contract.
    let g = unsafe { arg(group, "group") }?;
    out_arg(out, "out")?;
    if keys.is_null() && n_keys != 0 {
        return Err(invalid("keys is NULL").into());
    }
    let mut list: Vec<&[u8]> = Vec::with_capacity(n_keys);
    for i in 0..n_keys {
        // Safety: `keys` has `n_keys` readable entries by contract, each a readable
        // buffer (checked for NULL by bytes_arg).
        let k = unsafe { *keys.add(i) };
        let k = unsafe { bytes_arg(k.data, k.len, "keys[i]") }?;
        list.push(k);
    }
    let items: Vec<(Bytes, Bytes)> = g.rt.block_on(within(limit, g.group.get_many(&list)))?;
    // Safety: `out` is non-NULL and writable by contract.
    unsafe { *out = Box::into_raw(Box::new(meshcache_entries { items })) };
    Ok(())
}

/// Caches `(value, value_len)` (copied) for the key for `ttl_ms` milliseconds
/// (`MESHCACHE_TTL_DEFAULT`: the group's default TTL; `MESHCACHE_TTL_NEVER`), on the
/// key's owner; other nodes drop their mirrors of it. Blocks until done.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for NULL pointers, a bad key or an oversized
/// value; `MESHCACHE_PEER`/`MESHCACHE_TIMEOUT` if the owner could not be reached (nothing
/// is cached then); `MESHCACHE_CLOSED` after shutdown.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_set(
    group: *const meshcache_group,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    ttl_ms: u64,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `group` is live by contract.
        let g = unsafe { arg(group, "group") }?;
        // Safety: both buffers are readable by contract.
        let key = unsafe { bytes_arg(key, key_len, "key") }?;
        let value = unsafe { bytes_arg(value, value_len, "value") }?;
        let value = Bytes::copy_from_slice(value);
        g.rt.block_on(g.group.set(key, value, ttl_arg(ttl_ms)))?;
        Ok(())
    })
}

/// Removes the key on its owner and every mirror of it on every node. Deleting a key
/// that is not cached succeeds.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for NULL pointers or a bad key;
/// `MESHCACHE_PEER`/`MESHCACHE_TIMEOUT` if the owner could not be reached (mirrors are
/// removed anyway); `MESHCACHE_CLOSED` after shutdown.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_delete(
    group: *const meshcache_group,
    key: *const u8,
    key_len: usize,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `group` is live by contract.
        let g = unsafe { arg(group, "group") }?;
        // Safety: `(key, key_len)` is readable by contract.
        let key = unsafe { bytes_arg(key, key_len, "key") }?;
        g.rt.block_on(g.group.delete(key))?;
        Ok(())
    })
}

/// The group's counters into `*out`. Works after shutdown too.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_stats_get(
    group: *const meshcache_group,
    out: *mut meshcache_group_stats,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `group` is live by contract.
        let g = unsafe { arg(group, "group") }?;
        out_arg(out, "out")?;
        let stats = meshcache_group_stats::from(g.group.stats());
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = stats };
        Ok(())
    })
}
