"""The README's Python example runs as written."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_runs() -> None:
    text = README.read_text()
    m = re.search(r"<!-- python-example:[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert m, "README.md has no marked Python example"
    r = subprocess.run([sys.executable, "-c", m.group(1)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "5 loads"
