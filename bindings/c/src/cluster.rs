//! Clusters: options, creation, peers, addresses, stats, shutdown.

use std::ffi::{CString, c_char};
use std::time::Duration;

use meshcache::{Cluster, ClusterBuilder, DEFAULT_WORKER_THREADS, Error, ErrorKind, PeerStats};
use tokio::runtime::Runtime;

use crate::error::{Fail, arg, arg_mut, ffi, ffi_infallible, invalid, out_arg, str_arg, write_str};
use crate::meshcache_result;

/// Options for `meshcache_cluster_new`. Create with `meshcache_cluster_options_new`,
/// free with `meshcache_cluster_options_free`; may be freed right after use.
///
/// The setters only record values: options that can never work (a zero timeout, message
/// size, vnode count, breaker threshold or worker thread count) are refused by
/// `meshcache_cluster_new`, with `MESHCACHE_INVALID_ARGUMENT`.
#[derive(Debug)]
pub struct meshcache_cluster_options {
    builder: ClusterBuilder,
    peers: Vec<String>,
    worker_threads: usize,
}

impl Default for meshcache_cluster_options {
    fn default() -> Self {
        meshcache_cluster_options {
            builder: Cluster::builder(),
            peers: Vec::new(),
            worker_threads: DEFAULT_WORKER_THREADS,
        }
    }
}

/// One peer of a cluster, from `meshcache_cluster_stats_peer`: its address, the state of
/// its circuit breaker and the counters of this node's calls to it. The strings belong to
/// the `meshcache_cluster_stats` they came from and are valid until it is freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct meshcache_peer_stats {
    /// The peer's advertised address, `"host:port"`.
    pub addr: *const c_char,
    /// The state of its breaker: `"closed"` (calls go through), `"open"` (calls fail at
    /// once until the cooldown ends) or `"half_open"` (one probe call is let through).
    pub breaker: *const c_char,
    /// Calls sent (each retry counts).
    pub requests: u64,
    /// Calls that got an answer (including application errors such as a failed load).
    pub successes: u64,
    /// Calls that failed to reach the peer or timed out.
    pub failures: u64,
    /// Of those, calls that hit their deadline.
    pub timeouts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Calls refused at once because the breaker was open.
    pub rejected: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
}

/// A snapshot of a cluster's stats, from `meshcache_cluster_stats_get`: this node's
/// advertised address (`meshcache_cluster_stats_node`) and one `meshcache_peer_stats` per
/// other node (`meshcache_cluster_stats_peers_len`, `meshcache_cluster_stats_peer`), in
/// address order. Free with `meshcache_cluster_stats_free`.
#[derive(Debug)]
pub struct meshcache_cluster_stats {
    node: CString,
    peers: Vec<PeerSnapshot>,
}

#[derive(Debug)]
struct PeerSnapshot {
    addr: CString,
    /// `BreakerState::as_str()`, the state's name in every language.
    breaker: CString,
    stats: PeerStats,
}

/// `s` as a C string (an address or a state name never holds a NUL; one would be escaped).
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

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

/// New cluster options with the defaults: listen on `127.0.0.1:0` (a free port), no
/// peers, peer timeout 1000 ms, connect timeout 500 ms, 1 retry after 10 ms, breaker
/// opens after 5 failures for 1000 ms, 64 MiB messages, 2 worker threads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_new(
    out: *mut *mut meshcache_cluster_options,
) -> meshcache_result {
    ffi(|| {
        out_arg(out, "out")?;
        let opts = Box::<meshcache_cluster_options>::default();
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = Box::into_raw(opts) };
        Ok(())
    })
}

/// Frees `options`. Does nothing for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_free(options: *mut meshcache_cluster_options) {
    ffi_infallible((), || {
        if !options.is_null() {
            // Safety: came from `Box::into_raw` in meshcache_cluster_options_new, freed once.
            drop(unsafe { Box::from_raw(options) });
        }
    })
}

/// Applies `f` to the builder of `options`.
///
/// # Safety
///
/// A non-NULL `options` must be live and not used by another thread meanwhile.
unsafe fn with_options(
    options: *mut meshcache_cluster_options,
    f: impl FnOnce(&mut meshcache_cluster_options) -> Result<(), Fail>,
) -> meshcache_result {
    ffi(|| {
        // Safety: by this function's contract.
        let o = unsafe { arg_mut(options, "options") }?;
        f(o)
    })
}

