//! Errors: one place decides the JS class and `code` of every error.
//!
//! `code` is `MESHCACHE_<KIND>` of the core's `ErrorKind`; bad arguments are
//! `RangeError`s, arguments of the wrong type `TypeError`s, and a loader's own JS error
//! is the `cause` of a `MESHCACHE_LOAD` error.

use meshcache::ErrorKind;
use napi::bindgen_prelude::*;
use napi::sys;

/// The JS error for a core error: `code` is `MESHCACHE_<KIND>`; a loader's own error is
/// the `cause`; bad arguments are `RangeError`s. Must run on the JS thread.
pub(crate) fn map_error(env: &Env, e: &meshcache::Error) -> napi::Error {
    let cause = match e.kind() {
        ErrorKind::Load => e
            .cause()
            .and_then(|c| c.downcast_ref::<napi::Error>())
            .and_then(|c| c.try_clone().ok()),
        _ => None,
    };
    let class = match e.kind() {
        ErrorKind::InvalidArgument if e.cause().is_some_and(|c| c.is::<WrongType>()) => Class::Type,
        ErrorKind::InvalidArgument => Class::Range,
        _ => Class::Error,
    };
    let message = match &cause {
        Some(c) if !c.reason.is_empty() => format!("loader failed: {}", c.reason),
        Some(c) => format!("loader failed: it threw {}", thrown(env, c)),
        None => e.message().to_string(),
    };
    js_error(env, class, e.kind(), &message, cause)
}

/// A `TypeError` with code `MESHCACHE_INVALID_ARGUMENT`, for arguments of the wrong type.
pub(crate) fn type_error(env: &Env, message: impl Into<String>) -> napi::Error {
    js_error(
        env,
        Class::Type,
        ErrorKind::InvalidArgument,
        &message.into(),
        None,
    )
}

pub(crate) fn range_error(env: &Env, message: impl Into<String>) -> napi::Error {
    js_error(
        env,
        Class::Range,
        ErrorKind::InvalidArgument,
        &message.into(),
        None,
    )
}

/// Marks an InvalidArgument that is a wrong type (a loader's result): JS gets a TypeError.
#[derive(Debug)]
pub(crate) struct WrongType;

impl std::fmt::Display for WrongType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wrong type")
    }
}

impl std::error::Error for WrongType {}

enum Class {
    Error,
    Type,
    Range,
}

/// What a loader threw that has no message (a JS `throw` takes any value): its type,
/// found without running any JS (no `toString`, no getter).
fn thrown(env: &Env, cause: &napi::Error) -> &'static str {
    let Ok(copy) = cause.try_clone() else {
        return "a value";
    };
    // SAFETY: JS thread, live env; the error refers to the thrown value, made on this env.
    let Ok(value) = (unsafe { ToNapiValue::to_napi_value(env.raw(), copy) }) else {
        return "a value";
    };
    let mut t = -1;
    // SAFETY: as above; `t` is a local.
    if unsafe { sys::napi_typeof(env.raw(), value, &mut t) } != sys::Status::napi_ok {
        return "a value";
    }
    match t {
        sys::ValueType::napi_undefined => "undefined",
        sys::ValueType::napi_null => "null",
        sys::ValueType::napi_boolean => "a boolean",
        sys::ValueType::napi_number => "a number",
        sys::ValueType::napi_bigint => "a bigint",
        sys::ValueType::napi_string => "an empty string",
        sys::ValueType::napi_symbol => "a symbol",
        sys::ValueType::napi_function => "a function",
        _ => "an object (not an Error with a message)",
    }
}

/// Builds the JS object now and returns an error that refers to it, so that throwing or
/// rejecting with it hands JS exactly this object.
///
/// The reference is taken without coercion: napi's `From<Unknown>` would coerce the
/// error and, recursively, its `cause` (the value a loader threw) to strings, which
/// throws on a Symbol or an object without `toString` (that exception then stayed
/// pending, and the promise it was meant for never settled), runs the thrown object's
/// getters, and recurses forever on a cyclic `cause` chain.
fn js_error(
    env: &Env,
    class: Class,
    kind: ErrorKind,
    message: &str,
    cause: Option<napi::Error>,
) -> napi::Error {
    let mut e = napi::Error::new(format!("MESHCACHE_{}", kind.as_str()), message.to_string());
    if let Some(c) = cause {
        e.set_cause(c);
    }
    let value = match class {
        Class::Error => JsError::from(e).into_unknown(*env),
        Class::Type => JsTypeError::from(e).into_unknown(*env),
        Class::Range => JsRangeError::from(e).into_unknown(*env),
    };
    napi::Error::from_unknown_without_coercion(value)
}

/// The JS error (`MESHCACHE_PANIC`) for a panic of the addon caught before it reached
/// Node.
pub(crate) fn panic_error(env: &Env, payload: &(dyn std::any::Any + Send)) -> napi::Error {
    let message = format!(
        "meshcache panicked (a bug): {}",
        meshcache::panic_message(payload)
    );
    js_error(env, Class::Error, ErrorKind::Panic, &message, None)
}

/// A meshcache error for a loader that failed in JS: the JS error rides along as the
/// cause and becomes the rejection's `cause`.
pub(crate) fn load_error(e: napi::Error) -> meshcache::Error {
    meshcache::Error::load(e)
}
