//! `get_many`: hits answered at once, local misses loaded concurrently, and remote misses
//! sent with one call per owner.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;

use super::Group;
use super::fill::is_unreachable;
use crate::entry::Entry;
use crate::error::Result;
use crate::route::{Remote, Route};
use crate::scope;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Results of a `get_many` job, by position in the request.
type Answers = Vec<(usize, Result<Entry>)>;

impl Group {
    /// The values of `keys` that exist, in the order asked, each key once. Misses load
    /// concurrently; keys owned by another node are fetched with one call per owner.
    ///
    /// # Errors
    ///
    /// The first error other than NotFound, as for [`Group::get`]; a loader asking for the
    /// key it is loading is refused ([`crate::ErrorKind::InvalidArgument`]) as by `get`.
    pub async fn get_many<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<(Bytes, Bytes)>> {
        self.check_open()?;
        for k in keys {
            self.inner.limits.check_key(k.as_ref())?;
        }
        let mut seen = HashSet::with_capacity(keys.len());
        let mut slots: Vec<(Bytes, Option<Result<Entry>>)> = Vec::with_capacity(keys.len());
        for k in keys {
            let k = k.as_ref();
            if !seen.insert(k) {
                continue;
            }
            slots.push((Bytes::copy_from_slice(k), self.inner.store.get(k).map(Ok)));
        }
        // Misses: local ones load one by one (concurrently); remote ones go in one call
        // per owner.
        let mut jobs: Vec<BoxFut<'_, Answers>> = Vec::new();
        let mut by_peer: HashMap<String, (Arc<dyn Remote>, Vec<usize>)> = HashMap::new();
        for (i, (k, v)) in slots.iter().enumerate() {
            if v.is_some() {
                continue;
            }
            scope::check_not_loading(self.id(), k)?;
            match self.route(k)? {
                Route::Local => {
                    let k = k.clone();
                    jobs.push(Box::pin(async move { vec![(i, self.load_local(k).await)] }));
                }
                Route::Remote(peer) => {
                    by_peer
                        .entry(peer.addr().to_string())
                        .or_insert_with(|| (peer.clone(), Vec::new()))
                        .1
                        .push(i);
                }
            }
        }
        for (_, (peer, idxs)) in by_peer {
            let keys: Vec<Bytes> = idxs.iter().map(|&i| slots[i].0.clone()).collect();
            jobs.push(Box::pin(self.fetch_many_remote(peer, idxs, keys)));
        }
        for (i, r) in join_all(jobs).await.into_iter().flatten() {
            slots[i].1 = Some(r);
        }
        let mut out = Vec::with_capacity(slots.len());
        for (k, v) in slots {
            match v.expect("every slot resolved") {
                Ok(Entry { value: Some(v), .. }) => out.push((k, v)),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn fetch_many_remote(&self, peer: Arc<dyn Remote>, idxs: Vec<usize>, keys: Vec<Bytes>) -> Answers {
        let epochs: Vec<u64> = keys.iter().map(|k| self.inner.fence.read(k)).collect();
        let results = match peer.get_many(&self.inner.name, keys.clone()).await {
            Ok(results) => results,
            Err(e) => vec![Err(e); keys.len()],
        };
        // A key the owner could not answer (unreachable, timed out, closing) takes the
        // single-key path: its own flight, and the local fallback if the owner is still
        // out of reach, so a failed batch neither fails the call nor loads a key twice.
        let answers = idxs
            .into_iter()
            .zip(keys)
            .zip(results)
            .zip(epochs)
            .map(|(((i, key), r), epoch)| {
                let peer = peer.clone();
                async move {
                    match r {
                        Err(e) if is_unreachable(&e) => (i, self.fetch_remote(peer, key).await),
                        r => (i, r.map(|found| self.remote_answer(key, found, epoch))),
                    }
                }
            });
        join_all(answers).await
    }
}
