//! Clusters: creation, peers, addresses, the stats call, metrics and status, shutdown and
//! free.

use std::ffi::c_char;
use std::time::Duration;

use meshcache::{Cluster, Error, ErrorKind};
use tokio::runtime::Runtime;

use crate::cluster_options::meshcache_cluster_options;
use crate::error::{arg, bytes_arg, ffi, ffi_infallible, invalid, out_arg, str_arg, write_str};
use crate::meshcache_result;
use crate::stats::meshcache_cluster_stats;
use crate::text::write_owned_str;

/// A node of a meshcache cluster: its peer server, its clients to the other nodes, its
/// groups, and the threads (a tokio runtime) they run on. Thread-safe: every function may
/// be called from any thread. Several clusters may live in one process.
#[derive(Debug)]
pub struct meshcache_cluster {
    pub(crate) cluster: Cluster,
    /// The runtime the cluster runs on, created here and handed to `ClusterBuilder`
    /// rather than created by it (`ClusterBuilder::worker_threads`), so that
    /// `meshcache_cluster_free` returns only once every thread of the cluster has exited:
    /// dropping a `Runtime` joins its worker and blocking threads, so it also waits for a
    /// C loader callback that is still running. A runtime the core creates for itself is
    /// stopped with `Runtime::shutdown_background` when its `Cluster` is dropped (a drop
    /// may happen inside async code, where a blocking one panics), which does not wait:
    /// a loader callback could still be running in the application's code after
    /// `meshcache_cluster_free` returned, while the program frees what that code uses or
    /// exits (`test_free_waits_for_a_running_loader` in the C tests). Valgrind alone
    /// does not tell the two apart (tokio detaches the threads it does not join, and
    /// `make test-c` passes either way): the binding owns the runtime for this guarantee.
    /// Declared after `cluster` so that it is dropped last.
    runtime: Runtime,
}

/// Starts a cluster node into `*out`: creates its runtime, binds the listener and starts
/// serving peers. `options` may be NULL for the defaults, and is not taken (free it).
///
/// The runtime's threads (which also run loaders) block SIGPIPE, so that a peer closing
/// a connection cannot end the process; the process's handling of SIGPIPE is not
/// changed.
///
/// With etcd or DNS membership (`meshcache_cluster_options_set_membership`), it waits up
/// to 5 s for the first ring, and goes on alone if the source cannot be reached.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for an address that does not parse or cannot be
/// bound, a wildcard listen address without an advertise address, an option that can
/// never work (a zero timeout, message size, vnode count, breaker threshold, worker
/// thread count or peer request limit), a bad token (empty, or not printable ASCII
/// without spaces), a previous token without a current one, a token file or TLS file
/// that cannot be read, a membership spec that does not parse, a peer list with etcd or
/// DNS membership, or a NULL `out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_new(
    options: *const meshcache_cluster_options,
    out: *mut *mut meshcache_cluster,
) -> meshcache_result {
    ffi(|| {
        out_arg(out, "out")?;
        let defaults = meshcache_cluster_options::default();
        // Safety: a non-NULL `options` is live by contract.
        let o = unsafe { options.as_ref() }.unwrap_or(&defaults);
        // The one option the core cannot check: the runtime is this binding's (see
        // `meshcache_cluster::runtime`), and tokio panics on zero workers. Same message
        // as the core's.
        if o.worker_threads == 0 {
            return Err(invalid("worker_threads must be greater than zero").into());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.worker_threads)
            .thread_name("meshcache")
            .on_thread_start(block_sigpipe)
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorKind::Closed, format!("cannot start a runtime: {e}")))?;
        let builder = o.to_builder();
        // On failure (the core refused an option, or could not bind), `runtime` is dropped
        // here, on the caller's thread, and its threads are joined.
        let cluster = builder.runtime(runtime.handle().clone()).build()?;
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = Box::into_raw(Box::new(meshcache_cluster { cluster, runtime })) };
        Ok(())
    })
}

/// Blocks SIGPIPE on the calling thread, one of the cluster's runtime (`on_thread_start`).
///
/// A write to a connection its peer has closed (a node that refused this one's TLS
/// certificate, a node shutting down) raises SIGPIPE on the writing thread, and the
/// default action of SIGPIPE ends the process. Rust programs, Python and Node ignore
/// SIGPIPE when they start; a C program usually does not, so without this a peer could
/// kill it (`test_tls` in the C tests did). Blocked, the signal stays pending on that
/// thread and the write fails with `EPIPE`, which the peer client handles. Only
/// meshcache's own threads are changed (threads they create inherit the mask, as C
/// loaders would see), never the process's disposition of SIGPIPE.
fn block_sigpipe() {
    #[cfg(unix)]
    // Safety: `set` is initialised by sigemptyset before use; pthread_sigmask only
    // changes the calling thread's mask, and a NULL old set is allowed.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
    }
}

