//! `meshcache.Cluster`: this process's node, its runtime and its groups.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use meshcache::{
    Cluster, ClusterBuilder, DEFAULT_HANDOFF_MAX_BYTES, DEFAULT_HANDOFF_TIMEOUT, DEFAULT_WARM_WINDOW,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyString, PyTuple};

use crate::convert;
use crate::errors;
use crate::exit;
use crate::fork;
use crate::group::{PyGroup, forked};
use crate::interrupt;
use crate::loader::{LoopThread, PyLoader, SharedLoader};
use crate::stats;

/// A node of a meshcache cluster, with its own runtime and peer server.
///
/// Use it as a context manager, or call `close()`: both stop the server and close every
/// group. Dropping the last reference also shuts it down, in the background.
#[pyclass(frozen, name = "Cluster", module = "meshcache._native")]
pub struct PyCluster {
    cluster: Cluster,
    generation: u64,
    loops: Arc<LoopThread>,
}

impl std::fmt::Debug for PyCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyCluster")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl PyCluster {
    fn check_fork(&self, py: Python<'_>) -> PyResult<()> {
        if self.generation == fork::generation() {
            Ok(())
        } else {
            Err(forked(py))
        }
    }
}

fn seconds(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Duration>> {
    convert::ttl(obj, what)
}

fn addresses(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    let Some(obj) = obj else { return Ok(Vec::new()) };
    if obj.is_none() {
        return Ok(Vec::new());
    }
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "peers must be a list of \"host:port\" strings, not a single str",
        ));
    }
    obj.try_iter()?
        .map(|p| {
            let p = p?;
            p.cast::<PyString>()
                .map_err(|_| {
                    PyTypeError::new_err(format!(
                        "a peer address must be a str, not {}",
                        p.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                    ))
                })
                .and_then(|s| Ok(s.to_cow()?.into_owned()))
        })
        .collect()
}

/// An optional `str` option (a token, a name): `TypeError` for anything else.
fn text(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<String>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let s = obj
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a str or None")))?;
    Ok(Some(s.to_cow()?.into_owned()))
}

/// An optional file path: a `str` or an `os.PathLike`.
fn path(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<PathBuf>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    obj.extract::<PathBuf>()
        .map(Some)
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a path (str or os.PathLike) or None")))
}

/// An optional count (threads, requests): an `int`; zero is core's to refuse, while a
/// negative or huge int is not a count at all.
fn count(py: Python<'_>, obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<usize>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!("{what} must be an int")));
    }
    obj.extract()
        .map(Some)
        .map_err(|_| errors::invalid(py, format!("{what} must be a positive int, not {obj}")))
}

// The defaults `Cluster`'s text signature shows are core's.
const _: () = assert!(DEFAULT_WARM_WINDOW.as_secs() == 60 && DEFAULT_WARM_WINDOW.subsec_nanos() == 0);
const _: () = assert!(DEFAULT_HANDOFF_TIMEOUT.as_secs() == 10 && DEFAULT_HANDOFF_TIMEOUT.subsec_nanos() == 0);

/// The options of ring changes: the warm window and the handoff's bounds (core takes
/// both bounds at once: one not given keeps core's default). `None` keeps core's.
fn ring_changes(
    py: Python<'_>,
    mut b: ClusterBuilder,
    warm_window: Option<&Bound<'_, PyAny>>,
    handoff_timeout: Option<&Bound<'_, PyAny>>,
    handoff_max_bytes: Option<&Bound<'_, PyAny>>,
) -> PyResult<ClusterBuilder> {
    if let Some(w) = convert::off_or_seconds(py, warm_window, "warm_window")? {
        b = b.warm_window(w);
    }
    let timeout = convert::off_or_seconds(py, handoff_timeout, "handoff_timeout")?;
    let max_bytes = (handoff_max_bytes.filter(|m| !m.is_none()))
        .map(|m| convert::size(m, "handoff_max_bytes"))
        .transpose()?;
    if timeout.is_some() || max_bytes.is_some() {
        b = b.handoff(
            timeout.unwrap_or(DEFAULT_HANDOFF_TIMEOUT),
            max_bytes.unwrap_or(DEFAULT_HANDOFF_MAX_BYTES),
        );
    }
    Ok(b)
}

