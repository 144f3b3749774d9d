"""os.fork(): the child cannot use the parent's cluster (clear error, no hang) and can
make its own."""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings

import pytest

import meshcache

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _child(group: meshcache.Group, cluster: meshcache.Cluster, q: "multiprocessing.Queue[str]") -> None:
    out = []
    for call in (lambda: group.get("k"), lambda: group.peek("k"), lambda: cluster.group("x"), cluster.close):
        try:
            call()
            out.append("no error")
        except meshcache.ClosedError as e:
            out.append("closed" if "fork" in str(e) else f"closed without a hint: {e}")
    with meshcache.Cluster() as own:
        g = own.group("g", loader=lambda k: b"child:" + k.encode())
        out.append(g.get("k").decode())
    q.put(",".join(out))


def test_fork_child_gets_a_clear_error_and_can_start_its_own() -> None:
    with meshcache.Cluster() as cluster:
        group = cluster.group("g", loader=lambda k: b"parent")
        assert group.get("k") == b"parent"
        ctx = multiprocessing.get_context("fork")
        q: multiprocessing.Queue[str] = ctx.Queue()
        with warnings.catch_warnings():
            # 3.12+ warns that forking a multi-threaded process may deadlock: the point here.
            warnings.simplefilter("ignore", DeprecationWarning)
            p = ctx.Process(target=_child, args=(group, cluster, q))
            p.start()
        result = q.get(timeout=60)
        p.join(60)
        assert p.exitcode == 0
        assert result == "closed,closed,closed,closed,child:k"
        # The parent is unaffected.
        assert group.get("k") == b"parent"


def test_bare_os_fork_child_exits_cleanly() -> None:
    with meshcache.Cluster() as cluster:
        group = cluster.group("g", loader=lambda k: b"v")
        group.get("k")
        r, w = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child: never return into pytest
            code = 1
            try:
                group.get("k")
            except meshcache.ClosedError:
                code = 0
            os.write(w, bytes([code]))
            os._exit(code)
        os.close(w)
        assert os.read(r, 1) == b"\x00"  # blocks until the child wrote or died
        os.close(r)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0 if sys.version_info >= (3, 9) else True