/// Replaces the peer list with the `n_peers` addresses at `peers` (`"host:port"` each;
/// this node's own address may be among them). The ring is swapped atomically.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for a NULL pointer, an address that is not
/// `host:port`, or a cluster whose membership follows etcd or DNS (its peers come from
/// there); `MESHCACHE_CLOSED` after shutdown.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_set_peers(
    cluster: *const meshcache_cluster,
    peers: *const *const c_char,
    n_peers: usize,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        if peers.is_null() && n_peers != 0 {
            return Err(invalid("peers is NULL").into());
        }
        let mut list = Vec::with_capacity(n_peers);
        for i in 0..n_peers {
            // Safety: `peers` has `n_peers` readable entries by contract, each a
            // NUL-terminated string (checked for NULL by str_arg).
            list.push(unsafe { str_arg(*peers.add(i), "peers[i]") }?.to_string());
        }
        c.cluster.set_peers(list)?;
        Ok(())
    })
}

/// Blocks until this node's ring has exactly `n` members (this node included), for at
/// most `timeout_ms` milliseconds (> 0): "the cluster has formed", or "that node has
/// left". Woken by every change of the ring, never by polling. The members are then in
/// `meshcache_cluster_stats_get`'s snapshot (`meshcache_cluster_stats_ring_member`).
///
/// Returns `MESHCACHE_TIMEOUT` if the ring did not have `n` members in time,
/// `MESHCACHE_INVALID_ARGUMENT` for a NULL `cluster` or a zero `timeout_ms`,
/// `MESHCACHE_CLOSED` after shutdown. (A wait under way when the cluster is shut down
/// ends at the next change of the ring, or at its deadline.)
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_wait_for_members(
    cluster: *const meshcache_cluster,
    n: usize,
    timeout_ms: u64,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        if timeout_ms == 0 {
            return Err(invalid("timeout_ms must be greater than zero").into());
        }
        if c.cluster.is_closed() {
            return Err(Error::new(ErrorKind::Closed, "meshcache was shut down").into());
        }
        let wait = c.cluster.wait_for_members(n, Duration::from_millis(timeout_ms));
        c.cluster.runtime().block_on(wait)?;
        Ok(())
    })
}

/// Writes the address the peer server is bound to (with the real port when port 0 was
/// asked for), NUL-terminated, into `(buf, len)`, and its length without the NUL into
/// `*out_len`. 64 bytes are always enough for an IP address and port.
///
/// Returns `MESHCACHE_INSUFFICIENT_SIZE` if it does not fit (nothing is written).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_local_addr(
    cluster: *const meshcache_cluster,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        let addr = c.cluster.local_addr().to_string();
        // Safety: `(buf, len)` and `out_len` are writable by contract.
        unsafe { write_str(&addr, buf, len, out_len) }
    })
}

/// Writes this node's advertised address (its name on the ring, what other nodes put in
/// their peer lists) like `meshcache_cluster_local_addr`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_advertise_addr(
    cluster: *const meshcache_cluster,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        // Safety: `(buf, len)` and `out_len` are writable by contract.
        unsafe { write_str(c.cluster.advertise_addr(), buf, len, out_len) }
    })
}

/// Writes the advertised address of the node that owns `(key, key_len)` now (the
/// primary of its replicas, on this node's ring), NUL-terminated, into `(buf, len)`, and
/// its length without the NUL into `*out_len`, like `meshcache_cluster_local_addr`.
///
/// Returns `MESHCACHE_INSUFFICIENT_SIZE` if it does not fit (nothing is written),
/// `MESHCACHE_INVALID_ARGUMENT` for a NULL pointer (`key` may be NULL with a `key_len`
/// of 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_owner_of(
    cluster: *const meshcache_cluster,
    key: *const u8,
    key_len: usize,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        // Safety: `(key, key_len)` is readable by contract.
        let key = unsafe { bytes_arg(key, key_len, "key") }?;
        let owner = c.cluster.owner_of(key);
        // Safety: `(buf, len)` and `out_len` are writable by contract.
        unsafe { write_str(&owner, buf, len, out_len) }
    })
}

/// Writes the address the metrics and status server is bound to
/// (`meshcache_cluster_options_set_metrics_listen`, with the real port when port 0 was
/// asked for), NUL-terminated, into `(buf, len)`, and its length without the NUL into
/// `*out_len`, like `meshcache_cluster_local_addr`. 64 bytes are always enough.
///
/// Returns `MESHCACHE_NOT_FOUND` (nothing written) when there is no metrics server:
/// without `_set_metrics_listen`, and once the cluster is shut down (the server stops
/// with it, and its port refuses connections); `MESHCACHE_INSUFFICIENT_SIZE` if it does
/// not fit (nothing is written).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_metrics_addr(
    cluster: *const meshcache_cluster,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        out_arg(buf, "buf")?;
        out_arg(out_len, "out_len")?;
        let Some(addr) = c.cluster.metrics_addr() else {
            return Err(Error::new(
                ErrorKind::NotFound,
                "no metrics server (metrics_listen not set, or shut down)",
            )
            .into());
        };
        // Safety: `(buf, len)` and `out_len` are writable by contract.
        unsafe { write_str(&addr.to_string(), buf, len, out_len) }
    })
}

