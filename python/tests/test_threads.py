"""16 threads on one group: hits in parallel, one load per key."""

from __future__ import annotations

import threading

import meshcache


def test_sixteen_threads_get_concurrently(cluster: meshcache.Cluster) -> None:
    calls: list[str] = []
    lock = threading.Lock()

    def load(key: str) -> bytes:
        with lock:
            calls.append(key)
        return key.encode() * 3

    g = cluster.group("g", loader=load)
    keys = [f"k{i}" for i in range(50)]
    start = threading.Barrier(16)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait(30)
            for round_ in range(200):
                k = keys[(n + round_) % len(keys)]
                assert g.get(k) == k.encode() * 3
                assert g.peek(k) == k.encode() * 3
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sorted(calls) == sorted(keys), "each key loaded exactly once"
