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
