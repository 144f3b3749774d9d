//! Stats as Python dicts, in the one shape every language shows (defined in core), and
//! the `TypedDict`s that describe them (`meshcache.GroupStats`, ...).
//!
//! Every counter's name comes from core's lists (`GroupStats::counters`/`tiers`,
//! `TierStats::fields`, `PeerStats::fields`, `ServerStats::fields`, `RingStats::fields`),
//! for the dicts and for the `TypedDict`s alike; only the fields of `ClusterStats`, a
//! plain struct, are named here.

use meshcache::{ClusterStats, GroupStats, PeerStats, RingStats, ServerStats, TierStats};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString};

/// `Group.stats()`: core's counters at the top level, each tier's fields under its name.
pub(crate) fn group<'py>(py: Python<'py>, s: &GroupStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, v) in s.counters() {
        d.set_item(name, v)?;
    }
    for (name, tier) in s.tiers() {
        d.set_item(name, fields(py, tier.fields())?)?;
    }
    Ok(d)
}

/// `Cluster.stats()`: `{"node": ..., "peers": [{"addr": ..., "breaker": ..., **fields}],
/// "server": {**fields}, "ring": {...}}`.
pub(crate) fn cluster<'py>(py: Python<'py>, s: &ClusterStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(NODE, &s.node)?;
    let peers = PyList::empty(py);
    for (addr, state, st) in &s.peers {
        let p = PyDict::new(py);
        p.set_item(ADDR, addr)?;
        p.set_item(BREAKER, state.as_str())?;
        for (name, v) in st.fields() {
            p.set_item(name, v)?;
        }
        peers.append(p)?;
    }
    d.set_item(PEERS, peers)?;
    d.set_item(SERVER, fields(py, s.server.fields())?)?;
    d.set_item(RING, ring(py, &s.ring)?)?;
    Ok(d)
}

/// `Cluster.stats()["ring"]`: core's `RingStats`, under core's names (`error` is `None`
/// while the source is healthy).
fn ring<'py>(py: Python<'py>, r: &RingStats) -> PyResult<Bound<'py, PyDict>> {
    // Destructured, so that a field added to core fails to compile here until it is shown.
    let [source, members, epoch, changed_at_ms, healthy, error] = RingStats::fields();
    let d = PyDict::new(py);
    d.set_item(source, &r.source)?;
    d.set_item(members, PyList::new(py, &r.members)?)?;
    d.set_item(epoch, r.epoch)?;
    d.set_item(changed_at_ms, r.changed_at_ms)?;
    d.set_item(healthy, r.healthy)?;
    d.set_item(error, r.error.as_deref())?;
    Ok(d)
}

const NODE: &str = "node";
const PEERS: &str = "peers";
const SERVER: &str = "server";
const RING: &str = "ring";
const ADDR: &str = "addr";
const BREAKER: &str = "breaker";

fn fields<'py, const N: usize>(py: Python<'py>, f: [(&str, u64); N]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, v) in f {
        d.set_item(name, v)?;
    }
    Ok(d)
}

/// Adds `TierStats`, `GroupStats`, `PeerStats`, `ServerStats`, `RingStats` and
/// `ClusterStats` to the module: the `TypedDict`s of the dicts above, with the same
/// names (`_native.pyi` spells them out for type checkers; a test compares the two).
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let typing = py.import("typing")?;
    let int = py.get_type::<PyInt>().into_any();
    let str_ = py.get_type::<PyString>().into_any();
    let typed_dict = |name: &str, fields: &Bound<'_, PyDict>| -> PyResult<()> {
        let td = typing.call_method1("TypedDict", (name, fields))?;
        td.setattr("__module__", "meshcache")?;
        m.add(name, td)
    };

    let tier = PyDict::new(py);
    for (name, _) in TierStats::default().fields() {
        tier.set_item(name, &int)?;
    }
    typed_dict("TierStats", &tier)?;
    let tier_type = m.getattr("TierStats")?;

    let group = PyDict::new(py);
    let g = GroupStats::default();
    for (name, _) in g.counters() {
        group.set_item(name, &int)?;
    }
    for (name, _) in g.tiers() {
        group.set_item(name, &tier_type)?;
    }
    typed_dict("GroupStats", &group)?;

    let peer = PyDict::new(py);
    peer.set_item(ADDR, &str_)?;
    peer.set_item(BREAKER, &str_)?;
    for (name, _) in PeerStats::default().fields() {
        peer.set_item(name, &int)?;
    }
    typed_dict("PeerStats", &peer)?;
    let peer_list = py
        .get_type::<PyList>()
        .call_method1("__class_getitem__", (m.getattr("PeerStats")?,))?;

    let server = PyDict::new(py);
    for (name, _) in ServerStats::default().fields() {
        server.set_item(name, &int)?;
    }
    typed_dict("ServerStats", &server)?;

    let [source, members, epoch, changed_at_ms, healthy, error] = RingStats::fields();
    let ring = PyDict::new(py);
    let str_list = py
        .get_type::<PyList>()
        .call_method1("__class_getitem__", (&str_,))?;
    let optional_str = typing.getattr("Optional")?.get_item(&str_)?;
    ring.set_item(source, &str_)?;
    ring.set_item(members, str_list)?;
    ring.set_item(epoch, &int)?;
    ring.set_item(changed_at_ms, &int)?;
    ring.set_item(healthy, py.get_type::<PyBool>())?;
    ring.set_item(error, optional_str)?;
    typed_dict("RingStats", &ring)?;

    let cluster = PyDict::new(py);
    cluster.set_item(NODE, &str_)?;
    cluster.set_item(PEERS, peer_list)?;
    cluster.set_item(SERVER, m.getattr("ServerStats")?)?;
    cluster.set_item(RING, m.getattr("RingStats")?)?;
    typed_dict("ClusterStats", &cluster)
}
