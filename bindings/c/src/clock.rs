//! A manual clock, so that C tests can expire entries without sleeping.

use std::sync::Arc;
use std::time::Duration;

use meshcache::{Clock, ManualClock};

use crate::error::{arg, ffi, ffi_infallible, out_arg};
use crate::meshcache_result;

/// A clock that only moves when told to, for tests of TTLs: give it to groups with
/// `meshcache_group_options_set_clock`, then move it with `meshcache_clock_advance`.
/// Thread-safe. Groups keep their own reference: the clock may be freed before them.
#[derive(Debug)]
pub struct meshcache_clock {
    pub(crate) clock: ManualClock,
}

impl meshcache_clock {
    pub(crate) fn shared(&self) -> Arc<dyn Clock> {
        Arc::new(self.clock.clone())
    }
}

/// A new manual clock reading `start_ms` (milliseconds since the Unix epoch) into `*out`.
/// Free it with `meshcache_clock_free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_clock_new(
    start_ms: u64,
    out: *mut *mut meshcache_clock,
) -> meshcache_result {
    ffi(|| {
        out_arg(out, "out")?;
        let clock = Box::new(meshcache_clock {
            clock: ManualClock::new(start_ms),
        });
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = Box::into_raw(clock) };
        Ok(())
    })
}

/// Moves `clock` forward by `ms` milliseconds.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_clock_advance(clock: *const meshcache_clock, ms: u64) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `clock` is live by contract.
        unsafe { arg(clock, "clock") }?
            .clock
            .advance(Duration::from_millis(ms));
        Ok(())
    })
}

/// Sets `clock` to `now_ms`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_clock_set(clock: *const meshcache_clock, now_ms: u64) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `clock` is live by contract.
        unsafe { arg(clock, "clock") }?.clock.set(now_ms);
        Ok(())
    })
}

/// The time `clock` reads, into `*out_ms`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_clock_now(
    clock: *const meshcache_clock,
    out_ms: *mut u64,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `clock` is live by contract.
        let c = unsafe { arg(clock, "clock") }?;
        out_arg(out_ms, "out_ms")?;
        // Safety: `out_ms` is non-NULL and writable by contract.
        unsafe { *out_ms = c.clock.now_ms() };
        Ok(())
    })
}

/// Frees `clock` (groups using it keep working). Does nothing for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_clock_free(clock: *mut meshcache_clock) {
    ffi_infallible((), || {
        if !clock.is_null() {
            // Safety: came from `Box::into_raw` in meshcache_clock_new, freed once.
            drop(unsafe { Box::from_raw(clock) });
        }
    })
}
