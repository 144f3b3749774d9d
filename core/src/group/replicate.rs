//! Replicas and ring changes: `set` and `delete` on every replica of a key, a replica's
//! answer when the primary is out of reach, and the warm takeover of a key a node newly
//! owns.
//!
//! # Consistency
//!
//! A write is stamped with a version (`version.rs`) where it is made and sent to the key's
//! `replicas` owners at once; `set` returns when every one has answered, and fails only if
//! the primary did (a replica that failed is counted, and holds an older copy or none: a
//! later write or the primary's copy wins by version). Replicas are not read while the
//! primary answers, so a reader never sees a replica's older copy while the primary is up.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;

use super::Group;
use super::stats::bump;
use crate::entry::Entry;
use crate::error::Result;
use crate::route::{Remote, Route, Stamp};
use crate::store::Tier;

/// How long a node that newly owns a key waits for the previous owner's copy before it
/// loads the key itself.
pub(crate) const WARM_PEEK_TIMEOUT: Duration = Duration::from_millis(500);
/// Peeks of one group waiting for a call to one previous owner beyond which a miss loads
/// at once: a backlog of at most this many keys (32 batches) per previous owner.
const MAX_QUEUED_PEEKS: usize = 32 * crate::peer::batch::MAX_BATCH;

/// The owners that are other nodes, with their place in the owner list (0: the primary).
fn remote_owners(owners: Vec<Route>) -> Vec<(usize, Arc<dyn Remote>)> {
    (owners.into_iter().enumerate())
        .filter_map(|(i, r)| match r {
            Route::Remote(p) => Some((i, p)),
            Route::Local => None,
        })
        .collect()
}

impl Group {
    /// The key's owners, the primary first (only this node for a standalone group).
    fn owners(&self, key: &[u8]) -> Result<Vec<Route>> {
        match &self.inner.router {
            None => Ok(vec![Route::Local]),
            Some(router) => router.owners(key, self.inner.replicas),
        }
    }

    /// `set` of a checked key and value: on every owner; other nodes drop their mirrors.
    pub(super) async fn set_on_owners(&self, key: Bytes, value: Bytes, deadline: u64) -> Result<()> {
        let version = self.inner.hlc.next();
        let owners = self.owners(&key)?;
        let mut remotes: Vec<(usize, Arc<dyn Remote>)> = Vec::new();
        let mut here = None;
        for (i, route) in owners.into_iter().enumerate() {
            match route {
                Route::Local => {
                    self.write_local(Tier::Main, key.clone(), Some(value.clone()), deadline, version);
                    here = Some(i);
                }
                Route::Remote(p) => remotes.push((i, p)),
            }
        }
        match here {
            // This node keeps no mirror of a key it does not hold as an owner.
            None => {
                self.remove_local(&key);
            }
            Some(i) if i > 0 => bump(&self.inner.counters.replica_writes),
            Some(_) => {}
        }
        let name = &self.inner.name;
        let calls = remotes.iter().map(|(i, p)| {
            let stamp = Stamp {
                version,
                replica: *i > 0,
                tombstone: false,
            };
            p.set(name, key.clone(), value.clone(), deadline, stamp)
        });
        let results = join_all(calls).await;
        let primary = self.tally(&remotes, results);
        let owners: Vec<&str> = remotes.iter().map(|(_, p)| p.addr()).collect();
        let stamp = Stamp {
            version,
            ..Stamp::default()
        };
        self.invalidate_peers(&key, &owners, stamp).await;
        primary.map(|_| ())
    }

    /// `delete` of a checked key: on every owner (each remembers it against late copies),
    /// and every other node drops its mirror.
    pub(super) async fn delete_on_owners(&self, key: Bytes) -> Result<()> {
        let version = self.inner.hlc.next();
        let stamp = Stamp {
            version,
            replica: false,
            tombstone: true,
        };
        self.remove_versioned(&key, version, true);
        let owners = self.owners(&key)?;
        let remotes = remote_owners(owners);
        let name = &self.inner.name;
        let calls = remotes.iter().map(|(_, p)| p.delete(name, key.clone(), stamp));
        let owners: Vec<&str> = remotes.iter().map(|(_, p)| p.addr()).collect();
        let (results, ()) = tokio::join!(join_all(calls), self.invalidate_peers(&key, &owners, stamp));
        self.tally(&remotes, results).map(|_| ())
    }

