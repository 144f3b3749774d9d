//! Clusters: options, creation, peers, addresses, stats, shutdown.

use std::ffi::{CString, c_char};
use std::time::Duration;

use meshcache::{Cluster, ClusterBuilder, DEFAULT_WORKER_THREADS, Error, ErrorKind, PeerStats, ServerStats};
use tokio::runtime::Runtime;

use crate::error::{Fail, arg, arg_mut, ffi, ffi_infallible, invalid, out_arg, str_arg, write_str};
use crate::meshcache_result;

/// Options for `meshcache_cluster_new`. Create with `meshcache_cluster_options_new`,
/// free with `meshcache_cluster_options_free`; may be freed right after use.
///
/// The setters only record values (they check for NULL and UTF-8, nothing else): options
/// that can never work (a zero timeout, message size, vnode count, breaker threshold,
/// worker thread count or peer request limit, a bad token, an unreadable token or TLS
/// file) are refused by `meshcache_cluster_new`, with `MESHCACHE_INVALID_ARGUMENT`.
/// Setters may be called in any order; a later call of a setter replaces an earlier one
/// (`meshcache_cluster_options_add_peer` adds).
pub struct meshcache_cluster_options {
    builder: ClusterBuilder,
    peers: Vec<String>,
    worker_threads: usize,
    /// TLS, handed to the builder by `meshcache_cluster_new`, so that
    /// `_set_tls_client_auth` and `_set_tls_server_name` work before `_set_tls` too.
    tls: Option<TlsFiles>,
    tls_client_auth: bool,
    tls_server_name: Option<String>,
}

/// The PEM files of `meshcache_cluster_options_set_tls`.
#[derive(Debug, Clone)]
struct TlsFiles {
    cert: String,
    key: String,
    ca: String,
}

impl Default for meshcache_cluster_options {
    fn default() -> Self {
        meshcache_cluster_options {
            builder: Cluster::builder(),
            peers: Vec::new(),
            worker_threads: DEFAULT_WORKER_THREADS,
            tls: None,
            tls_client_auth: true,
            tls_server_name: None,
        }
    }
}

impl std::fmt::Debug for meshcache_cluster_options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The builder holds the token, a secret: it is never printed.
        f.debug_struct("meshcache_cluster_options")
            .field("peers", &self.peers)
            .field("worker_threads", &self.worker_threads)
            .field("tls", &self.tls)
            .field("tls_client_auth", &self.tls_client_auth)
            .field("tls_server_name", &self.tls_server_name)
            .finish_non_exhaustive()
    }
}

