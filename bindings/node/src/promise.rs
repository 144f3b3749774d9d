//! Promises of the async methods: a hit settles on the JS thread (the core's `get_now`
//! answered it), everything else from the runtime.

use std::future::Future;

use meshcache::ErrorKind;
use napi::bindgen_prelude::*;
use napi::{JsValue, Unknown};
use tokio::runtime::Handle;

use crate::convert::Out;
use crate::errors::map_error;

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
