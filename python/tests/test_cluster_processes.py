"""Three nodes in three processes (multiprocessing, spawn): one load per key in the
whole cluster."""

from __future__ import annotations

import multiprocessing
from typing import Any

import meshcache

KEYS = [f"key-{i}" for i in range(40)]


def _node(addr_q: Any, peers_q: Any, out_q: Any, barrier: Any) -> None:
    loads: list[str] = []

    def load(key: str) -> bytes:
        loads.append(key)
        return b"value of " + key.encode()

    with meshcache.Cluster(listen="127.0.0.1:0", peer_timeout=5, connect_timeout=5) as cluster:
        addr_q.put(cluster.local_addr)
        peers = peers_q.get(timeout=60)
        cluster.set_peers(peers)
        group = cluster.group("users", loader=load)
        barrier.wait(60)  # every node has the ring and the group before any get
        values = {k: group.get(k) for k in KEYS}
        values.update(group.get_many(KEYS))
        owned = sum(1 for k in KEYS if cluster.owner_of(k) == cluster.local_addr)
        barrier.wait(60)  # nobody shuts down while others may still ask it
        out_q.put((cluster.local_addr, loads, values, owned, group.stats()))


def test_three_processes_load_each_key_once() -> None:
    ctx = multiprocessing.get_context("spawn")
    addr_q, peers_q, out_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_node, args=(addr_q, peers_q, out_q, barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    try:
        addrs = [addr_q.get(timeout=60) for _ in procs]
        for _ in procs:
            peers_q.put(addrs)
        results = [out_q.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(60)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0, 0, 0]
    all_loads = [k for _, loads, _, _, _ in results for k in loads]
    assert sorted(all_loads) == sorted(KEYS), "each key loaded exactly once cluster-wide"
    for addr, loads, values, owned, stats in results:
        assert values == {k: b"value of " + k.encode() for k in KEYS}
        assert len(loads) == owned, f"{addr} loaded only the keys it owns"
        assert stats["fallback_loads"] == 0
        assert stats["remote_fetches"] >= len(KEYS) - owned
