//! Node.js bindings of meshcache: conversion and error mapping only.
//!
//! The package's `index.js` loads this addon; `lib.cjs` / `lib.mjs` add the loader
//! adapter and `NotFoundError` (see `node/`).
//!
//! # Threads and the event loop
//!
//! Each `Cluster` runs on its own tokio runtime (created by the core). JS code runs only
//! on the JS thread: a loader is called through a *weak* thread-safe function, which
//! never keeps the event loop alive by itself; a pending `get` holds its promise's
//! (ref'd) deferred, so the process waits for answers it is owed and for nothing else.
//!
//! Every async method first polls its core future once on the JS thread: a hit (or an
//! argument error) settles the promise there and then, without a trip through the
//! runtime. Only a miss is moved to the runtime.

// napi's `#[napi]` expansions are unsafe FFI glue, and the hot paths read string keys
// with the raw napi API into a stack buffer and build buffers and Maps with it. Every
// raw call below runs on the JS thread, with the `napi_env` of the current call.
#![allow(unsafe_code)]
// The exported types are JS classes and plain JS objects; Node prints them, not Rust.
#![allow(missing_debug_implementations)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use meshcache::{ErrorKind, Loaded};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{JsValue, Unknown, sys};
use napi_derive::napi;
use tokio::runtime::Handle;

/// Longest key read on the stack; longer keys (which the core rejects unless the group
/// raised `maxKeyLen`) take a heap copy.
const KEY_BUF: usize = 1024 + 16;

// ---------------------------------------------------------------------------------------
// Errors: one place decides the JS class and `code` of every error.

/// The JS error for a core error: `code` is `MESHCACHE_<KIND>`; a loader's own error is
/// the `cause`; bad arguments are `RangeError`s. Must run on the JS thread.
fn map_error(env: &Env, e: &meshcache::Error) -> napi::Error {
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
        Some(c) => format!("loader failed: {}", c.reason),
        None => e.message().to_string(),
    };
    js_error(env, class, e.kind(), &message, cause)
}

/// A `TypeError` with code `MESHCACHE_INVALID_ARGUMENT`, for arguments of the wrong type.
fn type_error(env: &Env, message: impl Into<String>) -> napi::Error {
    js_error(
        env,
        Class::Type,
        ErrorKind::InvalidArgument,
        &message.into(),
        None,
    )
}

fn range_error(env: &Env, message: impl Into<String>) -> napi::Error {
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
struct WrongType;

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

/// Builds the JS object now and returns an error that refers to it, so that throwing or
/// rejecting with it hands JS exactly this object.
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
    napi::Error::from(value)
}

/// A meshcache error for a loader that failed in JS: the JS error rides along as the
/// cause and becomes the rejection's `cause`.
fn load_error(e: napi::Error) -> meshcache::Error {
    meshcache::Error::load(e)
}

// ---------------------------------------------------------------------------------------
// Conversions.

/// Reads a string key into a stack buffer (no allocation for keys that fit) and runs `f`
/// on its UTF-8 bytes.
fn with_key<R>(env: &Env, key: &Unknown<'_>, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
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
        let key = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
        return Ok(f(key));
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
    Ok(f(&long[..len]))
}

fn key_bytes(env: &Env, key: &Unknown<'_>) -> Result<Bytes> {
    with_key(env, key, Bytes::copy_from_slice)
}

/// A value to cache: a Buffer, any Uint8Array, or a string (stored as UTF-8).
fn value_bytes(env: &Env, value: &Unknown<'_>) -> Result<Bytes> {
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
fn convert<T: FromNapiValue>(env: &Env, v: &Unknown<'_>, what: &str) -> Result<T> {
    // SAFETY: JS thread, live env and value; the conversion checks the type.
    unsafe { T::from_napi_value(env.raw(), v.raw()) }
        .map_err(|e| type_error(env, format!("{what}: {}", e.reason)))
}

/// An optional options object: `undefined` and `null` are none.
fn options<T: FromNapiValue>(env: &Env, v: Option<Unknown<'_>>, what: &str) -> Result<Option<T>> {
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
fn millis(env: &Env, ms: f64, what: &str) -> Result<Duration> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(range_error(
            env,
            format!("{what} must be a finite number >= 0, not {ms}"),
        ));
    }
    // `try_`: a finite but astronomically large number would make `from_secs_f64` panic,
    // and a panic here would abort the process.
    Duration::try_from_secs_f64(ms / 1000.0)
        .map_err(|_| range_error(env, format!("{what} is too large: {ms}")))
}

/// What a promise of this addon resolves to; built on the JS thread.
enum Out {
    Buf(Bytes),
    Undefined,
    Map(Vec<(Bytes, Bytes)>),
}

