"""Type stubs of the native module meshcache._native (checked by mypy.stubtest)."""

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Literal, Optional, TypedDict, Union, final

__version__: Final[str]

_Key = Union[str, bytes]
_BytesLike = Union[bytes, bytearray, memoryview]
_LoaderResult = Union[_BytesLike, tuple[_BytesLike, float]]
_Loader = Callable[[Any], Union[_LoaderResult, Awaitable[_LoaderResult]]]
_Path = Union[str, os.PathLike[str]]

class MeshcacheError(Exception): ...
class NotFound(MeshcacheError, KeyError): ...
class LoadError(MeshcacheError): ...
class PeerError(MeshcacheError): ...
class Timeout(PeerError, TimeoutError): ...
class InvalidArgument(MeshcacheError, ValueError): ...
class ClosedError(MeshcacheError): ...
class PanicError(MeshcacheError): ...

def parse_size(text: Any) -> int: ...

# Stats: the one shape every language shows; the names are core's (a test compares them).

class TierStats(TypedDict):
    items: int
    bytes: int
    gets: int
    hits: int
    evictions: int
    expirations: int

class GroupStats(TypedDict):
    gets: int
    hits: int
    hot_hits: int
    deduplicated: int
    loads: int
    load_errors: int
    not_found: int
    remote_fetches: int
    remote_not_found: int
    remote_errors: int
    fallback_loads: int
    hot_inserts: int
    served: int
    invalidation_errors: int
    invalidations_retried: int
    invalidations_dropped: int
    replica_writes: int
    replica_write_errors: int
    replica_reads: int
    handoff_sent: int
    handoff_received: int
    warm_takeovers: int
    capacity: int
    main: TierStats
    hot: TierStats

class PeerStats(TypedDict):
    addr: str
    breaker: Literal["closed", "open", "half_open"]
    requests: int
    successes: int
    failures: int
    timeouts: int
    retries: int
    rejected: int
    breaker_opened: int

class ServerStats(TypedDict):
    rejected_unauthenticated: int
    rejected_overloaded: int
    rejected_too_many_keys: int
    accept_errors: int
    handshake_timeouts: int
    idle_closed: int
    closed_at_shutdown: int
    rejected_protocol_mismatch: int

class RingStats(TypedDict):
    source: Literal["static", "etcd", "dns"]
    members: list[str]
    epoch: int
    changed_at_ms: int
    healthy: bool
    error: Optional[str]

class ClusterStats(TypedDict):
    node: str
    peers: list[PeerStats]
    server: ServerStats
    ring: RingStats

@final
class _LoadScope:
    """The load an ``async def`` loader's task runs (private: made by meshcache only)."""

@final
class Group:
    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def peek(self, key: _Key) -> Optional[bytes]: ...
    def __getitem__(self, key: _Key, /) -> bytes: ...
    def __contains__(self, key: _Key, /) -> bool: ...
    def get(self, key: _Key, timeout: Optional[float] = None) -> bytes: ...
    def aget(self, key: _Key, timeout: Optional[float] = None) -> asyncio.Future[bytes]: ...
    def get_many(self, keys: Iterable[_Key], timeout: Optional[float] = None) -> dict[Any, bytes]: ...
    def aget_many(
        self, keys: Iterable[_Key], timeout: Optional[float] = None
    ) -> asyncio.Future[dict[Any, bytes]]: ...
    def set(self, key: _Key, value: _BytesLike, ttl: Optional[float] = None) -> None: ...
    def aset(self, key: _Key, value: _BytesLike, ttl: Optional[float] = None) -> asyncio.Future[None]: ...
    def delete(self, key: _Key) -> None: ...
    def adelete(self, key: _Key) -> asyncio.Future[None]: ...
    def stats(self) -> GroupStats: ...
    def close(self) -> None: ...

@final
class Cluster:
    def __new__(
        cls,
        listen: Optional[str] = None,
        peers: Optional[Iterable[str]] = None,
        *,
        membership: Optional[str] = None,
        advertise: Optional[str] = None,
        peer_timeout: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        worker_threads: Optional[int] = None,
        token: Optional[str] = None,
        token_file: Optional[_Path] = None,
        previous_token: Optional[str] = None,
        tls_cert: Optional[_Path] = None,
        tls_key: Optional[_Path] = None,
        tls_ca: Optional[_Path] = None,
        tls_client_auth: bool = True,
        tls_server_name: Optional[str] = None,
        shutdown_grace: Optional[float] = None,
        handshake_timeout: Optional[float] = None,
        idle_timeout: Optional[float] = None,
        max_peer_requests: Optional[int] = None,
        warm_window: float = 60.0,
        handoff_timeout: float = 10.0,
        handoff_max_bytes: Union[int, str, None] = None,
        metrics_listen: Optional[str] = None,
    ) -> Cluster: ...
    def group(
        self,
        name: str,
        *,
        capacity: Union[int, str, None] = None,
        ttl: Optional[float] = None,
        negative_ttl: Optional[float] = None,
        loader: Optional[_Loader] = None,
        max_key_len: Union[int, str, None] = None,
        max_value_len: Union[int, str, None] = None,
        hot_sample: Optional[int] = None,
        bytes_keys: bool = False,
        loop: Optional[asyncio.AbstractEventLoop] = None,
        load_timeout: Optional[float] = None,
        replicas: int = 1,
        replicate_loads: bool = False,
    ) -> Group: ...
    @property
    def local_addr(self) -> str: ...
    @property
    def advertise_addr(self) -> str: ...
    @property
    def metrics_addr(self) -> Optional[str]: ...
    @property
    def closed(self) -> bool: ...
    def metrics_text(self) -> str: ...
    def status(self) -> dict[str, Any]: ...
    def members(self) -> list[str]: ...
    def owner_of(self, key: _Key) -> str: ...
    def set_peers(self, peers: Iterable[str]) -> None: ...
    def wait_for_members(self, n: int, timeout: Optional[float] = 10.0) -> list[str]: ...
    def stats(self) -> ClusterStats: ...
    def close(self) -> None: ...
    def __enter__(self) -> Cluster: ...
    def __exit__(self, *_exc: object) -> None: ...
