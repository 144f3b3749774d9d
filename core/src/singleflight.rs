//! Singleflight: at most one load per key in flight in this process.
//!
//! The first caller for a key (the leader) spawns the load as its own task; later callers
//! for the same key wait for that task's result. Because the load is a task and not the
//! leader's future:
//!
//! - a caller that is dropped (cancelled) only stops waiting; the load goes on and the
//!   other waiters get its value;
//! - a load that panics is caught; every waiter receives the same [`ErrorKind::Panic`]
//!   error, and so does a load that fails: all waiters share one `Error` (one `Arc`);
//! - when the load ends, however it ends (even if the task is dropped because the runtime
//!   shuts down), a drop guard removes the key, so the key is never stuck and the next
//!   call loads again.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind, Result, panic_message};

type Slot<V> = watch::Sender<Option<Result<V>>>;

/// A load its leader polls in place; dropped unfinished, it is spawned to finish.
struct InPlace {
    task: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
    runtime: Handle,
}

impl Future for InPlace {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if let Some(task) = &mut self.task {
            std::task::ready!(task.as_mut().poll(cx));
            self.task = None;
        }
        std::task::Poll::Ready(())
    }
}

impl Drop for InPlace {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // On a runtime that is shutting down the task is dropped, and its cleanup
            // guard still unregisters the key.
            drop(self.runtime.spawn(task));
        }
    }
}

/// Deduplicates concurrent loads by key.
pub struct Singleflight<K, V> {
    /// Guards the map of flights in progress: key -> the channel its result is sent on.
    flights: Arc<Mutex<HashMap<K, Arc<Slot<V>>>>>,
    /// Once cancelled, every waiter (present and future) gets `Closed` at once.
    closed: CancellationToken,
}

impl<K, V> fmt::Debug for Singleflight<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Singleflight")
            .field("in_flight", &self.flights.lock().len())
            .finish()
    }
}

impl<K, V> Default for Singleflight<K, V> {
    fn default() -> Self {
        Singleflight {
            flights: Arc::default(),
            closed: CancellationToken::new(),
        }
    }
}

/// Removes the flight from the map when the load task ends or is dropped.
struct Cleanup<K: Eq + Hash, V> {
    flights: Arc<Mutex<HashMap<K, Arc<Slot<V>>>>>,
    key: Option<K>,
    slot: Arc<Slot<V>>,
}

impl<K: Eq + Hash, V> Drop for Cleanup<K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut map = self.flights.lock();
            if map.get(&key).is_some_and(|s| Arc::ptr_eq(s, &self.slot)) {
                map.remove(&key);
            }
        }
    }
}

