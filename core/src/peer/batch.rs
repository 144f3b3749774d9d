//! Coalescing of concurrent remote gets into `GetMany` calls.
//!
//! A gRPC call costs far more CPU than the few bytes of a cache value, so when many
//! callers on this node miss keys owned by the same peer at once, their gets share calls:
//! up to [`MAX_IN_FLIGHT`] calls to a peer per group run at a time, and gets that arrive
//! while all of them are busy queue up and leave together in the next `GetMany` (at most
//! [`MAX_BATCH`] keys). Nothing waits on a timer: a lone get goes out at once as a plain
//! `Get`, so latency at low concurrency is that of a single call, and batches only form
//! under load, exactly as large as the load makes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::entry::Entry;
use crate::error::{Error, ErrorKind, Result};
use crate::route::{BoxFuture, Remote, Stamp};

/// Calls to one peer, per group, in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 4;
/// Most keys in one coalesced call.
pub(crate) const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<Entry>>;

/// A batcher and the peer client it was made for.
type Made = (Arc<dyn Remote>, Arc<Batcher>);

/// One group's batchers, one per peer, made on first use.
#[derive(Debug, Default)]
pub(crate) struct Batchers {
    /// Guards the batchers, by peer address, with the client each was made for.
    map: Mutex<HashMap<String, Made>>,
    /// Batchers of peeks (warm takeovers) instead of gets.
    peeks: bool,
}

impl Batchers {
    /// Batchers of peeks: their `get` asks for the peer's stored copy only, and a key the
    /// peer does not hold answers [`ErrorKind::NotFound`] (see [`Peeks`]).
    pub(crate) fn of_peeks() -> Self {
        Batchers {
            map: Mutex::default(),
            peeks: true,
        }
    }

    /// The batcher of `group`'s gets to `peer` (a new one if the peer's client was
    /// replaced since).
    pub(crate) fn for_peer(&self, peer: &Arc<dyn Remote>, group: &str, runtime: &Handle) -> Arc<Batcher> {
        let mut map = self.map.lock();
        if let Some((origin, b)) = map.get(peer.addr())
            && Arc::ptr_eq(origin, peer)
        {
            return b.clone();
        }
        let target: Arc<dyn Remote> = if self.peeks {
            Arc::new(Peeks(peer.clone()))
        } else {
            peer.clone()
        };
        let b = Arc::new(Batcher::new(target, Arc::from(group), runtime));
        map.insert(peer.addr().to_string(), (peer.clone(), b.clone()));
        b
    }

    /// Gets waiting, over every peer.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.map.lock().values().map(|(_, b)| b.queued()).sum()
    }
}

/// A peer seen through its peeks, for a batcher: `get` is `peek`, `get_many` is
/// `peek_many`, and a key the peer does not hold is [`ErrorKind::NotFound`] (a cached
/// "not found" stays an entry without a value). Only gets go through a batcher.
#[derive(Debug)]
struct Peeks(Arc<dyn Remote>);

fn absent(found: Option<Entry>) -> Result<Entry> {
    found.ok_or_else(|| Error::new(ErrorKind::NotFound, "the previous owner does not hold the key"))
}

impl Remote for Peeks {
    fn addr(&self) -> &str {
        self.0.addr()
    }

    fn call_timeout(&self) -> Option<std::time::Duration> {
        self.0.call_timeout()
    }

    fn get<'a>(&'a self, group: &'a str, key: Bytes) -> BoxFuture<'a, Result<Entry>> {
        Box::pin(async move { absent(self.0.peek(group, key).await?) })
    }

    fn get_many<'a>(&'a self, group: &'a str, keys: Vec<Bytes>) -> BoxFuture<'a, Result<Vec<Result<Entry>>>> {
        Box::pin(async move {
            let found = self.0.peek_many(group, keys).await?;
            Ok(found.into_iter().map(|r| r.and_then(absent)).collect())
        })
    }

    fn peek<'a>(&'a self, group: &'a str, key: Bytes) -> BoxFuture<'a, Result<Option<Entry>>> {
        self.0.peek(group, key)
    }