/// A fresh JS Buffer holding a copy of `b` (for small values a copy is cheaper than an
/// external buffer with a finalizer).
fn buffer(env: &Env, b: &[u8]) -> Result<sys::napi_value> {
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

/// Runs a core future for JS: polls it once here on the JS thread (inside the cluster's
/// runtime context, so timers and spawns work) and settles the promise at once if it is
/// ready; otherwise moves it to the runtime and settles it from there.
fn settle<'env, T, F>(env: &'env Env, rt: &Handle, fut: F, out: fn(T) -> Out) -> Result<Unknown<'env>>
where
    F: Future<Output = meshcache::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut fut = Box::pin(fut);
    match poll_once(rt, &mut fut) {
        Poll::Ready(Ok(v)) => Ok(PromiseRaw::resolve(env, out(v))?.to_unknown()),
        Poll::Ready(Err(e)) => rejected(env, map_error(env, &e)),
        Poll::Pending => pending(env, rt, fut, out),
    }
}

/// Polls `fut` once on the JS thread, inside the runtime's context.
fn poll_once<F: Future + ?Sized>(rt: &Handle, fut: &mut std::pin::Pin<Box<F>>) -> Poll<F::Output> {
    let _ctx = rt.enter();
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// A promise settled by `fut`, which runs on the runtime from now on.
fn pending<'env, T, F>(
    env: &'env Env,
    rt: &Handle,
    fut: std::pin::Pin<Box<F>>,
    out: fn(T) -> Out,
) -> Result<Unknown<'env>>
where
    F: Future<Output = meshcache::Result<T>> + Send + 'static + ?Sized,
    T: Send + 'static,
{
    let (deferred, promise) = env.create_deferred::<Out, Settle>()?;
    let mut guard = SettleGuard(Some(deferred));
    rt.spawn(async move {
        let result = fut.await;
        if let Some(deferred) = guard.0.take() {
            deferred.resolve(Box::new(move |env| match result {
                Ok(v) => Ok(out(v)),
                Err(e) => Err(map_error(&env, &e)),
            }));
        }
    });
    Ok(promise.to_unknown())
}

/// How a pending promise is settled, on the JS thread.
type Settle = Box<dyn FnOnce(Env) -> Result<Out> + Send>;

/// Settles its promise if the task that owns it is dropped before doing so (the
/// cluster closed, or its runtime stopped, with the call in flight): the promise rejects
/// with `MESHCACHE_CLOSED` instead of never settling, and its thread-safe function is
/// released, so it cannot keep the process alive either.
struct SettleGuard(Option<napi::JsDeferred<Out, Settle>>);

impl Drop for SettleGuard {
    fn drop(&mut self) {
        if let Some(deferred) = self.0.take() {
            deferred.resolve(Box::new(|env| {
                let e = meshcache::Error::new(
                    ErrorKind::Closed,
                    "the cluster was closed before this call finished",
                );
                Err(map_error(&env, &e))
            }));
        }
    }
}

fn rejected<'env>(env: &'env Env, e: napi::Error) -> Result<Unknown<'env>> {
    Ok(PromiseRaw::<()>::reject(env, e)?.to_unknown())
}

/// Returns a rejected promise for an argument error, the promise otherwise: async
/// methods never throw.
fn or_reject<'env>(env: &'env Env, r: Result<Unknown<'env>>) -> Result<Unknown<'env>> {
    match r {
        Ok(p) => Ok(p),
        Err(e) => rejected(env, e),
    }
}

// ---------------------------------------------------------------------------------------
// The loader.

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

type JsLoader = ThreadsafeFunction<String, Promise<LoaderReply>, String, Status, false, true>;

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
fn js_loader(tsfn: JsLoader) -> impl meshcache::Loader {
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

// ---------------------------------------------------------------------------------------
// Cluster.

/// Options of `new Cluster()`. Every node of a cluster must agree on `vnodes`.
#[napi(object)]
#[derive(Default)]
pub struct ClusterOptions {
    /// Address the peer server binds, `host:port`. Default `'127.0.0.1:0'` (a free port;
    /// `cluster.localAddr` tells which).
    pub listen: Option<String>,
    /// Address other nodes use to reach this one, and its name on the ring. Default: the
    /// bound address.
    pub advertise: Option<String>,
    /// Every node's advertised address (this node's own may be included). Default: none,
    /// a single-node cache.
    pub peers: Option<Vec<String>>,
    /// Deadline of each call to a peer, in ms. Default 1000.
    pub peer_timeout_ms: Option<f64>,
    /// Time to connect to a peer, in ms. Default 500.
    pub connect_timeout_ms: Option<f64>,
    /// Retries of an idempotent peer call that could not reach its peer. Default 1.
    pub retries: Option<u32>,
    /// First retry backoff in ms (doubles each retry). Default 10.
    pub retry_backoff_ms: Option<f64>,
    /// Consecutive failures that open a peer's circuit breaker. Default 5.
    pub breaker_threshold: Option<u32>,
    /// How long an open breaker waits before one probe, in ms. Default 1000.
    pub breaker_cooldown_ms: Option<f64>,
    /// Largest peer message, in bytes. Default 64 MiB.
    pub max_message_size: Option<u32>,
    /// Points per node on the hash ring. Default 160.
    pub vnodes: Option<u32>,
    /// Threads of the cluster's own runtime (network and loads; JS loaders still run on
    /// the JS thread). Default 2.
    pub worker_threads: Option<u32>,
}

/// The core cluster shared by the JS `Cluster` and its groups, until `close()`.
struct Node {
    /// Guards the cluster handle; `None` once closed.
    cluster: Mutex<Option<meshcache::Cluster>>,
    rt: Handle,
}

impl Node {
    fn cluster(&self) -> Option<meshcache::Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Never closed: the JS objects were collected (or the environment is going away).
        // Dropping the last handle stops the runtime, which blocks until its threads end:
        // do it off the JS thread.
        if let Some(c) = self.cluster.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            std::thread::spawn(move || drop(c));
        }
    }
}

