//! Load scopes: a `get` of the key a loader is loading would wait for itself; this is
//! how every language notices and refuses it instead of hanging.
//!
//! A load runs inside a [`LoadScope`] (its group and key). The scope travels the way each
//! kind of loader runs:
//!
//! - a Rust loader's future runs in the flight's task, which carries the scope as a task
//!   local: an `await group.get(same key)` inside it fails at once;
//! - a blocking loader (C, a Python function) runs on a blocking thread through
//!   [`blocking_load`], which marks that thread for the duration of the call;
//! - a loader driven by another event loop (Python `async def`, JavaScript) is handed
//!   [`LoadScope::current`] by its binding, which keeps it in that language's own context
//!   (a `contextvars` variable, an `AsyncLocalStorage`) and [`LoadScope::enter`]s it around
//!   the `get` calls made from there.
//!
//! A `get` that misses checks the scope of its thread and task; a hit never does. Guards
//! restore the previous scope when dropped, so a panic cannot leave a stale one behind.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result, panic_message};

tokio::task_local! {
    static TASK_SCOPE: LoadScope;
}

thread_local! {
    static THREAD_SCOPE: RefCell<Option<LoadScope>> = const { RefCell::new(None) };
}

/// The load in progress: which group's loader, for which key.
#[derive(Clone, PartialEq, Eq)]
pub struct LoadScope {
    group: usize,
    key: Bytes,
}

impl fmt::Debug for LoadScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadScope")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl LoadScope {
    pub(crate) fn new(group: usize, key: Bytes) -> Self {
        LoadScope { group, key }
    }

    /// The load running on this task or thread, if any. Call it from a loader (its future
    /// or its blocking call) to carry the scope to wherever the loader's work continues.
    pub fn current() -> Option<LoadScope> {
        TASK_SCOPE
            .try_with(LoadScope::clone)
            .ok()
            .or_else(|| THREAD_SCOPE.with(|s| s.borrow().clone()))
    }

    /// Marks this thread as running this load until the guard is dropped: a `get` of the
    /// same key in the same group from this thread meanwhile fails with
    /// [`ErrorKind::InvalidArgument`] instead of waiting for itself.
    pub fn enter(&self) -> ScopeGuard {
        let previous = THREAD_SCOPE.with(|s| s.replace(Some(self.clone())));
        ScopeGuard {
            previous,
            _not_send: PhantomData,
        }
    }

    /// Runs `fut` inside this load, on whichever thread polls it: for a binding that
    /// spawns a call made from a loader's context onto the runtime (an async
    /// `get_many`), where [`LoadScope::enter`] would mark only the calling thread.
    pub fn run<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        run_in(self, fut)
    }

    /// The key being loaded.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    fn is(&self, group: usize, key: &[u8]) -> bool {
        self.group == group && self.key[..] == *key
    }
}

/// Restores the thread's previous scope when dropped. Stays on the thread it was made on.
#[must_use = "the scope ends when the guard is dropped"]
#[derive(Debug)]
pub struct ScopeGuard {
    previous: Option<LoadScope>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        THREAD_SCOPE.with(|s| *s.borrow_mut() = previous);
    }
}

/// `Err(InvalidArgument)` if the caller is the load of `key` in group `group` itself.
pub(crate) fn check_not_loading(group: usize, key: &[u8]) -> Result<()> {
    let task = TASK_SCOPE.try_with(|s| s.is(group, key)).unwrap_or(false);
    let thread = || THREAD_SCOPE.with(|s| s.borrow().as_ref().is_some_and(|s| s.is(group, key)));
    if task || thread() {
        return Err(Error::invalid(
            "a loader asked for the key it is loading: that get would wait for itself",
        ));
    }
    Ok(())
}

/// Runs `load` with `scope` as its task's scope.
pub(crate) fn run_in<F: Future>(scope: LoadScope, load: F) -> impl Future<Output = F::Output> {
    TASK_SCOPE.scope(scope, load)
}

/// Runs a blocking loader call on the runtime's blocking pool, so it may block without
/// stalling the runtime's workers, with the current load's scope entered on that thread.
/// For bindings whose loaders are synchronous functions (C, Python).
///
/// # Errors
///
/// [`ErrorKind::Panic`] if `call` panicked; [`ErrorKind::Closed`] if the runtime shut
/// down before it ran.
pub async fn blocking_load<T, F>(call: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let scope = LoadScope::current();
    let joined = tokio::task::spawn_blocking(move || {
        let _guard = scope.as_ref().map(LoadScope::enter);
        call()
    })
    .await;
    match joined {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => Err(Error::new(
            ErrorKind::Panic,
            format!("loader panicked: {}", panic_message(&*e.into_panic())),
        )),
        Err(_) => Err(Error::new(
            ErrorKind::Closed,
            "the runtime stopped before the loader ran",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_restores_the_previous_scope_even_through_a_panic() {
        let outer = LoadScope::new(1, Bytes::from_static(b"a"));
        let inner = LoadScope::new(1, Bytes::from_static(b"b"));
        let _g = outer.enter();
        let r = std::panic::catch_unwind(|| {
            let _g = inner.enter();
            assert!(check_not_loading(1, b"b").is_err());
            panic!("loader bug");
        });
        assert!(r.is_err());
        assert_eq!(LoadScope::current(), Some(outer));
        assert!(check_not_loading(1, b"b").is_ok());
        assert!(check_not_loading(2, b"a").is_ok(), "another group's key is fine");
        assert_eq!(
            check_not_loading(1, b"a").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[tokio::test]
    async fn a_blocking_call_runs_in_the_task_scope_and_panics_are_errors() {
        let scope = LoadScope::new(7, Bytes::from_static(b"k"));
        let seen = run_in(scope.clone(), blocking_load(LoadScope::current))
            .await
            .unwrap();
        assert_eq!(seen, Some(scope));
        let e = blocking_load(|| panic!("boom")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panic);
        assert!(e.message().contains("boom"));
    }
}
