"""Every sync API, errors and bad input."""

from __future__ import annotations

import threading
import traceback

import pytest

import meshcache


class DbDown(Exception):
    def __init__(self, msg: str, code: int) -> None:
        super().__init__(msg)
        self.code = code


def loader(calls: list[str]):
    def load(key: str):
        calls.append(key)
        if key.startswith("missing"):
            raise meshcache.NotFound(key)
        if key == "boom":
            raise DbDown("db down", 503)
        if key == "ttl":
            return (b"short", 30.0)
        if key == "bad":
            return 42
        if key == "ba":
            return bytearray(b"from bytearray")
        return b"v:" + key.encode()

    return load


def test_get_loads_once_and_peek_never_loads(cluster: meshcache.Cluster) -> None:
    calls: list[str] = []
    users = cluster.group("users", capacity="256MiB", ttl=60, loader=loader(calls))
    assert users.name == "users"
    assert users.peek("42") is None
    assert users.get("42") == b"v:42"
    assert users.get("42") == b"v:42"
    assert users.peek("42") == b"v:42"
    assert users.get(b"42") == b"v:42", "str and bytes keys are the same key"
    assert calls == ["42"]
    st = users.stats()
    assert st["loads"] == 1 and st["hits"] >= 3
    assert st["main"]["items"] == 1
    assert st["capacity"] > 0


def test_subscript_and_in_are_peek_like_and_never_load(cluster: meshcache.Cluster) -> None:
    calls: list[str] = []
    g = cluster.group("g", loader=loader(calls))
    with pytest.raises(meshcache.NotFound) as e:
        g["42"]
    assert isinstance(e.value, KeyError) and e.value.args == ("42",)
    assert "42" not in g
    assert calls == [], "group[key] and `in` never load"
    g.get("42")
    assert g["42"] == g[b"42"] == b"v:42"
    assert "42" in g and b"42" in g
    with pytest.raises(meshcache.NotFound):
        g.get("missing")
    with pytest.raises(meshcache.NotFound):
        g["missing"]  # a cached NotFound reads as absent
    assert "missing" not in g
    assert calls == ["42", "missing"]
    with pytest.raises(TypeError, match="key must be str or bytes, not int"):
        g[1]  # type: ignore[index]
    with pytest.raises(TypeError, match="key must be str or bytes"):
        1 in g  # type: ignore[operator]
    g.close()
    with pytest.raises(meshcache.ClosedError):
        g["42"]


def test_loader_return_forms(cluster: meshcache.Cluster) -> None:
    calls: list[str] = []
    g = cluster.group("g", loader=loader(calls))
    assert g.get("ttl") == b"short"
    assert g.get("ba") == b"from bytearray"
    with pytest.raises(TypeError, match="loader"):
        g.get("bad")


def test_not_found_is_a_key_error_and_cached(cluster: meshcache.Cluster) -> None:
    calls: list[str] = []
    g = cluster.group("g", loader=loader(calls), negative_ttl=60)
    with pytest.raises(meshcache.NotFound) as info:
        g.get("missing")
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, meshcache.MeshcacheError)
    assert info.value.args == ("missing",)
    with pytest.raises(KeyError):
        g.get("missing")
    assert calls == ["missing"]
    assert g.peek("missing") is None


def test_loader_exception_is_raised_unchanged_with_its_traceback(cluster: meshcache.Cluster) -> None:
    calls: list[str] = []
    g = cluster.group("g", loader=loader(calls))
    with pytest.raises(DbDown) as info:
        g.get("boom")
    assert info.value.code == 503
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert "load" in frames, frames
    # Errors are not cached: the next get calls the loader again.
    with pytest.raises(DbDown):
        g.get("boom")
    assert calls == ["boom", "boom"]
    assert g.stats()["load_errors"] == 2