/// One node of a meshcache cluster: its peer server, its groups, and the runtime they run
/// on. Every process of a service creates one with the same `peers`.
#[napi]
pub struct Cluster {
    node: Arc<Node>,
}

#[napi]
impl Cluster {
    /// Starts the node: binds `listen` and starts serving peers. Throws a `RangeError`
    /// (`MESHCACHE_INVALID_ARGUMENT`) for an address that cannot be resolved or bound.
    #[napi(constructor, ts_args_type = "options?: ClusterOptions | undefined | null")]
    pub fn new(env: Env, options: Option<Unknown<'_>>) -> Result<Self> {
        let o: ClusterOptions = self::options(&env, options, "options")?.unwrap_or_default();
        let mut b = meshcache::Cluster::builder();
        if let Some(l) = o.listen {
            b = b.listen(l);
        }
        if let Some(a) = o.advertise {
            b = b.advertise(a);
        }
        if let Some(p) = o.peers {
            b = b.peers(p);
        }
        if let Some(t) = o.peer_timeout_ms {
            b = b.peer_timeout(millis(&env, t, "peerTimeoutMs")?);
        }
        if let Some(t) = o.connect_timeout_ms {
            b = b.connect_timeout(millis(&env, t, "connectTimeoutMs")?);
        }
        if o.retries.is_some() || o.retry_backoff_ms.is_some() {
            let backoff = millis(&env, o.retry_backoff_ms.unwrap_or(10.0), "retryBackoffMs")?;
            b = b.retries(o.retries.unwrap_or(1), backoff);
        }
        if o.breaker_threshold.is_some() || o.breaker_cooldown_ms.is_some() {
            let cooldown = millis(&env, o.breaker_cooldown_ms.unwrap_or(1000.0), "breakerCooldownMs")?;
            b = b.breaker(
                o.breaker_threshold
                    .unwrap_or(meshcache::DEFAULT_BREAKER_THRESHOLD),
                cooldown,
            );
        }
        if let Some(m) = o.max_message_size {
            b = b.max_message_size(m as usize);
        }
        if let Some(v) = o.vnodes {
            b = b.vnodes(v as usize);
        }
        if let Some(w) = o.worker_threads {
            b = b.worker_threads(w as usize);
        }
        let cluster = b.build().map_err(|e| map_error(&env, &e))?;
        let rt = cluster.runtime().clone();
        Ok(Cluster {
            node: Arc::new(Node {
                cluster: Mutex::new(Some(cluster)),
                rt,
            }),
        })
    }

    fn open(&self, env: &Env) -> Result<meshcache::Cluster> {
        self.node.cluster().ok_or_else(|| {
            map_error(
                env,
                &meshcache::Error::new(ErrorKind::Closed, "the cluster was closed"),
            )
        })
    }

    /// A group (a named cache) served by this node. Every node should create the same
    /// groups. Throws `MESHCACHE_INVALID_ARGUMENT` for a name in use or bad options, and
    /// `MESHCACHE_CLOSED` after `close()`.
    #[napi(ts_args_type = "name: string, options?: GroupOptions | undefined | null")]
    pub fn group(&self, env: &Env, name: Unknown<'_>, options: Option<Unknown<'_>>) -> Result<Group> {
        let name: String = convert(env, &name, "name")?;
        let o: GroupOptions = self::options(env, options, "options")?.unwrap_or_default();
        let cluster = self.open(env)?;
        let mut b = cluster.group(name);
        if let Some(c) = o.capacity {
            let bytes = match c {
                Either::A(n) if n.is_finite() && n >= 1.0 => n as usize,
                Either::A(n) => {
                    return Err(range_error(env, format!("capacity must be >= 1 byte, not {n}")));
                }
                Either::B(s) => meshcache::parse_size(&s).map_err(|e| map_error(env, &e))?,
            };
            b = b.capacity(bytes);
        }
        if let Some(t) = o.ttl_ms {
            b = b.default_ttl(millis(env, t, "ttlMs")?);
        }
        if let Some(t) = o.negative_ttl_ms {
            b = b.negative_ttl(millis(env, t, "negativeTtlMs")?);
        }
        if let Some(n) = o.max_key_len {
            b = b.max_key_len(n as usize);
        }
        if let Some(n) = o.max_value_len {
            b = b.max_value_len(n as usize);
        }
        if let Some(n) = o.hot_sample {
            b = b.hot_sample(n);
        }
        if let Some(n) = o.shards {
            b = b.shards(n as usize);
        }
        if let Some(l) = o.loader {
            b = b.loader(js_loader(l));
        }
        let group = b.build().map_err(|e| map_error(env, &e))?;
        Ok(Group {
            group,
            node: self.node.clone(),
        })
    }