/// The cluster's metrics in the Prometheus text exposition format (OpenMetrics), what
/// the metrics server serves at `/metrics`: for an application that serves its own
/// metrics endpoint (append it to yours). Read from the stats now, e.g.
/// `meshcache_gets_total{group="users",result="hit"} 8` (every name in the README's
/// "Metrics and status"; no key ever appears in a label). Works without a metrics server
/// and after shutdown.
///
/// Writes a NUL-terminated string the caller owns into `*out` (free it with
/// `meshcache_string_free`; it may be modified in place meanwhile) and its length without
/// the NUL into `*out_len` (`out_len` may be NULL).
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for a NULL `cluster` or `out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_metrics_text(
    cluster: *const meshcache_cluster,
    out: *mut *mut c_char,
    out_len: *mut usize,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        out_arg(out, "out")?;
        let text = c.cluster.metrics_text();
        // Safety: `out` and a non-NULL `out_len` are writable by contract.
        unsafe { write_owned_str(&text, out, out_len) }
    })
}

/// The node's status as JSON (one line), what the metrics server answers at
/// `/v1/status` and its status page reads: `node` (this node's advertised address),
/// `ring` (`source`, `members` with each one's `share` of the keys, `epoch`, `healthy`,
/// ...), `peers` (each one's breaker and call counters) and `groups` (each group's `name`
/// and the counters and tiers of `meshcache_group_stats`, by the same names). Works
/// without a metrics server and after shutdown.
///
/// Writes a NUL-terminated string the caller owns into `*out` (free it with
/// `meshcache_string_free`) and its length without the NUL into `*out_len` (`out_len`
/// may be NULL).
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for a NULL `cluster` or `out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_status_json(
    cluster: *const meshcache_cluster,
    out: *mut *mut c_char,
    out_len: *mut usize,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        out_arg(out, "out")?;
        let json = c.cluster.status_json().to_string();
        // Safety: `out` and a non-NULL `out_len` are writable by contract.
        unsafe { write_owned_str(&json, out, out_len) }
    })
}

/// A snapshot of the cluster's stats into `*out` (free it with
/// `meshcache_cluster_stats_free`): this node's address; for each other node, its
/// address, breaker state and call counters; this node's server counters; and its view
/// of the ring (`meshcache_cluster_stats_ring_*`). Works after shutdown too
/// (`closed_at_shutdown` is read there).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_get(
    cluster: *const meshcache_cluster,
    out: *mut *mut meshcache_cluster_stats,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        out_arg(out, "out")?;
        let stats = meshcache_cluster_stats::from(c.cluster.stats());
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = Box::into_raw(Box::new(stats)) };
        Ok(())
    })
}

/// Shuts the node down gracefully: with etcd or DNS membership, leaves the ring and
/// hands the entries it holds to their new owners (`meshcache_cluster_options_set_handoff`,
/// default at most 10000 ms); stops serving peers, lets calls in flight finish for up to
/// the shutdown grace period (`meshcache_cluster_options_set_shutdown_grace_ms`, default
/// 5000 ms), then closes every connection still open, and closes every group. Always
/// returns within about the handoff timeout and the grace period plus a second, whatever
/// the peers do.
/// Every later call on the cluster or its groups returns `MESHCACHE_CLOSED`. Idempotent.
/// Blocks until done; must not be called from a loader (returns
/// `MESHCACHE_INVALID_ARGUMENT` there).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_shutdown(cluster: *const meshcache_cluster) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        c.cluster.shutdown_blocking()?;
        Ok(())
    })
}

/// Shuts the node down (if not done yet, as `meshcache_cluster_shutdown`: within about
/// the shutdown grace period plus a second, even with idle or silent connections open),
/// stops its threads (every one has exited when this returns, so it also waits for a
/// loader callback still running) and frees it. Groups of the cluster stay valid handles but return
/// `MESHCACHE_CLOSED`; free them too. Values already returned stay readable. Does nothing
/// for NULL. Must not be called from a loader. Using `cluster` afterwards is the
/// caller's bug.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_free(cluster: *mut meshcache_cluster) {
    ffi_infallible((), || {
        if cluster.is_null() {
            return;
        }
        // Safety: came from `Box::into_raw` in meshcache_cluster_new, freed once.
        let c = unsafe { Box::from_raw(cluster) };
        // Errors (the server had failed; called from a loader) change nothing here.
        let _ = c.cluster.shutdown_blocking();
        let meshcache_cluster { cluster, runtime } = *c;
        drop(cluster);
        // Stops the runtime's threads (joining them) once the cluster is gone.
        drop(runtime);
    })
}
