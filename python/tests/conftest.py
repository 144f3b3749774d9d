from __future__ import annotations

from collections.abc import Iterator

import pytest

import meshcache


@pytest.fixture
def cluster() -> Iterator[meshcache.Cluster]:
    with meshcache.Cluster(listen="127.0.0.1:0") as c:
        yield c
