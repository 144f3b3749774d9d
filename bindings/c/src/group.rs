//! Groups: options, creation, get/peek/get_many/set/delete, stats.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshcache::deadline::within;
use meshcache::{Clock, Group, GroupStats, Now, TierStats};
use tokio::runtime::Handle;

use crate::cluster::meshcache_cluster;
use crate::error::{Fail, arg, arg_mut, bytes_arg, ffi, ffi_infallible, invalid, out_arg, str_arg};
use crate::loader::{BlockingLoader, CLoader, meshcache_loader_fn, meshcache_user_data_free_fn, ttl_arg};
use crate::value::{meshcache_bytes, meshcache_entries, meshcache_value};
use crate::{meshcache_clock, meshcache_result};

/// Options for `meshcache_group_new`. Create with `meshcache_group_options_new`, free with
/// `meshcache_group_options_free`; may be freed right after use, and may be used for
/// several groups (they then share the loader).
#[derive(Debug, Default)]
pub struct meshcache_group_options {
    capacity: Option<usize>,
    default_ttl: Option<Duration>,
    negative_ttl: Option<Duration>,
    max_key_len: Option<usize>,
    max_value_len: Option<usize>,
    hot_sample: Option<u32>,
    load_timeout: Option<Duration>,
    loader: Option<Arc<CLoader>>,
    clock: Option<Arc<dyn Clock>>,
}

/// One named cache served by a cluster: a byte-bounded store, a loader, TTLs.
/// Thread-safe: every function may be called from any thread, concurrently.
#[derive(Debug)]
pub struct meshcache_group {
    pub(crate) group: Group,
    /// The cluster's runtime, which calls that wait block on.
    pub(crate) rt: Handle,
}

/// Counters of one tier of a group's store (`main` or `hot` in `meshcache_group_stats`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct meshcache_tier_stats {
    /// Entries resident now.
    pub items: u64,
    /// Bytes charged against the budget now (keys, values and overhead).
    pub bytes: u64,
    /// Lookups that consulted this tier (a lookup consults both tiers at once, so both
    /// tiers count every lookup).
    pub gets: u64,
    /// Lookups answered from this tier.
    pub hits: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries removed because their TTL passed.
    pub expirations: u64,
}

impl From<TierStats> for meshcache_tier_stats {
    fn from(t: TierStats) -> Self {
        // Every field by name: a counter added to the core fails to compile here.
        let TierStats {
            items,
            bytes,
            gets,
            hits,
            evictions,
            expirations,
        } = t;
        meshcache_tier_stats {
            items,
            bytes,
            gets,
            hits,
            evictions,
            expirations,
        }
    }
}

/// Counters of a group, a snapshot (fields are read one by one). The same names, in the
/// same shape, as in every language: the group's counters, then its two tiers.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct meshcache_group_stats {
    /// Calls to get and peek, and keys asked for by get_many.
    pub gets: u64,
    /// Gets answered from this node's main tier without loading.
    pub hits: u64,
    /// Gets answered from the hot tier (mirrors of keys other nodes own).
    pub hot_hits: u64,
    /// Gets that joined a load another caller had started.
    pub deduplicated: u64,
    /// Loader calls on this node.
    pub loads: u64,
    /// Loader calls that failed (error, panic, or an oversized value).
    pub load_errors: u64,
    /// Loader calls that said NotFound.
    pub not_found: u64,
    /// Values fetched from their owner.
    pub remote_fetches: u64,
    /// Owners' answers that the key does not exist.
    pub remote_not_found: u64,
    /// Owners that could not be reached or timed out.
    pub remote_errors: u64,
    /// Loads done here because the owner could not be reached.
    pub fallback_loads: u64,
    /// Values mirrored in the hot tier.
    pub hot_inserts: u64,
    /// Gets served to other nodes.
    pub served: u64,
    /// Peers that could not be told to drop a key on set or delete.
    pub invalidation_errors: u64,
    /// Invalidations delivered on a retry, after a first attempt failed.
    pub invalidations_retried: u64,
    /// Invalidations given up because the retry queue was full.
    pub invalidations_dropped: u64,
    /// The byte budget of the store (both tiers).
    pub capacity: u64,
    /// The main tier: keys this node owns.
    pub main: meshcache_tier_stats,
    /// The hot tier: mirrors of keys other nodes own.
    pub hot: meshcache_tier_stats,
}

