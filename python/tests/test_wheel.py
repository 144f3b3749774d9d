"""`maturin build` gives an abi3 wheel holding the Python files, the stubs and py.typed."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import zipfile

PYTHON_DIR = pathlib.Path(__file__).resolve().parents[1]


def test_wheel_holds_the_package_stubs_and_py_typed(tmp_path: pathlib.Path) -> None:
    maturin = shutil.which("maturin") or str(pathlib.Path(sys.executable).parent / "maturin")
    # make test-python installs maturin in the venv: its absence is a broken setup, not
    # a reason to skip.
    assert pathlib.Path(maturin).exists(), "maturin is not installed next to this Python"
    # A debug build: its contents are those of a release build, and it reuses
    # `maturin develop`'s compiled crates when they match.
    subprocess.run(
        [maturin, "build", "--quiet", "--out", str(tmp_path)],
        cwd=PYTHON_DIR,
        check=True,
        timeout=600,
    )
    wheels = list(tmp_path.glob("meshcache-*.whl"))
    assert len(wheels) == 1, wheels
    assert "-abi3-" in wheels[0].name
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for want in ("meshcache/__init__.py", "meshcache/_native.pyi", "meshcache/py.typed"):
        assert want in names, sorted(names)
    assert any(n.startswith("meshcache/_native") and n.endswith(".so") for n in names), sorted(names)
