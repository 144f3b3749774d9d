"""Metrics and status of an embedded cluster: ``Cluster.metrics_text()``,
``Cluster.status()``, and ``Cluster(metrics_listen=...)`` serving them over HTTP, read by
urllib and by a real Prometheus (Debian's ``prometheus``, installed by ``make deps``).

No sleeps: every wait is on an event (a log line, an answer) with a bound; Prometheus is
asked at most every 200 ms, since it scrapes every second.
"""

from __future__ import annotations

import json
import pathlib
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

import meshcache

# No proxy from the environment between the tests and 127.0.0.1.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(addr: str, path: str) -> tuple[int, str, str]:
    """Status, Content-Type and body of `GET http://addr/path` (errors are answers too)."""
    try:
        with HTTP.open(f"http://{addr}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def gets_total(text: str, group: str, result: str) -> int:
    """The one `meshcache_gets_total{group,result}` sample of a text exposition."""
    pattern = rf'^meshcache_gets_total\{{group="{re.escape(group)}",result="{result}"\}} (\d+)$'
    found = re.findall(pattern, text, re.M)
    assert len(found) == 1, f"{pattern} in:\n{text}"
    return int(found[0])


def busy(cluster: meshcache.Cluster, name: str = "g") -> meshcache.Group:
    """A group with 10 loads and 20 hits."""
    g = cluster.group(name, loader=lambda k: f"v{k}".encode())
    for _ in range(3):
        for i in range(10):
            assert g.get(f"k{i}") == f"vk{i}".encode()
    s = g.stats()
    assert (s["loads"], s["hits"]) == (10, 20)
    return g


@pytest.fixture
def observed() -> Iterator[meshcache.Cluster]:
    with meshcache.Cluster(listen="127.0.0.1:0", metrics_listen="127.0.0.1:0") as c:
        yield c


def test_metrics_text_counts_the_groups_hits(cluster: meshcache.Cluster) -> None:
    assert cluster.metrics_addr is None, "no server without metrics_listen"
    g = busy(cluster)
    text = cluster.metrics_text()
    assert isinstance(text, str)
    assert gets_total(text, "g", "hit") == g.stats()["hits"] == 20
    assert gets_total(text, "g", "load") == g.stats()["loads"] == 10
    assert "# TYPE meshcache_gets counter" in text
    assert "meshcache_ring_members 1" in text
    # Read at call time: more hits, a higher counter.
    g.get("k0")
    assert gets_total(cluster.metrics_text(), "g", "hit") == g.stats()["hits"] == 21
    # No key in any label.
    assert "k0" not in cluster.metrics_text()


def test_status_is_the_nodes_json_as_python_objects(cluster: meshcache.Cluster) -> None:
    g = busy(cluster)
    s = cluster.status()
    assert s["node"] == cluster.advertise_addr
    assert s["ring"]["source"] == "static" and s["ring"]["healthy"] is True
    assert [m["addr"] for m in s["ring"]["members"]] == cluster.members()
    assert s["ring"]["members"][0]["share"] == pytest.approx(1.0)
    assert s["peers"] == []
    [group] = s["groups"]
    stats = g.stats()
    assert group["name"] == "g"
    # The same counters and tiers as Group.stats(), by core's names.
    assert {k: v for k, v in group.items() if k != "name"} == stats
    json.dumps(s)  # plain JSON values all the way down


def test_metrics_listen_serves_metrics_health_and_status_over_http(observed: meshcache.Cluster) -> None:
    addr = observed.metrics_addr
    assert addr is not None
    host, port = addr.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0, "port 0 picked a real port"
    assert addr != observed.local_addr, "a port of its own, not the peer port"
    g = busy(observed)

    code, ctype, body = http_get(addr, "/metrics")
    assert code == 200 and ctype.startswith(("text/plain", "application/openmetrics-text")), ctype
    assert gets_total(body, "g", "hit") == g.stats()["hits"] == 20
    assert http_get(addr, "/healthz")[0] == 200
    assert http_get(addr, "/readyz")[0] == 200
    code, _, body = http_get(addr, "/v1/status")
    assert code == 200
    status = json.loads(body)
    assert status["node"] == observed.advertise_addr
    assert status["groups"][0]["hits"] == 20
    code, ctype, page = http_get(addr, "/")
    assert code == 200 and ctype.startswith("text/html") and "<html" in page.lower()
    assert http_get(addr, "/nope")[0] == 404


def test_after_close_the_metrics_address_refuses_connections() -> None:
    c = meshcache.Cluster(listen="127.0.0.1:0", metrics_listen="127.0.0.1:0")
    addr = c.metrics_addr
    assert addr is not None
    assert http_get(addr, "/healthz")[0] == 200
    c.close()
    assert c.metrics_addr is None, "the server stopped with the cluster"
    host, port = addr.rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=10).close()
    # The text needs no server, and a closed node still answers it.
    assert "meshcache_ring_members" in c.metrics_text()


