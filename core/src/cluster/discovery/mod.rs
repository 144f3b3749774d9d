//! Live membership: a task that keeps the ring in step with etcd or DNS.
//!
//! | file | what |
//! |---|---|
//! | `spec.rs` | the one membership string every language takes, parsed |
//! | `etcd.rs` | register on a lease, watch the prefix |
//! | `dns.rs` | resolve a name on an interval |
//!
//! The task runs on the cluster's runtime and only ever calls
//! [`Membership::set_peers`] (which swaps the ring atomically) and
//! [`Membership::set_health`]. Stopping it (cluster shutdown) revokes the etcd lease
//! first, so that the other nodes drop this one before it stops serving.

mod dns;
mod etcd;
mod spec;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use spec::{DEFAULT_DNS_INTERVAL, DEFAULT_ETCD_LEASE_TTL, Discovery, DnsSpec, EtcdSpec};

use super::membership::Membership;

/// How long `start` waits for the first ring from etcd or DNS before it goes on with
/// this node alone (the source keeps trying in the background).
const FIRST_RING_WAIT: Duration = Duration::from_secs(5);
/// How long stopping waits for the task (the etcd lease revoke is bounded by less).
const STOP_WAIT: Duration = Duration::from_secs(4);

/// Signals once the source has applied its first ring, or given up on it.
#[derive(Clone)]
struct Ready(Arc<watch::Sender<bool>>);

impl Ready {
    fn done(&self) {
        self.0.send_replace(true);
    }
}

/// A running discovery task.
#[derive(Debug)]
pub(crate) struct Running {
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Running {
    /// Starts the task for `discovery` (nothing for [`Discovery::Static`]) and waits for
    /// its first ring, for up to [`FIRST_RING_WAIT`].
    pub(crate) async fn start(
        discovery: &Discovery,
        membership: &Arc<Membership>,
        groups: watch::Receiver<usize>,
        runtime: &Handle,
    ) -> Option<Running> {
        membership.set_source(discovery.kind());
        let stop = CancellationToken::new();
        let (tx, mut rx) = watch::channel(false);
        let ready = Ready(Arc::new(tx));
        let (m, s) = (membership.clone(), stop.clone());
        let task = match discovery.clone() {
            Discovery::Static => return None,
            Discovery::Etcd(spec) => runtime.spawn(etcd::run(spec, m, s, ready, groups)),
            Discovery::Dns(spec) => runtime.spawn(dns::run(spec, m, s, ready)),
        };
        let _ = tokio::time::timeout(FIRST_RING_WAIT, rx.wait_for(|r| *r)).await;
        Some(Running {
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// Stops the task and waits (bounded) for it: an etcd node has revoked its lease when
    /// this returns.
    pub(crate) async fn stop(&self) {
        self.stop.cancel();
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(STOP_WAIT, task).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Whether `addr` looks like `host:port`: entries that do not are skipped, so one bad
/// registration cannot stop the ring from following the others.
fn is_peer_addr(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0))
}
