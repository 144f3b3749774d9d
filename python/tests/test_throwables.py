"""Every throwable a loader raises reaches its callers unchanged and leaves the cluster
working; Ctrl-C interrupts a sync wait; closing releases the calls waiting on a load."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import meshcache


class Custom(BaseException):
    """A BaseException of the application's own."""


# Fresh exception objects per test: the caller must get the very object the loader raised.
THROWABLES: dict[str, Callable[[], BaseException]] = {
    "SystemExit": lambda: SystemExit(4),
    "KeyboardInterrupt": lambda: KeyboardInterrupt("from the loader"),
    "GeneratorExit": lambda: GeneratorExit("from the loader"),
    "custom BaseException": lambda: Custom("custom"),
    # Raised by the loader itself: it must not read as the load's task being cancelled.
    "CancelledError": lambda: asyncio.CancelledError("from the loader"),
    "Exception": lambda: RuntimeError("plain"),
}


def bounded(call: Callable[[], Any], seconds: float = 10) -> Any:
    """`call()` on another thread: its result, or what it raised; fails the test if it
    does not end in time (a hang would otherwise hang the whole test run)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            out["raised"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"the call did not end within {seconds} s")
    if "raised" in out:
        raise out["raised"]
    return out["value"]


def contained(call: Callable[[], Any]) -> None:
    """`bounded(call)`, failing the test (instead of ending the whole run, as an escaped
    KeyboardInterrupt would) if a throwable escapes it."""
    try:
        bounded(call, 30)
    except Exception:
        raise
    except BaseException as e:
        pytest.fail(f"{e!r} escaped an event loop")


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("name", sorted(THROWABLES))
def test_a_loaders_throwable_reaches_the_caller_unchanged_and_the_next_get_works(
    cluster: meshcache.Cluster, kind: str, name: str
) -> None:
    raised: list[BaseException] = []

    def sync_load(key: str) -> bytes:
        if key.startswith("boom"):
            e = THROWABLES[name]()
            raised.append(e)
            raise e
        return b"v:" + key.encode()

    async def async_load(key: str) -> bytes:
        # Suspends once (on a future the loop settles next), so the loader really is async.
        loop = asyncio.get_running_loop()
        turn = loop.create_future()
        loop.call_soon(turn.set_result, None)
        await turn
        return sync_load(key)

    g = cluster.group("g", loader=sync_load if kind == "sync" else async_load)
    for n in range(2):  # the second time shows the first left nothing broken behind
        with pytest.raises(BaseException) as info:
            bounded(lambda: g.get(f"boom{n}"))
        assert info.value is raised[-1]
        if isinstance(info.value, SystemExit):
            assert info.value.code == 4
        # The cluster's loop thread (for the async loader) lives on.
        assert bounded(lambda: g.get(f"after{n}")) == f"v:after{n}".encode()
    assert len(raised) == 2


@pytest.mark.parametrize("name", ["SystemExit", "KeyboardInterrupt"])
def test_an_async_loaders_throwable_reaches_aget_and_the_loop_lives(cluster: meshcache.Cluster, name: str) -> None:
    raised: list[BaseException] = []

    async def load(key: str) -> bytes:
        if key == "boom":
            e = THROWABLES[name]()
            raised.append(e)
            raise e
        return key.encode()

    g = cluster.group("g", loader=load)

    async def main() -> None:
        with pytest.raises(BaseException) as info:
            await asyncio.wait_for(g.aget("boom"), 10)
        assert info.value is raised[0]
        assert await asyncio.wait_for(g.aget("after"), 10) == b"after"

    contained(lambda: asyncio.run(main()))


@pytest.mark.parametrize("name", ["SystemExit", "KeyboardInterrupt"])
def test_an_async_loader_on_the_callers_loop_raising_a_throwable_leaves_that_loop_running(
    cluster: meshcache.Cluster, name: str
) -> None:
    raised: list[BaseException] = []

    async def main() -> None:
        async def load(key: str) -> bytes:
            if key == "boom":
                e = THROWABLES[name]()
                raised.append(e)
                raise e
            return key.encode()

        g = cluster.group("g", loader=load, loop=asyncio.get_running_loop())
        with pytest.raises(BaseException) as info:
            await asyncio.wait_for(g.aget("boom"), 10)
        assert info.value is raised[0]
        assert await asyncio.wait_for(g.aget("after"), 10) == b"after"

    # Without the fix the throwable escapes the caller's own loop: asyncio.run raises it.
    contained(lambda: asyncio.run(main()))


# The child prints "waiting" from the loader: by then the main thread is inside the wait
# (the load starts only once the wait polls it), so the SIGINT hits the wait itself.
SIGINT_SCRIPT = """
    import signal, sys, threading, traceback, meshcache
    # Python's own handler even if SIGINT came in ignored (a shell's background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    release = threading.Event()
    def load(key):
        print("waiting", flush=True)
        release.wait()
        return b"v:" + key.encode()
    c = meshcache.Cluster()
    g = c.group("g", loader=load)
    try:
        {call}
    except KeyboardInterrupt:
        traceback.print_exc()
    else:
        sys.exit("the wait was not interrupted")
    # Only this caller stopped waiting: the load went on, and another get joins it.
    release.set()
    assert g.get("k") == b"v:k"
    print("recovered", flush=True)
    c.close()
"""


@pytest.mark.parametrize("call", ['g.get("k")', 'g.get_many(["k"])'])
def test_ctrl_c_interrupts_a_sync_wait_on_a_hung_loader(call: str) -> None:
    script = textwrap.dedent(SIGINT_SCRIPT).replace("{call}", call)
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        # The loader's "waiting" is the event: the main thread is inside the wait by then.
        assert child.stdout.readline().strip() == "waiting"
        started = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert "KeyboardInterrupt" in err, err
    assert "recovered" in out, (out, err)
    assert child.returncode == 0, err
    assert elapsed < 5, elapsed


@pytest.mark.parametrize("closing", ["cluster", "group"])
def test_close_releases_every_call_waiting_on_a_hung_loader(closing: str) -> None:
    release = threading.Event()
    started = threading.Event()

    def load(key: str) -> bytes:
        started.set()
        release.wait(60)
        return b"v"

    c = meshcache.Cluster(listen="127.0.0.1:0")
    try:
        g = c.group("g", loader=load)
        results: list[object] = [None] * 8

        def reader(i: int) -> None:
            try:
                results[i] = g.get("k")
            except BaseException as e:  # noqa: BLE001 - checked below
                results[i] = e

        threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(8)]
        for t in threads:
            t.start()
        assert started.wait(10)
        # Every reader has reached the get once the group counts its lookup (each misses:
        # the one load is hung), bounded by a deadline.
        deadline = time.monotonic() + 10
        while g.stats()["gets"] < len(threads):
            if time.monotonic() > deadline:
                pytest.fail(f"only {g.stats()['gets']} of {len(threads)} readers reached the get")
            os.sched_yield()  # a poll on the counter, not a timer
        began = time.monotonic()
        bounded(c.close if closing == "cluster" else g.close)
        for t in threads:
            t.join(max(0.0, began + 10 - time.monotonic()))
        assert not any(t.is_alive() for t in threads), "close left calls waiting"
        assert all(isinstance(r, meshcache.ClosedError) for r in results), results
    finally:
        release.set()
        c.close()