    /// Replaces the peer list; the ring is swapped at once.
    #[napi(ts_args_type = "peers: Array<string>")]
    pub fn set_peers(&self, env: Env, peers: Unknown<'_>) -> Result<()> {
        let peers: Vec<String> = convert(&env, &peers, "peers")?;
        self.open(&env)?.set_peers(peers).map_err(|e| map_error(&env, &e))
    }

    /// The ring's nodes (this one included), sorted.
    #[napi]
    pub fn members(&self, env: Env) -> Result<Vec<String>> {
        Ok(self.open(&env)?.members())
    }

    /// The node that owns `key` now.
    #[napi(ts_args_type = "key: string")]
    pub fn owner_of(&self, env: Env, key: Unknown<'_>) -> Result<String> {
        let key: String = convert(&env, &key, "key")?;
        Ok(self.open(&env)?.owner_of(key.as_bytes()))
    }

    /// Peer counters and breaker states.
    #[napi]
    pub fn stats(&self, env: Env) -> Result<ClusterStats> {
        let s = self.open(&env)?.stats();
        Ok(ClusterStats {
            node: s.node,
            peers: s
                .peers
                .into_iter()
                .map(|(addr, breaker, p)| PeerStats {
                    addr,
                    breaker: match breaker {
                        meshcache::BreakerState::Closed => "closed",
                        meshcache::BreakerState::Open => "open",
                        meshcache::BreakerState::HalfOpen => "half-open",
                    }
                    .to_string(),
                    requests: p.requests as f64,
                    successes: p.successes as f64,
                    failures: p.failures as f64,
                    timeouts: p.timeouts as f64,
                    retries: p.retries as f64,
                    rejected: p.rejected as f64,
                    breaker_opened: p.breaker_opened as f64,
                })
                .collect(),
        })
    }

    /// The address the peer server is bound to (`host:port`, with the real port).
    #[napi(getter)]
    pub fn local_addr(&self, env: Env) -> Result<String> {
        Ok(self.open(&env)?.local_addr().to_string())
    }

    /// This node's advertised address: its name on the ring.
    #[napi(getter)]
    pub fn advertise_addr(&self, env: Env) -> Result<String> {
        Ok(self.open(&env)?.advertise_addr().to_string())
    }

    /// Whether `close()` was called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.node.cluster().is_none()
    }

    /// Shuts the node down gracefully: stops serving peers, lets calls in flight finish,
    /// closes every group (their calls then reject with `MESHCACHE_CLOSED`) and stops the
    /// runtime. Afterwards the addon holds nothing that keeps the process alive.
    /// Idempotent.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let taken = self.node.cluster.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(cluster) = taken else {
            return Ok(PromiseRaw::resolve(env, Out::Undefined)?.to_unknown());
        };
        let (deferred, promise) = env.create_deferred()?;
        self.node.rt.spawn(async move {
            let result = cluster.shutdown().await;
            // The last handle owns the runtime: drop it outside the runtime.
            std::thread::spawn(move || drop(cluster));
            deferred.resolve(move |env| match result {
                Ok(()) => Ok(Out::Undefined),
                Err(e) => Err(map_error(&env, &e)),
            });
        });
        Ok(promise.to_unknown())
    }
}

/// Counters of one peer, as this node sees it.
#[napi(object)]
pub struct PeerStats {
    /// The peer's advertised address.
    pub addr: String,
    /// `'closed'` (calls go through), `'open'` (failing fast) or `'half-open'`.
    pub breaker: String,
    pub requests: f64,
    pub successes: f64,
    pub failures: f64,
    pub timeouts: f64,
    pub retries: f64,
    /// Calls refused by the open breaker.
    pub rejected: f64,
    pub breaker_opened: f64,
}

/// `cluster.stats()`.
#[napi(object)]
pub struct ClusterStats {
    /// This node's advertised address.
    pub node: String,
    pub peers: Vec<PeerStats>,
}

// ---------------------------------------------------------------------------------------
// Group.

/// Options of `cluster.group()`.
#[napi(object, object_to_js = false)]
#[derive(Default)]
pub struct GroupOptions {
    /// Byte budget of the store (keys + values + overhead): a number of bytes or a size
    /// such as `'256MiB'` or `'1.5GB'`. Default 64 MiB.
    pub capacity: Option<Either<f64, String>>,
    /// TTL of values whose loader or `set` gives none, in ms. Default: no expiry.
    pub ttl_ms: Option<f64>,
    /// How long a NotFound is remembered, in ms; 0 disables it. Default 5000.
    pub negative_ttl_ms: Option<f64>,
    /// Longest key, in UTF-8 bytes. Default 1024.
    pub max_key_len: Option<u32>,
    /// Largest value, in bytes. Default 8 MiB.
    pub max_value_len: Option<u32>,
    /// Mirror one in `n` values fetched from their owner on this node (0: never).
    /// Default 10.
    pub hot_sample: Option<u32>,
    /// Store shards (a power of two). Default: from capacity and CPUs.
    pub shards: Option<u32>,
    /// Called on the JS thread for a key this node owns and nobody has cached: once per
    /// key at a time in the whole cluster. May be async. Returns a Buffer, Uint8Array or
    /// string, or `{ value, ttlMs }`; throws `NotFoundError` for a key that does not
    /// exist. Default: none (every miss is NotFound; fill the group with `set`).
    #[napi(ts_type = "Loader")]
    pub loader: Option<JsLoader>,
}

