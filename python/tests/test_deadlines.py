"""Issue 11: a group's ``load_timeout`` and a call's ``timeout`` (seconds).

No sleeps: hung loaders wait on events that the test sets, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable

import pytest

import meshcache


class Hung:
    """A loader that hangs while ``hang`` is set (until ``release``), else answers."""

    def __init__(self) -> None:
        self.hang = True
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[str] = []

    def __call__(self, key: str) -> bytes:
        self.calls.append(key)
        if self.hang:
            self.entered.set()
            assert self.release.wait(10)
        return b"v:" + key.encode()


def in_thread(f: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(f())
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_load_timeout_fails_every_waiter_then_a_later_get_loads_again(cluster: meshcache.Cluster) -> None:
    load = Hung()
    g = cluster.group("g", loader=load, load_timeout=0.3)
    try:
        waiters = [in_thread(lambda: g.get("k")) for _ in range(3)]
        with pytest.raises(meshcache.Timeout):
            g.get("k")
        for t, out in waiters:
            t.join(10)
            assert not t.is_alive()
            assert len(out) == 1 and isinstance(out[0], meshcache.Timeout), out
        assert isinstance(out[0], TimeoutError)
        assert load.calls  # the hung load (or loads) ran
        load.hang = False
        # The key was freed: the next get loads again, and its answer is cached.
        assert g.get("k") == b"v:k"
        assert g.peek("k") == b"v:k"
    finally:
        load.release.set()


def test_a_late_answer_after_load_timeout_is_dropped(cluster: meshcache.Cluster) -> None:
    load = Hung()
    g = cluster.group("g", loader=load, load_timeout=0.2)
    try:
        with pytest.raises(meshcache.Timeout):
            g.get("k")
        load.hang = False
        load.release.set()
        # Whether or not the hung call has answered by now, the next get is a value.
        assert g.get("k") == b"v:k"
    finally:
        load.release.set()


@pytest.mark.parametrize("waiter_thread", [False, True], ids=["main", "thread"])
def test_a_call_deadline_stops_that_caller_only(cluster: meshcache.Cluster, waiter_thread: bool) -> None:
    load = Hung()
    g = cluster.group("g", loader=load)
    try:
        t, out = in_thread(lambda: g.get("k"))  # no deadline
        assert load.entered.wait(10)
        if waiter_thread:
            t2, out2 = in_thread(lambda: g.get("k", timeout=0.1))
            t2.join(10)
            assert len(out2) == 1 and isinstance(out2[0], meshcache.Timeout), out2
        else:
            # The main thread waits in slices for Ctrl-C; the deadline composes with that.
            with pytest.raises(meshcache.Timeout):
                g.get("k", timeout=0.1)
        with pytest.raises(meshcache.Timeout):
            g.get_many(["k", "other-hung"], timeout=0.1)
        assert t.is_alive() and not out  # the load goes on
        load.release.set()
        t.join(10)
        assert out == [b"v:k"]
        assert load.calls.count("k") == 1
    finally:
        load.release.set()


def test_async_call_deadlines(cluster: meshcache.Cluster) -> None:
    load = Hung()
    g = cluster.group("g", loader=load)

    async def main() -> None:
        with pytest.raises(meshcache.Timeout):
            await g.aget("k", timeout=0.1)
        with pytest.raises(meshcache.Timeout):
            await g.aget_many(["k"], timeout=0.1)
        assert load.entered.is_set()
        waiting = g.aget("k")  # no deadline: waits for the load that is still going on
        load.release.set()
        assert await asyncio.wait_for(waiting, 10) == b"v:k"
        assert await g.aget("k", timeout=None) == b"v:k"

    try:
        asyncio.run(main())
    finally:
        load.release.set()


def test_a_hit_never_pays_for_the_deadline(cluster: meshcache.Cluster) -> None:
    g = cluster.group("g", loader=lambda k: k.encode())
    assert g.get("k") == b"k"
    # One nanosecond: a hit answers before any deadline could be looked at.
    assert g.get("k", timeout=1e-9) == b"k"
    assert g.get_many(["k"], timeout=10) == {"k": b"k"}
    assert g.get("j", timeout=10.0) == b"j"


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, math.nan, math.inf])
def test_zero_negative_or_non_finite_timeouts_are_invalid(cluster: meshcache.Cluster, bad: float) -> None:
    with pytest.raises(meshcache.InvalidArgument, match="load_timeout"):
        cluster.group("g", load_timeout=bad)
    g = cluster.group("ok", loader=lambda k: k.encode())
    g.get("hit")
    with pytest.raises(meshcache.InvalidArgument, match="timeout"):
        g.get("hit", timeout=bad)
    with pytest.raises(meshcache.InvalidArgument):
        g.get_many(["hit"], timeout=bad)

    async def main() -> None:
        with pytest.raises(meshcache.InvalidArgument):
            g.aget("hit", timeout=bad)
        with pytest.raises(meshcache.InvalidArgument):
            g.aget_many(["hit"], timeout=bad)

    asyncio.run(main())


@pytest.mark.parametrize("bad", ["1", True, b"1"])
def test_timeouts_of_the_wrong_type_are_type_errors(cluster: meshcache.Cluster, bad: object) -> None:
    with pytest.raises(TypeError):
        cluster.group("g", load_timeout=bad)  # type: ignore[arg-type]
    g = cluster.group("ok")
    with pytest.raises(TypeError):
        g.get("k", timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        g.get_many(["k"], timeout=bad)  # type: ignore[arg-type]
