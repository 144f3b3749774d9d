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
use crate::route::Remote;

/// Calls to one peer, per group, in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 4;
/// Most keys in one coalesced call.
pub(crate) const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<Entry>>;

/// One group's batchers, one per peer, made on first use.
#[derive(Debug, Default)]
pub(crate) struct Batchers {
    /// Guards the batchers, by peer address.
    map: Mutex<HashMap<String, Arc<Batcher>>>,
}

impl Batchers {
    /// The batcher of `group`'s gets to `peer` (a new one if the peer's client was
    /// replaced since).
    pub(crate) fn for_peer(&self, peer: &Arc<dyn Remote>, group: &str, runtime: &Handle) -> Arc<Batcher> {
        let mut map = self.map.lock();
        if let Some(b) = map.get(peer.addr())
            && Arc::ptr_eq(&b.peer, peer)
        {
            return b.clone();
        }
        let b = Arc::new(Batcher::new(peer.clone(), Arc::from(group), runtime));
        map.insert(peer.addr().to_string(), b.clone());
        b
    }

    /// Gets waiting, over every peer.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.map.lock().values().map(|b| b.queued()).sum()
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