impl meshcache_cluster_options {
    /// The core's builder with every option of these options.
    fn to_builder(&self) -> ClusterBuilder {
        let mut b = self.builder.clone().peers(self.peers.clone());
        if let Some(t) = &self.tls {
            b = b
                .tls(&t.cert, &t.key, &t.ca)
                .tls_client_auth(self.tls_client_auth);
            if let Some(name) = &self.tls_server_name {
                b = b.tls_server_name(name.clone());
            }
        }
        b
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

/// The counters of a node's peer server, from `meshcache_cluster_stats_server`: calls
/// and connections it refused or closed. The field names are the core's
/// (`ServerStats::fields()`), the same in every language.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct meshcache_server_stats {
    /// Calls refused for a missing or wrong cluster token.
    pub rejected_unauthenticated: u64,
    /// Calls refused because the node had as many peer requests in flight as it allows
    /// (`meshcache_cluster_options_set_max_peer_requests`).
    pub rejected_overloaded: u64,
    /// Batched gets refused for carrying more keys (or key bytes) than one answer may.
    pub rejected_too_many_keys: u64,
    /// Accept errors (such as running out of file descriptors), each followed by a pause.
    pub accept_errors: u64,
    /// Connections closed for not sending their first bytes within the handshake timeout.
    pub handshake_timeouts: u64,
    /// Connections closed after serving no request for the idle timeout.
    pub idle_closed: u64,
    /// Connections still open when shutdown's grace period ended, then closed.
    pub closed_at_shutdown: u64,
    /// Connections refused for speaking plaintext to a TLS port, or TLS to a plaintext
    /// one.
    pub rejected_protocol_mismatch: u64,
}

impl From<ServerStats> for meshcache_server_stats {
    fn from(s: ServerStats) -> Self {
        // Every field by name: a counter added to the core fails to compile here.
        let ServerStats {
            rejected_unauthenticated,
            rejected_overloaded,
            rejected_too_many_keys,
            accept_errors,
            handshake_timeouts,
            idle_closed,
            closed_at_shutdown,
            rejected_protocol_mismatch,
        } = s;
        meshcache_server_stats {
            rejected_unauthenticated,
            rejected_overloaded,
            rejected_too_many_keys,
            accept_errors,
            handshake_timeouts,
            idle_closed,
            closed_at_shutdown,
            rejected_protocol_mismatch,
        }
    }
}

/// A snapshot of a cluster's stats, from `meshcache_cluster_stats_get`: this node's
/// advertised address (`meshcache_cluster_stats_node`), one `meshcache_peer_stats` per
/// other node (`meshcache_cluster_stats_peers_len`, `meshcache_cluster_stats_peer`), in
/// address order, and this node's server counters (`meshcache_cluster_stats_server`).
/// Free with `meshcache_cluster_stats_free`.
#[derive(Debug)]
pub struct meshcache_cluster_stats {
    node: CString,
    peers: Vec<PeerSnapshot>,
    server: ServerStats,
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
/// opens after 5 failures for 1000 ms, 64 MiB messages, 2 worker threads; no token and
/// no TLS (keep the port private then: see the README's Security section), shutdown
/// grace 5000 ms, handshake timeout 10000 ms, idle timeout 300000 ms, 1024 peer requests
/// at once.
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

/// The cluster token, a secret shared by every node of the cluster: sent on every call
/// to a peer, and required of every call from one (health checks excepted); calls
/// without it, or with a wrong one, are refused and counted in
/// `meshcache_server_stats.rejected_unauthenticated`. Default: none, and then anyone who
/// can reach the port can read, write and load any key.
///
/// Printable ASCII without spaces: an empty token or one with a space or a control
/// character is refused by `meshcache_cluster_new` (`MESHCACHE_INVALID_ARGUMENT`).
/// meshcache never prints or logs it (error messages do not contain it); `token` is
/// copied and may be freed (or wiped) when this returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_token(
    options: *mut meshcache_cluster_options,
    token: *const c_char,
) -> meshcache_result {
    // Safety: pointers are checked; `token` is NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            let token = str_arg(token, "token")?.to_string();
            update(o, |b| b.token(token));
            Ok(())
        })
    }
}

/// The cluster token from a file, read by `meshcache_cluster_new`: its first line,
/// surrounding white space removed. Overrides `meshcache_cluster_options_set_token`.
/// Default: none. A file that cannot be read, or holds a bad token, is refused by
/// `meshcache_cluster_new` (`MESHCACHE_INVALID_ARGUMENT`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_token_file(
    options: *mut meshcache_cluster_options,
    path: *const c_char,
) -> meshcache_result {
    // Safety: pointers are checked; `path` is NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            let path = str_arg(path, "path")?.to_string();
            update(o, |b| b.token_file(path));
            Ok(())
        })
    }
}

/// A token accepted besides the current one, for rotation: restart every node with the
/// new token and the old one as previous; once every node runs the new token, drop the
/// previous one. A secret too, with the rules of `meshcache_cluster_options_set_token`.
/// Default: none. Without a current token (`_set_token` or `_set_token_file`) it is
/// refused by `meshcache_cluster_new` (`MESHCACHE_INVALID_ARGUMENT`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_previous_token(
    options: *mut meshcache_cluster_options,
    token: *const c_char,
) -> meshcache_result {
    // Safety: pointers are checked; `token` is NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            let token = str_arg(token, "token")?.to_string();
            update(o, |b| b.previous_token(token));
            Ok(())
        })
    }
}

/// TLS on peer traffic: this node's certificate chain (`cert`), its private key (`key`)
/// and the CA that signed every node's certificate (`ca`), paths of PEM files read by
/// `meshcache_cluster_new`. The node's certificate is also its client certificate, and
/// peers must present one from `ca` (mutual TLS) unless
/// `meshcache_cluster_options_set_tls_client_auth` says otherwise. Every node of a
/// cluster must use TLS or none: a plaintext peer is refused and counted in
/// `meshcache_server_stats.rejected_protocol_mismatch`. Default: no TLS. A file that
/// cannot be read is refused by `meshcache_cluster_new` (`MESHCACHE_INVALID_ARGUMENT`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_tls(
    options: *mut meshcache_cluster_options,
    cert: *const c_char,
    key: *const c_char,
    ca: *const c_char,
) -> meshcache_result {
    // Safety: pointers are checked; the paths are NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            o.tls = Some(TlsFiles {
                cert: str_arg(cert, "cert")?.to_string(),
                key: str_arg(key, "key")?.to_string(),
                ca: str_arg(ca, "ca")?.to_string(),
            });
            Ok(())
        })
    }
}

