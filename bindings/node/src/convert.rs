//! Conversions: keys, values and options from JS; values, `undefined` and Maps to JS.

use std::time::Duration;

use bytes::Bytes;
use meshcache::LoadScope;
use napi::bindgen_prelude::*;
use napi::{JsValue, Unknown, sys};

use crate::errors::{range_error, type_error};

/// Longest key read on the stack; longer keys (which the core rejects unless the group
/// raised `maxKeyLen`) take a heap copy.
const KEY_BUF: usize = 1024 + 16;

/// Reads a string key into a stack buffer (no allocation for keys that fit) and runs `f`
/// on its UTF-8 bytes. A string with a lone surrogate (`'\ud800'`) has no UTF-8 form:
/// napi would read each one as U+FFFD, making `'\ud800'`, `'\udbff'` and `'\ufffd'` one
/// key, so it is refused (see [`well_formed`]).
pub(crate) fn with_key<R>(env: &Env, key: &Unknown<'_>, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
    // Uninitialised: zeroing 1 KiB on every call would cost more than reading the key.
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); KEY_BUF];
    let mut len = 0usize;
    // SAFETY: JS thread, live env and value; napi writes at most `buf.len()` bytes
    // (NUL included) and the length written without the NUL.
    let status = unsafe {
        sys::napi_get_value_string_utf8(env.raw(), key.raw(), buf.as_mut_ptr().cast(), buf.len(), &mut len)
    };
    if status != sys::Status::napi_ok {
        return Err(type_error(env, "key must be a string"));
    }
    // napi stops short of a character that would not fit: near the end, it may be cut.
    if len + 4 < KEY_BUF - 1 {
        // SAFETY: napi initialised the first `len` bytes (len < buf.len()).
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
        well_formed(env, key, bytes)?;
        return Ok(f(bytes));
    }
    let mut full = 0usize;
    // SAFETY: as above; a null buffer asks for the length only.
    unsafe { sys::napi_get_value_string_utf8(env.raw(), key.raw(), std::ptr::null_mut(), 0, &mut full) };
    let mut long = vec![0u8; full + 1];
    // SAFETY: as above, with a buffer of `full + 1` bytes.
    unsafe {
        sys::napi_get_value_string_utf8(
            env.raw(),
            key.raw(),
            long.as_mut_ptr().cast(),
            long.len(),
            &mut len,
        )
    };
    well_formed(env, key, &long[..len])?;
    Ok(f(&long[..len]))
}

/// `Err` (a `TypeError`, `MESHCACHE_INVALID_ARGUMENT`) if the JS string `key`, read as the
/// UTF-8 `bytes`, has a lone surrogate. Only a key whose UTF-8 has a U+FFFD (what napi
/// made of each lone surrogate, and rare in keys) is read again, as UTF-16; for every
/// other key this is one scan for the byte 0xEF.
fn well_formed(env: &Env, key: &Unknown<'_>, bytes: &[u8]) -> Result<()> {
    if !bytes.contains(&0xEF) || !bytes.windows(3).any(|w| w == "\u{FFFD}".as_bytes()) {
        return Ok(());
    }
    let mut units = 0usize;
    // SAFETY: JS thread, live env and value (a string: it was just read as one); a null
    // buffer asks for the length only.
    let status = unsafe {
        sys::napi_get_value_string_utf16(env.raw(), key.raw(), std::ptr::null_mut(), 0, &mut units)
    };
    if status != sys::Status::napi_ok {
        return Err(type_error(env, "key must be a string"));
    }
    let mut utf16 = vec![0u16; units + 1];
    // SAFETY: as above, with a buffer of `units + 1` code units (NUL included).
    unsafe {
        sys::napi_get_value_string_utf16(env.raw(), key.raw(), utf16.as_mut_ptr(), utf16.len(), &mut units)
    };
    if char::decode_utf16(utf16[..units].iter().copied()).any(|c| c.is_err()) {
        return Err(type_error(
            env,
            "key has a lone surrogate (half of a UTF-16 pair), which has no UTF-8 form: \
             keys must be well-formed strings",
        ));
    }
    Ok(())
}

