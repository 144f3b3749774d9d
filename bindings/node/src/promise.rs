//! Promises of the async methods: a hit settles on the JS thread (the core's `get_now`
//! answered it), everything else from the runtime: a `get` that missed through its
//! cluster's [`Gets`], which keeps the process alive only while Rust work is pending.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use meshcache::ErrorKind;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{JsValue, Unknown, sys};
use tokio::runtime::Handle;

use crate::convert::Out;
use crate::errors::{map_error, panic_error};

/// A promise settled by `fut`, which runs on the runtime.
pub(crate) fn spawn<'env, T, F>(
    env: &'env Env,
    rt: &Handle,
    fut: F,
    out: fn(T) -> Out,
) -> Result<Unknown<'env>>
where
    F: Future<Output = meshcache::Result<T>> + Send + 'static,
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

pub(crate) fn rejected<'env>(env: &'env Env, e: napi::Error) -> Result<Unknown<'env>> {
    Ok(PromiseRaw::<()>::reject(env, e)?.to_unknown())
}

/// Returns a rejected promise for an argument error, the promise otherwise: async
/// methods never throw.
pub(crate) fn or_reject<'env>(env: &'env Env, r: Result<Unknown<'env>>) -> Result<Unknown<'env>> {
    match r {
        Ok(p) => Ok(p),
        Err(e) => rejected(env, e),
    }
}

/// What a pending get waits for, and what a JS loader may be loading: a group (its
/// [`Gets::group_id`]) and a key.
pub(crate) type Track = (u64, Bytes);

/// The promises of a cluster's `get`s that miss, and whether they keep the process alive.
///
/// Each settles through one weak thread-safe function per cluster (not a deferred with a
/// thread-safe function of its own, which would hold the event loop until it settles):
/// the function is ref'd while some pending get waits for Rust work (a peer, the core),
/// and unref'd while every pending get waits for a JS loader that has not settled. Such a
/// loader keeps the process alive by itself if it is doing anything (a timer, a socket);
/// if it never settles and nothing else is pending, the process exits, as the README
/// promises. Loader calls report here when they start and when they settle (on the JS
/// thread, before anything else runs), so the function is ref'd again as soon as a
/// loader's get waits for the core. A get with a deadline (its own `timeoutMs`, or its
/// group's `loadTimeoutMs`) is never blocked: it settles by then, whatever the loader does.
/// The bookkeeping and the ref/unref happen on the JS thread only.
#[derive(Clone)]
pub(crate) struct Gets(Arc<GetsInner>);

type SettleFn = ThreadsafeFunction<Settled, (), (), Status, false, true>;

struct GetsInner {
    /// Set once, right after creation; holds the only strong reference to the function
    /// (its callback holds a weak one to this).
    settle: OnceLock<SettleFn>,
    state: Mutex<LiveState>,
    next_group: AtomicU64,
}

#[derive(Default)]
struct LiveState {
    /// Pending gets, by what they wait for.
    waiting: HashMap<Track, usize>,
    /// JS loader calls whose promise has not settled, by what they load.
    loading: HashMap<Track, usize>,
    /// Groups closed (`group.close()`), and whether the cluster is closing: their pending
    /// gets are about to be rejected with `MESHCACHE_CLOSED` by the runtime, whatever
    /// their loaders do, and the process must wait for that.
    closed: HashSet<u64>,
    closing: bool,
    /// Pending gets that are not blocked (see [`LiveState::blocked`]).
    unblocked: usize,
    /// Pending gets with a deadline: never blocked, not in `waiting`.
    bounded: usize,
    /// Pending `getMany` calls without a deadline, by id: the keys each waits for. One is
    /// blocked while any of its keys waits for a JS loader that has not settled (it cannot
    /// settle before that key does).
    many: HashMap<u64, Vec<Track>>,
    next_many: u64,
    /// Whether the function is ref'd.
    held: bool,
}

/// What a pending call waits for: one key (a get) or several (a getMany, by id).
enum Waits {
    One(Track),
    Many(u64),
}

/// A get's answer, on its way to the JS thread.
struct Settled {
    deferred: RawDeferred,
    result: meshcache::Result<Out>,
    waits: Waits,
    bounded: bool,
}

/// A deferred of `napi_create_promise`: settled exactly once, on the JS thread.
struct RawDeferred(sys::napi_deferred);

// SAFETY: the pointer is only used on the JS thread (in the settle callback); other
// threads only move it along.
unsafe impl Send for RawDeferred {}