/// Whether peers must present a client certificate signed by the CA (mutual TLS).
/// Default `true`. With `false`, any client that completes the TLS handshake is served
/// and the token is what keeps strangers out. Only used with
/// `meshcache_cluster_options_set_tls` (before or after it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_tls_client_auth(
    options: *mut meshcache_cluster_options,
    required: bool,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            o.tls_client_auth = required;
            Ok(())
        })
    }
}

/// The name peers' certificates are checked against when it is not the host part of
/// their addresses (say, every node's certificate names `meshcache.internal`). Default:
/// the host of each peer's address. Only used with `meshcache_cluster_options_set_tls`
/// (before or after it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_tls_server_name(
    options: *mut meshcache_cluster_options,
    name: *const c_char,
) -> meshcache_result {
    // Safety: pointers are checked; `name` is NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            o.tls_server_name = Some(str_arg(name, "name")?.to_string());
            Ok(())
        })
    }
}

/// How long shutdown (`meshcache_cluster_shutdown`, `meshcache_cluster_free`) lets calls
/// in flight finish, in milliseconds, before it closes every connection still open.
/// Default 5000. Shutdown always returns within about this plus a second, whatever the
/// peers do (idle or silent connections, stopped processes); 0 closes at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_shutdown_grace_ms(
    options: *mut meshcache_cluster_options,
    ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.shutdown_grace(Duration::from_millis(ms)));
            Ok(())
        })
    }
}

/// How long a new connection has to send its first bytes (TLS hello or HTTP/2 preface),
/// in milliseconds, before it is closed. Default 10000 (> 0; 0 is refused by
/// `meshcache_cluster_new`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_handshake_timeout_ms(
    options: *mut meshcache_cluster_options,
    ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.handshake_timeout(Duration::from_millis(ms)));
            Ok(())
        })
    }
}

/// How long a connection may serve no request, in milliseconds, before it is closed.
/// Default 300000 (> 0; 0 is refused by `meshcache_cluster_new`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_idle_timeout_ms(
    options: *mut meshcache_cluster_options,
    ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.idle_timeout(Duration::from_millis(ms)));
            Ok(())
        })
    }
}

/// Peer requests this node works on at once; more are refused (counted in
/// `meshcache_server_stats.rejected_overloaded`) and their callers load locally instead.
/// Default 1024 (> 0; 0 is refused by `meshcache_cluster_new`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_max_peer_requests(
    options: *mut meshcache_cluster_options,
    n: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.max_peer_requests(n));
            Ok(())
        })
    }
}

/// Starts a cluster node into `*out`: creates its runtime, binds the listener and starts
/// serving peers. `options` may be NULL for the defaults, and is not taken (free it).
///
/// The runtime's threads (which also run loaders) block SIGPIPE, so that a peer closing
/// a connection cannot end the process; the process's handling of SIGPIPE is not
/// changed.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for an address that does not parse or cannot be
/// bound, a wildcard listen address without an advertise address, an option that can
/// never work (a zero timeout, message size, vnode count, breaker threshold, worker
/// thread count or peer request limit), a bad token (empty, or not printable ASCII
/// without spaces), a previous token without a current one, a token file or TLS file
/// that cannot be read, or a NULL `out`.
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
/// `meshcache_cluster_stats_free`): this node's address; for each other node, its
/// address, breaker state and call counters; and this node's server counters. Works
/// after shutdown too (`closed_at_shutdown` is read there).
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
            server: s.server,
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

/// This node's server counters in `stats` into `*out` (see `meshcache_server_stats`).
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for NULL pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_stats_server(
    stats: *const meshcache_cluster_stats,
    out: *mut meshcache_server_stats,
) -> meshcache_result {
    ffi(|| {
        // Safety: a non-NULL `stats` is live by contract.
        let s = unsafe { arg(stats, "stats") }?;
        out_arg(out, "out")?;
        // Safety: `out` is non-NULL and writable by contract.
        unsafe { *out = s.server.into() };
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

/// Shuts the node down gracefully: stops serving peers, lets calls in flight finish for
/// up to the shutdown grace period (`meshcache_cluster_options_set_shutdown_grace_ms`,
/// default 5000 ms), then closes every connection still open, and closes every group.
/// Always returns within about the grace period plus a second, whatever the peers do.
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