/// The load scope `lib.cjs` passes along from its `AsyncLocalStorage` (an External the
/// addon made for the loader call, see `loader.rs`): `None` for `undefined` or `null`.
pub(crate) fn scope_arg<'v>(env: &Env, v: &'v Unknown<'_>) -> Result<Option<&'v LoadScope>> {
    match v.get_type()? {
        ValueType::Undefined | ValueType::Null => Ok(None),
        // SAFETY: JS thread, live env and value; the conversion checks that it is an
        // External this addon made for a `LoadScope`, which JS keeps alive for the call.
        _ => match unsafe { External::<LoadScope>::from_napi_ref(env.raw(), v.raw()) } {
            Ok(e) => Ok(Some(&**e)),
            Err(_) => Err(type_error(env, "scope must be a load scope given to a loader")),
        },
    }
}

pub(crate) fn key_bytes(env: &Env, key: &Unknown<'_>) -> Result<Bytes> {
    with_key(env, key, Bytes::copy_from_slice)
}

/// The keys of `getMany`: an array of strings, each read as [`with_key`] reads one.
pub(crate) fn key_list(env: &Env, keys: &Unknown<'_>) -> Result<Vec<Bytes>> {
    let not_strings = || type_error(env, "keys must be an array of strings");
    let mut is_array = false;
    // SAFETY: JS thread, live env and value; `is_array` is a local.
    check_status!(unsafe { sys::napi_is_array(env.raw(), keys.raw(), &mut is_array) })?;
    if !is_array {
        return Err(not_strings());
    }
    let mut len = 0u32;
    // SAFETY: as above; the value is an array.
    check_status!(unsafe { sys::napi_get_array_length(env.raw(), keys.raw(), &mut len) })?;
    let mut out = Vec::with_capacity(len as usize);
    for i in 0..len {
        let mut item = std::ptr::null_mut();
        // SAFETY: as above; `item` is a local (a getter may run, and may throw).
        check_status!(unsafe { sys::napi_get_element(env.raw(), keys.raw(), i, &mut item) })?;
        // SAFETY: `item` was just read on this env.
        let item = unsafe { Unknown::from_raw_unchecked(env.raw(), item) };
        if item.get_type()? != ValueType::String {
            return Err(not_strings());
        }
        out.push(key_bytes(env, &item)?);
    }
    Ok(out)
}

/// A value to cache: a Buffer, any Uint8Array, or a string (stored as UTF-8).
pub(crate) fn value_bytes(env: &Env, value: &Unknown<'_>) -> Result<Bytes> {
    match value.get_type()? {
        ValueType::String => {
            // SAFETY: JS thread, live env, and the value is a string.
            let s = unsafe { String::from_napi_value(env.raw(), value.raw()) }?;
            Ok(Bytes::from(s))
        }
        ValueType::Object => {
            // SAFETY: as above; the conversion checks that it is a Uint8Array.
            match unsafe { Uint8Array::from_napi_value(env.raw(), value.raw()) } {
                Ok(a) => Ok(Bytes::copy_from_slice(&a)),
                Err(_) => Err(type_error(env, "value must be a Buffer, Uint8Array or string")),
            }
        }
        _ => Err(type_error(env, "value must be a Buffer, Uint8Array or string")),
    }
}

/// `v` as a `T`, or a `TypeError` (`MESHCACHE_INVALID_ARGUMENT`) that names `what`, as for
/// every other bad argument (napi's own conversion error has code `InvalidArg`).
pub(crate) fn convert<T: FromNapiValue>(env: &Env, v: &Unknown<'_>, what: &str) -> Result<T> {
    // SAFETY: JS thread, live env and value; the conversion checks the type.
    unsafe { T::from_napi_value(env.raw(), v.raw()) }
        .map_err(|e| type_error(env, format!("{what}: {}", e.reason)))
}

/// An optional options object: `undefined` and `null` are none.
pub(crate) fn options<T: FromNapiValue>(env: &Env, v: Option<Unknown<'_>>, what: &str) -> Result<Option<T>> {
    match v {
        Some(v) if !matches!(v.get_type()?, ValueType::Undefined | ValueType::Null) => {
            if v.get_type()? != ValueType::Object {
                return Err(type_error(env, format!("{what} must be an object")));
            }
            convert(env, &v, what).map(Some)
        }
        _ => Ok(None),
    }
}

/// Milliseconds from JS as a duration; `what` names the option in the error.
pub(crate) fn millis(env: &Env, ms: f64, what: &str) -> Result<Duration> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(range_error(
            env,
            format!("{what} must be a finite number >= 0, not {}", JsNumber(ms)),
        ));
    }
    // `try_`: a finite but astronomically large number would make `from_secs_f64` panic,
    // and a panic here would abort the process.
    Duration::try_from_secs_f64(ms / 1000.0)
        .map_err(|_| range_error(env, format!("{what} is too large: {}", JsNumber(ms))))
}