/// Options of `group.set()`.
#[napi(object)]
pub struct SetOptions {
    /// TTL of this value in ms. Default: the group's `ttlMs`.
    pub ttl_ms: Option<f64>,
}

/// Counters of one store tier.
#[napi(object)]
pub struct TierStats {
    /// Entries resident.
    pub items: f64,
    /// Bytes charged (keys, values, overhead).
    pub bytes: f64,
    pub gets: f64,
    pub hits: f64,
    pub evictions: f64,
    pub expirations: f64,
}

/// `group.stats()`: counters since the group was created.
#[napi(object)]
pub struct GroupStats {
    /// `get`s, `peek`s and keys asked for by `getMany`.
    pub gets: f64,
    /// Answered from the main tier.
    pub hits: f64,
    /// Answered from the hot tier (mirrors of keys other nodes own).
    pub hot_hits: f64,
    /// Gets that waited for a load another caller started.
    pub deduplicated: f64,
    /// Loader calls on this node.
    pub loads: f64,
    pub load_errors: f64,
    /// Loader calls that said NotFound.
    pub not_found: f64,
    /// Values fetched from their owner.
    pub remote_fetches: f64,
    pub remote_not_found: f64,
    /// Owners that could not be reached (each followed by a local fallback load).
    pub remote_errors: f64,
    pub fallback_loads: f64,
    pub hot_inserts: f64,
    /// Gets this node served to other nodes.
    pub served: f64,
    pub invalidation_errors: f64,
    /// The byte budget.
    pub capacity: f64,
    pub main: TierStats,
    pub hot: TierStats,
}

fn tier(t: meshcache::TierStats) -> TierStats {
    TierStats {
        items: t.items as f64,
        bytes: t.bytes as f64,
        gets: t.gets as f64,
        hits: t.hits as f64,
        evictions: t.evictions as f64,
        expirations: t.expirations as f64,
    }
}

/// A named cache served by a `Cluster`. Keys are strings; values are Buffers.
#[napi]
pub struct Group {
    group: meshcache::Group,
    /// Keeps the cluster running while this group is reachable from JS.
    node: Arc<Node>,
}

#[napi]
impl Group {
    /// The value of `key`: from this node, or from the key's owner, which loads it once in
    /// the whole cluster. Rejects with `MESHCACHE_NOT_FOUND` if the loader threw
    /// `NotFoundError`, `MESHCACHE_LOAD` (the loader's error is the `cause`) if it failed,
    /// a `TypeError` for a key that is not a string or a loader result of the wrong type.
    #[napi(ts_args_type = "key: string", ts_return_type = "Promise<Buffer>")]
    pub fn get<'env>(&self, env: &'env Env, key: Unknown<'env>) -> Result<Unknown<'env>> {
        get_promise(&self.group, &self.node.rt, env, &key)
    }

    /// The cached value of `key` if it is on this node, else `undefined`. Synchronous;
    /// never loads, never waits.
    #[napi(ts_args_type = "key: string", ts_return_type = "Buffer | undefined")]
    pub fn peek<'env>(&self, env: &'env Env, key: Unknown<'env>) -> Result<Unknown<'env>> {
        let raw = peek_value(&self.group, env, &key)?;
        // SAFETY: `raw` was just created in this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
    }

