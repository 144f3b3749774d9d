"""meshcache: an embedded, distributed, read-through cache with a Rust core.

Every process of a service runs a :class:`Cluster` node; each key has one owner, and a
miss anywhere is loaded once in the whole cluster by the owner's loader::

    import meshcache

    def load_user(key: str) -> bytes:
        return db.fetch_user(key)          # or (value, ttl_seconds), or raise meshcache.NotFound

    with meshcache.Cluster(listen="127.0.0.1:0", peers=[...]) as cluster:
        users = cluster.group("users", capacity="256MiB", ttl=60, loader=load_user)
        users.get("42")                    # bytes
        await users.aget("42")             # asyncio

Threads: every call may come from any thread; anything that waits releases the GIL.
Loaders run on meshcache's worker threads (they take the GIL to run); ``async def``
loaders run on the event loop given as ``loop=`` to :meth:`Cluster.group`, or else on an
event-loop thread the cluster starts the first time it needs one.

Fork: a cluster belongs to the process that created it. After ``os.fork()`` the child
gets :class:`ClosedError` from the parent's objects and must create its own cluster (for
gunicorn, in the ``post_fork`` hook).

Ctrl-C interrupts a sync ``get`` or ``get_many`` waiting on the main thread with
``KeyboardInterrupt``; only that caller stops waiting. Closing a group or its cluster
releases the calls waiting on a load with :class:`ClosedError`.

Timeouts (seconds): ``Cluster.group(..., load_timeout=5)`` fails the callers waiting on a
load that has not answered by then with :class:`Timeout` and frees the key;
``get(key, timeout=0.5)`` (and ``get_many``, ``aget``, ``aget_many``) bounds one
caller's wait, while the load goes on for the others.

Errors: a loader's own exception (any ``BaseException``) reaches the caller unchanged,
the same object. meshcache's own are
:class:`MeshcacheError` subclasses: :class:`NotFound` (also a ``KeyError``),
:class:`PeerError`, :class:`Timeout` (also a ``TimeoutError``), :class:`InvalidArgument`
(also a ``ValueError``), :class:`ClosedError`, :class:`LoadError` (a loader failed on
another node), :class:`PanicError`. Arguments of the wrong type raise ``TypeError``.
A loader's ``get`` of the very key it is loading (which would wait for itself) raises
:class:`InvalidArgument`.

Replicas: ``Cluster.group(..., replicas=2)`` writes each ``set`` to the key's owner and
the next node of the ring, whose copy answers while the owner is down
(``replicate_loads=True`` copies loaded values too). ``Cluster(warm_window=60.0)``
(seconds, 0 = off) lets a node that newly owns a key ask its previous owner first;
``handoff_timeout=10.0`` and ``handoff_max_bytes`` bound what an etcd or DNS node hands
to the new owners when it closes.

Stats: ``Group.stats()`` is a :class:`GroupStats` (counters, and :class:`TierStats` under
``"main"`` and ``"hot"``); ``Cluster.stats()`` a :class:`ClusterStats` (this node, a
:class:`PeerStats` per peer, its view of the ring as :class:`RingStats`, and this node's
server as :class:`ServerStats`: refused calls and closed connections). The names are the
same in every language meshcache has.

Metrics: ``Cluster.metrics_text()`` is the cluster's Prometheus text exposition (append it
to your own ``/metrics``), ``Cluster.status()`` the node's status as a dict; with
``Cluster(metrics_listen="127.0.0.1:0")`` the node also serves ``/metrics``, a status
page at ``/``, ``/v1/status``, ``/healthz`` and ``/readyz`` on that address
(``cluster.metrics_addr``).

Membership: ``Cluster(membership="etcd://host:2379/myservice")`` (or ``"dns://name:port"``;
``"static"``, the default, takes ``peers``) finds the other nodes there and follows them;
``cluster.wait_for_members(n, timeout=10)`` waits until the ring has ``n`` members.

Security: ``Cluster(token=...)`` (or ``token_file=``, and ``previous_token=`` while
rotating) makes the peer port refuse calls without the token; ``tls_cert=``,
``tls_key=`` and ``tls_ca=`` (PEM files) turn on TLS, with mutual TLS unless
``tls_client_auth=False``. ``close()`` waits at most ``shutdown_grace`` seconds for
calls in flight, then closes every connection.
"""

from meshcache._native import (
    ClosedError,
    Cluster,
    ClusterStats,
    Group,
    GroupStats,
    InvalidArgument,
    LoadError,
    MeshcacheError,
    NotFound,
    PanicError,
    PeerError,
    PeerStats,
    RingStats,
    ServerStats,
    TierStats,
    Timeout,
    __version__,
    parse_size,
)

__all__ = [
    "ClosedError",
    "Cluster",
    "ClusterStats",
    "Group",
    "GroupStats",
    "InvalidArgument",
    "LoadError",
    "MeshcacheError",
    "NotFound",
    "PanicError",
    "PeerError",
    "PeerStats",
    "RingStats",
    "ServerStats",
    "TierStats",
    "Timeout",
    "__version__",
    "parse_size",
]