impl Gets {
    /// Made on the JS thread, with the cluster.
    pub(crate) fn new(env: &Env) -> Result<Gets> {
        let inner = Arc::new(GetsInner {
            settle: OnceLock::new(),
            state: Mutex::new(LiveState::default()),
            next_group: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&inner);
        let noop = env.create_function_from_closure::<(), (), _>("meshcacheSettle", |_| Ok(()))?;
        let settle = noop
            .build_threadsafe_function::<Settled>()
            .weak::<true>()
            .callee_handled::<false>()
            .build_callback(move |ctx: ThreadsafeCallContext<Settled>| {
                settle_get(&ctx.env, ctx.value, &weak);
                Ok(())
            })?;
        let _ = inner.settle.set(settle);
        Ok(Gets(inner))
    }

    /// A new group's id, for [`Track`].
    pub(crate) fn group_id(&self) -> u64 {
        self.0.next_group.fetch_add(1, Ordering::Relaxed)
    }

    /// A promise settled by `fut` (the rest of a get that missed, for `track`), which runs
    /// on the runtime. `bounded`: `fut` ends by a deadline of its own, so that it keeps
    /// the process alive even while a JS loader it waits for has not settled. JS thread.
    pub(crate) fn spawn<'env, F>(
        &self,
        env: &'env Env,
        rt: &Handle,
        track: Track,
        bounded: bool,
        fut: F,
    ) -> Result<Unknown<'env>>
    where
        F: Future<Output = meshcache::Result<Bytes>> + Send + 'static,
    {
        self.update(env, |s| s.get_started(&track, bounded));
        let fut = async move { fut.await.map(Out::Buf) };
        self.spawn_waiting(env, rt, Waits::One(track), bounded, fut)
    }

    /// [`Gets::spawn`] of a `getMany` of `tracks` (its answer a Map): it keeps the process
    /// alive unless one of its keys waits for a JS loader that has not settled.
    pub(crate) fn spawn_many<'env, F>(
        &self,
        env: &'env Env,
        rt: &Handle,
        tracks: Vec<Track>,
        bounded: bool,
        fut: F,
    ) -> Result<Unknown<'env>>
    where
        F: Future<Output = meshcache::Result<Out>> + Send + 'static,
    {
        let mut id = 0;
        self.update(env, |s| id = s.many_started(tracks, bounded));
        self.spawn_waiting(env, rt, Waits::Many(id), bounded, fut)
    }

    fn spawn_waiting<'env, F>(
        &self,
        env: &'env Env,
        rt: &Handle,
        waits: Waits,
        bounded: bool,
        fut: F,
    ) -> Result<Unknown<'env>>
    where
        F: Future<Output = meshcache::Result<Out>> + Send + 'static,
    {
        let mut deferred = std::ptr::null_mut();
        let mut promise = std::ptr::null_mut();
        // SAFETY: JS thread, live env, local out-pointers.
        let made = check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) });
        if let Err(e) = made {
            self.update(env, |s| s.settled(&waits, bounded));
            return Err(e);
        }
        let mut guard = GetGuard {
            gets: self.clone(),
            pending: Some((RawDeferred(deferred), waits, bounded)),
        };
        // Started here, on the JS thread: a remote get writes its request at once, and
        // no worker thread wakes until the answer (or a timer) is ready.
        meshcache::spawn_polled(rt, async move {
            let result = fut.await;
            guard.settle(result);
        });
        // SAFETY: `promise` was just made on this env.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) })
    }

    /// A JS loader call for `track` returned its promise. JS thread.
    pub(crate) fn load_started(&self, env: &Env, track: &Track) {
        self.update(env, |s| s.load_started(track));
    }

    /// That promise settled. JS thread.
    pub(crate) fn load_ended(&self, env: &Env, track: &Track) {
        self.update(env, |s| s.load_ended(track));
    }

    /// That promise will never be heard of (its callbacks were collected): the counts
    /// only; the next update refs or unrefs.
    pub(crate) fn load_dropped(&self, track: &Track) {
        self.0
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .load_ended(track);
    }

    /// `group.close()` was called (`group` is its id). JS thread.
    pub(crate) fn group_closed(&self, env: &Env, group: u64) {
        self.update(env, |s| {
            s.closed.insert(group);
            s.recount();
        });
    }

    /// `cluster.close()` was called. JS thread.
    pub(crate) fn closing(&self, env: &Env) {
        self.update(env, |s| {
            s.closing = true;
            s.recount();
        });
    }

    /// Runs `f` on the state, then refs or unrefs the function to match. JS thread.
    fn update(&self, env: &Env, f: impl FnOnce(&mut LiveState)) {
        let mut s = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
        let want = s.unblocked > 0 || s.bounded > 0 || s.many_unblocked();
        if want == s.held {
            return;
        }
        let Some(tsfn) = self.0.settle.get() else { return };
        if tsfn.aborted() {
            return;
        }
        // SAFETY: JS thread, live env; the function is alive (this holds it, and it was
        // not aborted by the environment's teardown).
        let status = unsafe {
            if want {
                sys::napi_ref_threadsafe_function(env.raw(), tsfn.raw())
            } else {
                sys::napi_unref_threadsafe_function(env.raw(), tsfn.raw())
            }
        };
        if status == sys::Status::napi_ok {
            s.held = want;
        }
    }
}