    /// For `lib.cjs`: `{ peek, get, pool }`, the fast paths of this group (see "Fast
    /// paths"). Called as `h.peek(key)` / `h.get(key)`, they answer a small cached value
    /// as the number `offset * 8192 + length` of a copy of it in `h.pool` (an
    /// ArrayBuffer); anything else as `peek` / `get` do.
    #[napi(js_name = "_fast", skip_typescript)]
    pub fn fast<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let fast = std::rc::Rc::new(Fast {
            group: self.group.clone(),
            node: self.node.clone(),
            pool: std::cell::RefCell::new(Pool {
                buf: std::ptr::null_mut(),
                data: std::ptr::null_mut(),
                off: 0,
            }),
        });
        let peek = fast_function(env, c"peek", Some(fast_peek), fast.clone())?;
        let get = fast_function(env, c"get", Some(fast_get), fast)?;
        let mut h = std::ptr::null_mut();
        let mut undefined = std::ptr::null_mut();
        // SAFETY: JS thread, live env, local out-pointers.
        unsafe {
            check_status!(sys::napi_create_object(env.raw(), &mut h))?;
            check_status!(sys::napi_get_undefined(env.raw(), &mut undefined))?;
            check_status!(sys::napi_set_named_property(env.raw(), h, c"peek".as_ptr(), peek))?;
            check_status!(sys::napi_set_named_property(env.raw(), h, c"get".as_ptr(), get))?;
            check_status!(sys::napi_set_named_property(
                env.raw(),
                h,
                c"pool".as_ptr(),
                undefined
            ))?;
            Ok(Unknown::from_raw_unchecked(env.raw(), h))
        }
    }

    /// The values of the keys that exist (missing ones are absent from the Map), loading
    /// misses concurrently, with one call per owner node.
    #[napi(
        ts_args_type = "keys: string[]",
        ts_return_type = "Promise<Map<string, Buffer>>"
    )]
    pub fn get_many<'env>(&self, env: &'env Env, keys: Unknown<'env>) -> Result<Unknown<'env>> {
        // SAFETY: JS thread, live env and value.
        let keys = match unsafe { Vec::<String>::from_napi_value(env.raw(), keys.raw()) } {
            Ok(k) => k,
            Err(_) => return rejected(env, type_error(env, "keys must be an array of strings")),
        };
        let g = self.group.clone();
        let r = settle(
            env,
            &self.node.rt,
            async move { g.get_many(&keys).await },
            Out::Map,
        );
        or_reject(env, r)
    }

    /// Caches `value` (a Buffer, Uint8Array or string) for `key` on its owner, for
    /// `options.ttlMs` or the group's TTL; other nodes drop their copies.
    #[napi(
        ts_args_type = "key: string, value: Buffer | Uint8Array | string, options?: SetOptions",
        ts_return_type = "Promise<void>"
    )]
    pub fn set<'env>(
        &self,
        env: &'env Env,
        key: Unknown<'env>,
        value: Unknown<'env>,
        options: Option<Unknown<'env>>,
    ) -> Result<Unknown<'env>> {
        let prepared = (|| {
            let k = key_bytes(env, &key)?;
            let v = value_bytes(env, &value)?;
            let o: Option<SetOptions> = self::options(env, options, "options")?;
            let ttl = match o.and_then(|o| o.ttl_ms) {
                Some(t) => Some(millis(env, t, "ttlMs")?),
                None => None,
            };
            Ok((k, v, ttl))
        })();
        let r = prepared.and_then(|(k, v, ttl)| {
            let g = self.group.clone();
            settle(env, &self.node.rt, async move { g.set(&k, v, ttl).await }, |()| {
                Out::Undefined
            })
        });
        or_reject(env, r)
    }

    /// Removes `key` on its owner and every copy on every node.
    #[napi(ts_args_type = "key: string", ts_return_type = "Promise<void>")]
    pub fn delete<'env>(&self, env: &'env Env, key: Unknown<'env>) -> Result<Unknown<'env>> {
        let r = key_bytes(env, &key).and_then(|k| {
            let g = self.group.clone();
            settle(env, &self.node.rt, async move { g.delete(&k).await }, |()| {
                Out::Undefined
            })
        });
        or_reject(env, r)
    }

    /// The group's counters.
    #[napi]
    pub fn stats(&self) -> GroupStats {
        let s = self.group.stats();
        GroupStats {
            gets: s.gets as f64,
            hits: s.hits as f64,
            hot_hits: s.hot_hits as f64,
            deduplicated: s.deduplicated as f64,
            loads: s.loads as f64,
            load_errors: s.load_errors as f64,
            not_found: s.not_found as f64,
            remote_fetches: s.remote_fetches as f64,
            remote_not_found: s.remote_not_found as f64,
            remote_errors: s.remote_errors as f64,
            fallback_loads: s.fallback_loads as f64,
            hot_inserts: s.hot_inserts as f64,
            served: s.served as f64,
            invalidation_errors: s.invalidation_errors as f64,
            capacity: s.store.capacity as f64,
            main: tier(s.store.main),
            hot: tier(s.store.hot),
        }
    }

    /// Stops this group only: later calls fail with `MESHCACHE_CLOSED` and its store is
    /// emptied. `cluster.close()` closes every group.
    #[napi]
    pub fn close(&self) {
        self.group.close();
    }

    /// The group's name.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.group.name().to_string()
    }

    /// Whether the group (or its cluster) was closed.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.group.is_closed() || self.node.cluster().is_none()
    }
}

/// `group.get(key)`: a promise of the value; argument errors reject, never throw.
fn get_promise<'env>(
    group: &meshcache::Group,
    rt: &Handle,
    env: &'env Env,
    key: &Unknown<'env>,
) -> Result<Unknown<'env>> {
    let r = key_bytes(env, key).and_then(|k| {
        let g = group.clone();
        settle(env, rt, async move { g.get(&k).await }, Out::Buf)
    });
    or_reject(env, r)
}

/// `group.peek(key)`: a Buffer with a copy of the cached value, or `undefined`.
fn peek_value(group: &meshcache::Group, env: &Env, key: &Unknown<'_>) -> Result<sys::napi_value> {
    match with_key(env, key, |k| group.peek(k))? {
        Ok(Some(v)) => buffer(env, &v),
        Ok(None) => {
            let mut undefined = std::ptr::null_mut();
            // SAFETY: JS thread, live env.
            check_status!(unsafe { sys::napi_get_undefined(env.raw(), &mut undefined) })?;
            Ok(undefined)
        }
        Err(e) => Err(map_error(env, &e)),
    }
}

