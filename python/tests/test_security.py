"""The peer port's guards from Python (README "Security"): a cluster token and its
rotation, TLS and mutual TLS, and a close() that always ends."""

from __future__ import annotations

import contextlib
import itertools
import pathlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import meshcache
from conftest import Certs

# The bound on every wait: generous, since CI machines are slow. Nothing sleeps.
BOUND = 20.0


def counting(calls: list[str]) -> Callable[[str], bytes]:
    def load(key: str) -> bytes:
        calls.append(key)
        return b"value-of-" + key.encode()

    return load


def join(*nodes: meshcache.Cluster) -> None:
    addrs = [n.advertise_addr for n in nodes]
    for n in nodes:
        n.set_peers(addrs)


def key_owned_by(caller: meshcache.Cluster, owner: meshcache.Cluster, group: meshcache.Group) -> str:
    """A key `caller`'s ring gives to `owner`, not cached in `caller`'s `group`."""
    return next(
        k
        for k in (f"k{i}" for i in itertools.count())
        if caller.owner_of(k) == owner.advertise_addr and k not in group
    )


class Nodes:
    """Starts nodes, each with a group "g" whose loader counts its calls, and closes
    them all at the end of the test."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack
        self.calls: list[str] = []
        self.groups: dict[str, meshcache.Group] = {}

    def __call__(self, **kwargs: Any) -> meshcache.Cluster:
        c = self.stack.enter_context(meshcache.Cluster(listen="127.0.0.1:0", **kwargs))
        self.groups[c.advertise_addr] = c.group("g", loader=counting(self.calls), hot_sample=0)
        return c

    def fetch(self, caller: meshcache.Cluster, owner: meshcache.Cluster) -> str:
        """`caller` gets a key `owner` owns: "remote" when the owner served it,
        "fallback" when the caller loaded it itself after the owner refused."""
        g, o = self.groups[caller.advertise_addr], self.groups[owner.advertise_addr]
        key = key_owned_by(caller, owner, g)
        before, served = g.stats(), o.stats()["served"]
        assert g.get(key) == b"value-of-" + key.encode()
        after = g.stats()
        seen = (
            after["remote_fetches"] - before["remote_fetches"],
            after["fallback_loads"] - before["fallback_loads"],
            o.stats()["served"] - served,
        )
        return {(1, 0, 1): "remote", (0, 1, 0): "fallback"}.get(seen, f"(remote, fallback, served) = {seen}")


def server(c: meshcache.Cluster) -> meshcache.ServerStats:
    return c.stats()["server"]


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    with contextlib.ExitStack() as stack:
        yield Nodes(stack)


# ---- Token ----


def test_nodes_with_the_same_token_fetch_from_each_other(nodes: Nodes) -> None:
    a, b = nodes(token="shared-secret"), nodes(token="shared-secret")
    join(a, b)
    assert nodes.fetch(b, a) == "remote"
    assert server(a)["rejected_unauthenticated"] == 0


def test_a_node_with_a_wrong_token_falls_back_and_is_counted(nodes: Nodes) -> None:
    a, c = nodes(token="shared-secret"), nodes(token="not-ours")
    join(a, c)
    assert nodes.fetch(c, a) == "fallback"
    assert server(a)["rejected_unauthenticated"] > 0


def test_the_previous_token_is_accepted_during_a_rotation(nodes: Nodes) -> None:
    a = nodes(token="new-token", previous_token="old-token")
    old, new = nodes(token="old-token"), nodes(token="new-token")
    join(a, old, new)
    assert nodes.fetch(old, a) == "remote"
    assert nodes.fetch(new, a) == "remote"
    assert server(a)["rejected_unauthenticated"] == 0


def test_the_token_is_read_from_a_token_file(nodes: Nodes, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-a-file\n")
    # The file wins over `token` (its first line, trimmed); str paths work as well.
    a = nodes(token="overridden", token_file=path)
    b = nodes(token_file=str(path))
    c = nodes(token="from-a-file")
    join(a, b, c)
    assert nodes.fetch(b, a) == "remote"
    assert nodes.fetch(c, a) == "remote"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token": "two words"},
        {"token": ""},
        {"token": "tab\tinside"},
        {"token": "ok", "previous_token": "not ok"},
        {"previous_token": "a-previous-token-needs-a-current-one"},
        {"token_file": "/nonexistent/meshcache-token"},
    ],
    ids=["space", "empty", "tab", "bad-previous", "previous-alone", "missing-file"],
)
def test_bad_tokens_are_invalid_arguments(kwargs: dict[str, str]) -> None:
    with pytest.raises(meshcache.InvalidArgument) as info:
        meshcache.Cluster(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    for secret in ("two words", "tab\tinside", "not ok"):
        assert secret not in str(info.value), "an error never shows a token"


def test_options_of_the_wrong_type_raise_type_error() -> None:
    for kwargs in (
        {"token": b"bytes"},
        {"previous_token": 1},
        {"token_file": 1},
        {"tls_server_name": 1},
        {"max_peer_requests": 1.5},
        {"shutdown_grace": "5s"},
        {"tls_client_auth": "no"},
    ):
        with pytest.raises(TypeError):
            meshcache.Cluster(**kwargs)  # type: ignore[arg-type]


def test_connection_limits_are_checked_by_core() -> None:
    for kwargs in ({"max_peer_requests": 0}, {"handshake_timeout": 0}, {"idle_timeout": 0}):
        with pytest.raises(meshcache.InvalidArgument):
            meshcache.Cluster(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(meshcache.InvalidArgument, match="max_peer_requests"):
        meshcache.Cluster(max_peer_requests=-1)
    with pytest.raises(ValueError, match="shutdown_grace"):
        meshcache.Cluster(shutdown_grace=-1)
    with meshcache.Cluster(
        max_peer_requests=8, handshake_timeout=2.5, idle_timeout=60, shutdown_grace=1
    ) as c:
        assert set(c.stats()["server"].values()) == {0}


# ---- TLS ----


def test_mutual_tls_nodes_fetch_from_each_other(nodes: Nodes, certs: Certs) -> None:
    a, b = nodes(**certs.tls), nodes(**certs.tls)
    # The name checked in peers' certificates, when it is not their address's host.
    named = nodes(**certs.tls, tls_server_name="localhost")
    join(a, b, named)
    assert nodes.fetch(b, a) == "remote"
    assert nodes.fetch(named, a) == "remote"
    assert server(a)["rejected_protocol_mismatch"] == 0


def test_a_plaintext_node_joined_to_a_tls_node_falls_back(nodes: Nodes, certs: Certs) -> None:
    a, plain = nodes(**certs.tls), nodes()
    join(a, plain)
    assert nodes.fetch(plain, a) == "fallback"
    assert server(a)["rejected_protocol_mismatch"] > 0


def test_a_certificate_for_another_name_is_refused(nodes: Nodes, certs: Certs) -> None:
    a = nodes(**certs.tls)
    c = nodes(**certs.tls, tls_server_name="not-in-the-certificate.example")
    join(a, c)
    assert nodes.fetch(c, a) == "fallback"


def test_client_certificates_are_required_unless_turned_off(nodes: Nodes, certs: Certs) -> None:
    # A node whose certificate another CA signed, but which trusts the cluster's CA.
    stranger = nodes(tls_cert=certs.stranger_cert, tls_key=certs.stranger_key, tls_ca=certs.ca)
    mutual = nodes(**certs.tls)
    join(mutual, stranger)
    assert nodes.fetch(stranger, mutual) == "fallback"
    relaxed = nodes(**certs.tls, tls_client_auth=False)
    join(relaxed, stranger)
    assert nodes.fetch(stranger, relaxed) == "remote"


def test_unusable_tls_files_are_invalid_arguments(certs: Certs, tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing.pem"
    for kwargs in (
        {**certs.tls, "tls_cert": missing},
        {**certs.tls, "tls_key": missing},
        {**certs.tls, "tls_ca": missing},
    ):
        with pytest.raises(meshcache.InvalidArgument, match="cannot read"):
            meshcache.Cluster(**kwargs)  # type: ignore[arg-type]
    # All three files or none; and the TLS refinements need TLS (else the node would
    # look secured without being so).
    for kwargs in (
        {"tls_cert": certs.cert, "tls_key": certs.key},
        {"tls_ca": certs.ca},
        {"tls_client_auth": False},
        {"tls_server_name": "localhost"},
    ):
        with pytest.raises(meshcache.InvalidArgument, match="tls_cert, tls_key and tls_ca"):
            meshcache.Cluster(**kwargs)  # type: ignore[arg-type]


# ---- Shutdown always ends ----


def test_close_ends_whatever_the_clients_do() -> None:
    """200 idle TCP connections and one that sent the HTTP/2 preface, then nothing:
    close() returns once the grace period is over, and says it closed them."""
    c = meshcache.Cluster(listen="127.0.0.1:0", shutdown_grace=0.3)
    c.group("g", loader=lambda k: b"v")
    host, port = c.local_addr.rsplit(":", 1)
    with contextlib.ExitStack() as stack:
        for _ in range(200):
            stack.enter_context(socket.create_connection((host, int(port)), timeout=BOUND))
        silent = stack.enter_context(socket.create_connection((host, int(port)), timeout=BOUND))
        # The HTTP/2 preface and an empty SETTINGS frame; then never a read or an ack.
        silent.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        # The server's own SETTINGS: this connection is accepted and being served.
        assert silent.recv(9)

        done = threading.Event()
        failed: list[BaseException] = []

        def close() -> None:
            try:
                c.close()
            except BaseException as e:  # reported below, on the test's thread
                failed.append(e)
            finally:
                done.set()

        threading.Thread(target=close, daemon=True).start()
        assert done.wait(BOUND), f"close() did not return within {BOUND} s"
        assert not failed, failed
    assert c.closed
    assert c.stats()["server"]["closed_at_shutdown"] >= 1