/// The security and connection options of `Cluster(...)`, passed to core as given (core
/// checks them). Tokens are never echoed in an error.
struct Hardening {
    token: Option<String>,
    token_file: Option<PathBuf>,
    previous_token: Option<String>,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    tls_client_auth: bool,
    tls_server_name: Option<String>,
    shutdown_grace: Option<Duration>,
    handshake_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_peer_requests: Option<usize>,
}

impl Hardening {
    fn apply(self, mut b: ClusterBuilder) -> ClusterBuilder {
        if let Some(t) = self.token {
            b = b.token(t);
        }
        if let Some(p) = self.token_file {
            b = b.token_file(p);
        }
        if let Some(t) = self.previous_token {
            b = b.previous_token(t);
        }
        // After `tls`: the next two refine it (and mean nothing without it).
        if let Some((cert, key, ca)) = self.tls {
            b = b.tls(cert, key, ca);
        }
        b = b.tls_client_auth(self.tls_client_auth);
        if let Some(n) = self.tls_server_name {
            b = b.tls_server_name(n);
        }
        if let Some(d) = self.shutdown_grace {
            b = b.shutdown_grace(d);
        }
        if let Some(d) = self.handshake_timeout {
            b = b.handshake_timeout(d);
        }
        if let Some(d) = self.idle_timeout {
            b = b.idle_timeout(d);
        }
        if let Some(n) = self.max_peer_requests {
            b = b.max_peer_requests(n);
        }
        b
    }
}