// ---------------------------------------------------------------------------------------
// Fast paths: `peek` and `get` as plain napi functions, values in a pooled ArrayBuffer.
//
// A napi-rs 3.16 class method pays for its safety net on every call: it unwraps `this`
// (`napi_unwrap` plus a type-tag check) and opens and closes a "native borrow" scope (a
// process-wide `Mutex<HashMap>`, thread-locals, heap allocations): profiled, ~300-500 ns
// per call, ten times lru-cache's whole `get`. And a Buffer made by
// `napi_create_buffer_copy` costs ~1.5-2 us here (a malloc'd backing store per Buffer,
// which V8's ArrayBuffer sweeper then frees one by one), where JS makes a view on an
// ArrayBuffer in ~50 ns.
//
// So `group._fast()` (called once per group by `lib.cjs`) returns `{ peek, get, pool }`:
// napi functions whose data is the group (freed by the functions' finalizers), which read
// the key straight from their argument. On a hit of a small value they copy it into
// `pool` (an ArrayBuffer they replace when it is full, setting `this.pool`) and return
// `offset * POOL_LEN_SPAN + length`; `lib.cjs` makes the Buffer view (and, for `get`, the
// resolved promise). Anything else (a miss, a large value, an error, a load) is answered
// exactly as by the class methods, which stay for `Group.prototype.peek.call(g, k)`.

/// The data of a group's fast functions (shared by both; JS thread only).
struct Fast {
    group: meshcache::Group,
    node: Arc<Node>,
    pool: std::cell::RefCell<Pool>,
}

/// Bytes of one pool ArrayBuffer.
const POOL_SIZE: usize = 64 * 1024;
/// Values up to this many bytes are copied into the pool; larger ones get a Buffer of
/// their own (so that a small Buffer kept alive holds at most 64 KiB).
const POOL_MAX_VALUE: usize = 4096;
/// The fast functions return `offset * POOL_LEN_SPAN + length`, a small integer (below
/// 2^30). `lib.cjs` relies on the value 8192.
const POOL_LEN_SPAN: usize = 8192;
const _: () = assert!(POOL_MAX_VALUE < POOL_LEN_SPAN && POOL_SIZE * POOL_LEN_SPAN < 1 << 30);

/// The current pool ArrayBuffer: `data[off..]` is free; `[..off]` belongs to Buffers
/// already handed out, and is never written again.
struct Pool {
    /// A strong reference that keeps the ArrayBuffer (and `data`) alive; null before the
    /// first pooled value.
    buf: sys::napi_ref,
    data: *mut u8,
    off: usize,
}

impl Fast {
    /// Copies `v` into the pool (a new one if it is full) and returns where it went.
    /// `holder` (the `this` of the call) gets the new pool as its `pool` property.
    fn pooled(&self, env: &Env, holder: sys::napi_value, v: &[u8]) -> Result<sys::napi_value> {
        let mut pool = self.pool.borrow_mut();
        if pool.buf.is_null() || pool.off + v.len() > POOL_SIZE {
            let mut data = std::ptr::null_mut();
            let mut ab = std::ptr::null_mut();
            let mut buf = std::ptr::null_mut();
            // SAFETY: JS thread, live env, local out-pointers. The new reference is made
            // before the old one is dropped; `holder.pool` keeps JS's view in step.
            unsafe {
                check_status!(sys::napi_create_arraybuffer(
                    env.raw(),
                    POOL_SIZE,
                    &mut data,
                    &mut ab
                ))?;
                check_status!(sys::napi_set_named_property(
                    env.raw(),
                    holder,
                    c"pool".as_ptr(),
                    ab
                ))?;
                check_status!(sys::napi_create_reference(env.raw(), ab, 1, &mut buf))?;
                if !pool.buf.is_null() {
                    sys::napi_delete_reference(env.raw(), pool.buf);
                }
            }
            *pool = Pool {
                buf,
                data: data.cast(),
                off: 0,
            };
        }
        let off = pool.off;
        // SAFETY: `data` is the live pool of POOL_SIZE bytes (kept by `buf`), and
        // `off + v.len() <= POOL_SIZE`; nothing else writes to it.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), pool.data.add(off), v.len()) };
        // The next value starts 8-byte aligned, like in Node's own Buffer pool.
        pool.off = (off + v.len() + 7) & !7;
        let mut out = std::ptr::null_mut();
        // SAFETY: JS thread, live env; the number is below 2^30 (checked above).
        check_status!(unsafe {
            sys::napi_create_uint32(env.raw(), (off * POOL_LEN_SPAN + v.len()) as u32, &mut out)
        })?;
        Ok(out)
    }
}

/// A key owned without a heap allocation when it is short (the usual case), for the
/// future of a fast `get`.
enum OwnedKey {
    Inline(u8, [u8; 62]),
    Heap(Bytes),
}

impl OwnedKey {
    fn new(k: &[u8]) -> Self {
        let mut inline = [0u8; 62];
        match inline.get_mut(..k.len()) {
            Some(dst) => {
                dst.copy_from_slice(k);
                OwnedKey::Inline(k.len() as u8, inline)
            }
            None => OwnedKey::Heap(Bytes::copy_from_slice(k)),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            OwnedKey::Inline(len, b) => &b[..*len as usize],
            OwnedKey::Heap(b) => b,
        }
    }
}

