"""Interpreter exit never hangs, with clusters left open and work in flight."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPTS = {
    "open cluster, no close": """
        import meshcache
        c = meshcache.Cluster()
        g = c.group("g", loader=lambda k: b"v")
        g.get("k")
    """,
    "async loader thread left running": """
        import asyncio, meshcache
        async def load(k):
            return b"v"
        c = meshcache.Cluster()
        g = c.group("g", loader=load)
        g.get("k")
    """,
    "daemon thread blocked in get while the interpreter finalizes": """
        import socket, threading, time, meshcache
        hole = socket.socket()  # a peer that accepts connections and never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        peer = "127.0.0.1:%d" % hole.getsockname()[1]
        c = meshcache.Cluster(peers=[peer], peer_timeout=60)
        c.set_peers([c.local_addr, peer])
        g = c.group("g", loader=lambda k: b"v")
        key = next(f"k{i}" for i in range(1000) if c.owner_of(f"k{i}") == peer)
        entering = threading.Event()
        def reader():
            entering.set()
            g.get(key)  # waits for the peer with the GIL released
        threading.Thread(target=reader, daemon=True).start()
        assert entering.wait(10)
        class AtFinalization:
            def __del__(self):
                # Runs while the interpreter finalizes: the peer goes away, so the
                # reader's get ends now and its thread wants the GIL back. CPython < 3.14
                # ends such a thread with pthread_exit, which aborted the process inside
                # Rust frames ("FATAL: exception not rethrown"). The sleep only keeps
                # finalization going long enough for that to happen.
                hole.close()
                time.sleep(0.3)
        at_finalization = AtFinalization()
    """,
    "import only": """
        import threading, meshcache
        assert threading.active_count() == 1, "nothing starts at import"
    """,
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_exit_is_prompt_and_clean(name: str) -> None:
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPTS[name])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