impl From<GroupStats> for meshcache_group_stats {
    fn from(s: GroupStats) -> Self {
        // Every field by name: a counter added to the core fails to compile here.
        let GroupStats {
            gets,
            hits,
            hot_hits,
            deduplicated,
            loads,
            load_errors,
            not_found,
            remote_fetches,
            remote_not_found,
            remote_errors,
            fallback_loads,
            hot_inserts,
            served,
            invalidation_errors,
            invalidations_retried,
            invalidations_dropped,
            capacity,
            main,
            hot,
        } = s;
        meshcache_group_stats {
            gets,
            hits,
            hot_hits,
            deduplicated,
            loads,
            load_errors,
            not_found,
            remote_fetches,
            remote_not_found,
            remote_errors,
            fallback_loads,
            hot_inserts,
            served,
            invalidation_errors,
            invalidations_retried,
            invalidations_dropped,
            capacity,
            main: main.into(),
            hot: hot.into(),
        }
    }
}

/// New group options with the defaults: capacity 64 MiB, no default TTL, negative TTL
/// 5000 ms, keys up to 1024 bytes, values up to 8 MiB, no loader (every miss is
/// NotFound), the system clock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_new(
    out: *mut *mut meshcache_group_options,
) -> meshcache_result {
    ffi(|| {
        out_arg(out, "out")?;
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = Box::into_raw(Box::default()) };
        Ok(())
    })
}

/// Frees `options` (and its reference to the loader). Does nothing for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_free(options: *mut meshcache_group_options) {
    ffi_infallible((), || {
        if !options.is_null() {
            // Safety: came from `Box::into_raw` in meshcache_group_options_new, freed once.
            drop(unsafe { Box::from_raw(options) });
        }
    })
}

/// Applies `f` to `options`.
///
/// # Safety
///
/// A non-NULL `options` must be live and not used by another thread meanwhile.
unsafe fn with_options(
    options: *mut meshcache_group_options,
    f: impl FnOnce(&mut meshcache_group_options) -> Result<(), Fail>,
) -> meshcache_result {
    ffi(|| {
        // Safety: by this function's contract.
        let o = unsafe { arg_mut(options, "options") }?;
        f(o)
    })
}

/// The byte budget of the group's store (keys, values and per-entry overhead; > 0, 0 is
/// refused by `meshcache_group_new`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_capacity(
    options: *mut meshcache_group_options,
    bytes: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.capacity = Some(bytes);
            Ok(())
        })
    }
}

/// The byte budget as text, such as `"256MiB"` (see `meshcache_parse_size`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_capacity_str(
    options: *mut meshcache_group_options,
    size: *const c_char,
) -> meshcache_result {
    // Safety: `options` is checked; `size` is NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            let bytes = meshcache::parse_size(str_arg(size, "size")?)?;
            o.capacity = Some(bytes);
            Ok(())
        })
    }
}

/// The TTL of values whose loader or set gives none, in milliseconds
/// (`MESHCACHE_TTL_DEFAULT` or `MESHCACHE_TTL_NEVER`: no expiry, the default).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_default_ttl_ms(
    options: *mut meshcache_group_options,
    ttl_ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.default_ttl = ttl_arg(ttl_ms).filter(|d| *d != Duration::MAX);
            Ok(())
        })
    }
}

/// How long a NotFound is remembered, in milliseconds; 0 disables negative caching.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_negative_ttl_ms(
    options: *mut meshcache_group_options,
    ttl_ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.negative_ttl = Some(Duration::from_millis(ttl_ms));
            Ok(())
        })
    }
}