/// The napi callback of a fast function: reads its one argument, `this` and its data,
/// runs `body`, and throws the error it returns. A panic becomes a JS error too (it must
/// not unwind into Node).
///
/// # Safety
/// Called by napi only, on the JS thread, for a function made by `fast_function` (its
/// data pointer is a live `Box<Rc<Fast>>`).
unsafe fn fast_call(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    body: impl FnOnce(&Fast, &Env, sys::napi_value, &Unknown<'_>) -> Result<sys::napi_value>,
) -> sys::napi_value {
    let mut argc = 1usize;
    let mut argv = [std::ptr::null_mut(); 1];
    let mut this = std::ptr::null_mut();
    let mut data = std::ptr::null_mut();
    // SAFETY: as documented; napi fills missing arguments with `undefined`.
    let status =
        unsafe { sys::napi_get_cb_info(env, info, &mut argc, argv.as_mut_ptr(), &mut this, &mut data) };
    if status != sys::Status::napi_ok || data.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `data` is the function's box, freed only by its finalizer, which cannot
    // run while the function is being called.
    let fast: &Fast = unsafe { &*data.cast::<std::rc::Rc<Fast>>() };
    let js_env = Env::from_raw(env);
    // SAFETY: a value of this call, on this env.
    let key = unsafe { Unknown::from_raw_unchecked(env, argv[0]) };
    let run = std::panic::AssertUnwindSafe(|| body(fast, &js_env, this, &key));
    let err = match std::panic::catch_unwind(run) {
        Ok(Ok(v)) => return v,
        Ok(Err(e)) => e,
        Err(_) => map_error(
            &js_env,
            &meshcache::Error::new(ErrorKind::Panic, "meshcache panicked (a bug)"),
        ),
    };
    // SAFETY: JS thread, live env; returning null with the exception pending throws it.
    unsafe { JsError::from(err).throw_into(env) };
    std::ptr::null_mut()
}

unsafe extern "C" fn fast_peek(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: napi calls this for the function `Group::fast` made.
    unsafe {
        fast_call(env, info, |f, env, this, key| {
            match with_key(env, key, |k| f.group.peek(k))? {
                Ok(Some(v)) if v.len() <= POOL_MAX_VALUE => f.pooled(env, this, &v),
                Ok(Some(v)) => buffer(env, &v),
                Ok(None) => {
                    let mut undefined = std::ptr::null_mut();
                    check_status!(sys::napi_get_undefined(env.raw(), &mut undefined))?;
                    Ok(undefined)
                }
                Err(e) => Err(map_error(env, &e)),
            }
        })
    }
}

unsafe extern "C" fn fast_get(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: napi calls this for the function `Group::fast` made.
    unsafe {
        fast_call(env, info, |f, env, this, key| {
            let k = match with_key(env, key, OwnedKey::new) {
                Ok(k) => k,
                Err(e) => return Ok(rejected(env, e)?.raw()),
            };
            let g = f.group.clone();
            let mut fut = Box::pin(async move { g.get(k.as_slice()).await });
            match poll_once(&f.node.rt, &mut fut) {
                Poll::Ready(Ok(v)) if v.len() <= POOL_MAX_VALUE => f.pooled(env, this, &v),
                Poll::Ready(Ok(v)) => Ok(PromiseRaw::resolve(env, Out::Buf(v))?.raw()),
                Poll::Ready(Err(e)) => Ok(rejected(env, map_error(env, &e))?.raw()),
                Poll::Pending => Ok(pending(env, &f.node.rt, fut, Out::Buf)?.raw()),
            }
        })
    }
}

unsafe extern "C" fn drop_fast(
    env: sys::napi_env,
    data: *mut std::ffi::c_void,
    _hint: *mut std::ffi::c_void,
) {
    // SAFETY: `data` is the box of the function being collected; this runs once, on the
    // JS thread.
    let fast = unsafe { Box::from_raw(data.cast::<std::rc::Rc<Fast>>()) };
    if let Ok(last) = std::rc::Rc::try_unwrap(*fast) {
        let buf = last.pool.into_inner().buf;
        if !buf.is_null() {
            // SAFETY: as above; the reference was made on this env.
            unsafe { sys::napi_delete_reference(env, buf) };
        }
    }
}

/// A napi function named `name` calling `cb`, holding `fast` until it is collected.
fn fast_function(
    env: &Env,
    name: &std::ffi::CStr,
    cb: sys::napi_callback,
    fast: std::rc::Rc<Fast>,
) -> Result<sys::napi_value> {
    let data = Box::into_raw(Box::new(fast)).cast::<std::ffi::c_void>();
    let mut func = std::ptr::null_mut();
    // SAFETY: JS thread, live env; `name` is NUL-terminated; `data` is a live box whose
    // ownership passes to the finalizer once it is registered.
    unsafe {
        let created = sys::napi_create_function(env.raw(), name.as_ptr(), -1, cb, data, &mut func);
        if created != sys::Status::napi_ok
            || sys::napi_add_finalizer(
                env.raw(),
                func,
                data,
                Some(drop_fast),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ) != sys::Status::napi_ok
        {
            drop(Box::from_raw(data.cast::<std::rc::Rc<Fast>>()));
            return Err(napi::Error::from_reason("could not create a napi function"));
        }
    }
    Ok(func)
}
