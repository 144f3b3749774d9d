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
//! So `group._fast()` (called once per group by `lib.cjs`) returns `{ peek, get, pool }`:
//! napi functions whose data is the group (freed by the functions' finalizers), which read
//! the key straight from their argument. On a hit of a small value they copy it into
//! `pool` (an ArrayBuffer they replace when it is full, setting `this.pool`) and return
//! `offset * POOL_LEN_SPAN + length`; `lib.cjs` makes the Buffer view (and, for `get`, the
//! resolved promise). Anything else (a miss, a large value, an error, a load) is answered
//! exactly as by the class methods, which stay for `Group.prototype.peek.call(g, k)`.

use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use meshcache::ErrorKind;
use napi::bindgen_prelude::*;
use napi::{JsValue, Unknown, sys};

use crate::cluster::Node;
use crate::convert::{Out, buffer, with_key};
use crate::errors::map_error;
use crate::promise::{pending, poll_once, rejected};

/// `group._fast()`: `{ peek, get, pool }`, the fast functions of `group` and their
/// (empty) pool.
pub(crate) fn handles<'env>(
    env: &'env Env,
    group: &meshcache::Group,
    node: &Arc<Node>,
) -> Result<Unknown<'env>> {
    let fast = std::rc::Rc::new(Fast {
        group: group.clone(),
        node: node.clone(),
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