    fn peek_many<'a>(
        &'a self,
        group: &'a str,
        keys: Vec<Bytes>,
    ) -> BoxFuture<'a, Result<Vec<Result<Option<Entry>>>>> {
        self.0.peek_many(group, keys)
    }

    fn set<'a>(
        &'a self,
        group: &'a str,
        key: Bytes,
        value: Bytes,
        deadline: u64,
        stamp: Stamp,
    ) -> BoxFuture<'a, Result<()>> {
        self.0.set(group, key, value, deadline, stamp)
    }

    fn delete<'a>(&'a self, group: &'a str, key: Bytes, stamp: Stamp) -> BoxFuture<'a, Result<bool>> {
        self.0.delete(group, key, stamp)
    }

    fn handoff<'a>(&'a self, group: &'a str, entries: Vec<(Bytes, Entry)>) -> BoxFuture<'a, Result<u64>> {
        self.0.handoff(group, entries)
    }
}

/// Coalesces one group's gets to one peer.
#[derive(Debug)]
pub(crate) struct Batcher {
    peer: Arc<dyn Remote>,
    group: Arc<str>,
    permits: Arc<Semaphore>,
    queue: mpsc::UnboundedSender<(Bytes, Reply)>,
    queued: Arc<AtomicUsize>,
}

impl Batcher {
    /// A batcher whose sender task runs on `runtime` until the batcher is dropped.
    pub(crate) fn new(peer: Arc<dyn Remote>, group: Arc<str>, runtime: &Handle) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let queued = Arc::new(AtomicUsize::new(0));
        runtime.spawn(sender(
            peer.clone(),
            group.clone(),
            permits.clone(),
            queued.clone(),
            rx,
        ));
        Batcher {
            peer,
            group,
            permits,
            queue: tx,
            queued,
        }
    }

    /// Gets waiting for the next batch.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// [`Batcher::get`], or `None` at once when `max_queued` gets already wait for a
    /// call slot: for requests that are worth making only if they are quick (a warm
    /// takeover's peek, whose caller loads the key otherwise), so that a backlog never
    /// builds up behind a slow peer.
    pub(crate) async fn get_if_quick(&self, key: Bytes, max_queued: usize) -> Option<Result<Entry>> {
        if self.queued.load(Ordering::Acquire) >= max_queued {
            return None;
        }
        Some(self.get(key).await)
    }

    /// Gets `key` from the peer, alone if a call slot is free, else with the next batch.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops only this caller's interest; a queued key is still sent.
    ///
    /// # Errors
    ///
    /// The peer's; `Timeout` when the answer has not come within the peer's call timeout
    /// counted from now, queueing included, so a get behind calls to a hung owner falls
    /// back after one timeout, not two.
    pub(crate) async fn get(&self, key: Bytes) -> Result<Entry> {
        if self.queued.load(Ordering::Acquire) == 0
            && let Ok(permit) = self.permits.clone().try_acquire_owned()
        {
            // Sent at once: the call's own deadline bounds it.
            let r = self.peer.get(&self.group, key).await;
            drop(permit);
            return r;
        }
        let (tx, rx) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.queue.send((key, tx)).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::closed());
        }
        let answer = async { rx.await.unwrap_or_else(|_| Err(Error::closed())) };
        // Queued: the wait for a call slot counts against the same deadline.
        match self.peer.call_timeout() {
            None => answer.await,
            Some(t) => tokio::time::timeout(t, answer).await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("peer {}: no answer within {t:?}", self.peer.addr()),
                ))
            }),
        }
    }
}

async fn sender(
    peer: Arc<dyn Remote>,
    group: Arc<str>,
    permits: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    mut rx: mpsc::UnboundedReceiver<(Bytes, Reply)>,
) {
    while let Some(first) = rx.recv().await {
        // Wait for a free call slot; meanwhile more gets queue up behind `first`.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::AcqRel);
        let (peer, group) = (peer.clone(), group.clone());
        tokio::spawn(async move {
            if batch.len() == 1 {
                let (key, reply) = batch.pop().expect("one");
                let _ = reply.send(peer.get(&group, key).await);
            } else {
                let keys = batch.iter().map(|(k, _)| k.clone()).collect();
                match peer.get_many(&group, keys).await {
                    Ok(results) => {
                        for ((_, reply), r) in batch.into_iter().zip(results) {
                            let _ = reply.send(r);
                        }
                    }
                    Err(e) => {
                        for (_, reply) in batch {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
            drop(permit);
        });
    }
}