/// A byte size from JS: a number of bytes (>= 0; zero is core's to refuse where it makes
/// no sense) or a size string such as `'256MiB'` or `'1.5GB'`.
pub(crate) fn size(env: &Env, v: Either<f64, String>, what: &str) -> Result<usize> {
    match v {
        Either::A(n) if n.is_finite() && n >= 0.0 => Ok(n as usize),
        Either::A(n) => Err(range_error(
            env,
            format!("{what} must be a number of bytes, not {}", JsNumber(n)),
        )),
        Either::B(s) => meshcache::parse_size(&s).map_err(|e| crate::errors::map_error(env, &e)),
    }
}

/// A whole number >= 0 (a count) from JS; `what` names it in the error.
pub(crate) fn whole(env: &Env, v: f64, what: &str) -> Result<usize> {
    if !(v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64) {
        return Err(range_error(
            env,
            format!("{what} must be a whole number >= 0, not {}", JsNumber(v)),
        ));
    }
    Ok(v as usize)
}

/// A number in a message as JS would print it: `Infinity`, `1e+300`, not `inf` or 301
/// digits.
pub(crate) struct JsNumber(pub(crate) f64);

impl std::fmt::Display for JsNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            n if n.is_nan() => f.write_str("NaN"),
            n if n.is_infinite() => f.write_str(if n > 0.0 { "Infinity" } else { "-Infinity" }),
            n if n.abs() >= 1e21 => f.write_str(&format!("{n:e}").replace('e', "e+")),
            n => write!(f, "{n}"),
        }
    }
}

/// What a promise of this addon resolves to; built on the JS thread.
pub(crate) enum Out {
    Buf(Bytes),
    Undefined,
    Map(Vec<(Bytes, Bytes)>),
    /// An array of strings (the ring's members).
    Strings(Vec<String>),
}

/// A fresh JS Buffer holding a copy of `b` (for small values a copy is cheaper than an
/// external buffer with a finalizer).
pub(crate) fn buffer(env: &Env, b: &[u8]) -> Result<sys::napi_value> {
    let mut out = std::ptr::null_mut();
    // SAFETY: JS thread, live env; napi copies `b.len()` bytes from `b` and does not keep
    // the pointer; the data out-pointer may be null.
    check_status!(unsafe {
        sys::napi_create_buffer_copy(
            env.raw(),
            b.len(),
            b.as_ptr().cast(),
            std::ptr::null_mut(),
            &mut out,
        )
    })?;
    Ok(out)
}

impl ToNapiValue for Out {
    unsafe fn to_napi_value(raw_env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let env = Env::from_raw(raw_env);
        match val {
            Out::Buf(b) => buffer(&env, &b),
            // SAFETY: JS thread (ToNapiValue contract).
            Out::Undefined => unsafe { <()>::to_napi_value(raw_env, ()) },
            // SAFETY: JS thread (ToNapiValue contract).
            Out::Strings(v) => unsafe { Vec::<String>::to_napi_value(raw_env, v) },
            Out::Map(entries) => {
                let mut global = std::ptr::null_mut();
                let mut ctor = std::ptr::null_mut();
                let mut map = std::ptr::null_mut();
                let mut set = std::ptr::null_mut();
                // SAFETY: JS thread; every out-pointer is a local.
                unsafe {
                    check_status!(sys::napi_get_global(raw_env, &mut global))?;
                    check_status!(sys::napi_get_named_property(
                        raw_env,
                        global,
                        c"Map".as_ptr(),
                        &mut ctor
                    ))?;
                    check_status!(sys::napi_new_instance(
                        raw_env,
                        ctor,
                        0,
                        std::ptr::null(),
                        &mut map
                    ))?;
                    check_status!(sys::napi_get_named_property(
                        raw_env,
                        map,
                        c"set".as_ptr(),
                        &mut set
                    ))?;
                    for (k, v) in entries {
                        let args = [
                            String::to_napi_value(raw_env, String::from_utf8_lossy(&k).into_owned())?,
                            buffer(&env, &v)?,
                        ];
                        let mut ignored = std::ptr::null_mut();
                        check_status!(sys::napi_call_function(
                            raw_env,
                            map,
                            set,
                            args.len(),
                            args.as_ptr(),
                            &mut ignored
                        ))?;
                    }
                }
                Ok(map)
            }
        }
    }
}