fn update(o: &mut meshcache_cluster_options, f: impl FnOnce(ClusterBuilder) -> ClusterBuilder) {
    let b = std::mem::take(&mut o.builder);
    o.builder = f(b);
}

/// The address the peer server binds, `"host:port"` (port 0 picks a free port).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_listen(
    options: *mut meshcache_cluster_options,
    addr: *const c_char,
) -> meshcache_result {
    // Safety: pointers are checked; `addr` is NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            let addr = str_arg(addr, "addr")?.to_string();
            update(o, |b| b.listen(addr));
            Ok(())
        })
    }
}

/// The address other nodes reach this one at, `"host:port"`; also its name on the ring.
/// Default: the bound address (which must then not be a wildcard such as `0.0.0.0`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_advertise(
    options: *mut meshcache_cluster_options,
    addr: *const c_char,
) -> meshcache_result {
    // Safety: pointers are checked; `addr` is NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            let addr = str_arg(addr, "addr")?.to_string();
            update(o, |b| b.advertise(addr));
            Ok(())
        })
    }
}

/// Adds a peer's advertised address, `"host:port"`. This node's own address may be
/// added too, so every node can be given the same list.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_add_peer(
    options: *mut meshcache_cluster_options,
    addr: *const c_char,
) -> meshcache_result {
    // Safety: pointers are checked; `addr` is NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            o.peers.push(str_arg(addr, "addr")?.to_string());
            Ok(())
        })
    }
}

/// The deadline of every call to a peer, in milliseconds (> 0; 0 is refused by
/// `meshcache_cluster_new`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_peer_timeout_ms(
    options: *mut meshcache_cluster_options,
    ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.peer_timeout(Duration::from_millis(ms)));
            Ok(())
        })
    }
}

/// The time to establish a connection to a peer, in milliseconds (> 0; 0 is refused by
/// `meshcache_cluster_new`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_connect_timeout_ms(
    options: *mut meshcache_cluster_options,
    ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.connect_timeout(Duration::from_millis(ms)));
            Ok(())
        })
    }
}

/// Retries of an idempotent peer call that could not reach its peer, with exponential
/// backoff starting at `backoff_ms`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_retries(
    options: *mut meshcache_cluster_options,
    retries: u32,
    backoff_ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.retries(retries, Duration::from_millis(backoff_ms)));
            Ok(())
        })
    }
}

/// Consecutive failures that open a peer's circuit breaker (> 0; 0 is refused by
/// `meshcache_cluster_new`), and how long (ms) it stays open before one probe is let
/// through.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_breaker(
    options: *mut meshcache_cluster_options,
    threshold: u32,
    cooldown_ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.breaker(threshold, Duration::from_millis(cooldown_ms)));
            Ok(())
        })
    }
}

/// The largest peer message sent or accepted, in bytes (> 0; 0 is refused by
/// `meshcache_cluster_new`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_max_message_size(
    options: *mut meshcache_cluster_options,
    bytes: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.max_message_size(bytes));
            Ok(())
        })
    }
}

/// Points per node on the consistent-hash ring (> 0; 0 is refused by
/// `meshcache_cluster_new`); every node must use the same.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_vnodes(
    options: *mut meshcache_cluster_options,
    vnodes: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.vnodes(vnodes));
            Ok(())
        })
    }
}

/// Worker threads of the cluster's runtime (> 0; 0 is refused by `meshcache_cluster_new`).
/// Loaders run on a separate pool of blocking threads, created as needed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_worker_threads(
    options: *mut meshcache_cluster_options,
    threads: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.worker_threads = threads;
            Ok(())
        })
    }
}

/// Starts a cluster node into `*out`: creates its runtime, binds the listener and starts
/// serving peers. `options` may be NULL for the defaults, and is not taken (free it).
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for an address that does not parse or cannot be
/// bound, a wildcard listen address without an advertise address, an option that can
/// never work (a zero timeout, message size, vnode count, breaker threshold or worker
/// thread count), or a NULL `out`.
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
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorKind::Closed, format!("cannot start a runtime: {e}")))?;
        let builder = o.builder.clone().peers(o.peers.clone());
        // On failure (the core refused an option, or could not bind), `runtime` is dropped
        // here, on the caller's thread, and its threads are joined.
        let cluster = builder.runtime(runtime.handle().clone()).build()?;
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = Box::into_raw(Box::new(meshcache_cluster { cluster, runtime })) };
        Ok(())
    })
}