#[pymethods]
impl PyCluster {
    /// Starts a node: binds `listen`, starts the runtime and the peer server.
    ///
    /// Ring changes: `warm_window` (seconds, 0 = off) is how long a
    /// node that newly owns a key first asks its previous owner for it before loading;
    /// `handoff_timeout` (seconds, 0 = off) and `handoff_max_bytes` (an int or a size
    /// string like capacity; default 1 GiB) bound what a node leaving an etcd or DNS
    /// membership hands to the new owners on `close()`.
    ///
    /// Security (README "Security"): `token` (or `token_file`, and `previous_token` while
    /// rotating) guards the peer port; `tls_cert`, `tls_key` and `tls_ca` (PEM files, all
    /// three) turn on TLS with mutual TLS unless `tls_client_auth=False`. Durations are
    /// seconds.
    ///
    /// `membership` (README "Membership"): where the other nodes come from, one string as
    /// in every language: `"static"` (the default: `peers`, changed by `set_peers`),
    /// `"etcd://host:port[,host:port]/prefix[?lease_ttl=10]"` or
    /// `"dns://name:port[?interval=5s]"`. A spec core cannot use raises `InvalidArgument`.
    ///
    /// Metrics (README "Metrics and status"): `metrics_listen` (`"host:port"`, port 0
    /// picks one, see `metrics_addr`) also serves `/metrics`, a status page at `/`,
    /// `/v1/status`, `/healthz` and `/readyz` over HTTP; an address that cannot be bound
    /// raises `InvalidArgument`. `metrics_text()` works without it.
    #[new]
    #[pyo3(signature = (
        listen=None, peers=None, *, membership=None, advertise=None, peer_timeout=None, connect_timeout=None,
        worker_threads=None, token=None, token_file=None, previous_token=None, tls_cert=None,
        tls_key=None, tls_ca=None, tls_client_auth=true, tls_server_name=None,
        shutdown_grace=None, handshake_timeout=None, idle_timeout=None, max_peer_requests=None,
        warm_window=None, handoff_timeout=None, handoff_max_bytes=None, metrics_listen=None,
    ), text_signature = "(listen=None, peers=None, *, membership=None, advertise=None, peer_timeout=None, \
        connect_timeout=None, worker_threads=None, token=None, token_file=None, previous_token=None, \
        tls_cert=None, tls_key=None, tls_ca=None, tls_client_auth=True, tls_server_name=None, \
        shutdown_grace=None, handshake_timeout=None, idle_timeout=None, max_peer_requests=None, \
        warm_window=60.0, handoff_timeout=10.0, handoff_max_bytes=None, metrics_listen=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        listen: Option<&Bound<'_, PyAny>>,
        peers: Option<&Bound<'_, PyAny>>,
        membership: Option<&Bound<'_, PyAny>>,
        advertise: Option<&Bound<'_, PyAny>>,
        peer_timeout: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
        worker_threads: Option<&Bound<'_, PyAny>>,
        token: Option<&Bound<'_, PyAny>>,
        token_file: Option<&Bound<'_, PyAny>>,
        previous_token: Option<&Bound<'_, PyAny>>,
        tls_cert: Option<&Bound<'_, PyAny>>,
        tls_key: Option<&Bound<'_, PyAny>>,
        tls_ca: Option<&Bound<'_, PyAny>>,
        tls_client_auth: bool,
        tls_server_name: Option<&Bound<'_, PyAny>>,
        shutdown_grace: Option<&Bound<'_, PyAny>>,
        handshake_timeout: Option<&Bound<'_, PyAny>>,
        idle_timeout: Option<&Bound<'_, PyAny>>,
        max_peer_requests: Option<&Bound<'_, PyAny>>,
        warm_window: Option<&Bound<'_, PyAny>>,
        handoff_timeout: Option<&Bound<'_, PyAny>>,
        handoff_max_bytes: Option<&Bound<'_, PyAny>>,
        metrics_listen: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        // Options not given keep core's defaults; values core cannot use, it refuses.
        let mut b = Cluster::builder().peers(addresses(peers)?);
        if let Some(l) = listen.filter(|l| !l.is_none()) {
            let l = l
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("listen must be a \"host:port\" str"))?;
            b = b.listen(l.to_cow()?.into_owned());
        }
        if let Some(a) = advertise.filter(|a| !a.is_none()) {
            let a = a
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err("advertise must be a \"host:port\" str or None"))?;
            b = b.advertise(a.to_cow()?.into_owned());
        }
        // Parsed by core (at build): a spec it cannot use, or one with `peers`, is refused.
        if let Some(m) = text(membership, "membership")? {
            b = b.membership(m);
        }
        if let Some(t) = seconds(peer_timeout, "peer_timeout")? {
            b = b.peer_timeout(t);
        }
        if let Some(t) = seconds(connect_timeout, "connect_timeout")? {
            b = b.connect_timeout(t);
        }
        if let Some(n) = count(py, worker_threads, "worker_threads")? {
            b = b.worker_threads(n);
        }
        b = ring_changes(py, b, warm_window, handoff_timeout, handoff_max_bytes)?;
        // Bound by core (at build): an address it cannot listen on is refused there.
        if let Some(m) = text(metrics_listen, "metrics_listen")? {
            b = b.metrics_listen(m);
        }
        // Core takes the three TLS files in one call, and its two TLS refinements mean
        // nothing without them: a node that looks secured but is not is refused here.
        let tls_server_name = text(tls_server_name, "tls_server_name")?;
        let tls = match (
            path(tls_cert, "tls_cert")?,
            path(tls_key, "tls_key")?,
            path(tls_ca, "tls_ca")?,
        ) {
            (Some(cert), Some(key), Some(ca)) => Some((cert, key, ca)),
            (None, None, None) if tls_client_auth && tls_server_name.is_none() => None,
            _ => {
                return Err(errors::invalid(
                    py,
                    "TLS needs all three of tls_cert, tls_key and tls_ca (tls_client_auth and \
                     tls_server_name apply to TLS only)",
                ));
            }
        };
        let b = Hardening {
            token: text(token, "token")?,
            token_file: path(token_file, "token_file")?,
            previous_token: text(previous_token, "previous_token")?,
            tls,
            tls_client_auth,
            tls_server_name,
            shutdown_grace: seconds(shutdown_grace, "shutdown_grace")?,
            handshake_timeout: seconds(handshake_timeout, "handshake_timeout")?,
            idle_timeout: seconds(idle_timeout, "idle_timeout")?,
            max_peer_requests: count(py, max_peer_requests, "max_peer_requests")?,
        }
        .apply(b);
        let cluster = exit::detach(py, || b.build()).map_err(|e| errors::to_py(py, e, None))?;
        Ok(PyCluster {
            cluster,
            generation: fork::generation(),
            loops: Arc::new(LoopThread::default()),
        })
    }

    /// A group served by this cluster. Every node must create the same groups.
    ///
    /// `replicas`: how many nodes hold each key written with `set`
    /// (the owner and the next `replicas - 1` on the ring), so that a written value
    /// survives `replicas - 1` dead nodes; `replicate_loads=True` copies loaded values to
    /// the replicas too.
    #[pyo3(
        signature = (
            name, *, capacity=None, ttl=None, negative_ttl=None, loader=None, max_key_len=None,
            max_value_len=None, hot_sample=None, bytes_keys=false, r#loop=None, load_timeout=None,
            replicas=None, replicate_loads=false,
        ),
        text_signature = "($self, /, name, *, capacity=None, ttl=None, negative_ttl=None, loader=None, \
            max_key_len=None, max_value_len=None, hot_sample=None, bytes_keys=False, loop=None, \
            load_timeout=None, replicas=1, replicate_loads=False)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn group(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        capacity: Option<&Bound<'_, PyAny>>,
        ttl: Option<&Bound<'_, PyAny>>,
        negative_ttl: Option<&Bound<'_, PyAny>>,
        loader: Option<&Bound<'_, PyAny>>,
        max_key_len: Option<&Bound<'_, PyAny>>,
        max_value_len: Option<&Bound<'_, PyAny>>,
        hot_sample: Option<u32>,
        bytes_keys: bool,
        r#loop: Option<&Bound<'_, PyAny>>,
        load_timeout: Option<&Bound<'_, PyAny>>,
        replicas: Option<&Bound<'_, PyAny>>,
        replicate_loads: bool,
    ) -> PyResult<PyGroup> {
        self.check_fork(py)?;
        let name: String = name
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("a group name must be a str"))?
            .to_cow()?
            .into_owned();
        let mut b = self.cluster.group(name.clone());
        if let Some(c) = capacity.filter(|c| !c.is_none()) {
            b = b.capacity(convert::size(c, "capacity")?);
        }
        if let Some(t) = convert::ttl(ttl, "ttl")? {
            b = b.default_ttl(t);
        }
        if let Some(t) = convert::ttl(negative_ttl, "negative_ttl")? {
            b = b.negative_ttl(t);
        }
        if let Some(n) = max_key_len.filter(|c| !c.is_none()) {
            b = b.max_key_len(convert::size(n, "max_key_len")?);
        }
        if let Some(n) = max_value_len.filter(|c| !c.is_none()) {
            b = b.max_value_len(convert::size(n, "max_value_len")?);
        }
        if let Some(n) = hot_sample {
            b = b.hot_sample(n);
        }
        if let Some(t) = convert::timeout(load_timeout, "load_timeout")? {
            b = b.load_timeout(t);
        }
        // Zero is core's to refuse; a negative int is not a count.
        if let Some(n) = count(py, replicas, "replicas")? {
            b = b.replicas(n);
        }
        b = b.replicate_loads(replicate_loads);
        let event_loop = r#loop.filter(|l| !l.is_none()).map(|l| l.clone().unbind());
        let loader = match loader.filter(|l| !l.is_none()) {
            None => None,
            Some(f) if !f.is_callable() => {
                return Err(PyTypeError::new_err(format!(
                    "loader must be a callable (a function or an async def), not {}",
                    f.get_type().name()?
                )));
            }
            Some(f) => Some(Arc::new(PyLoader::new(
                f.clone().unbind(),
                bytes_keys,
                event_loop,
                self.loops.clone(),
                name,
            ))),
        };
        if let Some(l) = &loader {
            b = b.loader(SharedLoader(l.clone()));
        }
        let group = b.build().map_err(|e| errors::to_py(py, e, None))?;
        Ok(PyGroup::new(
            group,
            self.cluster.runtime().clone(),
            loader,
            self.loops.clone(),
        ))
    }

    /// The address the peer server is bound to, "host:port" (the real port for port 0).
    #[getter]
    fn local_addr(&self) -> String {
        self.cluster.local_addr().to_string()
    }

    /// This node's name on the ring: the address other nodes reach it at.
    #[getter]
    fn advertise_addr(&self) -> String {
        self.cluster.advertise_addr().to_string()
    }

    /// The address the metrics and status server (`metrics_listen`) is bound to,
    /// "host:port" (the real port for port 0); `None` without `metrics_listen`, and once
    /// the cluster is closed (the server stops with it).
    #[getter]
    fn metrics_addr(&self) -> Option<String> {
        self.cluster.metrics_addr().map(|a| a.to_string())
    }

    /// The cluster's metrics in the Prometheus text exposition format, what
    /// `metrics_listen` serves at `/metrics`: to append to an application's own metrics
    /// endpoint. Read from the stats now (names in README "Metrics and status").
    fn metrics_text(&self, py: Python<'_>) -> PyResult<String> {
        self.check_fork(py)?;
        Ok(self.cluster.metrics_text())
    }

    /// The node's status, what `/v1/status` of `metrics_listen` answers (and the status
    /// page shows): `node`, `ring` (members with their share of the keys, epoch, health),
    /// `peers` (breaker and counters) and `groups` (each group's stats and `name`), as
    /// dicts and lists of JSON values.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.check_fork(py)?;
        let json = self.cluster.status_json().to_string();
        py.import("json")?.call_method1("loads", (json,))
    }

    /// Whether the cluster was closed.
    #[getter]
    fn closed(&self) -> bool {
        self.cluster.is_closed()
    }

    /// The ring's nodes, this one included, sorted.
    fn members(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.check_fork(py)?;
        Ok(self.cluster.members())
    }

    /// The node that owns `key` now.
    fn owner_of(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<String> {
        self.check_fork(py)?;
        Ok(self.cluster.owner_of(&convert::key(key)?))
    }

    /// Replaces the peer list (this node's own address may be in it).
    fn set_peers(&self, py: Python<'_>, peers: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_fork(py)?;
        let peers = addresses(Some(peers))?;
        let c = &self.cluster;
        exit::detach(py, || c.set_peers(peers)).map_err(|e| errors::to_py(py, e, None))
    }

    /// Waits until the ring has exactly `n` members (this node included), for at most
    /// `timeout` seconds (`None`: no bound); returns the members. Wakes on every change of
    /// the ring, with the GIL released; Ctrl-C interrupts it on the main thread.
    /// `Timeout` (a `TimeoutError`) when the ring had another size all along.
    #[pyo3(signature = (n, timeout=Some(10.0)), text_signature = "($self, n, timeout=10.0)")]
    fn wait_for_members(
        &self,
        py: Python<'_>,
        n: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Vec<String>> {
        self.check_fork(py)?;
        let n = count(py, Some(n), "n")?.ok_or_else(|| PyTypeError::new_err("n must be an int"))?;
        // No bound: tokio's timer takes an unreachable deadline as "never".
        let limit = match timeout {
            None => Duration::MAX,
            Some(t) => Duration::try_from_secs_f64(t)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    errors::invalid(
                        py,
                        format!(
                            "timeout must be a finite number of seconds greater than zero, or None, not {t}"
                        ),
                    )
                })?,
        };
        let c = self.cluster.clone();
        interrupt::block_on(py, self.cluster.runtime(), None, async move {
            c.wait_for_members(n, limit).await
        })?
        .map_err(|e| errors::to_py(py, e, None))
    }

    /// This node's address, for every peer its address, breaker state and counters, and
    /// this node's view of the ring (names from core, the same in every language).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.check_fork(py)?;
        stats::cluster(py, &self.cluster.stats())
    }

    /// Shuts down: stops the peer server (calls in flight finish), closes every group
    /// and stops the asyncio loop thread if one was started. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.check_fork(py)?;
        let c = &self.cluster;
        let r = exit::detach(py, || c.shutdown_blocking());
        self.loops.shutdown(py)?;
        r.map_err(|e| errors::to_py(py, e, None))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<()> {
        if self.generation == fork::generation() {
            self.close(py)?;
        }
        Ok(())
    }

    fn __repr__(&self) -> String {
        format!("<meshcache.Cluster {}>", self.cluster.advertise_addr())
    }
}

impl Drop for PyCluster {
    fn drop(&mut self) {
        if self.generation != fork::generation() {
            // In a forked child: the runtime's threads and locks' owners are gone; leak
            // the parent's node rather than touch it.
            std::mem::forget(self.cluster.clone());
            return;
        }
        if exit::exiting() {
            // The interpreter is finalizing: shutting the runtime down would wake Python
            // threads blocked in a get, and a thread that takes the GIL back now is ended
            // inside Rust frames, which aborts. The process is ending: leave it all be.
            std::mem::forget(self.cluster.clone());
            return;
        }
        Python::attach(|py| self.loops.stop(py));
    }
}
