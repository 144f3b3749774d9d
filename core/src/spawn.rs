//! Starting a future on the calling thread and finishing it on the runtime.
//!
//! A binding's thread (the JS thread, an asyncio loop) that starts a get which missed
//! would usually spawn it: a worker thread then wakes only to take the first step, such
//! as writing a request to the owner. [`spawn_polled`] takes that step here instead, and
//! hands the future to the runtime only when what it waits for is ready, on the thread
//! that saw it: one thread wake-up less per call.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;
use tokio::runtime::Handle;

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Polls `task` once on this thread, in `runtime`'s context; if it is not done, the
/// runtime runs it from its first wake-up on. A future registers the waker of its
/// latest poll, so nothing is lost by the move. If the first poll panics, `task` is
/// dropped (its drop guards run); on a runtime that is shutting down, a woken task is
/// dropped the same way.
pub fn spawn_polled(runtime: &Handle, task: impl Future<Output = ()> + Send + 'static) {
    let mut task: Task = Box::pin(task);
    let parked = Arc::new(Parked {
        runtime: runtime.clone(),
        slot: Mutex::new(Slot::Empty),
    });
    let waker = Waker::from(parked.clone());
    let first = {
        let _context = runtime.enter();
        catch_unwind(AssertUnwindSafe(|| {
            task.as_mut().poll(&mut Context::from_waker(&waker))
        }))
    };
    if let Ok(Poll::Pending) = first {
        let mut slot = parked.slot.lock();
        match *slot {
            // Woken before it could be parked: the runtime takes it now.
            Slot::Woken => drop(runtime.spawn(task)),
            _ => *slot = Slot::Parked(task),
        }
    }
}

enum Slot {
    Empty,
    Parked(Task),
    Woken,
}

/// The waker of the first poll: its first wake spawns the parked task.
struct Parked {
    runtime: Handle,
    slot: Mutex<Slot>,
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut slot = self.slot.lock();
        match std::mem::replace(&mut *slot, Slot::Woken) {
            Slot::Parked(task) => {
                drop(slot);
                drop(self.runtime.spawn(task));
            }
            Slot::Empty | Slot::Woken => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    #[test]
    fn the_first_step_runs_here_and_the_rest_on_the_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let here = std::thread::current().id();
        let (go, wait) = oneshot::channel::<()>();
        let (done, finished) = std::sync::mpsc::channel();
        spawn_polled(rt.handle(), async move {
            let first = std::thread::current().id();
            wait.await.unwrap();
            done.send((first, std::thread::current().id())).unwrap();
        });
        go.send(()).unwrap();
        let (first, rest) = finished.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(first, here);
        assert_ne!(rest, here);
        // Done at once: nothing is spawned.
        let (done, finished) = std::sync::mpsc::channel();
        spawn_polled(rt.handle(), async move {
            done.send(std::thread::current().id()).unwrap()
        });
        assert_eq!(finished.recv_timeout(Duration::from_secs(10)).unwrap(), here);
    }
}