/// Replaces the peer list with the `n_peers` addresses at `peers` (`"host:port"` each;
/// this node's own address may be among them). The ring is swapped atomically.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for a NULL pointer or an address that is not
/// `host:port`, `MESHCACHE_CLOSED` after shutdown.
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

/// A snapshot of the cluster's stats into `*out` (free it with
/// `meshcache_cluster_stats_free`): this node's address and, for each other node, its
/// address, breaker state and call counters. Works after shutdown too.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_get(
    cluster: *const meshcache_cluster,
    out: *mut *mut meshcache_cluster_stats,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        out_arg(out, "out")?;
        let s = c.cluster.stats();
        let stats = meshcache_cluster_stats {
            node: c_string(&s.node),
            peers: s
                .peers
                .into_iter()
                .map(|(addr, breaker, stats)| PeerSnapshot {
                    addr: c_string(&addr),
                    breaker: c_string(breaker.as_str()),
                    stats,
                })
                .collect(),
        };
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = Box::into_raw(Box::new(stats)) };
        Ok(())
    })
}

/// This node's advertised address (its name on the ring), NUL-terminated, owned by
/// `stats` (valid until `meshcache_cluster_stats_free`); "" for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_node(
    stats: *const meshcache_cluster_stats,
) -> *const c_char {
    ffi_infallible(c"".as_ptr(), || {
        // Safety: a non-NULL `stats` is live by contract.
        unsafe { stats.as_ref() }.map_or(c"".as_ptr(), |s| s.node.as_ptr())
    })
}

/// The number of peers in `stats` (0 for NULL).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_peers_len(stats: *const meshcache_cluster_stats) -> usize {
    ffi_infallible(0, || {
        // Safety: a non-NULL `stats` is live by contract.
        unsafe { stats.as_ref() }.map_or(0, |s| s.peers.len())
    })
}

/// Peer `index` of `stats` into `*out`; its strings are owned by `stats`.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for NULL pointers or an index out of range.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_peer(
    stats: *const meshcache_cluster_stats,
    index: usize,
    out: *mut meshcache_peer_stats,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `stats` is live by contract.
        let s = unsafe { arg(stats, "stats") }?;
        out_arg(out, "out")?;
        let p = s
            .peers
            .get(index)
            .ok_or_else(|| invalid(format!("index {index} out of range ({} peers)", s.peers.len())))?;
        // Every field by name: a counter added to the core fails to compile here.
        let PeerStats {
            requests,
            successes,
            failures,
            timeouts,
            retries,
            rejected,
            breaker_opened,
        } = p.stats;
        let peer = meshcache_peer_stats {
            addr: p.addr.as_ptr(),
            breaker: p.breaker.as_ptr(),
            requests,
            successes,
            failures,
            timeouts,
            retries,
            rejected,
            breaker_opened,
        };
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = peer };
        Ok(())
    })
}

/// Frees `stats`. Does nothing for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_free(stats: *mut meshcache_cluster_stats) {
    ffi_infallible((), || {
        if !stats.is_null() {
            // Safety: a non-NULL `stats` came from `Box::into_raw` in
            // meshcache_cluster_stats_get and is freed once by contract.
            drop(unsafe { Box::from_raw(stats) });
        }
    })
}

/// Shuts the node down gracefully: stops serving peers, lets calls in flight finish,
/// closes every group. Every later call on the cluster or its groups returns
/// `MESHCACHE_CLOSED`. Idempotent. Blocks until done; must not be called from a loader
/// (returns `MESHCACHE_INVALID_ARGUMENT` there).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_shutdown(cluster: *const meshcache_cluster) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        c.cluster.shutdown_blocking()?;
        Ok(())
    })
}

/// Shuts the node down (if not done yet), stops its threads (every one has exited when
/// this returns) and frees it. Groups of the cluster stay valid handles but return
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
