"""meshcache's Python binding against the caches Python services use today.

Each peer runs in the same process and the same run, interleaved over several rounds;
medians are printed with the ratio meshcache/peer (< 1 means meshcache is faster).

1. get hit, one resident key (ns/op): group[key], Group.get and Group.peek vs dict[k],
   dict.get, functools.lru_cache, cachetools.LRUCache[k]. Each contender is timed as the
   expression a program writes (`g[k]`, `g.get(k)`, `d[k]`, `lru(k)`, ...) inside the
   same `for` loop, whose own cost (the "empty loop" row) is included in every number.
2. remote get (us/op): Group.get of a key owned by another node (hot mirroring off, so
   every get is a gRPC round trip on loopback) vs redis-py GET of the same value from a
   redis-server started here on 127.0.0.1 and a free port.

Run: make bench-python   (or target/pyenv/bin/python python/bench/bench.py)
"""

from __future__ import annotations

import functools
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import cachetools

import meshcache

ROUNDS = 7


def per_op(fn: Callable[[Any], Any], arg: Any, n: int) -> float:
    """ns per call of fn(arg), loop overhead included (the same for every contender)."""
    rng = range(n)
    t = time.perf_counter_ns()
    for _ in rng:
        fn(arg)
    return (time.perf_counter_ns() - t) / n


def table(
    title: str,
    unit: str,
    scale: float,
    n: int,
    contenders: dict[str, tuple[Callable[[Any], Any], Any]],
    ours: list[str],
    calls: int | None = None,
) -> None:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(ROUNDS):
        for name, (fn, arg) in contenders.items():
            samples[name].append(per_op(fn, arg, n) / scale)
    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"\n## {title}  ({ROUNDS} interleaved rounds of {calls or n} calls; median, min..max)")
    for name in contenders:
        s = samples[name]
        line = f"{name:34s} {med[name]:9.1f} {unit}  ({min(s):.1f}..{max(s):.1f})"
        if name not in ours:
            line += "   " + "  ".join(f"{o}/this {med[o] / med[name]:.2f}x" for o in ours)
        print(line)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expr_loops(exprs: dict[str, str], names: dict[str, Any]) -> dict[str, tuple[Callable[[Any], Any], Any]]:
    """For each expression, a function that evaluates it n times in a loop (as written,
    so `g[k]` goes through the subscript slot) and returns ns per iteration."""
    out: dict[str, tuple[Callable[[Any], Any], Any]] = {}
    for name, expr in exprs.items():
        ns = dict(names)
        exec(f"def timed(n):\n    for _ in range(n):\n        {expr}\n", ns)
        out[name] = (ns["timed"], None)
    return out


def expr_table(title: str, n: int, exprs: dict[str, str], names: dict[str, Any], ours: list[str]) -> None:
    loops = expr_loops(exprs, names)
    contenders: dict[str, tuple[Callable[[Any], Any], Any]] = {
        name: (lambda _arg, f=f, n=n: f(n), None) for name, (f, _) in loops.items()
    }
    table(title, "ns/op", float(n), 1, contenders, ours, calls=n)


def hit_bench() -> None:
    value = b"v" * 100
    with meshcache.Cluster() as cluster:
        g = cluster.group("g", loader=lambda k: value)
        key = "user:42"
        g.get(key)
        d = {key: value}
        lru: Any = functools.lru_cache(maxsize=1024)(lambda k: value)
        lru(key)
        ct: cachetools.LRUCache[str, bytes] = cachetools.LRUCache(maxsize=1024)
        ct[key] = value
        names = {"g": g, "k": key, "bk": key.encode(), "d": d, "lru": lru, "ct": ct}
        expr_table(
            "get hit, str key, 100-byte value",
            500_000,
            {
                "meshcache g[k]": "g[k]",
                "meshcache g.get(k)": "g.get(k)",
                "meshcache g.peek(k)": "g.peek(k)",
                "meshcache g[bk] (bytes key)": "g[bk]",
                "meshcache g.get(bk) (bytes key)": "g.get(bk)",
                "dict d[k]": "d[k]",
                "dict d.get(k)": "d.get(k)",
                "functools.lru_cache hit lru(k)": "lru(k)",
                "cachetools.LRUCache ct[k]": "ct[k]",
                "empty loop (pass)": "pass",
            },
            names,
            ["meshcache g[k]", "meshcache g.get(k)"],
        )


def remote_bench() -> None:
    redis_server = shutil.which("redis-server")
    value = b"v" * 100
    with meshcache.Cluster() as owner, meshcache.Cluster() as reader:
        peers = [owner.local_addr, reader.local_addr]
        owner.set_peers(peers)
        reader.set_peers(peers)
        g_owner = owner.group("g", loader=lambda k: value)
        g_reader = reader.group("g", loader=lambda k: value, hot_sample=0)
        key = next(f"k{i}" for i in range(1000) if owner.owner_of(f"k{i}") == owner.local_addr)
        assert reader.owner_of(key) == owner.local_addr
        g_owner.get(key)
        g_reader.get(key)
        contenders: dict[str, tuple[Callable[[Any], Any], Any]] = {"meshcache remote Group.get": (g_reader.get, key)}
        proc = None
        if redis_server is None:
            print("\n(redis-server not installed: remote get measured without its peer)")
        else:
            import redis

            port = free_port()
            workdir = tempfile.mkdtemp()
            proc = subprocess.Popen(
                [redis_server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
                stdout=subprocess.DEVNULL,
            )
            r = redis.Redis(host="127.0.0.1", port=port)
            deadline = time.monotonic() + 10
            while True:  # bounded wait for the server to accept connections
                try:
                    r.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            r.set(key, value)
            contenders["redis-py GET"] = (r.get, key)
        try:
            table("remote get, 100-byte value, loopback", "us/op", 1000.0, 5_000, contenders, ["meshcache remote Group.get"])
            assert g_reader.stats()["remote_fetches"] >= 5_000
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    hit_bench()
    remote_bench()
