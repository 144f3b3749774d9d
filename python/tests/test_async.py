"""asyncio: aget and friends, async def loaders on the caller's loop or the cluster's."""

from __future__ import annotations

import asyncio
import traceback

import pytest

import meshcache


def test_gather_of_100_agets_loads_once_on_the_callers_loop(cluster: meshcache.Cluster) -> None:
    calls: list[str] = []

    async def main() -> None:
        release = asyncio.Event()

        async def load(key: str) -> bytes:
            calls.append(key)
            await release.wait()
            return b"v:" + key.encode()

        g = cluster.group("g", loader=load, loop=asyncio.get_running_loop())
        futures = [g.aget("k") for _ in range(100)]
        release.set()
        values = await asyncio.wait_for(asyncio.gather(*futures), 30)
        assert values == [b"v:k"] * 100
        assert g.stats()["loads"] == 1
        assert await g.aget("k") == b"v:k"  # a hit resolves at once

    asyncio.run(main())
    assert calls == ["k"]


def test_async_loader_on_the_clusters_loop_thread_serves_sync_gets(cluster: meshcache.Cluster) -> None:
    async def load(key: str) -> tuple[bytes, float]:
        await asyncio.sleep(0)
        return key.encode(), 60

    g = cluster.group("g", loader=load)
    assert g.get("sync") == b"sync"  # no loop in this thread: the cluster's loop runs it

    async def main() -> list[bytes]:
        return await asyncio.wait_for(asyncio.gather(*[g.aget(f"k{i % 5}") for i in range(100)]), 30)

    assert asyncio.run(main()) == [f"k{i % 5}".encode() for i in range(100)]
    assert g.stats()["loads"] == 6


class Oops(Exception):
    pass


def test_async_loader_errors_and_not_found(cluster: meshcache.Cluster) -> None:
    async def load(key: str) -> bytes:
        if key == "missing":
            raise meshcache.NotFound(key)
        raise Oops(key)

    g = cluster.group("g", loader=load)

    async def main() -> None:
        with pytest.raises(meshcache.NotFound):
            await g.aget("missing")
        with pytest.raises(Oops) as info:
            await g.aget("x")
        assert "load" in [f.name for f in traceback.extract_tb(info.value.__traceback__)]

    asyncio.run(main())
    with pytest.raises(Oops):
        g.get("y")


def test_sync_loader_with_aget_and_async_writes(cluster: meshcache.Cluster) -> None:
    g = cluster.group("g", loader=lambda k: k.encode())

    async def main() -> None:
        assert await g.aget("a") == b"a"
        await g.aset("b", b"B", ttl=30)
        assert await g.aget_many(["a", "b"]) == {"a": b"a", "b": b"B"}
        await g.adelete("b")
        assert g.peek("b") is None
        with pytest.raises(TypeError):
            g.aget(3)  # type: ignore[arg-type]

    asyncio.run(main())


def test_aget_needs_a_running_loop(cluster: meshcache.Cluster) -> None:
    g = cluster.group("g")
    with pytest.raises(RuntimeError):
        g.aget("k")


def test_sync_get_on_the_loaders_own_loop_raises_instead_of_deadlocking(cluster: meshcache.Cluster) -> None:
    async def main() -> None:
        async def load(key: str) -> bytes:
            return b"x"

        g = cluster.group("g", loader=load, loop=asyncio.get_running_loop())
        with pytest.raises(RuntimeError, match="aget"):
            g.get("k")
        assert await g.aget("k") == b"x"

    asyncio.run(main())


def test_cancelled_aget_leaves_the_load_to_the_others(cluster: meshcache.Cluster) -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def load(key: str) -> bytes:
            await release.wait()
            return b"v"

        g = cluster.group("g", loader=load, loop=asyncio.get_running_loop())
        first = g.aget("k")
        second = g.aget("k")
        first.cancel()
        release.set()
        assert await asyncio.wait_for(second, 30) == b"v"
        assert g.stats()["loads"] == 1

    asyncio.run(main())


def test_an_async_loader_awaiting_its_own_key_gets_invalid_argument_not_a_hang(
    cluster: meshcache.Cluster,
) -> None:
    seen: dict[str, object] = {}

    async def load(key: str) -> bytes:
        if key == "self":
            try:
                await asyncio.wait_for(g.aget("self"), 10)  # would wait for itself
            except meshcache.InvalidArgument as e:
                seen["aget"] = e
            try:
                await asyncio.wait_for(g.aget_many(["other", "self"]), 10)
            except meshcache.InvalidArgument as e:
                seen["aget_many"] = e
            # A thread that runs in the task's context (asyncio.to_thread copies it).
            try:
                await asyncio.wait_for(asyncio.to_thread(g.get, "self"), 10)
            except meshcache.InvalidArgument as e:
                seen["get"] = e

            # A task the loader starts copies its context too.
            async def child() -> bytes:
                return await g.aget("self")

            try:
                await asyncio.wait_for(asyncio.ensure_future(child()), 10)
            except meshcache.InvalidArgument as e:
                seen["child task"] = e
            return b"self"
        if key == "outer":
            inner = await asyncio.wait_for(g.aget("inner"), 10)  # another key: fine
            many = await asyncio.wait_for(g.aget_many(["inner", "x"]), 10)
            return b"outer+" + inner + many["x"]
        return key.encode()

    g = cluster.group("g", loader=load)

    async def main() -> None:
        assert await asyncio.wait_for(g.aget("self"), 30) == b"self"
        assert await asyncio.wait_for(g.aget("outer"), 30) == b"outer+innerx"

    asyncio.run(main())
    assert set(seen) == {"aget", "aget_many", "get", "child task"}, seen
    assert all(isinstance(e, ValueError) and "loading" in str(e) for e in seen.values()), seen
    # Outside the loader the key is a plain hit.
    assert g.get("self") == b"self"


def test_an_async_loader_on_the_callers_loop_awaiting_its_own_key_raises(cluster: meshcache.Cluster) -> None:
    async def main() -> None:
        async def load(key: str) -> bytes:
            if key == "self":
                with pytest.raises(meshcache.InvalidArgument):
                    await asyncio.wait_for(g.aget("self"), 10)
                with pytest.raises(meshcache.InvalidArgument):
                    g.get("self")  # the scope is checked before the same-loop deadlock
                with pytest.raises(RuntimeError, match="aget"):
                    g.get("other")
            return key.encode()

        g = cluster.group("g", loader=load, loop=asyncio.get_running_loop())
        assert await asyncio.wait_for(g.aget("self"), 30) == b"self"
        assert await asyncio.wait_for(g.aget("other"), 30) == b"other"

    asyncio.run(main())
