"""A mixed cluster: a meshcached node, this Python process and a Node.js process, joined
through etcd, each with a group "users" that loads from the same HTTP origin. Every key
is loaded once in the whole cluster, whichever node is asked.

Needs `target/debug/meshcached` and the built Node package (`make test-python` builds
both); missing, the test fails (it is never skipped)."""

from __future__ import annotations

import http.server
import subprocess
import threading
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

import meshcache

ROOT = Path(__file__).resolve().parents[2]
MESHCACHED = ROOT / "target" / "debug" / "meshcached"
NODE_LIB = ROOT / "node" / "lib.mjs"
FIXTURE = Path(__file__).parent / "fixtures" / "mixed_node.mjs"
BOUND = 30.0


class Origin(http.server.ThreadingHTTPServer):
    """`GET /users/<key>` -> `origin:<key>`, counting the requests per key."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                key = urllib.parse.unquote(self.path.removeprefix("/users/"))
                with outer.lock:
                    outer.counts[key] += 1
                body = f"origin:{key}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_meshcached_a_python_and_a_node_node_load_each_key_once(etcd: str, origin: Origin, tmp_path: Path) -> None:
    for need in (MESHCACHED, NODE_LIB):
        assert need.exists(), f"{need} is missing: run `make test-python`, which builds it"
    membership = f"etcd://{etcd}/mixed-{uuid.uuid4().hex}?lease_ttl=2"
    config = tmp_path / "meshcached.toml"
    config.write_text(
        f'listen = "127.0.0.1:0"\nhttp_listen = "127.0.0.1:0"\nmembership = "{membership}"\n'
        f'[[groups]]\nname = "users"\n[groups.origin]\nurl = "{origin.url}/users/{{key}}"\n'
    )
    daemon = subprocess.Popen([str(MESHCACHED), "--config", str(config)], stdout=subprocess.PIPE, text=True)
    node = subprocess.Popen(
        ["node", str(FIXTURE), str(NODE_LIB), membership, origin.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stdout is not None and node.stdout is not None and node.stdin is not None
        ready = daemon.stdout.readline()
        assert ready.startswith("meshcached ready"), ready
        http = ready.split("http=")[1].split()[0]
        assert node.stdout.readline().startswith("ready"), "the Node.js node did not start"

        def load(key: str | bytes) -> bytes:
            name = key if isinstance(key, str) else key.decode()
            with urllib.request.urlopen(f"{origin.url}/users/{name}", timeout=BOUND) as r:
                body: bytes = r.read()
                return body

        with meshcache.Cluster(membership=membership) as cluster:
            users = cluster.group("users", loader=load)
            members = cluster.wait_for_members(3, timeout=BOUND)
            assert len(members) == 3
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            keys = [f"user-{i}" for i in range(30)]
            for key in keys:
                # The same key from all three nodes, in turn.
                assert users.get(key) == f"origin:{key}".encode()
                with opener.open(f"http://{http}/v1/groups/users/keys/{key}", timeout=BOUND) as r:
                    assert r.read() == f"origin:{key}".encode()
                node.stdin.write(f"get {key}\n")
                node.stdin.flush()
                assert node.stdout.readline().strip() == f"value origin:{key}"
            assert dict(origin.counts) == {k: 1 for k in keys}, "a key was loaded more than once"
            owners = {cluster.owner_of(k) for k in keys}
            assert len(owners) == 3, "every node owns some of the keys"
    finally:
        for proc in (daemon, node):
            if proc.stdin:
                proc.stdin.close()
            proc.terminate()
            proc.wait(timeout=BOUND)
            if proc.stdout:
                proc.stdout.close()