def test_set_delete_ttl_and_values(cluster: meshcache.Cluster) -> None:
    g = cluster.group("g")
    g.set("k", b"v", ttl=10)
    assert g.get("k") == b"v"
    g.set(b"k2", bytearray(b"ba"))
    g.set("k3", memoryview(b"mv"))
    assert g.get_many(["k2", "k3"]) == {"k2": b"ba", "k3": b"mv"}
    g.delete("k")
    assert g.peek("k") is None
    with pytest.raises(meshcache.NotFound):
        g.get("k")  # no loader: every miss is NotFound
    g.set("zero", b"x", ttl=0)
    assert g.peek("zero") is None


def test_get_many_keys_are_the_callers_objects(cluster: meshcache.Cluster) -> None:
    calls: list[str] = []
    g = cluster.group("g", loader=loader(calls))
    got = g.get_many(["1", b"2", "missing-a", "1"])
    assert got == {"1": b"v:1", b"2": b"v:2"}
    assert sorted(calls) == ["1", "2", "missing-a"]
    with pytest.raises(DbDown):
        g.get_many(["3", "boom"])


def test_bytes_keys_option(cluster: meshcache.Cluster) -> None:
    seen: list[object] = []

    def load(key: object) -> bytes:
        seen.append(key)
        return b"x"

    g = cluster.group("g", loader=load, bytes_keys=True)
    g.get("k")
    assert seen == [b"k"]
    h = cluster.group("h", loader=load)
    h.get(b"\xff\xfe")
    assert seen[-1] == b"\xff\xfe".decode("utf-8", "surrogateescape")


