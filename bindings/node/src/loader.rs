//! The JS loader: a core `Loader` that calls JS through a weak thread-safe function.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshcache::{ErrorKind, Loaded};
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

pub(crate) type JsLoader = ThreadsafeFunction<String, Promise<LoaderReply>, String, Status, false, true>;

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
            let promise = tsfn.call_async(key).await.map_err(load_error)?;
            reply_to_loaded(promise.await.map_err(load_error)?)
        }
    }
}
