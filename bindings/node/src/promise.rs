//! Promises of the async methods: a hit settles on the JS thread, a miss from the runtime.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use meshcache::ErrorKind;
use napi::bindgen_prelude::*;
use napi::{JsValue, Unknown};
use tokio::runtime::Handle;

use crate::convert::Out;
use crate::errors::map_error;

/// Runs a core future for JS: polls it once here on the JS thread (inside the cluster's
/// runtime context, so timers and spawns work) and settles the promise at once if it is
/// ready; otherwise moves it to the runtime and settles it from there.
pub(crate) fn settle<'env, T, F>(
    env: &'env Env,
    rt: &Handle,
    fut: F,
    out: fn(T) -> Out,
) -> Result<Unknown<'env>>
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
pub(crate) fn poll_once<F: Future + ?Sized>(rt: &Handle, fut: &mut std::pin::Pin<Box<F>>) -> Poll<F::Output> {
    let _ctx = rt.enter();
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// A promise settled by `fut`, which runs on the runtime from now on.
pub(crate) fn pending<'env, T, F>(
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