impl<K, V> Singleflight<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A new, empty singleflight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of loads in flight.
    pub fn in_flight(&self) -> usize {
        self.flights.lock().len()
    }

    /// Number of callers waiting on the flight for `key` (0 if none is in flight).
    pub fn waiters(&self, key: &K) -> usize {
        self.flights.lock().get(key).map_or(0, |s| s.receiver_count())
    }

    /// Runs `load()` for `key` unless a load for it is already in flight, and returns that
    /// load's result. `load` is called only by the leader; the future it returns is
    /// spawned on `runtime`.
    ///
    /// # Errors
    ///
    /// The load's own error (shared by all waiters); [`ErrorKind::Panic`] if it panicked;
    /// [`ErrorKind::Closed`] if the runtime dropped the load before it finished.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future stops waiting, and nothing else: the load goes on for
    /// the other waiters and its result is still published.
    pub async fn run<F, Fut>(&self, runtime: &Handle, key: K, load: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>> + Send + 'static,
    {
        self.run_with(runtime, key, load, false).await
    }

    /// [`Singleflight::run`], where the leader polls the load itself instead of spawning
    /// it, so a flight whose work is mostly waiting on a socket costs no task switch (and,
    /// from a thread outside the runtime, no extra thread wake-up). The guarantees are the
    /// same: if the leader is dropped before the load ends, the rest of the load is
    /// spawned on `runtime` and goes on for the other waiters.
    ///
    /// # Errors
    ///
    /// As [`Singleflight::run`].
    pub async fn run_inline<F, Fut>(&self, runtime: &Handle, key: K, load: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>> + Send + 'static,
    {
        self.run_with(runtime, key, load, true).await
    }

    async fn run_with<F, Fut>(&self, runtime: &Handle, key: K, load: F, inline: bool) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V>> + Send + 'static,
    {
        let mut leading = None;
        let mut rx = {
            let mut map = self.flights.lock();
            match map.get(&key) {
                Some(slot) => slot.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    let slot = Arc::new(tx);
                    map.insert(key.clone(), slot.clone());
                    drop(map);
                    // Built after the lock is released: if `load` panicked here, the
                    // guard's drop must be able to take the lock to unregister the key.
                    let cleanup = Cleanup {
                        flights: self.flights.clone(),
                        key: Some(key),
                        slot: slot.clone(),
                    };
                    let fut = load();
                    let task = async move {
                        let result = match AssertUnwindSafe(fut).catch_unwind().await {
                            Ok(r) => r,
                            Err(panic) => Err(Error::new(
                                ErrorKind::Panic,
                                format!("loader panicked: {}", panic_message(&*panic)),
                            )),
                        };
                        // Unregister before publishing: a caller that arrives after this
                        // starts a new flight instead of waiting on a finished one.
                        drop(cleanup);
                        slot.send_replace(Some(result));
                    };
                    if inline {
                        leading = Some(InPlace {
                            task: Some(Box::pin(task)),
                            runtime: runtime.clone(),
                        });
                    } else {
                        runtime.spawn(task);
                    }
                    rx
                }
            }
        };
        if let Some(mut load) = leading {
            // Dropped before it ends (here or with this future), the load is spawned.
            tokio::select! {
                biased;
                () = &mut load => {}
                () = self.closed.cancelled() => return Err(Error::closed()),
            }
        }
        tokio::select! {
            biased;
            r = rx.wait_for(Option::is_some) => match r {
                Ok(r) => r.as_ref().expect("waited for Some").clone(),
                Err(_) => Err(Error::closed()),
            },
            () = self.closed.cancelled() => Err(Error::closed()),
        }
    }

    /// Releases every caller waiting on a flight, now and later, with
    /// [`ErrorKind::Closed`]. Loads already running go on; their results are dropped.
    pub fn close(&self) {
        self.closed.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::Notify;

    /// Waits (bounded) until `n` callers wait on `key`'s flight.
    async fn until_waiting(sf: &Singleflight<u32, u32>, key: u32, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while sf.waiters(&key) < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("callers did not arrive");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_load() {
        let sf = Arc::new(Singleflight::<u32, u32>::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (sf, calls, gate) = (sf.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let h = Handle::current();
                sf.run(&h, 7, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        gate.notified().await;
                        Ok(42)
                    }
                })
                .await
            }));
        }
        until_waiting(&sf, 7, 64).await;
        gate.notify_one();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 42);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(sf.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_leader_does_not_cancel_the_load() {
        leader_dropped(false).await;
    }

    /// The same when the leader polls the load itself: the rest of it is spawned.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_an_inline_leader_hands_its_load_to_the_runtime() {
        leader_dropped(true).await;
    }

    async fn leader_dropped(inline: bool) {
        let sf = Arc::new(Singleflight::<u32, u32>::new());
        let gate = Arc::new(Notify::new());
        let started = Arc::new(Notify::new());
        let h = Handle::current();
        let leader = {
            let (sf, gate, started, h) = (sf.clone(), gate.clone(), started.clone(), h.clone());
            tokio::spawn(async move {
                let load = || async move {
                    started.notify_one();
                    gate.notified().await;
                    Ok(5)
                };
                sf.run_with(&h, 1, load, inline).await
            })
        };
        started.notified().await;
        let follower = {
            let (sf, h) = (sf.clone(), h.clone());
            tokio::spawn(async move { sf.run(&h, 1, || async { Ok(99) }).await })
        };
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        until_waiting(&sf, 1, 1).await;
        gate.notify_one();
        assert_eq!(
            follower.await.unwrap().unwrap(),
            5,
            "follower must get the leader's load, not its own"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_load_errors_every_waiter_and_unsticks_the_key() {
        let sf = Arc::new(Singleflight::<u32, u32>::new());
        let gate = Arc::new(Notify::new());
        let h = Handle::current();
        let mut waiters = Vec::new();
        for _ in 0..8 {
            let (sf, gate, h) = (sf.clone(), gate.clone(), h.clone());
            waiters.push(tokio::spawn(async move {
                sf.run(&h, 3, || async move {
                    gate.notified().await;
                    panic!("boom");
                })
                .await
            }));
        }
        until_waiting(&sf, 3, 8).await;
        gate.notify_one();
        let mut errors = Vec::new();
        for w in waiters {
            let e = w.await.unwrap().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Panic);
            assert!(e.message().contains("boom"));
            errors.push(e);
        }
        assert_eq!(sf.in_flight(), 0);
        assert_eq!(sf.run(&h, 3, || async { Ok(1) }).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let sf = Singleflight::<u32, u32>::new();
        let h = Handle::current();
        let e = sf
            .run(&h, 1, || async { Err(Error::invalid("nope")) })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(sf.run(&h, 1, || async { Ok(2) }).await.unwrap(), 2);
    }
}
