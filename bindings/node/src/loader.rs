//! The JS loader: a core `Loader` that calls JS through a weak thread-safe function.
//!
//! The call carries the load's scope (`meshcache::LoadScope::current()`, set by the core
//! while the loader future runs) to JS as an opaque External: the adapter in `lib.cjs`
//! runs the application's loader inside `AsyncLocalStorage.run(scope, ...)`, and its
//! `get` / `getMany` hand the scope back to the addon on a miss, so that the core refuses
//! a loader's get of the key it is loading instead of letting it wait for itself.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use meshcache::{ErrorKind, LoadScope, Loaded};
use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use tokio::sync::oneshot;

use crate::convert::JsNumber;
use crate::errors::{WrongType, load_error};
use crate::promise::{Gets, Track};

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

pub(crate) type JsLoader = ThreadsafeFunction<LoaderArgs, Returned, LoaderArgs, Status, false, true>;

/// What the adapter returned (a promise), as is: read on the JS thread by the call's
/// callback, which watches it (see [`watch`]).
pub struct Returned(sys::napi_value);

impl FromNapiValue for Returned {
    unsafe fn from_napi_value(_env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        Ok(Returned(value))
    }
}

/// What a loader call comes to: the adapter's reply, or what it rejected with.
type Reply = Result<LoaderReply>;

fn reply_to_loaded(reply: LoaderReply) -> meshcache::Result<Loaded> {
    if let Some(msg) = reply.invalid {
        return Err(meshcache::Error::with_source(
            ErrorKind::InvalidArgument,
            msg,
            WrongType,
        ));
    }
    if reply.not_found == Some(true) {
        // The adapter passes a NotFoundError's ttlMs only if it is a finite number >= 0
        // (else the group's negativeTtlMs applies); one too large for a duration is
        // treated the same.
        let ttl = reply
            .ttl_ms
            .and_then(|t| Duration::try_from_secs_f64(t / 1000.0).ok());
        return Ok(match ttl {
            Some(t) => Loaded::not_found().with_ttl(t),
            None => Loaded::not_found(),
        });
    }
    let Some(v) = &reply.value else {
        return Err(meshcache::Error::new(
            ErrorKind::InvalidArgument,
            "the loader returned no value",
        ));
    };
    let bytes: &[u8] = v;
    let loaded = Loaded::value(Bytes::copy_from_slice(bytes));
    Ok(match reply.ttl_ms {
        Some(t) => loaded.with_ttl(value_ttl(t)?),
        None => loaded,
    })
}

/// The `ttlMs` a loader returned with its value: a number of ms, as `set`'s (the adapter
/// checked the type). One that is no duration (negative, NaN, infinite, or too large,
/// which would make `Duration::from_secs_f64` panic) is a RangeError, with code
/// `MESHCACHE_INVALID_ARGUMENT`.
fn value_ttl(ms: f64) -> meshcache::Result<Duration> {
    let bad = |why: &str| {
        meshcache::Error::new(
            ErrorKind::InvalidArgument,
            format!("the loader returned ttlMs {}: {why}", JsNumber(ms)),
        )
    };
    if !ms.is_finite() || ms < 0.0 {
        return Err(bad("want a finite number of ms >= 0"));
    }
    Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| bad("too large"))
}

/// A core loader that calls the JS loader on the JS thread and awaits its promise. `gets`
/// hears when that promise is pending and when it settles (see [`Gets`]); `group` is the
/// group's id there.
pub(crate) fn js_loader(tsfn: JsLoader, gets: Gets, group: u64) -> impl meshcache::Loader {
    let tsfn = Arc::new(tsfn);
    move |key: Bytes| {
        let tsfn = tsfn.clone();
        let gets = gets.clone();
        async move {
            let track = (group, key.clone());
            let key = String::from_utf8_lossy(&key).into_owned();
            let scope = LoadScope::current().map(External::new);
            let (tx, rx) = oneshot::channel::<Reply>();
            let status = tsfn.call_with_return_value(
                (key, scope).into(),
                ThreadsafeFunctionCallMode::NonBlocking,
                move |returned: Result<Returned>, env: Env| {
                    let pending = Pending {
                        tx: Some(tx),
                        gets,
                        track,
                        started: false,
                    };
                    watch(&env, returned, pending);
                    Ok(())
                },
            );
            if status != Status::Ok {
                return Err(load_error(napi::Error::new(
                    status,
                    "the loader could not be called (the JS environment is going away)",
                )));
            }
            let reply = rx.await.map_err(|_| {
                load_error(napi::Error::from_reason(
                    "the loader's promise was collected without settling",
                ))
            })?;
            reply_to_loaded(reply.map_err(load_error)?)
        }
    }
}

/// A loader call whose promise has not settled yet: the channel to its load, and its
/// place in the bookkeeping of [`Gets`] (once `started`).
struct Pending {
    tx: Option<oneshot::Sender<Reply>>,
    gets: Gets,
    track: Track,
    started: bool,
}

impl Pending {
    /// The promise settled (or could not be watched): tells the load. JS thread.
    fn end(&mut self, env: &Env, reply: Reply) {
        let Some(tx) = self.tx.take() else { return };
        if self.started {
            self.gets.load_ended(env, &self.track);
        }
        // The load's waiters may all be gone: nobody to tell.
        let _ = tx.send(reply);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.started && self.tx.is_some() {
            // Its callbacks were collected with the promise, which never settled.
            self.gets.load_dropped(&self.track);
        }
    }
}

/// In the call's callback, on the JS thread: counts the loader as pending, and hears
/// when its promise settles. Rejections of any value (a Symbol, `undefined`...) are kept
/// without coercion: the value itself becomes the `cause` of the get's error.
fn watch(env: &Env, returned: Result<Returned>, mut pending: Pending) {
    pending.gets.load_started(env, &pending.track);
    pending.started = true;
    let once = Rc::new(RefCell::new(pending));
    let finish = |env: &Env, once: &Rc<RefCell<Pending>>, reply: Reply| {
        once.borrow_mut().end(env, reply);
    };
    let attached = returned.and_then(|Returned(value)| {
        // SAFETY: JS thread, live env; the value is the adapter's return value, of this
        // call (the adapter is an async function: a promise).
        let promise = unsafe { PromiseRaw::<LoaderReply>::from_napi_value(env.raw(), value) }?;
        let (on_value, on_error) = (once.clone(), once.clone());
        promise
            .then(move |ctx| {
                finish(&ctx.env, &on_value, Ok(ctx.value));
                Ok(())
            })?
            .catch(move |ctx: CallbackContext<Unknown<'_>>| {
                finish(
                    &ctx.env,
                    &on_error,
                    Err(napi::Error::from_unknown_without_coercion(ctx.value)),
                );
                Ok(())
            })?;
        Ok(())
    });
    if let Err(e) = attached {
        finish(env, &once, Err(e));
    }
}
