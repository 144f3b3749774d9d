//! Strings handed to C and owned by the caller (the metrics text, the status JSON):
//! written by [`write_owned_str`], released with [`meshcache_string_free`].
//!
//! Each is one allocation, `[length: usize][bytes][NUL]`, and the caller gets a pointer
//! to the bytes. The free reads the length back from the header rather than from the
//! bytes (as `CString::from_raw` would with `strlen`), so the caller may modify the
//! string in place, `strtok` included, and its free still releases exactly what was
//! allocated.

use std::borrow::Cow;
use std::ffi::c_char;
use std::mem::size_of;
use std::ptr;

use crate::error::{Fail, ffi_infallible, out_arg};

const HEADER: usize = size_of::<usize>();

/// Hands `s` to C: a NUL-terminated copy (a NUL inside `s` is written as `\0`, so that
/// the C string is all of it) in `*out`, freed by `meshcache_string_free`, and its
/// length without the NUL in `*out_len` unless `out_len` is NULL.
///
/// # Safety
///
/// `out` must be writable; a non-NULL `out_len` too.
pub(crate) unsafe fn write_owned_str(
    s: &str,
    out: *mut *mut c_char,
    out_len: *mut usize,
) -> Result<(), Fail> {
    out_arg(out, "out")?;
    let s: Cow<'_, str> = if s.contains('\0') {
        s.replace('\0', "\\0").into()
    } else {
        s.into()
    };
    let mut buf = Vec::with_capacity(HEADER + s.len() + 1);
    buf.extend_from_slice(&s.len().to_ne_bytes());
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    let base = Box::into_raw(buf.into_boxed_slice()).cast::<u8>();
    // Safety: `base` points to `HEADER + s.len() + 1` bytes, so `base + HEADER` is in
    // bounds; `out` is non-NULL and writable, a non-NULL `out_len` writable, by contract.
    unsafe {
        *out = base.add(HEADER).cast::<c_char>();
        if !out_len.is_null() {
            *out_len = s.len();
        }
    }
    Ok(())
}

/// Frees a string meshcache returned to the caller (`meshcache_cluster_metrics_text`,
/// `meshcache_cluster_status_json`). Does nothing for NULL. The string may have been
/// modified in place meanwhile (`strtok` included): what was allocated is freed. Never
/// pass it to `free()`, nor free it twice.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_string_free(s: *mut c_char) {
    ffi_infallible((), || {
        if s.is_null() {
            return;
        }
        // Safety: a non-NULL `s` came from `write_owned_str` and is freed once, by
        // contract: `HEADER` bytes before it hold the length of the text, and the
        // allocation is a boxed slice of `HEADER + len + 1` bytes starting there. The
        // header is not aligned for a usize (a boxed [u8]), hence read_unaligned.
        unsafe {
            let base = s.cast::<u8>().sub(HEADER);
            let len = ptr::read_unaligned(base.cast::<usize>());
            drop(Box::from_raw(ptr::slice_from_raw_parts_mut(
                base,
                HEADER + len + 1,
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    /// Writes `s` through `write_owned_str`, reads it back as C would, and frees it.
    fn round_trip(s: &str) -> (String, usize) {
        let mut out: *mut c_char = ptr::null_mut();
        let mut len = usize::MAX;
        // Safety: both outputs are local and writable.
        unsafe { write_owned_str(s, &mut out, &mut len) }.unwrap();
        // Safety: `out` is a NUL-terminated string from write_owned_str, freed once.
        let text = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string();
        // Safety: as above; a string modified in place (a NUL written) frees the same.
        unsafe {
            if len > 0 {
                *out = 0;
            }
            meshcache_string_free(out);
        }
        (text, len)
    }

    #[test]
    fn strings_round_trip_and_a_nul_inside_is_escaped() {
        assert_eq!(
            round_trip("meshcache_ring_members 1\n"),
            ("meshcache_ring_members 1\n".into(), 25)
        );
        assert_eq!(round_trip(""), (String::new(), 0));
        assert_eq!(round_trip("a\0b"), ("a\\0b".into(), 4));
    }
}
