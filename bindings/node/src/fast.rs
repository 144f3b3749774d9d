//! The hit fast path: `peek` and `get` as plain napi functions, values in a pooled
//! ArrayBuffer.
//!
//! A napi-rs 3.16 class method pays for its safety net on every call: it unwraps `this`
//! (`napi_unwrap` plus a type-tag check) and opens and closes a "native borrow" scope (a
//! process-wide `Mutex<HashMap>`, thread-locals, heap allocations): profiled, ~300-500 ns
//! per call, ten times lru-cache's whole `get`. And a Buffer made by
//! `napi_create_buffer_copy` costs ~1.5-2 us here (a malloc'd backing store per Buffer,
//! which V8's ArrayBuffer sweeper then frees one by one), where JS makes a view on an
//! ArrayBuffer in ~50 ns.
//!
//! So `group._fast()` (called once per group by `lib.cjs`) returns `{ peek, get, miss,
//! pool }`: napi functions whose data is the group (freed by the functions' finalizers),
//! which read the key straight from their argument. On a hit of a small value they copy
//! it into `pool` (an ArrayBuffer they replace when it is full, setting `this.pool`),
//! under the store's read lock (the core's `peek_with` / `get_now_with`), and return
//! `offset * POOL_LEN_SPAN + length`; `lib.cjs` makes the Buffer view (and, for `get`,
//! the resolved promise). A large value, an error, or a `peek` miss is answered exactly
//! as by the class methods, which stay for `Group.prototype.peek.call(g, k)`.
//!
//! A `get` miss answers `undefined` and keeps the rest of the get (the core's
//! `Now::Pending`, not started) for the `miss(key, scope, options)` that `lib.cjs` calls
//! next with the load scope of its `AsyncLocalStorage` (see `loader.rs`) and the get's
//! options, whose `timeoutMs` only a pending get pays for: without a scope, the kept
//! get is spawned; with one, it is dropped and the get asked again inside the scope, so
//! that a loader's get of its own key is refused by the core. A hit never looks at the
//! scope.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use meshcache::{GetFuture, LoadScope};
use napi::bindgen_prelude::*;
use napi::{JsValue, Unknown, sys};

use crate::cluster::Node;
use crate::convert::{Out, buffer, scope_arg, with_key};
use crate::errors::{map_error, panic_error};
use crate::group::{Got, spawn_miss};
use crate::promise::rejected;

/// `group._fast()`: `{ peek, get, miss, pool }`, the fast functions of `group` and their
/// (empty) pool.
pub(crate) fn handles<'env>(
    env: &'env Env,
    group: &meshcache::Group,
    id: u64,
    node: &Arc<Node>,
    load_timeout: bool,
) -> Result<Unknown<'env>> {
    let fast = Rc::new(Fast {
        group: group.clone(),
        id,
        node: node.clone(),
        load_timeout,
        pool: RefCell::new(Pool {
            buf: std::ptr::null_mut(),
            data: std::ptr::null_mut(),
            off: 0,
        }),
        missed: RefCell::new(None),
    });
    let peek = fast_function(env, c"peek", Some(fast_peek), fast.clone())?;
    let get = fast_function(env, c"get", Some(fast_get), fast.clone())?;
    let miss = fast_function(env, c"miss", Some(fast_miss), fast)?;
    let mut h = std::ptr::null_mut();
    let mut undefined = std::ptr::null_mut();
    // SAFETY: JS thread, live env, local out-pointers.
    unsafe {
        check_status!(sys::napi_create_object(env.raw(), &mut h))?;
        check_status!(sys::napi_get_undefined(env.raw(), &mut undefined))?;
        check_status!(sys::napi_set_named_property(env.raw(), h, c"peek".as_ptr(), peek))?;
        check_status!(sys::napi_set_named_property(env.raw(), h, c"get".as_ptr(), get))?;
        check_status!(sys::napi_set_named_property(env.raw(), h, c"miss".as_ptr(), miss))?;
        check_status!(sys::napi_set_named_property(
            env.raw(),
            h,
            c"pool".as_ptr(),
            undefined
        ))?;
        Ok(Unknown::from_raw_unchecked(env.raw(), h))
    }
}

