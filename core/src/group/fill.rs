//! Flights: how a miss is filled, once per key at a time in this process — by the loader
//! on this node, or from the key's owner, with a local load when the owner is out of reach.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use super::Group;
use super::stats::bump;
use crate::clock;
use crate::entry::Entry;
use crate::error::{Error, ErrorKind, Result};
use crate::loader::Loaded;
use crate::route::{Remote, Route};
use crate::scope::{self, LoadScope};
use crate::store::Tier;

/// Errors after which a caller loads locally instead.
pub(super) fn is_unreachable(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Peer | ErrorKind::Timeout)
}

impl Group {
    /// Runs `body` as the one flight for `key` (local loads and remote fetches have a
    /// singleflight each), counting followers as deduplicated.
    async fn flight<F, Fut>(&self, remote: bool, key: Bytes, body: F) -> Result<Entry>
    where
        F: FnOnce(Group, Bytes) -> Fut,
        Fut: Future<Output = Result<Entry>> + Send + 'static,
    {
        let rt = self.runtime()?;
        let flights = if remote {
            &self.inner.remote_flights
        } else {
            &self.inner.local_flights
        };
        let mut leader = false;
        let k = key.clone();
        let body = || {
            leader = true;
            body(self.clone(), k)
        };
        // A remote fetch is mostly a wait on the owner's answer: its leader polls it in
        // place (see `Singleflight::run_inline`); loads run as their own tasks.
        let result = if remote {
            flights.run_inline(&rt, key, body).await
        } else {
            flights.run(&rt, key, body).await
        };
        if !leader {
            bump(&self.inner.counters.deduplicated);
        }
        result
    }

    /// Loads `key` on this node (once per key at a time) into the main tier.
    pub(super) async fn load_local(&self, key: Bytes) -> Result<Entry> {
        self.flight(false, key, |g, key| async move {
            if let Some(hit) = g.inner.store.get_uncounted(&key) {
                return Ok(hit);
            }
            if let Some(warm) = g.warm_takeover(&key).await {
                return Ok(warm);
            }
            let entry = g.load_and_cache(key.clone(), Tier::Main).await?;
            g.replicate_load(&key, &entry);
            Ok(entry)
        })
        .await
    }

    /// Fetches `key` from its owner (once per key at a time); loads it here if the owner
    /// cannot be reached.
    pub(super) async fn fetch_remote(&self, peer: Arc<dyn Remote>, key: Bytes) -> Result<Entry> {
        self.flight(true, key, |g, key| async move {
            if let Some(hit) = g.inner.store.get_uncounted(&key) {
                return Ok(hit);
            }
            let batcher = g.inner.batchers.for_peer(&peer, &g.inner.name, &g.runtime()?);
            let epoch = g.inner.fence.read(&key);
            match batcher.get(key.clone()).await {
                Ok(found) => Ok(g.remote_answer(key, found, epoch)),
                Err(e) if is_unreachable(&e) => {
                    let c = &g.inner.counters;
                    bump(&c.remote_errors);
                    if let Some(found) = g.read_replica(&key).await {
                        return Ok(g.remote_answer(key, found, epoch));
                    }
                    // The ring may have changed meanwhile (the owner left): ask the new one.
                    match g.route(&key) {
                        Ok(Route::Remote(now)) if now.addr() != peer.addr() => {
                            let batcher = g.inner.batchers.for_peer(&now, &g.inner.name, &g.runtime()?);
                            if let Ok(found) = batcher.get(key.clone()).await {
                                return Ok(g.remote_answer(key, found, epoch));
                            }
                        }
                        Ok(Route::Local) => return g.load_local(key).await,
                        _ => {}
                    }
                    if let Some(found) = g.peek_previous(&key).await {
                        return Ok(g.remote_answer(key, found, epoch));
                    }
                    bump(&c.fallback_loads);
                    tracing::debug!(group = %g.inner.name, error = %e, "owner unreachable, loading locally");
                    g.load_and_cache(key, Tier::Hot).await
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Checks the store again, then loads through the loader and caches in `tier`.
    pub(super) async fn load_and_cache(&self, key: Bytes, tier: Tier) -> Result<Entry> {
        // A flight that ended between our lookup and our joining may have cached it.
        if let Some(hit) = self.inner.store.get_uncounted(&key) {
            return Ok(hit);
        }
        let c = &self.inner.counters;
        bump(&c.loads);
        let epoch = self.inner.fence.read(&key);
        // The load runs in its scope: a get of this key from inside it fails at once
        // instead of waiting for itself (see `scope.rs`).
        let load = scope::run_in(
            LoadScope::new(self.id(), key.clone()),
            self.inner.loader.load(key.clone()),
        );
        let loaded = match self.inner.load_timeout {
            None => load.await,
            // Timed out: the loader's future is dropped (a blocking loader's thread runs
            // on, and its answer is dropped), the flight ends, and the next get loads anew.
            Some(t) => tokio::time::timeout(t, load).await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("the loader did not answer within {t:?}"),
                ))
            }),
        };
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => {
                bump(&c.load_errors);
                return Err(e);
            }
        };
        let now = self.inner.clock.now_ms();
        match loaded {
            Loaded::Value { value, ttl } => {
                if let Err(e) = self.inner.limits.check_value(&value) {
                    bump(&c.load_errors);
                    return Err(Error::new(
                        e.kind(),
                        format!("loader returned a value too large: {}", e.message()),
                    ));
                }
                let deadline = clock::deadline(now, ttl.or(self.inner.default_ttl));
                let version = self.inner.hlc.next();
                if !self.is_closed() {
                    self.cache_if_unchanged(tier, key, Some(value.clone()), deadline, version, epoch);
                }
                Ok(Entry::value(value, deadline).with_version(version))
            }
            Loaded::NotFound { ttl } => {
                bump(&c.not_found);
                let deadline = clock::deadline(now, Some(ttl.unwrap_or(self.inner.negative_ttl)));
                let version = self.inner.hlc.next();
                if !self.is_closed() {
                    self.cache_if_unchanged(tier, key, None, deadline, version, epoch);
                }
                Ok(Entry::not_found(deadline).with_version(version))
            }
        }
    }
}