    /// The primary's result (index 0, if remote); counts the replicas'.
    fn tally<T>(&self, remotes: &[(usize, Arc<dyn Remote>)], results: Vec<Result<T>>) -> Result<Option<T>> {
        let c = &self.inner.counters;
        let mut primary = Ok(None);
        for ((i, p), r) in remotes.iter().zip(results) {
            match (i, r) {
                (0, r) => primary = r.map(Some),
                (_, Ok(_)) => bump(&c.replica_writes),
                (_, Err(e)) => {
                    bump(&c.replica_write_errors);
                    tracing::warn!(group = %self.inner.name, replica = p.addr(), error = %e, "a replica missed a write");
                }
            }
        }
        primary
    }

    /// The primary of `key` could not be reached: the next replica's answer (from its
    /// store, or loaded there), if one answers.
    pub(super) async fn read_replica(&self, key: &Bytes) -> Option<Entry> {
        if self.inner.replicas < 2 {
            return None;
        }
        let owners = self.owners(key).ok()?;
        for route in owners.into_iter().skip(1) {
            let found = match route {
                Route::Local => (self.inner.store.tier_of(key) == Some(Tier::Main))
                    .then(|| self.inner.store.get_uncounted(key))
                    .flatten(),
                Route::Remote(p) => p.get(&self.inner.name, key.clone()).await.ok(),
            };
            if let Some(entry) = found {
                bump(&self.inner.counters.replica_reads);
                return Some(entry);
            }
        }
        None
    }

    /// Within the warm window after ring changes, a key this node newly owns: the copy of
    /// one of its previous owners (newest first), stored here, if one answers within
    /// [`WARM_PEEK_TIMEOUT`] in all.
    pub(super) async fn warm_takeover(&self, key: &Bytes) -> Option<Entry> {
        let entry = self.peek_previous(key).await?;
        self.accept_copy(key.clone(), entry.clone());
        bump(&self.inner.counters.warm_takeovers);
        Some(entry)
    }

    /// Within the warm window: the copy of `key` held by one of its previous owners
    /// (newest first), if one answers within [`WARM_PEEK_TIMEOUT`] in all. Also what a
    /// node asks before loading locally when the key's owner cannot be reached: during a
    /// change, the node that held the key is likely still up.
    pub(super) async fn peek_previous(&self, key: &Bytes) -> Option<Entry> {
        let previous = self.inner.router.as_ref()?.previous_owners(key);
        if previous.is_empty() {
            return None;
        }
        let rt = self.runtime().ok()?;
        let ask = async {
            for owner in &previous {
                // Through a batcher: the misses of a node that just joined share calls.
                let peeks = self.inner.peek_batchers.for_peer(owner, &self.inner.name, &rt);
                if let Some(Ok(entry)) = peeks.get_if_quick(key.clone(), MAX_QUEUED_PEEKS).await {
                    // Its own bytes: the value must not keep the whole answer alive.
                    let value = entry.value.as_deref().map(Bytes::copy_from_slice);
                    return Some(Entry { value, ..entry });
                }
            }
            None
        };
        tokio::time::timeout(WARM_PEEK_TIMEOUT, ask).await.ok()?
    }

    /// After a load on the primary, with `replicate_loads`: the value goes to the other
    /// replicas too, in the background.
    pub(super) fn replicate_load(&self, key: &Bytes, entry: &Entry) {
        if !self.inner.replicate_loads || self.inner.replicas < 2 {
            return;
        }
        let (Some(value), Ok(rt)) = (entry.value.clone(), self.runtime()) else {
            return;
        };
        let Ok(owners) = self.owners(key) else { return };
        if !matches!(owners.first(), Some(Route::Local)) {
            return;
        }
        let (g, key, deadline, version) = (self.clone(), key.clone(), entry.deadline, entry.version);
        rt.spawn(async move {
            let stamp = Stamp {
                version,
                replica: true,
                tombstone: false,
            };
            let remotes = remote_owners(owners);
            let calls = remotes
                .iter()
                .map(|(_, p)| p.set(&g.inner.name, key.clone(), value.clone(), deadline, stamp));
            let results = join_all(calls).await;
            let _ = g.tally(&remotes, results);
        });
    }
}
