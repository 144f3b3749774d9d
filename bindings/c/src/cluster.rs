//! Clusters: options, creation, peers, addresses, stats, shutdown.

use std::ffi::c_char;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use meshcache::{BreakerState, Cluster, ClusterBuilder, Error, ErrorKind};
use tokio::runtime::{Handle, Runtime};

use crate::error::{Fail, arg, arg_mut, ffi, ffi_infallible, invalid, out_arg, str_arg, write_str};
use crate::meshcache_result;

/// Finishes a `Group::get` for a C caller: a future that is ready at once (a cache hit)
/// is polled once here and never enters the runtime's scheduler; otherwise, unless
/// `would_deadlock()` says that waiting would wait on this very thread, the calling thread
/// blocks on the runtime until it completes.
///
/// The future is taken pinned in place (see [`block_on_get!`]): a get's future is large,
/// and moving it costs more than the hit itself. The first poll runs outside the runtime's
/// context: `Group::get` spawns its loads and fetches on the group's runtime explicitly,
/// so it needs none (the C tests cover both a local and a remote miss).
pub(crate) fn finish_get<T, F: Future<Output = Result<T, Error>>>(
    rt: &Handle,
    mut fut: Pin<&mut F>,
    would_deadlock: impl FnOnce() -> bool,
) -> Result<T, Error> {
    if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return v;
    }
    // Checked only on a miss, so that a hit pays nothing for it. Dropping the future now
    // only stops this caller's wait (a get is cancel-safe).
    if would_deadlock() {
        return Err(invalid(
            "a loader asked for the key it is loading: that get would wait for itself",
        ));
    }
    // Polled again with a real waker: a future must accept a different waker per poll.
    rt.block_on(fut)
}

/// `finish_get(rt, pin!(fut))`, building the future in place.
macro_rules! block_on_get {
    ($rt:expr, $fut:expr, $would_deadlock:expr) => {{
        let fut = ::std::pin::pin!($fut);
        $crate::cluster::finish_get($rt, fut, $would_deadlock)
    }};
}
pub(crate) use block_on_get;

/// Options for `meshcache_cluster_new`. Create with `meshcache_cluster_options_new`,
/// free with `meshcache_cluster_options_free`; may be freed right after use.
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
            worker_threads: 2,
        }
    }
}

/// Peer counters of a cluster, summed over its peers.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct meshcache_cluster_stats {
    /// Other nodes on the ring.
    pub peers: u64,
    /// Peers whose circuit breaker is open (calls to them fail at once).
    pub open_breakers: u64,
    /// Calls sent to peers (each retry counts).
    pub requests: u64,
    /// Calls that got an answer.
    pub successes: u64,
    /// Calls that failed to reach their peer or timed out.
    pub failures: u64,
    /// Of those, calls that hit their deadline.
    pub timeouts: u64,
    /// Retries sent.
    pub retries: u64,
    /// Calls refused at once because a breaker was open.
    pub rejected: u64,
    /// Times a breaker opened.
    pub breaker_opened: u64,
}

/// A node of a meshcache cluster: its peer server, its clients to the other nodes, its
/// groups, and the threads (a tokio runtime) they run on. Thread-safe: every function may
/// be called from any thread. Several clusters may live in one process.
#[derive(Debug)]
pub struct meshcache_cluster {
    pub(crate) cluster: Cluster,
    /// The runtime the cluster runs on. Created and dropped here rather than by
    /// `ClusterBuilder::build`, which drops its runtime inside `block_on` (a panic) when
    /// the start fails, e.g. on an address that does not parse. Declared after `cluster`
    /// so that it is dropped last.
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

/// The deadline of every call to a peer, in milliseconds (> 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_peer_timeout_ms(
    options: *mut meshcache_cluster_options,
    ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            if ms == 0 {
                return Err(invalid("peer timeout must be greater than zero").into());
            }
            update(o, |b| b.peer_timeout(Duration::from_millis(ms)));
            Ok(())
        })
    }
}

/// The time to establish a connection to a peer, in milliseconds (> 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_connect_timeout_ms(
    options: *mut meshcache_cluster_options,
    ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            if ms == 0 {
                return Err(invalid("connect timeout must be greater than zero").into());
            }
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

/// Consecutive failures that open a peer's circuit breaker, and how long (ms) it stays
/// open before one probe is let through.
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

/// The largest peer message sent or accepted, in bytes (> 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_max_message_size(
    options: *mut meshcache_cluster_options,
    bytes: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            if bytes == 0 {
                return Err(invalid("max message size must be greater than zero").into());
            }
            update(o, |b| b.max_message_size(bytes));
            Ok(())
        })
    }
}

/// Points per node on the consistent-hash ring (> 0); every node must use the same.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_vnodes(
    options: *mut meshcache_cluster_options,
    vnodes: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            if vnodes == 0 {
                return Err(invalid("vnodes must be greater than zero").into());
            }
            update(o, |b| b.vnodes(vnodes));
            Ok(())
        })
    }
}

/// Worker threads of the cluster's runtime (> 0). Loaders run on a separate pool of
/// blocking threads, created as needed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_worker_threads(
    options: *mut meshcache_cluster_options,
    threads: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            if threads == 0 {
                return Err(invalid("worker threads must be greater than zero").into());
            }
            o.worker_threads = threads;
            Ok(())
        })
    }
}

/// Starts a cluster node into `*out`: creates its runtime, binds the listener and starts
/// serving peers. `options` may be NULL for the defaults, and is not taken (free it).
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for an address that does not parse or cannot be
/// bound, a wildcard listen address without an advertise address, or a NULL `out`.
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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.worker_threads)
            .thread_name("meshcache")
            .enable_all()
            .build()
            .map_err(|e| Error::new(ErrorKind::Closed, format!("cannot start a runtime: {e}")))?;
        let builder = o.builder.clone().peers(o.peers.clone());
        // On failure, `runtime` is dropped here, on the caller's thread, where it may block.
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

/// The cluster's peer counters, summed over its peers, into `*out`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_get(
    cluster: *const meshcache_cluster,
    out: *mut meshcache_cluster_stats,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `cluster` is live by contract.
        let c = unsafe { arg(cluster, "cluster") }?;
        out_arg(out, "out")?;
        let mut s = meshcache_cluster_stats::default();
        for (_, state, p) in c.cluster.stats().peers {
            s.peers += 1;
            s.open_breakers += u64::from(state == BreakerState::Open);
            s.requests += p.requests;
            s.successes += p.successes;
            s.failures += p.failures;
            s.timeouts += p.timeouts;
            s.retries += p.retries;
            s.rejected += p.rejected;
            s.breaker_opened += p.breaker_opened;
        }
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = s };
        Ok(())
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

/// Shuts the node down (if not done yet), stops its threads and frees it. Groups of the
/// cluster stay valid handles but return `MESHCACHE_CLOSED`; free them too. Values
/// already returned stay readable. Does nothing for NULL. Must not be called from a
/// loader. Using `cluster` afterwards is the caller's bug.
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
