//! `meshcache.Cluster`: this process's node, its runtime and its groups.

use std::sync::Arc;
use std::time::Duration;

use meshcache::Cluster;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::convert;
use crate::errors;
use crate::exit;
use crate::fork;
use crate::group::{PyGroup, forked};
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

#[pymethods]
impl PyCluster {
    /// Starts a node: binds `listen`, starts the runtime and the peer server.
    #[new]
    #[pyo3(signature = (listen=None, peers=None, *, advertise=None, peer_timeout=None, connect_timeout=None, worker_threads=None))]
    fn new(
        py: Python<'_>,
        listen: Option<&Bound<'_, PyAny>>,
        peers: Option<&Bound<'_, PyAny>>,
        advertise: Option<&Bound<'_, PyAny>>,
        peer_timeout: Option<&Bound<'_, PyAny>>,
        connect_timeout: Option<&Bound<'_, PyAny>>,
        worker_threads: Option<&Bound<'_, PyAny>>,
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
        if let Some(t) = seconds(peer_timeout, "peer_timeout")? {
            b = b.peer_timeout(t);
        }
        if let Some(t) = seconds(connect_timeout, "connect_timeout")? {
            b = b.connect_timeout(t);
        }
        if let Some(w) = worker_threads.filter(|w| !w.is_none()) {
            if w.is_instance_of::<pyo3::types::PyBool>() || !w.is_instance_of::<pyo3::types::PyInt>() {
                return Err(PyTypeError::new_err("worker_threads must be an int"));
            }
            // Zero is core's to refuse; a negative or huge int is not a thread count at all.
            let n: usize = w.extract().map_err(|_| {
                errors::invalid(py, format!("worker_threads must be a positive int, not {w}"))
            })?;
            b = b.worker_threads(n);
        }
        let cluster = exit::detach(py, || b.build()).map_err(|e| errors::to_py(py, e, None))?;
        Ok(PyCluster {
            cluster,
            generation: fork::generation(),
            loops: Arc::new(LoopThread::default()),
        })
    }

    /// A group served by this cluster. Every node must create the same groups.
    #[pyo3(signature = (name, *, capacity=None, ttl=None, negative_ttl=None, loader=None, max_key_len=None, max_value_len=None, hot_sample=None, bytes_keys=false, r#loop=None))]
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

    /// This node's address and, for every peer, its address, breaker state and counters
    /// (names from core, the same in every language).
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
