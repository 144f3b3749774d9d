from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import meshcache

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster() -> Iterator[meshcache.Cluster]:
    with meshcache.Cluster(listen="127.0.0.1:0") as c:
        yield c


@pytest.fixture(scope="session")
def etcd() -> str:
    """The endpoint (`host:port`) of the etcd `make test-python` runs the suite with
    (`with-etcd`). Missing, the membership tests fail: they are never skipped."""
    endpoint = os.environ.get("MESHCACHE_TEST_ETCD")
    if not endpoint:
        pytest.fail("MESHCACHE_TEST_ETCD is not set: run the suite with `make test-python` (it starts etcd)")
    return endpoint


@dataclass(frozen=True)
class Certs:
    """Fresh test certificates (`$MESHCACHE_GENCERT DIR`): a CA, a node certificate it
    signs (localhost and 127.0.0.1, server and client), and a stranger's, signed by
    another CA."""

    dir: pathlib.Path

    @property
    def ca(self) -> pathlib.Path:
        return self.dir / "ca.pem"

    @property
    def cert(self) -> pathlib.Path:
        return self.dir / "node.pem"

    @property
    def key(self) -> pathlib.Path:
        return self.dir / "node.key"

    @property
    def stranger_cert(self) -> pathlib.Path:
        return self.dir / "stranger.pem"

    @property
    def stranger_key(self) -> pathlib.Path:
        return self.dir / "stranger.key"

    @property
    def tls(self) -> dict[str, pathlib.Path]:
        """The `Cluster(...)` arguments of a member node."""
        return {"tls_cert": self.cert, "tls_key": self.key, "tls_ca": self.ca}


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    # `make test-python` builds gencert and exports its path; a bare pytest run after a
    # `make gencert` finds it in target/.
    gencert = os.environ.get("MESHCACHE_GENCERT") or str(ROOT / "target" / "debug" / "gencert")
    if not os.access(gencert, os.X_OK):
        pytest.fail(f"no certificate generator at {gencert}: run `make gencert`")
    d = tmp_path_factory.mktemp("certs")
    subprocess.run([gencert, str(d)], check=True, capture_output=True, timeout=60)
    return Certs(d)
