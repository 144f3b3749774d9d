"""Install the built wheel as a user would, then run the README's Python example.

Run by `make test-python-package` (not collected by pytest: no `test_` prefix):

    python3 wheel_install.py WHEEL VENV_DIR PYTHON...

For each PYTHON, a fresh venv VENV_DIR/<name> is created and the wheel installed into it
with a bare environment (`env -i PATH=/usr/bin:/bin`: no Rust toolchain, no cargo, no
venv of the build), binary only and offline (`--no-index --only-binary :all:`), so pip
cannot fall back to building anything. The README's example then runs from an empty
directory, so `import meshcache` can only find the installed package.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
BARE_ENV = {"PATH": "/usr/bin:/bin"}


def readme_example() -> str:
    """The first ```python block of README.md's `## Python` section."""
    text = README.read_text()
    section = re.search(r"(?ms)^## Python\n(.*?)(?=^## )", text)
    assert section, "README.md has no ## Python section"
    block = re.search(r"```python\n(.*?)```", section.group(1), re.S)
    assert block, "README.md's ## Python section has no ```python block"
    return block.group(1)


def check_wheel(wheel: pathlib.Path) -> None:
    # The tags a user's pip matches: CPython >= 3.9 through the stable ABI, any glibc
    # >= 2.17 on x86-64 (manylinux2014); maturin audited the symbols when it built it.
    tags = wheel.name[: -len(".whl")].split("-")[-3:]
    assert tags[0] == "cp39" and tags[1] == "abi3", wheel.name
    assert "manylinux_2_17_x86_64" in tags[2].split("."), wheel.name
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in ("meshcache/__init__.py", "meshcache/_native.pyi", "meshcache/py.typed"):
        assert want in names, sorted(names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(meta).decode()
    for want in ("License-Expression: MIT OR Apache-2.0", "Classifier: Typing :: Typed",
                 "Requires-Python: >=3.9"):
        assert want in metadata, metadata


def run(cmd: list[str], cwd: pathlib.Path | None = None) -> str:
    r = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in BARE_ENV.items()), *cmd],
                       capture_output=True, text=True, timeout=300, cwd=cwd)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout.strip()


def main() -> None:
    wheel, venvs, pythons = pathlib.Path(sys.argv[1]).resolve(), pathlib.Path(sys.argv[2]), sys.argv[3:]
    assert pythons, "no Python to install the wheel for"
    check_wheel(wheel)
    # What the bare PATH holds: no Rust toolchain to build from source with.
    for tool in ("cargo", "rustc", "maturin"):
        assert shutil.which(tool, path=BARE_ENV["PATH"]) is None, f"{tool} is on {BARE_ENV['PATH']}"
    code = readme_example()
    for i, python in enumerate(pythons):
        venv = (venvs / f"venv{i}").resolve()
        shutil.rmtree(venv, ignore_errors=True)
        run([python, "-m", "venv", str(venv)])
        py = str(venv / "bin" / "python")
        run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
             "--only-binary", ":all:", str(wheel)])
        with tempfile.TemporaryDirectory() as empty:
            where = run([py, "-c", "import meshcache, sys; print(meshcache.__file__); print(sys.version.split()[0])"],
                        cwd=pathlib.Path(empty))
            assert where.splitlines()[0].startswith(str(venv)), where
            out = run([py, "-c", code], cwd=pathlib.Path(empty))
        assert out == "5 loads", out
        print(f"wheel installed into a fresh venv (Python {where.splitlines()[1]}), README example: {out}")


if __name__ == "__main__":
    main()
