//! Invalidations: after a `set` or `delete`, every other node drops its copy of the key;
//! one that cannot be reached gets the invalidation again once it can.
//!
//! A failed invalidation goes into a bounded queue that a task of the group retries
//! every [`RETRY_EVERY`], for as long as a mirror could still hold the old value (the
//! group's hot TTL): after that the mirror has expired anyway. When the queue is full
//! the oldest entry is dropped (the hot TTL still bounds how long that mirror lives).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::stats::bump;
use super::{Group, GroupInner};
use crate::route::{Remote, Stamp};

/// Most invalidations waiting for a retry, per group.
const MAX_PENDING: usize = 10_000;
/// How often waiting invalidations are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// One invalidation to send again.
struct Pending {
    peer: Arc<dyn Remote>,
    key: Bytes,
    stamp: Stamp,
    /// After this, no mirror can still hold the old value.
    until: Instant,
}

/// A group's invalidations waiting for a retry.
#[derive(Default)]
pub(super) struct Retries {
    /// Guards the queue, oldest first.
    queue: Mutex<VecDeque<Pending>>,
    /// Whether the retry task runs.
    started: AtomicBool,
}

impl std::fmt::Debug for Retries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retries")
            .field("pending", &self.queue.lock().len())
            .finish()
    }
}

impl Retries {
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.queue.lock().len()
    }
}

impl Group {
    /// Tells every peer but those in `except` (the key's owners, written already) to drop
    /// copies of `key` older than `stamp.version`. A peer that cannot be reached is told
    /// again later (see the module docs); failures are counted, not returned.
    pub(super) async fn invalidate_peers(&self, key: &Bytes, except: &[&str], stamp: Stamp) {
        let Some(router) = &self.inner.router else { return };
        let peers: Vec<Arc<dyn Remote>> = router
            .peers()
            .into_iter()
            .filter(|p| !except.contains(&p.addr()))
            .collect();
        let calls = peers
            .iter()
            .map(|p| p.delete(&self.inner.name, key.clone(), stamp));
        let results = join_all(calls).await;
        for (peer, r) in peers.iter().zip(results) {
            if let Err(e) = r {
                bump(&self.inner.counters.invalidation_errors);
                tracing::warn!(group = %self.inner.name, peer = peer.addr(), error = %e, "could not invalidate a peer's copy; will retry");
                self.retry_later(peer.clone(), key.clone(), stamp);
            }
        }
    }

    fn retry_later(&self, peer: Arc<dyn Remote>, key: Bytes, stamp: Stamp) {
        let retries = &self.inner.retries;
        {
            let mut q = retries.queue.lock();
            if q.len() >= MAX_PENDING {
                q.pop_front();
                bump(&self.inner.counters.invalidations_dropped);
            }
            q.push_back(Pending {
                peer,
                key,
                stamp,
                until: Instant::now() + self.inner.hot_ttl,
            });
        }
        if !retries.started.swap(true, Ordering::AcqRel)
            && let Ok(rt) = self.runtime()
        {
            rt.spawn(retry_task(Arc::downgrade(&self.inner)));
        }
    }
}

/// Retries a group's failed invalidations until it is dropped or closed.
async fn retry_task(group: Weak<GroupInner>) {
    let mut tick = tokio::time::interval(RETRY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = group.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let due: Vec<Pending> = inner
            .retries
            .queue
            .lock()
            .drain(..)
            .filter(|p| p.until > now)
            .collect();
        if due.is_empty() {
            continue;
        }
        let calls = due
            .iter()
            .map(|p| p.peer.delete(&inner.name, p.key.clone(), p.stamp));
        let results = join_all(calls).await;
        let mut failed = Vec::new();
        for (p, r) in due.into_iter().zip(results) {
            match r {
                Ok(_) => bump(&inner.counters.invalidations_retried),
                Err(_) => failed.push(p),
            }
        }
        if !failed.is_empty() {
            let mut q = inner.retries.queue.lock();
            for p in failed.into_iter().rev() {
                if q.len() >= MAX_PENDING {
                    bump(&inner.counters.invalidations_dropped);
                    continue;
                }
                q.push_front(p);
            }
        }
    }
}
