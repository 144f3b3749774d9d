//! Handoff on a graceful leave: a node that shuts down hands the entries it holds to the
//! nodes that own them once it is gone, so that written values survive a rolling restart
//! and the new owners do not reload them.
//!
//! It runs after the node has left the ring (an etcd node has revoked its lease) and
//! before its server stops: the others route to the new owners already, and a new owner
//! that misses a key meanwhile asks this node (warm takeover) while the entries stream.
//! For each main-tier entry, its owners without this node (with the group's `replicas`)
//! get it, except replicas that held it already, in batches per node, within the
//! handoff's time and byte bounds.
//! Receivers keep an entry only if it is newer than what they hold and than any delete
//! they remember (`group/copies.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;

use super::membership::Membership;
use crate::entry::Entry;
use crate::registry::Registry;
use crate::route::Remote;

/// Bounds of a handoff.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) timeout: Duration,
    pub(crate) max_bytes: usize,
}

/// Hands every group's entries to their new owners, within `limits`.
pub(super) async fn run(membership: &Membership, registry: &Registry, limits: &Limits) {
    if limits.timeout.is_zero() {
        return;
    }
    let work = handoff(membership, registry, limits.max_bytes);
    if tokio::time::timeout(limits.timeout, work).await.is_err() {
        tracing::warn!(timeout = ?limits.timeout, "handoff did not finish in time: the rest is reloaded by the new owners");
    }
}

async fn handoff(membership: &Membership, registry: &Registry, max_bytes: usize) {
    let Some((before, after, clients)) = membership.rings_without_self() else {
        return;
    };
    let me = membership.self_addr();
    let mut budget = max_bytes;
    for group in registry.groups() {
        let n = group.replicas();
        let mut batches: HashMap<String, Vec<(Bytes, Entry)>> = HashMap::new();
        group.main_entries(|key, entry| {
            let cost = key.len() + entry.value.as_ref().map_or(0, Bytes::len);
            if cost > budget {
                return;
            }
            // Replicas this node wrote along with it hold the entry already; a copy this
            // node keeps though its key moved away (a newer owner has not asked for it
            // yet) goes to every owner.
            let was = before.owners(key, n);
            let replicated = was.contains(&me);
            for node in after.owners(key, n) {
                if !(replicated && was.contains(&node)) && budget >= cost {
                    budget -= cost;
                    let batch = batches.entry(node.to_string()).or_default();
                    batch.push((Bytes::copy_from_slice(key), entry.clone()));
                }
            }
        });
        let sends = batches.into_iter().filter_map(|(node, entries)| {
            let client: Arc<dyn Remote> = clients.get(&node)?.clone();
            let group = group.clone();
            Some(async move {
                let n = entries.len() as u64;
                match client.handoff(group.name(), entries).await {
                    Ok(_) => group.count_handoff_sent(n),
                    Err(e) => {
                        tracing::warn!(peer = client.addr(), error = %e, "handoff to a new owner failed")
                    }
                }
            })
        });
        join_all(sends).await;
    }
}
