"""Stats: the one shape and spelling every language shows (names from the Rust core)."""

from __future__ import annotations

import ast
import pathlib

import meshcache

# The names core defines (GroupStats::counters, TierStats::fields, PeerStats::fields,
# ServerStats::fields, RingStats::fields): the same in C, Node and Python.
TIER = {"items", "bytes", "gets", "hits", "evictions", "expirations"}
# In core's order (GroupStats::counters, then the tiers): the dict and the TypedDicts keep it.
GROUP_ORDER = [
    "gets",
    "hits",
    "hot_hits",
    "deduplicated",
    "loads",
    "load_errors",
    "not_found",
    "remote_fetches",
    "remote_not_found",
    "remote_errors",
    "fallback_loads",
    "hot_inserts",
    "served",
    "invalidation_errors",
    "invalidations_retried",
    "invalidations_dropped",
    "replica_writes",
    "replica_write_errors",
    "replica_reads",
    "handoff_sent",
    "handoff_received",
    "warm_takeovers",
    "capacity",
    "main",
    "hot",
]
GROUP = set(GROUP_ORDER)
PEER = {
    "addr",
    "breaker",
    "requests",
    "successes",
    "failures",
    "timeouts",
    "retries",
    "rejected",
    "breaker_opened",
}
SERVER = {
    "rejected_unauthenticated",
    "rejected_overloaded",
    "rejected_too_many_keys",
    "accept_errors",
    "handshake_timeouts",
    "idle_closed",
    "closed_at_shutdown",
    "rejected_protocol_mismatch",
}
RING = {"source", "members", "epoch", "changed_at_ms", "healthy", "error"}
CLUSTER = {"node", "peers", "server", "ring"}


def stub_typed_dicts() -> dict[str, list[str]]:
    """The keys of each TypedDict in _native.pyi, which type checkers see, in order."""
    stub = pathlib.Path(meshcache.__file__).with_name("_native.pyi")
    out = {}
    for node in ast.parse(stub.read_text()).body:
        if isinstance(node, ast.ClassDef) and any(
            isinstance(b, ast.Name) and b.id == "TypedDict" for b in node.bases
        ):
            out[node.name] = [
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            ]
    return out


def test_group_and_cluster_stats_have_exactly_cores_keys(cluster: meshcache.Cluster) -> None:
    g = cluster.group("g", loader=lambda k: k.encode())
    g.get("a")
    s = g.stats()
    assert list(s) == GROUP_ORDER
    assert set(s["main"]) == TIER and set(s["hot"]) == TIER
    assert all(isinstance(v, int) for k, v in s.items() if k not in ("main", "hot"))
    assert s["loads"] == 1 and s["main"]["items"] == 1 and s["hot"]["items"] == 0

    cluster.set_peers([cluster.local_addr, "127.0.0.1:9"])
    c = cluster.stats()
    assert set(c) == CLUSTER
    assert c["node"] == cluster.advertise_addr
    [peer] = c["peers"]
    assert set(peer) == PEER
    assert peer["addr"] == "127.0.0.1:9"
    assert peer["breaker"] in ("closed", "open", "half_open")
    assert set(c["server"]) == SERVER
    assert all(isinstance(v, int) for v in c["server"].values())
    assert set(c["ring"]) == RING
    assert c["ring"]["members"] == sorted([cluster.advertise_addr, "127.0.0.1:9"])


def test_the_typed_dicts_match_the_dicts() -> None:
    expected = {
        "TierStats": TIER,
        "GroupStats": GROUP,
        "PeerStats": PEER,
        "ServerStats": SERVER,
        "RingStats": RING,
        "ClusterStats": CLUSTER,
    }
    # At runtime (built from core's lists) ...
    for name, keys in expected.items():
        td = getattr(meshcache, name)
        assert set(td.__annotations__) == keys, name
    # ... and in the stubs, which stubtest does not compare key by key.
    stubs = stub_typed_dicts()
    assert {name: set(keys) for name, keys in stubs.items()} == expected
    assert list(meshcache.GroupStats.__annotations__) == GROUP_ORDER
    assert stubs["GroupStats"] == GROUP_ORDER