def test_bad_metrics_addresses_are_refused() -> None:
    # Never a name to look up: no port, a port that is not one, an address not ours.
    for bad in ["nope", "127.0.0.1", "127.0.0.1:99999", "127.0.0.1:http", "192.0.2.1:0", ""]:
        with pytest.raises(meshcache.InvalidArgument, match="metrics"):
            meshcache.Cluster(listen="127.0.0.1:0", metrics_listen=bad)
    # A port already taken: InvalidArgument too, naming the address.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy_addr = "127.0.0.1:%d" % taken.getsockname()[1]
        with pytest.raises(meshcache.InvalidArgument, match=re.escape(busy_addr)):
            meshcache.Cluster(listen="127.0.0.1:0", metrics_listen=busy_addr)
    with pytest.raises(TypeError, match="metrics_listen"):
        meshcache.Cluster(listen="127.0.0.1:0", metrics_listen=9090)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metrics_listen"):
        meshcache.Cluster(listen="127.0.0.1:0", metrics_listen=b"127.0.0.1:0")  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_meshcached(tmp_path: pathlib.Path) -> tuple[subprocess.Popen[str], str]:
    """A meshcached node (built by `make test-python`) with a group "g" whose key "k" was
    written and then read 5 times: 5 hits. Returns the process and its HTTP address."""
    meshcached = pathlib.Path(__file__).resolve().parents[2] / "target" / "debug" / "meshcached"
    assert meshcached.exists(), f"{meshcached} is missing: run `make test-python`, which builds it"
    config = tmp_path / "meshcached.toml"
    config.write_text('listen = "127.0.0.1:0"\nhttp_listen = "127.0.0.1:0"\n[[groups]]\nname = "g"\n')
    proc = subprocess.Popen(
        [str(meshcached), "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.startswith("meshcached ready"), ready
    http = ready.split("http=")[1].split()[0]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    put = urllib.request.Request(f"http://{http}/v1/groups/g/keys/k", data=b"v", method="PUT")
    opener.open(put, timeout=10).close()
    for _ in range(5):
        with opener.open(f"http://{http}/v1/groups/g/keys/k", timeout=10) as r:
            assert r.read() == b"v"
    return proc, http


def test_a_real_prometheus_scrapes_an_embedded_python_cluster_and_meshcached(
    observed: meshcache.Cluster, tmp_path: pathlib.Path
) -> None:
    g = busy(observed)
    want = g.stats()["hits"]
    daemon, daemon_http = start_meshcached(tmp_path)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: meshcache\n"
        f"    static_configs:\n      - targets: ['{observed.metrics_addr}', '{daemon_http}']\n"
    )
    web = f"127.0.0.1:{free_port()}"
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={web}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    ready = threading.Event()

    def follow() -> None:
        assert prom.stderr is not None
        for line in prom.stderr:
            log.append(line)
            if "Server is ready to receive web requests" in line:
                ready.set()
        ready.set()  # it exited: stop waiting

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        # Ready when its log says so (an event, not a timer).
        assert ready.wait(60) and prom.poll() is None, "prometheus did not start:\n" + "".join(log)
        query = "/api/v1/query?query=" + urllib.parse.quote('meshcache_gets_total{group="g",result="hit"}')
        answer: dict = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            code, _, body = http_get(web, query)
            assert code == 200, body
            answer = json.loads(body)
            by_instance = {r["metric"]["instance"]: r["value"][1] for r in answer["data"]["result"]}
            if by_instance == {observed.metrics_addr: str(want), daemon_http: "5"}:
                break
            # Scrapes land every second: ask again in 200 ms, or at once if it died.
            try:
                prom.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail("prometheus exited:\n" + "".join(log))
        else:
            pytest.fail(f"PromQL answered {answer}, want {want}")
        for series in answer["data"]["result"]:
            assert series["metric"]["__name__"] == "meshcache_gets_total"
            assert series["metric"]["job"] == "meshcache"
    finally:
        daemon.terminate()
        daemon.wait(30)
        if daemon.stdout is not None:
            daemon.stdout.close()
        prom.kill()
        prom.wait()
        reader.join(10)
        if prom.stderr is not None:
            prom.stderr.close()
