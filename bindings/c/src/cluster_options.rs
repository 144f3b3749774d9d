//! Cluster options: `meshcache_cluster_options` and its setters, read by `meshcache_cluster_new`.

use std::ffi::c_char;
use std::time::Duration;

use meshcache::{Cluster, ClusterBuilder, DEFAULT_WORKER_THREADS};

use crate::error::{Fail, arg_mut, ffi, ffi_infallible, out_arg, str_arg};
use crate::meshcache_result;

/// Options for `meshcache_cluster_new`. Create with `meshcache_cluster_options_new`,
/// free with `meshcache_cluster_options_free`; may be freed right after use.
///
/// The setters only record values (they check for NULL and UTF-8, nothing else): options
/// that can never work (a zero timeout, message size, vnode count, breaker threshold,
/// worker thread count or peer request limit, a bad token, an unreadable token or TLS
/// file, a membership spec that does not parse, peers with etcd or DNS membership) are
/// refused by `meshcache_cluster_new`, with `MESHCACHE_INVALID_ARGUMENT`.
/// Setters may be called in any order; a later call of a setter replaces an earlier one
/// (`meshcache_cluster_options_add_peer` adds).
pub struct meshcache_cluster_options {
    builder: ClusterBuilder,
    peers: Vec<String>,
    pub(crate) worker_threads: usize,
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
    pub(crate) fn to_builder(&self) -> ClusterBuilder {
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

/// New cluster options with the defaults: listen on `127.0.0.1:0` (a free port), static
/// membership with no peers, peer timeout 1000 ms, connect timeout 500 ms, 1 retry after
/// 10 ms, breaker opens after 5 failures for 1000 ms, 64 MiB messages, 2 worker threads;
/// no token and no TLS (keep the port private then: see the README's Security section),
/// shutdown grace 5000 ms, handshake timeout 10000 ms, idle timeout 300000 ms, 1024 peer
/// requests at once, warm window 60000 ms, handoff for up to 10000 ms and 1 GiB, no
/// metrics server.
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

/// Also serve the node's metrics and status over HTTP on `addr`, `"host:port"` (port 0
/// picks a free port: see `meshcache_cluster_metrics_addr`), a port of its own, separate
/// from the peer port, read-only: `/metrics` (the Prometheus text of
/// `meshcache_cluster_metrics_text`), `/` (a status page), `/v1/status` (the JSON of
/// `meshcache_cluster_status_json`), `/healthz` and `/readyz`. Default: none (the text and
/// the JSON are there either way). An address that does not parse or cannot be bound is
/// refused by `meshcache_cluster_new` (`MESHCACHE_INVALID_ARGUMENT`). `addr` is copied.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for a NULL pointer or an `addr` that is not UTF-8.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_metrics_listen(
    options: *mut meshcache_cluster_options,
    addr: *const c_char,
) -> meshcache_result {
    // Safety: pointers are checked; `addr` is NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            let addr = str_arg(addr, "addr")?.to_string();
            update(o, |b| b.metrics_listen(addr));
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

/// Where the other nodes come from: one string, spelled the same in every language.
///
/// - `"static"` (the default): the peer list (`meshcache_cluster_options_add_peer`,
///   changed later by `meshcache_cluster_set_peers`).
/// - `"etcd://host:2379[,host:2379]/prefix[?lease_ttl=10]"`: the node registers its
///   advertised address under `<prefix>/nodes/` on an etcd lease (TTL in whole seconds,
///   default 10) and follows the other registrations; shutdown revokes the lease, so the
///   other nodes drop this one at once. etcd auth: `user:password@` before the hosts, or
///   `user=...&password_file=...`; TLS to etcd: `ca=...` (and `cert=...&key=...`,
///   `server_name=...`).
/// - `"dns://name:port[?interval=5s&resolver=ip:port]"`: the nodes are the A/AAAA records
///   of `name`, at `port`, resolved every interval (default 5 s).
///
/// With etcd or DNS, `meshcache_cluster_new` waits up to 5 s for the first ring, then
/// goes on (alone if the source cannot be reached: it keeps trying, and
/// `meshcache_cluster_stats_ring_healthy` says so); `meshcache_cluster_wait_for_members`
/// waits for the ring to form. A spec that does not parse, or a peer list given with etcd
/// or DNS, is refused by `meshcache_cluster_new` (`MESHCACHE_INVALID_ARGUMENT`), and
/// `meshcache_cluster_set_peers` is refused on such a cluster. `spec` is copied.
///
/// Returns `MESHCACHE_INVALID_ARGUMENT` for a NULL pointer or a `spec` that is not UTF-8.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_membership(
    options: *mut meshcache_cluster_options,
    spec: *const c_char,
) -> meshcache_result {
    // Safety: pointers are checked; `spec` is NUL-terminated by contract.
    unsafe {
        with_options(options, |o| {
            let spec = str_arg(spec, "spec")?.to_string();
            update(o, |b| b.membership(spec));
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

/// How long after a ring change a node that misses a key it newly owns first asks the
/// key's previous owner (for at most 250 ms) before loading it, in milliseconds: a node
/// that joins, or takes over a leaver's keys, starts warm instead of sending every miss
/// to the loader (`warm_takeovers` counts those answers). Default 60000; 0 turns it off.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_warm_window_ms(
    options: *mut meshcache_cluster_options,
    ms: u64,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.warm_window(Duration::from_millis(ms)));
            Ok(())
        })
    }
}

/// Bounds of the handoff of a graceful leave (etcd or DNS membership): on shutdown, after
/// leaving the ring, the node streams the entries it holds to their new owners for at
/// most `timeout_ms` milliseconds and `max_bytes` bytes of keys and values, then stops
/// serving (`handoff_sent` and `handoff_received` count the entries). Defaults 10000 ms
/// and 1 GiB; a `timeout_ms` of 0 turns handoff off. The shutdown grace period comes on
/// top of it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn meshcache_cluster_options_set_handoff(
    options: *mut meshcache_cluster_options,
    timeout_ms: u64,
    max_bytes: usize,
) -> meshcache_result {
    // Safety: `options` is checked.
    unsafe {
        with_options(options, |o| {
            update(o, |b| b.handoff(Duration::from_millis(timeout_ms), max_bytes));
            Ok(())
        })
    }
}
