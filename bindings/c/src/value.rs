//! Values handed to C: [`meshcache_value`] (one owned value, no allocation, no copy) and
//! [`meshcache_entries`] (the results of `get_many`).

use std::mem::{align_of, size_of};
use std::ptr;

use bytes::Bytes;

use crate::error::{Fail, arg, ffi, ffi_infallible, invalid, out_arg};
use crate::meshcache_result;

/// A borrowed buffer: `len` bytes at `data` (`data` may be NULL when `len` is 0).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct meshcache_bytes {
    /// The first byte.
    pub data: *const u8,
    /// The number of bytes.
    pub len: usize,
}

/// An owned value: `len` bytes at `data`, shared with the cache without a copy (a hit
/// takes a reference count on the cached bytes), and released with
/// `meshcache_value_free`.
///
/// The caller provides the storage (usually a local variable), so a get allocates
/// nothing. Read `data` and `len`; never touch `_private`. A value is "empty" when `data`
/// is NULL: zero-initialise it (`meshcache_value v = {0};`) before the first use so that
/// `meshcache_value_free` is always safe to call. A function that outputs a value
/// overwrites it without freeing what it held: free it first.
///
/// The bytes stay valid until `meshcache_value_free`, even if the key is deleted,
/// evicted or the cluster is freed meanwhile. A value may be moved (copied with `=` or
/// `memcpy`) but then only one of the copies may be freed. Freeing it twice is safe
/// (the second call sees an empty value); reading the bytes after the free is not.
#[repr(C)]
#[derive(Debug)]
pub struct meshcache_value {
    /// The first byte, or NULL for an empty (freed or never filled) value. Non-NULL for a
    /// filled value, even one of length 0.
    pub data: *const u8,
    /// The number of bytes.
    pub len: usize,
    /// Private: the reference that keeps the bytes alive.
    pub _private: [usize; 4],
}

// The storage of `_private` holds a `Bytes`.
const _: () = assert!(size_of::<Bytes>() <= size_of::<[usize; 4]>());
const _: () = assert!(align_of::<Bytes>() <= align_of::<[usize; 4]>());

impl meshcache_value {
    /// Writes `b` into `*out`, taking ownership of it.
    ///
    /// # Safety
    ///
    /// `out` must be non-NULL and writable.
    pub(crate) unsafe fn write(out: *mut meshcache_value, b: Bytes) {
        let mut v = meshcache_value {
            data: b.as_ptr(),
            len: b.len(),
            _private: [0; 4],
        };
        debug_assert!(!v.data.is_null(), "a slice pointer is never NULL");
        // Safety: `_private` is large and aligned enough for a `Bytes` (asserted above);
        // the `Bytes` is moved in, and moved out again only by `meshcache_value_free`.
        unsafe { ptr::write(v._private.as_mut_ptr().cast::<Bytes>(), b) };
        // Safety: `out` is writable by contract. Moving `v` moves the `Bytes` bitwise,
        // which is how Rust moves every value.
        unsafe { ptr::write(out, v) };
    }
}

/// Releases the bytes of `value` and marks it empty. Does nothing for NULL or an empty
/// value.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_value_free(value: *mut meshcache_value) {
    ffi_infallible((), || {
        // Safety: a non-NULL `value` points to a meshcache_value by contract.
        let Some(v) = (unsafe { value.as_mut() }) else {
            return;
        };
        if v.data.is_null() {
            return;
        }
        // Safety: a non-NULL `data` means `_private` holds the `Bytes` written by
        // `meshcache_value::write` and not yet read back; reading it moves it out, and the
        // value is marked empty right after, so it is dropped once.
        let b = unsafe { ptr::read(v._private.as_ptr().cast::<Bytes>()) };
        v.data = ptr::null();
        v.len = 0;
        v._private = [0; 4];
        drop(b);
    })
}

/// The results of `meshcache_group_get_many`: the keys that exist, each with its value,
/// in the order asked (each key once). Free with `meshcache_entries_free`.
#[derive(Debug)]
pub struct meshcache_entries {
    pub(crate) items: Vec<(Bytes, Bytes)>,
}

/// The number of entries (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_entries_len(entries: *const meshcache_entries) -> usize {
    ffi_infallible(0, || {
        // Safety: a non-NULL `entries` is live by contract.
        unsafe { entries.as_ref() }.map_or(0, |e| e.items.len())
    })
}

/// Entry `index`: its key and value, borrowed from `entries` (valid until
/// `meshcache_entries_free`). Either output may be NULL if not wanted.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for a NULL `entries` or an index out of range.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_entries_get(
    entries: *const meshcache_entries,
    index: usize,
    key: *mut meshcache_bytes,
    value: *mut meshcache_bytes,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `entries` is live by contract.
        let e = unsafe { arg(entries, "entries") }?;
        let (k, v) = e
            .items
            .get(index)
            .ok_or_else(|| invalid(format!("index {index} out of range ({} entries)", e.items.len())))?;
        // Safety: non-NULL outputs are writable by contract.
        unsafe {
            if !key.is_null() {
                *key = meshcache_bytes {
                    data: k.as_ptr(),
                    len: k.len(),
                };
            }
            if !value.is_null() {
                *value = meshcache_bytes {
                    data: v.as_ptr(),
                    len: v.len(),
                };
            }
        }
        Ok::<(), Fail>(())
    })
}

/// The value of entry `index` as an owned value (no copy), which outlives `entries`.
/// Free it with `meshcache_value_free`.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for NULL pointers or an index out of range.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_entries_value(
    entries: *const meshcache_entries,
    index: usize,
    out: *mut meshcache_value,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `entries` is live by contract.
        let e = unsafe { arg(entries, "entries") }?;
        out_arg(out, "out")?;
        let (_, v) = e
            .items
            .get(index)
            .ok_or_else(|| invalid(format!("index {index} out of range ({} entries)", e.items.len())))?;
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { meshcache_value::write(out, v.clone()) };
        Ok(())
    })
}

/// Frees `entries`. Does nothing for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_entries_free(entries: *mut meshcache_entries) {
    ffi_infallible((), || {
        if !entries.is_null() {
            // Safety: a non-NULL `entries` came from `Box::into_raw` in get_many and is
            // freed once by contract.
            drop(unsafe { Box::from_raw(entries) });
        }
    })
}
