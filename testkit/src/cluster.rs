//! In-process nodes for the cluster tests: a loader that counts its calls, a node with
//! one group, joining nodes into one ring, and a key a given node owns.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use meshcache::{Cluster, ClusterBuilder, Group, Loaded};

/// A loader answering `value-of-<key>` at once, counting its calls in `calls`.
pub fn counting(
    calls: &Arc<AtomicUsize>,
) -> impl Fn(Bytes) -> std::future::Ready<meshcache::Result<Loaded>> + Send + Sync + 'static {
    let calls = calls.clone();
    move |key: Bytes| {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut v = b"value-of-".to_vec();
        v.extend_from_slice(&key);
        std::future::ready(Ok(Loaded::value(v)))
    }
}

/// A node started from `builder` with one group named `group` (no hot mirrors, so every
/// get of another node's key goes to its owner) whose loader is [`counting`].
///
/// # Panics
///
/// If the node or the group cannot start.
pub async fn node(builder: ClusterBuilder, group: &str, calls: &Arc<AtomicUsize>) -> (Cluster, Group) {
    let c = builder.start().await.expect("start a node");
    let g = c
        .group(group)
        .hot_sample(0)
        .loader(counting(calls))
        .build()
        .expect("a group");
    (c, g)
}

/// Gives every node in `nodes` the same peer list: all of them.
///
/// # Panics
///
/// If a node refuses the list (it was shut down).
pub fn join(nodes: &[&Cluster]) {
    let addrs: Vec<String> = nodes.iter().map(|c| c.advertise_addr().to_string()).collect();
    for c in nodes {
        c.set_peers(addrs.clone()).expect("set_peers");
    }
}

/// A key that `c`'s ring gives to `owner`.
pub fn key_owned_by(c: &Cluster, owner: &Cluster) -> String {
    (0..)
        .map(|i| format!("k{i}"))
        .find(|k| c.owner_of(k.as_bytes()) == owner.advertise_addr())
        .expect("some key is owned by every node")
}
