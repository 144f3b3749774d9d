"""A typed program using meshcache's stubs: `mypy --strict` must accept it."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any, Optional

import meshcache


def load_user(key: str) -> bytes:
    if key == "0":
        raise meshcache.NotFound(key)
    return f"user {key}".encode()


async def load_async(key: str) -> tuple[bytes, float]:
    return key.encode(), 30.0


def secured(secrets: pathlib.Path) -> meshcache.Cluster:
    # Paths may be str or os.PathLike; durations are seconds.
    return meshcache.Cluster(
        token_file=secrets / "token",
        previous_token="old-token",
        tls_cert=secrets / "node.pem",
        tls_key=str(secrets / "node.key"),
        tls_ca=secrets / "ca.pem",
        tls_client_auth=False,
        tls_server_name="meshcache.internal",
        handshake_timeout=2.5,
        idle_timeout=60,
    )


def ring_changes() -> meshcache.Cluster:
    # Seconds (0 turns each off); the handoff's byte bound is an int or a size string.
    return meshcache.Cluster(warm_window=30.0, handoff_timeout=5, handoff_max_bytes="256MiB")


def observed() -> int:
    # metrics_listen serves /metrics and the status page; metrics_text() needs no server.
    with meshcache.Cluster(metrics_listen="127.0.0.1:0") as cluster:
        where: Optional[str] = cluster.metrics_addr
        text: str = cluster.metrics_text()
        status: dict[str, Any] = cluster.status()
        return len(text) + len(where or "") + len(status["groups"])


def main() -> int:
    with meshcache.Cluster(
        listen="127.0.0.1:0", peers=[], peer_timeout=1.0, token="typed-token", shutdown_grace=1, max_peer_requests=64
    ) as cluster:
        users: meshcache.Group = cluster.group("users", capacity="64MiB", ttl=60, loader=load_user)
        other = cluster.group("other", capacity=1 << 20, loader=load_async)
        value: bytes = users.get("42")
        maybe: Optional[bytes] = users.peek(b"42")
        hit: bytes = users["42"]
        present: bool = "42" in users
        many: dict[object, bytes] = dict(users.get_many(["1", "2"]))
        bounded: bytes = users.get("42", timeout=0.5)
        bounded_many: dict[object, bytes] = dict(users.get_many(["1"], timeout=2))
        timed = cluster.group("timed", load_timeout=5, loader=load_user)
        timed_value: bytes = timed.get("1", timeout=None)
        copies = cluster.group("copies", replicas=2, replicate_loads=True, loader=load_user)
        copied: meshcache.GroupStats = copies.stats()
        replicated: int = copied["replica_writes"] + copied["replica_reads"] + copied["warm_takeovers"]
        handed: int = copied["replica_write_errors"] + copied["handoff_sent"] + copied["handoff_received"]
        users.set("k", b"v", ttl=1.5)
        users.delete("k")
        stats: meshcache.GroupStats = users.stats()
        loads: int = stats["loads"] + stats["main"]["items"] + stats["hot"]["hits"]
        node: meshcache.ClusterStats = cluster.stats()
        breakers = [p["breaker"] for p in node["peers"]]
        assert all(b in ("closed", "open", "half_open") for b in breakers), node["node"]
        server: meshcache.ServerStats = node["server"]
        refused: int = server["rejected_unauthenticated"] + server["closed_at_shutdown"]
        addr: str = cluster.local_addr
        ring: meshcache.RingStats = node["ring"]
        error: Optional[str] = ring["error"]
        members: list[str] = cluster.wait_for_members(len(ring["members"]), timeout=5.0)
        assert ring["healthy"] and error is None and ring["source"] in ("static", "etcd", "dns"), ring["epoch"]

        async def run() -> bytes:
            return await other.aget("x", timeout=5.0)

        got = asyncio.run(run())
        try:
            users.get("0")
        except meshcache.NotFound:
            pass
        except meshcache.MeshcacheError as e:
            print(e)
        return (
            len(value) + len(maybe or b"") + len(hit) + int(present) + len(many) + loads + len(addr) + len(got) + refused
            + len(members) + ring["changed_at_ms"] % 2 + replicated + handed
        )


def follows_etcd(endpoint: str) -> list[str]:
    with meshcache.Cluster(membership=f"etcd://{endpoint}/myservice?lease_ttl=10") as cluster:
        return cluster.wait_for_members(2, timeout=None)


if __name__ == "__main__":
    print(main())
