"""The README's Python examples run as written."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

from conftest import Certs

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def example(marker: str) -> str:
    """The ```python block right after `<!-- {marker}: ... -->` in the README."""
    m = re.search(rf"<!-- {marker}:[^>]*-->\n```python\n(.*?)```", README.read_text(), re.S)
    assert m, f"README.md has no Python block marked {marker}"
    return m.group(1)


def run(code: str, cwd: pathlib.Path | None = None) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_readme_example_runs() -> None:
    assert run(example("python-example")) == "5 loads"


def test_readme_security_example_runs(certs: Certs) -> None:
    code = example("python-security-example")
    assert run(code) == "0 refused"
    # Its commented-out options work too: uncommented, next to node.pem, node.key and
    # ca.pem, it starts a TLS node.
    enabled, n = re.subn(r"(?m)^(\s*)# (\w+=)", r"\1\2", code)
    assert n >= 2 and "tls_cert=" in enabled and "previous_token=" in enabled
    assert run(enabled, cwd=certs.dir) == "0 refused"


def test_readme_membership_example_runs(etcd: str) -> None:
    code = example("python-membership-example")
    assert "etcd://127.0.0.1:2379/myservice" in code
    # The suite's own etcd instead of the README's; the prefix stays /myservice.
    code = code.replace("127.0.0.1:2379", etcd)
    assert run(code) == "user 42 via etcd with 1 member"
