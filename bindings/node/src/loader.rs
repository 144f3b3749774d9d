//! The JS loader: a core `Loader` that calls JS through a weak thread-safe function.
//!
//! The call carries the load's scope (`meshcache::LoadScope::current()`, set by the core
//! while the loader future runs) to JS as an opaque External: the adapter in `lib.cjs`
//! runs the application's loader inside `AsyncLocalStorage.run(scope, ...)`, and its
//! `get` / `getMany` hand the scope back to the addon on a miss, so that the core refuses
//! a loader's get of the key it is loading instead of letting it wait for itself.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshcache::{ErrorKind, LoadScope, Loaded};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;

use crate::errors::{WrongType, load_error};

/// What the package's loader adapter (`lib.cjs`) resolves to. Internal: applications
/// write loaders that return a Buffer, Uint8Array, string or `{ value, ttlMs }`.
#[napi(object, object_to_js = false)]
pub struct LoaderReply {
    /// The value (strings were encoded by the adapter).
    pub value: Option<Uint8Array>,
    /// Its TTL, or the NotFound's TTL.
    pub ttl_ms: Option<f64>,
    /// The loader threw `NotFoundError`.
    pub not_found: Option<bool>,
    /// The loader returned something unusable; the message says what.
    pub invalid: Option<String>,
}

/// The adapter's arguments: the key, and the load's scope (`null` outside a load, which
/// the core never does).
type LoaderArgs = FnArgs<(String, Option<External<LoadScope>>)>;

pub(crate) type JsLoader =
    ThreadsafeFunction<LoaderArgs, Promise<LoaderReply>, LoaderArgs, Status, false, true>;

fn reply_to_loaded(reply: LoaderReply) -> meshcache::Result<Loaded> {
    if let Some(msg) = reply.invalid {
        return Err(meshcache::Error::with_source(
            ErrorKind::InvalidArgument,
            msg,
            WrongType,
        ));
    }
    let ttl = reply
        .ttl_ms
        .filter(|t| t.is_finite() && *t >= 0.0)
        .map(|t| Duration::from_secs_f64(t / 1000.0));
    let loaded = if reply.not_found == Some(true) {
        Loaded::not_found()
    } else if let Some(v) = &reply.value {
        let bytes: &[u8] = v;
        Loaded::value(Bytes::copy_from_slice(bytes))
    } else {
        return Err(meshcache::Error::new(
            ErrorKind::InvalidArgument,
            "the loader returned no value",
        ));
    };
    Ok(match ttl {
        Some(t) => loaded.with_ttl(t),
        None => loaded,
    })
}

/// A core loader that calls the JS loader on the JS thread and awaits its promise.
pub(crate) fn js_loader(tsfn: JsLoader) -> impl meshcache::Loader {
    let tsfn = Arc::new(tsfn);
    move |key: Bytes| {
        let tsfn = tsfn.clone();
        async move {
            let key = String::from_utf8_lossy(&key).into_owned();
            let scope = LoadScope::current().map(External::new);
            let promise = tsfn.call_async((key, scope).into()).await.map_err(load_error)?;
            reply_to_loaded(promise.await.map_err(load_error)?)
        }
    }
}
