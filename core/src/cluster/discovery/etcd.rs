//! etcd membership: a node registers `<prefix>/nodes/<advertised addr>` on a lease it
//! keeps alive, and watches the prefix; every change swaps the ring.
//!
//! One *session* connects and reads the prefix (the ring `start` returns with), waits
//! until the node serves a group (at most 2 s: peers routing to a node without its groups
//! would load elsewhere), grants a lease, puts the node's key, reads the prefix again and
//! watches it from the revision it read, keeping the lease alive at a third of its TTL.
//! Any failure (etcd unreachable, the lease lost, the watch cancelled by a compaction,
//! the node's own key deleted) ends the session: the ring stays as it was, the error is
//! reported in the ring's stats, and a new session starts after a backoff (100 ms doubling
//! to 5 s), registering again. Stopping revokes the lease, so other nodes drop this one at
//! once; a crashed node's key goes when its lease expires.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, EventType, GetOptions, Identity, PutOptions, TlsOptions,
    WatchOptions,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Ready;
use super::spec::EtcdSpec;
use crate::cluster::membership::Membership;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bounds every etcd request (and the lease revoke on stop).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a node that serves no group yet waits before it joins the ring anyway.
const JOIN_WITHOUT_GROUPS: Duration = Duration::from_secs(2);

/// Runs sessions until `stop`; then revokes the lease.
pub(super) async fn run(
    spec: EtcdSpec,
    membership: Arc<Membership>,
    stop: CancellationToken,
    ready: Ready,
    mut groups: watch::Receiver<usize>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let result = session(&spec, &membership, &stop, &ready, &mut groups, &mut backoff).await;
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "etcd membership: keeping the last ring, retrying");
                membership.set_health(Err(format!("etcd: {e}")));
                // A node that cannot reach etcd at start goes on alone.
                ready.done();
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn connect(spec: &EtcdSpec) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    if let Some((user, password)) = &spec.user {
        options = options.with_user(user.clone(), password.clone());
    }
    if let Some(ca) = &spec.ca {
        let read =
            |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let Some((cert, key)) = &spec.identity {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &spec.server_name {
            tls = tls.domain_name(name.clone());
        }
        options = options.with_tls(tls);
    }
    let endpoints: Vec<String> = (spec.endpoints.iter())
        .map(|e| format!("{}://{e}", if spec.ca.is_some() { "https" } else { "http" }))
        .collect();
    Client::connect(endpoints, Some(options))
        .await
        .map_err(|e| e.to_string())
}

/// One registration and watch. `Ok` only when stopped.
async fn session(
    spec: &EtcdSpec,
    membership: &Membership,
    stop: &CancellationToken,
    ready: &Ready,
    groups: &mut watch::Receiver<usize>,
    backoff: &mut Duration,
) -> Result<(), String> {
    let err = |e: etcd_client::Error| e.to_string();
    let dir = format!("{}/nodes/", spec.prefix);
    let me = membership.self_addr().to_string();
    let key = format!("{dir}{me}");
    let mut client = connect(spec).await?;
    // The ring first (so that `start` returns with it), then this node joins it once it
    // serves a group: before that, peers routing here would find no group and load
    // elsewhere. A node that builds no group within a moment joins anyway.
    let (others, _) = list(&mut client, &dir).await?;
    apply(membership, &others)?;
    membership.set_health(Ok(()));
    ready.done();
    tokio::select! {
        () = stop.cancelled() => return Ok(()),
        _ = groups.wait_for(|n| *n > 0) => {}
        () = tokio::time::sleep(JOIN_WITHOUT_GROUPS) => {}
    }
    let lease = client
        .lease_grant(spec.lease_ttl.as_secs() as i64, None)
        .await
        .map_err(err)?
        .id();
    let (mut keeper, mut kept) = client.lease_keep_alive(lease).await.map_err(err)?;
    client
        .put(key.clone(), me.clone(), Some(PutOptions::new().with_lease(lease)))
        .await
        .map_err(err)?;
    let (mut nodes, revision) = list(&mut client, &dir).await?;
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut watch = client.watch(dir, Some(options)).await.map_err(err)?;
    apply(membership, &nodes)?;
    membership.set_health(Ok(()));
    ready.done();
    *backoff = MIN_BACKOFF;
    let mut tick = tokio::time::interval(spec.lease_ttl / 3);
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, client.lease_revoke(lease)).await;
                return Ok(());
            }
            _ = tick.tick() => keeper.keep_alive().await.map_err(err)?,
            kept_alive = kept.message() => match kept_alive.map_err(err)? {
                Some(r) if r.ttl() > 0 => {}
                _ => return Err("the lease was lost".into()),
            },
            event = watch.message() => {
                let resp = event.map_err(err)?.ok_or("the watch ended")?;
                if resp.canceled() {
                    return Err(format!("the watch was cancelled: {}", resp.cancel_reason()));
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    match ev.event_type() {
                        EventType::Put => {
                            nodes.insert(kv.key().to_vec(), String::from_utf8_lossy(kv.value()).into_owned());
                        }
                        EventType::Delete => {
                            nodes.remove(kv.key());
                        }
                    }
                }
                if !nodes.contains_key(key.as_bytes()) {
                    return Err("this node's registration was deleted".into());
                }
                apply(membership, &nodes)?;
            }
        }
    }
}

/// The registrations under `dir` (key -> advertised address) and the revision they were
/// read at.
async fn list(client: &mut Client, dir: &str) -> Result<(BTreeMap<Vec<u8>, String>, i64), String> {
    let listed = client
        .get(dir, Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| e.to_string())?;
    let revision = listed.header().map_or(0, |h| h.revision());
    let nodes = (listed.kvs().iter())
        .map(|kv| {
            (
                kv.key().to_vec(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        })
        .collect();
    Ok((nodes, revision))
}

/// Swaps the ring to the registered nodes (skipping any value that is not `host:port`).
fn apply(membership: &Membership, nodes: &BTreeMap<Vec<u8>, String>) -> Result<(), String> {
    let addrs = (nodes.values())
        .filter(|a| super::is_peer_addr(a))
        .cloned()
        .collect();
    membership.set_peers(addrs).map_err(|e| e.to_string())
}
