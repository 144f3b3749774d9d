//! Group options: `meshcache_group_options` and its setters, read by `meshcache_group_new`.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use meshcache::{Clock, GroupBuilder};

use crate::error::{Fail, arg, arg_mut, ffi, ffi_infallible, invalid, out_arg, str_arg};
use crate::loader::{BlockingLoader, CLoader, meshcache_loader_fn, meshcache_user_data_free_fn, ttl_arg};
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
    replicas: Option<usize>,
    replicate_loads: Option<bool>,
    loader: Option<Arc<CLoader>>,
    clock: Option<Arc<dyn Clock>>,
}

impl meshcache_group_options {
    /// `b` with every option set in these options (the others keep the core's defaults).
    pub(crate) fn apply(&self, mut b: GroupBuilder) -> GroupBuilder {
        if let Some(v) = self.capacity {
            b = b.capacity(v);
        }
        if let Some(v) = self.default_ttl {
            b = b.default_ttl(v);
        }
        if let Some(v) = self.negative_ttl {
            b = b.negative_ttl(v);
        }
        if let Some(v) = self.max_key_len {
            b = b.max_key_len(v);
        }
        if let Some(v) = self.max_value_len {
            b = b.max_value_len(v);
        }
        if let Some(v) = self.hot_sample {
            b = b.hot_sample(v);
        }
        if let Some(v) = self.load_timeout {
            b = b.load_timeout(v);
        }
        if let Some(v) = self.replicas {
            b = b.replicas(v);
        }
        if let Some(v) = self.replicate_loads {
            b = b.replicate_loads(v);
        }
        if let Some(v) = &self.clock {
            b = b.clock(v.clone());
        }
        if let Some(l) = &self.loader {
            b = b.loader(BlockingLoader(l.clone()));
        }
        b
    }
}

/// New group options with the defaults: capacity 64 MiB, no default TTL, negative TTL
/// 5000 ms, keys up to 1024 bytes, values up to 8 MiB, 1 replica (the owner only) and
/// loads not replicated, no loader (every miss is NotFound), the system clock.
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

/// How many nodes hold each key written with `meshcache_group_set` (or removed with
/// `meshcache_group_delete`): the key's owner and the next `n - 1` distinct nodes on the
/// ring. Default 1 (the owner only); 0 is refused by `meshcache_group_new`. A set writes
/// to every replica at once and returns when all have answered; it fails only if the
/// owner failed (a replica's failure is counted in `replica_write_errors`). A get whose
/// owner cannot be reached asks the next replica before loading locally, so a written
/// value survives `n - 1` dead nodes (`replica_reads` counts those answers).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_replicas(
    options: *mut meshcache_group_options,
    n: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.replicas = Some(n);
            Ok(())
        })
    }
}

/// Whether values the loader returned are written to the key's replicas too (in the
/// background, after the load). Default false: a loaded value can be loaded again, so
/// replicating it costs every miss `replicas - 1` writes for nothing a reload cannot
/// restore; turn it on when loads are expensive enough that a dead owner's keys should
/// not be reloaded. No effect with 1 replica.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_group_options_set_replicate_loads(
    options: *mut meshcache_group_options,
    on: bool,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.replicate_loads = Some(on);
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