impl LiveState {
    /// Whether the gets of `track` wait only for a JS loader that has not settled.
    fn blocked(&self, track: &Track) -> bool {
        !self.closing && self.loading.contains_key(track) && !self.closed.contains(&track.0)
    }

    fn waiting(&self, track: &Track) -> usize {
        self.waiting.get(track).copied().unwrap_or(0)
    }

    fn get_started(&mut self, track: &Track, bounded: bool) {
        if bounded {
            self.bounded += 1;
            return;
        }
        *self.waiting.entry(track.clone()).or_default() += 1;
        if !self.blocked(track) {
            self.unblocked += 1;
        }
    }

    /// Records a pending `getMany`; returns its id.
    fn many_started(&mut self, tracks: Vec<Track>, bounded: bool) -> u64 {
        if bounded {
            self.bounded += 1;
            return u64::MAX;
        }
        self.next_many += 1;
        self.many.insert(self.next_many, tracks);
        self.next_many
    }

    /// Whether some pending `getMany` waits for Rust work only.
    fn many_unblocked(&self) -> bool {
        (self.many.values()).any(|tracks| !tracks.iter().any(|t| self.blocked(t)))
    }

    fn settled(&mut self, waits: &Waits, bounded: bool) {
        match waits {
            Waits::One(track) => self.get_settled(track, bounded),
            Waits::Many(_) if bounded => self.bounded = self.bounded.saturating_sub(1),
            Waits::Many(id) => {
                self.many.remove(id);
            }
        }
    }

    fn get_settled(&mut self, track: &Track, bounded: bool) {
        if bounded {
            self.bounded = self.bounded.saturating_sub(1);
            return;
        }
        let Some(n) = self.waiting.get_mut(track) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.waiting.remove(track);
        }
        if !self.blocked(track) {
            self.unblocked = self.unblocked.saturating_sub(1);
        }
    }

    fn load_started(&mut self, track: &Track) {
        let was = self.blocked(track);
        *self.loading.entry(track.clone()).or_default() += 1;
        if !was && self.blocked(track) {
            self.unblocked = self.unblocked.saturating_sub(self.waiting(track));
        }
    }

    fn load_ended(&mut self, track: &Track) {
        let was = self.blocked(track);
        let Some(n) = self.loading.get_mut(track) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.loading.remove(track);
        }
        if was && !self.blocked(track) {
            self.unblocked += self.waiting(track);
        }
    }

    /// After `closed` or `closing` changed.
    fn recount(&mut self) {
        self.unblocked = (self.waiting.iter())
            .filter(|(t, _)| !self.blocked(t))
            .map(|(_, n)| n)
            .sum();
    }
}

/// Settles its get's promise with the future's result, or with `MESHCACHE_CLOSED` if the
/// future is dropped first (the cluster closed, or its runtime stopped, with the call in
/// flight), so that it never stays pending.
struct GetGuard {
    gets: Gets,
    pending: Option<(RawDeferred, Waits, bool)>,
}

impl GetGuard {
    fn settle(&mut self, result: meshcache::Result<Out>) {
        let Some((deferred, waits, bounded)) = self.pending.take() else {
            return;
        };
        if let Some(tsfn) = self.gets.0.settle.get() {
            // Refused only once the environment is going away: nobody is left to tell.
            let _ = tsfn.call(
                Settled {
                    deferred,
                    result,
                    waits,
                    bounded,
                },
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        }
    }
}

impl Drop for GetGuard {
    fn drop(&mut self) {
        self.settle(Err(meshcache::Error::new(
            ErrorKind::Closed,
            "the cluster was closed before this call finished",
        )));
    }
}

/// The settle function's callback (JS thread): settles the promise, then updates the
/// bookkeeping (if the cluster is still there).
fn settle_get(env: &Env, s: Settled, gets: &Weak<GetsInner>) {
    let Settled {
        deferred,
        result,
        waits,
        bounded,
    } = s;
    let run = std::panic::AssertUnwindSafe(|| match result {
        // SAFETY: JS thread (the settle function's callback).
        Ok(v) => unsafe { Out::to_napi_value(env.raw(), v) },
        Err(e) => Err(map_error(env, &e)),
    });
    let outcome = match std::panic::catch_unwind(run) {
        Ok(o) => o,
        Err(payload) => Err(panic_error(env, &*payload)),
    };
    // SAFETY: JS thread, live env; the deferred is settled once, here.
    unsafe {
        match outcome {
            Ok(v) => {
                sys::napi_resolve_deferred(env.raw(), deferred.0, v);
            }
            Err(e) => {
                let v = JsError::from(e).into_value(env.raw());
                if !v.is_null() {
                    sys::napi_reject_deferred(env.raw(), deferred.0, v);
                }
            }
        }
    }
    if let Some(inner) = gets.upgrade() {
        Gets(inner).update(env, |st| st.settled(&waits, bounded));
    }
}