def test_wrong_types_raise_type_error(cluster: meshcache.Cluster) -> None:
    g = cluster.group("g")
    for bad_key in (42, None, 1.5, ["a"]):
        with pytest.raises(TypeError, match="key must be str or bytes"):
            g.get(bad_key)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key must be str or bytes"):
            g.peek(bad_key)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="encode str values first"):
        g.set("k", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes, bytearray or memoryview"):
        g.set("k", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ttl"):
        g.set("k", b"v", ttl="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        g.set("k", b"v", ttl=-1)
    with pytest.raises(TypeError, match="single str"):
        g.get_many("abc")
    with pytest.raises(TypeError, match="callable"):
        cluster.group("h", loader=b"nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="capacity"):
        cluster.group("h", capacity=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        meshcache.Cluster(peers="127.0.0.1:1")


def test_invalid_arguments_are_value_errors(cluster: meshcache.Cluster) -> None:
    g = cluster.group("g", max_key_len=8, max_value_len=4)
    with pytest.raises(meshcache.InvalidArgument) as info:
        g.get("123456789")
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="empty"):
        g.peek("")
    with pytest.raises(ValueError):
        g.set("k", b"12345")
    with pytest.raises(ValueError, match="byte size"):
        cluster.group("h", capacity="12 parsecs")
    with pytest.raises(ValueError, match="already exists"):
        cluster.group("g")
    with pytest.raises(ValueError):
        meshcache.Cluster(listen="not an address")


def test_capacity_and_parse_size() -> None:
    assert meshcache.parse_size("64MiB") == 64 << 20
    assert meshcache.parse_size(4096) == 4096
    with meshcache.Cluster() as c:
        g = c.group("g", capacity=1 << 20)
        assert g.stats()["capacity"] == 1 << 20
        h = c.group("h", capacity="2MiB")
        assert h.stats()["capacity"] == 2 << 20


def test_cluster_api_and_close() -> None:
    c = meshcache.Cluster(listen="127.0.0.1:0", peer_timeout=0.5, connect_timeout=0.5, worker_threads=1)
    host, port = c.local_addr.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert c.advertise_addr == c.local_addr
    assert c.members() == [c.local_addr]
    assert c.owner_of("k") == c.local_addr
    c.set_peers([c.local_addr, "127.0.0.1:9"])
    assert len(c.members()) == 2
    stats = c.stats()
    assert stats["node"] == c.local_addr
    assert stats["peers"][0]["addr"] == "127.0.0.1:9"
    assert stats["peers"][0]["breaker"] == "closed"
    c.set_peers([])
    g = c.group("g")
    g.set("k", b"v")
    assert "meshcache.Cluster" in repr(c) and "meshcache.Group" in repr(g)
    with c:
        pass
    assert c.closed and g.closed
    with pytest.raises(meshcache.ClosedError):
        g.get("k")
    with pytest.raises(meshcache.ClosedError):
        c.group("h")
    c.close()  # idempotent


def test_worker_threads_zero_is_refused_by_core() -> None:
    with pytest.raises(meshcache.InvalidArgument, match="worker_threads") as info:
        meshcache.Cluster(worker_threads=0)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="worker_threads"):
        meshcache.Cluster(worker_threads=-1)
    with pytest.raises(TypeError):
        meshcache.Cluster(worker_threads=1.5)  # type: ignore[arg-type]


def test_unreachable_peer_falls_back_to_a_local_load() -> None:
    calls: list[str] = []
    with meshcache.Cluster(peers=["127.0.0.1:9"], peer_timeout=0.5, connect_timeout=0.2) as c:
        g = c.group("g", loader=loader(calls))
        keys = [f"k{i}" for i in range(20)]
        remote = [k for k in keys if c.owner_of(k) != c.local_addr]
        assert remote, "some key must belong to the dead peer"
        assert g.get(remote[0]) == f"v:{remote[0]}".encode()
        assert g.stats()["fallback_loads"] == 1


def test_group_close(cluster: meshcache.Cluster) -> None:
    g = cluster.group("g")
    g.set("k", b"v")
    g.close()
    with pytest.raises(meshcache.ClosedError):
        g.peek("k")


def test_a_loader_may_call_another_group(cluster: meshcache.Cluster) -> None:
    inner = cluster.group("inner", loader=lambda k: b"inner:" + k.encode())
    outer = cluster.group("outer", loader=lambda k: b"outer+" + inner.get(k))
    assert outer.get("x") == b"outer+inner:x"


def test_a_slow_load_does_not_block_hits_elsewhere(cluster: meshcache.Cluster) -> None:
    entered = threading.Event()
    release = threading.Event()

    def load(key: str) -> bytes:
        if key == "slow":
            entered.set()
            assert release.wait(10)
        return key.encode()

    g = cluster.group("g", loader=load)
    g.get("fast")
    result: list[bytes] = []
    t = threading.Thread(target=lambda: result.append(g.get("slow")))
    t.start()
    assert entered.wait(10)
    # The loader holds nothing that a hit or another load needs, GIL included.
    assert g.get("fast") == b"fast"
    assert g.get("other") == b"other"
    release.set()
    t.join(10)
    assert result == [b"slow"]


def test_a_loader_getting_its_own_key_gets_an_error_not_a_deadlock(cluster: meshcache.Cluster) -> None:
    seen: list[str] = []

    def load(key: str) -> bytes:
        if key == "self":
            try:
                g.get("self")  # the key being loaded: would wait on itself
            except ValueError as e:  # meshcache.InvalidArgument
                seen.append(type(e).__name__)
        elif key == "outer":
            return b"outer+" + g.get("inner")  # another key: fine
        return key.encode()

    g = cluster.group("reentrant", loader=load)
    assert g.get("self") == b"self"
    assert seen == ["InvalidArgument"]
    assert g.get("outer") == b"outer+inner"


def test_a_loaders_get_many_of_its_own_key_raises(cluster: meshcache.Cluster) -> None:
    def load(key: str) -> bytes:
        if key == "self":
            with pytest.raises(meshcache.InvalidArgument):
                g.get_many(["other", "self"])
            return b"self"
        if key == "outer":
            return b"outer+" + g.get_many(["inner"])["inner"]
        return key.encode()

    g = cluster.group("many", loader=load)
    assert g.get("self") == b"self"
    assert g.get("outer") == b"outer+inner"
