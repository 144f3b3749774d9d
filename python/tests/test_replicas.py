"""Issue 13 from Python: replicas (``Cluster.group(..., replicas=2)``), the warm takeover
of a node that newly owns keys (``Cluster(warm_window=...)``), the handoff of a graceful
leave (``Cluster(handoff_timeout=..., handoff_max_bytes=...)``) and their counters.

Nothing sleeps: every wait is on a ring change or a call's answer, with a bound.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import pytest

import meshcache

# The bound on every wait: generous, since CI machines are slow.
BOUND = 20.0


def value(key: str) -> bytes:
    return b"value-of-" + key.encode()


def counting(calls: list[str]) -> Callable[[str], bytes]:
    def load(key: str) -> bytes:
        calls.append(key)
        return value(key)

    return load


def join(*nodes: meshcache.Cluster) -> None:
    """Static membership: every node lists every node."""
    addrs = [n.advertise_addr for n in nodes]
    for n in nodes:
        n.set_peers(addrs)
    for n in nodes:
        assert n.wait_for_members(len(nodes), timeout=BOUND) == sorted(addrs)


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as s:
        yield s


def test_a_written_value_survives_its_closed_primary_on_its_replica(stack: contextlib.ExitStack) -> None:
    calls: list[str] = []
    nodes = [stack.enter_context(meshcache.Cluster(listen="127.0.0.1:0")) for _ in range(3)]
    join(*nodes)
    n0, n1, n2 = nodes
    g0, g1, g2 = (n.group("g", replicas=2, loader=counting(calls), hot_sample=0) for n in nodes)

    keys = [f"k{i}" for i in range(200)]
    for k in keys:
        g0.set(k, value(k))
    s0 = g0.stats()
    # Node 0 is a replica of some keys, and sent the others' copies to nodes 1 and 2.
    assert s0["replica_writes"] > 0 and s0["replica_write_errors"] == 0

    on_2 = [k for k in keys if n0.owner_of(k) == n2.advertise_addr]
    assert len(on_2) >= 20, f"only {len(on_2)} of {len(keys)} keys have node 2 as primary"
    assert all(n1.owner_of(k) == n2.owner_of(k) == n2.advertise_addr for k in on_2), "the rings agree"
    # Each is held by its primary and by exactly one survivor, its replica (a node that
    # is neither keeps no copy of a key it wrote).
    assert all(k in g2 for k in on_2)
    replica_0 = [k for k in on_2 if k in g0]
    replica_1 = [k for k in on_2 if k in g1]
    assert sorted(replica_0 + replica_1) == sorted(on_2)

    n2.close()
    for k in on_2:
        assert g0.get(k) == value(k)
        assert g1.get(k) == value(k)
    assert calls == [], "the replicas answered: nothing was loaded"

    s0, s1 = g0.stats(), g1.stats()
    # The replica answers from its own store (a hit); the other survivor finds the
    # primary unreachable and asks the next replica: one replica read per key.
    assert s0["replica_reads"] == len(replica_1)
    assert s1["replica_reads"] == len(replica_0)
    assert s0["replica_reads"] + s1["replica_reads"] == len(on_2)
    for s in (s0, s1):
        assert s["loads"] == s["fallback_loads"] == 0
        assert s["handoff_sent"] == s["handoff_received"] == s["warm_takeovers"] == 0


@pytest.mark.parametrize("warm_window", [60.0, 0])
def test_a_joining_node_asks_the_previous_owner_within_the_warm_window(
    stack: contextlib.ExitStack, warm_window: float
) -> None:
    calls_a: list[str] = []
    calls_b: list[str] = []
    a = stack.enter_context(meshcache.Cluster(listen="127.0.0.1:0"))
    b = stack.enter_context(meshcache.Cluster(listen="127.0.0.1:0", warm_window=warm_window))
    ga = a.group("g", loader=counting(calls_a))
    gb = b.group("g", loader=counting(calls_b), hot_sample=0)
    # a, alone, loads and holds every key; then b joins it.
    keys = [f"w{i}" for i in range(100)]
    for k in keys:
        assert ga.get(k) == value(k)
    join(a, b)
    moved = [k for k in keys if b.owner_of(k) == b.advertise_addr]
    stayed = [k for k in keys if b.owner_of(k) == a.advertise_addr]
    assert moved and stayed
    # b's connection to a is up before the first takeover (it waits at most 250 ms).
    assert gb.get(stayed[0]) == value(stayed[0])
    assert gb.stats()["remote_fetches"] == 1

    for k in moved:
        assert gb.get(k) == value(k)
    s = gb.stats()
    if warm_window:
        assert calls_b == [], "b took its new keys from a, their previous owner"
        assert s["warm_takeovers"] == len(moved) and s["loads"] == 0
    else:
        assert sorted(calls_b) == sorted(moved), "with the warm window off, b loads its new keys"
        assert s["warm_takeovers"] == 0 and s["loads"] == len(moved)
    assert sorted(calls_a) == sorted(keys)


@pytest.mark.parametrize("handoff_timeout", [10.0, 0])
def test_a_graceful_leave_hands_its_entries_to_the_new_owner(etcd: str, handoff_timeout: float) -> None:
    spec = f"etcd://{etcd}/py-{uuid.uuid4().hex}?lease_ttl=2"
    calls: list[str] = []
    # b's warm window is off: with the handoff off, b loads a's keys (a is gone).
    a = meshcache.Cluster(
        listen="127.0.0.1:0", membership=spec, handoff_timeout=handoff_timeout, handoff_max_bytes="1MiB"
    )
    b = meshcache.Cluster(listen="127.0.0.1:0", membership=spec, warm_window=0)
    try:
        both = sorted([a.advertise_addr, b.advertise_addr])
        assert a.wait_for_members(2, timeout=BOUND) == both
        assert b.wait_for_members(2, timeout=BOUND) == both
        ga, gb = a.group("g", loader=counting(calls)), b.group("g", loader=counting(calls), hot_sample=0)
        keys = [f"h{i}" for i in range(100)]
        for k in keys:
            ga.set(k, value(k))
        on_a = [k for k in keys if a.owner_of(k) == a.advertise_addr]
        assert on_a and all(k in ga for k in on_a)

        a.close()  # leaves the ring, then hands off (within the bounds), then stops
        assert b.wait_for_members(1, timeout=BOUND) == [b.advertise_addr]
        handed = len(on_a) if handoff_timeout else 0
        assert ga.stats()["handoff_sent"] == handed
        assert gb.stats()["handoff_received"] == handed
        for k in on_a:
            assert gb.get(k) == value(k)
        assert sorted(calls) == ([] if handoff_timeout else sorted(on_a))
    finally:
        a.close()
        b.close()


def test_replicas_zero_negative_or_of_the_wrong_type_are_refused(cluster: meshcache.Cluster) -> None:
    with pytest.raises(meshcache.InvalidArgument, match="replicas") as info:
        cluster.group("zero", replicas=0)
    assert isinstance(info.value, ValueError)
    with pytest.raises(meshcache.InvalidArgument, match="replicas"):
        cluster.group("negative", replicas=-1)
    with pytest.raises(meshcache.InvalidArgument, match="replicas"):
        cluster.group("huge", replicas=1 << 70)
    for bad in ("2", 2.0, True):
        with pytest.raises(TypeError, match="replicas"):
            cluster.group("typed", replicas=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="replicate_loads"):
        cluster.group("typed", replicate_loads=1)  # type: ignore[arg-type]
    # None of those made a group: the names are free.
    g = cluster.group("zero", replicas=3, replicate_loads=True)
    g.set("k", b"v")  # a single node: it is every replica
    assert g.get("k") == b"v" and g.stats()["replica_write_errors"] == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"warm_window": -1}, meshcache.InvalidArgument, "warm_window"),
        ({"warm_window": float("nan")}, meshcache.InvalidArgument, "warm_window"),
        ({"handoff_timeout": float("inf")}, meshcache.InvalidArgument, "handoff_timeout"),
        ({"handoff_timeout": -0.5}, meshcache.InvalidArgument, "handoff_timeout"),
        ({"handoff_max_bytes": -1}, meshcache.InvalidArgument, "handoff_max_bytes"),
        ({"handoff_max_bytes": "lots"}, meshcache.InvalidArgument, "size"),
        ({"warm_window": "60"}, TypeError, "warm_window"),
        ({"handoff_timeout": True}, TypeError, "handoff_timeout"),
        ({"handoff_max_bytes": 1.5}, TypeError, "handoff_max_bytes"),
    ],
)
def test_bad_ring_change_options_are_refused(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        meshcache.Cluster(listen="127.0.0.1:0", **kwargs)  # type: ignore[arg-type]


def test_ring_change_options_turned_off_or_bounded_still_serve() -> None:
    with meshcache.Cluster(
        listen="127.0.0.1:0", warm_window=0, handoff_timeout=0, handoff_max_bytes="64MiB"
    ) as c, meshcache.Cluster(listen="127.0.0.1:0", handoff_max_bytes=0, warm_window=0.5) as d:
        for node in (c, d):
            g = node.group("g", loader=lambda k: k.encode())
            assert g.get("x") == b"x"
            g.set("y", b"1")
            assert g.get("y") == b"1"