/// The data of a group's fast functions (shared by all three; JS thread only).
struct Fast {
    group: meshcache::Group,
    /// The group's id in `node.gets`.
    id: u64,
    node: Arc<Node>,
    /// Whether the group has a `loadTimeoutMs`.
    load_timeout: bool,
    pool: RefCell<Pool>,
    /// The rest of the last `get` that missed, not started, and its key: `miss` spawns it
    /// (or drops it). Only ever set between a `get` and the `miss` that `lib.cjs` calls
    /// right after.
    missed: RefCell<Option<(GetFuture, Bytes)>>,
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

impl Fast {
    /// A hit's value for JS, made while the store lends its bytes: a copy in the pool
    /// (`Pooled`: the number `offset * POOL_LEN_SPAN + length`) or a Buffer of its own.
    fn copy_out(&self, env: &Env, holder: sys::napi_value, v: &[u8]) -> Result<Copied> {
        if v.len() <= POOL_MAX_VALUE {
            self.pooled(env, holder, v).map(Copied::Pooled)
        } else {
            buffer(env, v).map(Copied::Buffer)
        }
    }
}

/// See [`Fast::copy_out`].
enum Copied {
    Pooled(sys::napi_value),
    Buffer(sys::napi_value),
}

/// The napi callback of a fast function: reads its `N` arguments, `this` and its data,
/// runs `body`, and throws the error it returns. A panic becomes a JS error too (it must
/// not unwind into Node).
///
/// # Safety
/// Called by napi only, on the JS thread, for a function made by `fast_function` (its
/// data pointer is a live `Box<Rc<Fast>>`).
unsafe fn fast_call<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    body: impl FnOnce(&Fast, &Env, sys::napi_value, [Unknown<'_>; N]) -> Result<sys::napi_value>,
) -> sys::napi_value {
    let mut argc = N;
    let mut argv = [std::ptr::null_mut(); N];
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
    let fast: &Fast = unsafe { &*data.cast::<Rc<Fast>>() };
    let js_env = Env::from_raw(env);
    // SAFETY: values of this call, on this env.
    let args = argv.map(|a| unsafe { Unknown::from_raw_unchecked(env, a) });
    let run = std::panic::AssertUnwindSafe(|| body(fast, &js_env, this, args));
    let err = match std::panic::catch_unwind(run) {
        Ok(Ok(v)) => return v,
        Ok(Err(e)) => e,
        Err(payload) => panic_error(&js_env, &*payload),
    };
    // SAFETY: JS thread, live env; returning null with the exception pending throws it.
    unsafe { JsError::from(err).throw_into(env) };
    std::ptr::null_mut()
}

fn undefined(env: &Env) -> Result<sys::napi_value> {
    let mut undefined = std::ptr::null_mut();
    // SAFETY: JS thread, live env, local out-pointer.
    check_status!(unsafe { sys::napi_get_undefined(env.raw(), &mut undefined) })?;
    Ok(undefined)
}

/// A promise resolved with `value`.
fn resolved(env: &Env, value: sys::napi_value) -> Result<sys::napi_value> {
    let mut deferred = std::ptr::null_mut();
    let mut promise = std::ptr::null_mut();
    // SAFETY: JS thread, live env, local out-pointers; the deferred is resolved at once.
    unsafe {
        check_status!(sys::napi_create_promise(env.raw(), &mut deferred, &mut promise))?;
        check_status!(sys::napi_resolve_deferred(env.raw(), deferred, value))?;
    }
    Ok(promise)
}

unsafe extern "C" fn fast_peek(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: napi calls this for the function `handles` made.
    unsafe {
        fast_call(env, info, |f, env, this, [key]| {
            match with_key(env, &key, |k| f.group.peek_with(k, |v| f.copy_out(env, this, v)))? {
                Ok(Some(Ok(Copied::Pooled(v) | Copied::Buffer(v)))) => Ok(v),
                Ok(Some(Err(e))) => Err(e),
                Ok(None) => undefined(env),
                Err(e) => Err(map_error(env, &e)),
            }
        })
    }
}

/// `h.get(key)`: a hit of a small value as a number (see the module docs), a promise for
/// anything else but a miss, and `undefined` for a miss (kept for `h.miss`).
unsafe extern "C" fn fast_get(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: napi calls this for the function `handles` made.
    unsafe {
        fast_call(env, info, |f, env, this, [key]| {
            let now = match with_key(env, &key, |k| {
                let now = f.group.get_now_with(k, |v| f.copy_out(env, this, v));
                now.map(|n| Got::new(n, k))
            }) {
                Ok(now) => now,
                Err(e) => return Ok(rejected(env, e)?.raw()),
            };
            match now {
                Ok(Got::Hit(Ok(Copied::Pooled(v)))) => Ok(v),
                Ok(Got::Hit(Ok(Copied::Buffer(v)))) => resolved(env, v),
                Ok(Got::Hit(Err(e))) => Err(e),
                Ok(Got::Miss(rest, k)) => {
                    *f.missed.borrow_mut() = Some((rest, k));
                    undefined(env)
                }
                Err(e) => Ok(rejected(env, map_error(env, &e))?.raw()),
            }
        })
    }
}

/// `h.miss(key, scope, options)`, right after `h.get(key)` answered `undefined`: the
/// promise of the get. `scope` is the load scope of the JS context (`undefined` outside a
/// loader); `options` the get's (its `timeoutMs` is read only here, never on a hit).
unsafe extern "C" fn fast_miss(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: napi calls this for the function `handles` made.
    unsafe {
        fast_call(env, info, |f, env, _this, [key, scope, options]| {
            let missed = f.missed.borrow_mut().take();
            let scope: Option<&LoadScope> = scope_arg(env, &scope)?;
            let now = match (missed, scope) {
                (Some((rest, k)), None) => Ok(Got::Miss(rest, k)),
                // Inside a loader: ask again with its scope entered, so that the core
                // refuses a get of the very key being loaded.
                (_, scope) => match with_key(env, &key, |k| {
                    let _entered = scope.map(LoadScope::enter);
                    f.group.get_now(k).map(|n| Got::new(n, k))
                }) {
                    Ok(now) => now,
                    Err(e) => return Ok(rejected(env, e)?.raw()),
                },
            };
            let promise = match now {
                Ok(Got::Hit(v)) => PromiseRaw::resolve(env, Out::Buf(v))?.to_unknown(),
                Ok(Got::Miss(rest, k)) => {
                    spawn_miss(env, &f.node, f.load_timeout, (f.id, k), rest, Some(options))?
                }
                Err(e) => rejected(env, map_error(env, &e))?,
            };
            Ok(promise.raw())
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
    let fast = unsafe { Box::from_raw(data.cast::<Rc<Fast>>()) };
    if let Ok(last) = Rc::try_unwrap(*fast) {
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
    fast: Rc<Fast>,
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
            drop(Box::from_raw(data.cast::<Rc<Fast>>()));
            return Err(napi::Error::from_reason("could not create a napi function"));
        }
    }
    Ok(func)
}