/// The longest key accepted, in bytes (> 0; 0 is refused by `meshcache_group_new`).
/// Longer keys get `MESHCACHE_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_max_key_len(
    options: *mut meshcache_group_options,
    len: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.max_key_len = Some(len);
            Ok(())
        })
    }
}

/// The largest value accepted, in bytes (> 0; 0 is refused by `meshcache_group_new`),
/// from set or from the loader.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_max_value_len(
    options: *mut meshcache_group_options,
    len: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.max_value_len = Some(len);
            Ok(())
        })
    }
}

/// Mirror one in `n` values fetched from their owner in this node's hot tier (1: every
/// fetch, 0: none; default 10).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_hot_sample(
    options: *mut meshcache_group_options,
    n: u32,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.hot_sample = Some(n);
            Ok(())
        })
    }
}

/// How long a load may take, in milliseconds (> 0; 0 is refused by `meshcache_group_new`;
/// default: no limit). Every get waiting on a loader that has not answered by then returns
/// `MESHCACHE_TIMEOUT`, the key is free for the next get to load again, and what the late
/// loader sets is dropped. The loader callback itself is not interrupted: it keeps its
/// thread until it returns (and `meshcache_cluster_free` still waits for it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_load_timeout_ms(
    options: *mut meshcache_group_options,
    timeout_ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.load_timeout = Some(Duration::from_millis(timeout_ms));
            Ok(())
        })
    }
}

/// The loader called on a miss (see `meshcache_loader_fn` for its threads and rules),
/// with `user_data` passed to every call. `free_user_data` (may be NULL) is called once
/// with `user_data` when the loader is no longer used: when the options and every group
/// built with them are freed, or when another loader replaces this one.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for a NULL `options` or `loader`; `user_data` is
/// then not taken (`free_user_data` is not called).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_loader(
    options: *mut meshcache_group_options,
    loader: meshcache_loader_fn,
    user_data: *mut c_void,
    free_user_data: meshcache_user_data_free_fn,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            let l =
                CLoader::new(loader, user_data, free_user_data).ok_or_else(|| invalid("loader is NULL"))?;
            o.loader = Some(l);
            Ok(())
        })
    }
}

/// Reads time from `clock` (for tests of TTLs) instead of the system clock. The group
/// keeps its own reference to the clock.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_clock(
    options: *mut meshcache_group_options,
    clock: *const meshcache_clock,
) -> meshcache_result {
    // Safety: `options` is checked; a non-NULL `clock` is live by contract.
    unsafe {
        with_options(options, |o| {
            o.clock = Some(arg(clock, "clock")?.shared());
            Ok(())
        })
    }
}

/// Creates the group `name` (a NUL-terminated UTF-8 string) in `cluster`, into `*out`.
/// `options` may be NULL for the defaults, and is not taken. Every node of a cluster
/// creates its groups with the same names. Free with `meshcache_group_free`.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for NULL pointers, an empty name or one the
/// cluster already has, a zero capacity, key or value limit or load timeout; `MESHCACHE_CLOSED`
/// after shutdown.
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
        let mut b = c.cluster.group(name);
        if let Some(v) = o.capacity {
            b = b.capacity(v);
        }
        if let Some(v) = o.default_ttl {
            b = b.default_ttl(v);
        }
        if let Some(v) = o.negative_ttl {
            b = b.negative_ttl(v);
        }
        if let Some(v) = o.max_key_len {
            b = b.max_key_len(v);
        }
        if let Some(v) = o.max_value_len {
            b = b.max_value_len(v);
        }
        if let Some(v) = o.hot_sample {
            b = b.hot_sample(v);
        }
        if let Some(v) = o.load_timeout {
            b = b.load_timeout(v);
        }
        if let Some(v) = &o.clock {
            b = b.clock(v.clone());
        }
        if let Some(l) = &o.loader {
            b = b.loader(BlockingLoader(l.clone()));
        }
        let group = b.build()?;
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
