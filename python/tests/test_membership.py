"""Issue 12: membership from etcd or DNS (``Cluster(membership=...)``), the ring in
``Cluster.stats()``, and ``Cluster.wait_for_members``.

The etcd is the suite's own (``make test-python`` runs pytest under ``with-etcd``, which
sets ``MESHCACHE_TEST_ETCD``); without it these tests fail (the ``etcd`` fixture). No
sleeps: every wait is on a ring change or an event, with a bound.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

import meshcache


def etcd_spec(endpoint: str) -> str:
    """A membership of its own (a fresh key prefix) in the suite's etcd, with a short lease."""
    return f"etcd://{endpoint}/py-{uuid.uuid4().hex}?lease_ttl=2"


def test_two_nodes_join_through_etcd_load_a_key_once_and_a_closed_one_leaves_at_once(etcd: str) -> None:
    spec = etcd_spec(etcd)
    loads: list[tuple[str, str]] = []
    a = meshcache.Cluster(listen="127.0.0.1:0", membership=spec)
    b = meshcache.Cluster(listen="127.0.0.1:0", membership=spec)
    try:
        both = sorted([a.advertise_addr, b.advertise_addr])
        assert a.wait_for_members(2) == both
        assert b.wait_for_members(2, timeout=10) == both

        groups = {}
        for node in (a, b):
            addr = node.advertise_addr

            def load(key: str, addr: str = addr) -> bytes:
                loads.append((addr, key))
                return f"v:{key}".encode()

            groups[addr] = node.group("g", loader=load)
        # A key b owns, read through a first: b's loader runs, once, for both readers.
        key = next(k for k in (f"k{i}" for i in range(10_000)) if a.owner_of(k) == b.advertise_addr)
        assert b.owner_of(key) == b.advertise_addr
        assert groups[a.advertise_addr].get(key) == f"v:{key}".encode()
        assert groups[b.advertise_addr].get(key) == f"v:{key}".encode()
        assert loads == [(b.advertise_addr, key)]

        for node in (a, b):
            ring = node.stats()["ring"]
            assert ring["source"] == "etcd"
            assert ring["healthy"] is True and ring["error"] is None
            assert ring["members"] == both
            assert ring["epoch"] >= 2
            assert isinstance(ring["changed_at_ms"], int) and ring["changed_at_ms"] > 0
            # The peers come from etcd: set_peers is refused, and changes nothing.
            with pytest.raises(meshcache.InvalidArgument, match="set_peers"):
                node.set_peers([node.advertise_addr])
            assert node.members() == both

        # A graceful close revokes a's lease: b drops it at once, not when the lease
        # (2 s) would have expired.
        a.close()
        began = time.monotonic()
        assert b.wait_for_members(1, timeout=1.0) == [b.advertise_addr]
        assert time.monotonic() - began < 1.0
        assert b.stats()["ring"]["healthy"] is True
        # Alone now, b owns every key and loads it itself.
        mine = next(k for k in (f"m{i}" for i in range(10_000)) if a.owner_of(k) == a.advertise_addr)
        assert b.owner_of(mine) == b.advertise_addr
        assert groups[b.advertise_addr].get(mine) == f"v:{mine}".encode()
        assert loads[-1] == (b.advertise_addr, mine)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    "spec",
    [
        "consul://x",
        "etcd://h:1",  # no key prefix
        "etcd://h/p",  # no port
        "etcd://127.0.0.1:2379/p?lease_ttl=0",
        "etcd://127.0.0.1:2379/p?bogus=1",
        "dns://name",  # no port
        "dns://name:7000?interval=0",
    ],
)
def test_a_membership_core_cannot_use_is_an_invalid_argument(spec: str) -> None:
    with pytest.raises(meshcache.InvalidArgument, match="membership"):
        meshcache.Cluster(listen="127.0.0.1:0", membership=spec)


def test_peers_with_a_live_membership_are_refused_and_wrong_types_are_type_errors() -> None:
    with pytest.raises(meshcache.InvalidArgument, match="peer"):
        meshcache.Cluster(listen="127.0.0.1:0", peers=["127.0.0.1:9"], membership="etcd://127.0.0.1:9/p")
    with pytest.raises(ValueError):  # InvalidArgument is a ValueError
        meshcache.Cluster(membership="zookeeper://h:1/p")
    with pytest.raises(TypeError, match="membership"):
        meshcache.Cluster(membership=42)  # type: ignore[arg-type]


def test_a_static_cluster_reports_a_static_ring() -> None:
    for spec in (None, "static", ""):
        with meshcache.Cluster(listen="127.0.0.1:0", membership=spec) as c:
            ring = c.stats()["ring"]
            assert ring["source"] == "static"
            assert ring["healthy"] is True
            assert ring["error"] is None
            assert ring["members"] == [c.advertise_addr]
            assert ring["epoch"] == 1
            assert c.wait_for_members(1) == [c.advertise_addr]


def test_wait_for_members_wakes_on_set_peers_and_times_out_otherwise(cluster: meshcache.Cluster) -> None:
    me = cluster.advertise_addr
    with pytest.raises(meshcache.Timeout) as raised:
        cluster.wait_for_members(2, timeout=0.05)
    assert isinstance(raised.value, TimeoutError)

    out: list[object] = []

    def waiter() -> None:
        try:
            out.append(cluster.wait_for_members(2, timeout=10))
        except BaseException as e:  # noqa: BLE001 - checked below
            out.append(e)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    # Whether the waiter is already waiting or not, the ring it sees has 2 members.
    cluster.set_peers([me, "127.0.0.1:9"])
    t.join(10)
    assert not t.is_alive()
    assert out == [sorted([me, "127.0.0.1:9"])]
    ring = cluster.stats()["ring"]
    assert ring["epoch"] == 2 and ring["source"] == "static"


def test_wait_for_members_arguments_and_a_closed_cluster() -> None:
    c = meshcache.Cluster(listen="127.0.0.1:0")
    with pytest.raises(TypeError):
        c.wait_for_members("2")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        c.wait_for_members(True)
    with pytest.raises(meshcache.InvalidArgument):
        c.wait_for_members(-1)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(meshcache.InvalidArgument, match="timeout"):
            c.wait_for_members(1, timeout=bad)
    c.close()
    with pytest.raises(meshcache.ClosedError):
        c.wait_for_members(2, timeout=None)


# The child prints "waiting" right before it waits, unbounded, for a ring it never gets:
# only Ctrl-C ends that wait. (A SIGINT that came before the call would raise too; the
# point is that one during the wait is not held until the wait ends.)
SIGINT_SCRIPT = """
    import signal, sys, meshcache
    signal.signal(signal.SIGINT, signal.default_int_handler)
    c = meshcache.Cluster(listen="127.0.0.1:0")
    try:
        print("waiting", flush=True)
        c.wait_for_members(2, timeout=None)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    else:
        sys.exit("the wait was not interrupted")
    assert c.wait_for_members(1) == [c.advertise_addr]
    c.close()
"""


def test_ctrl_c_interrupts_wait_for_members() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SIGINT_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "waiting"
        os.kill(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert "interrupted" in out, (out, err)
    assert child.returncode == 0, err
