#!/usr/bin/env python3
"""One version for every package: fails (exit 1) if any place that states meshcache's
version disagrees with the workspace version in Cargo.toml ([workspace.package]).

Checked: every workspace member's Cargo.toml (version.workspace = true, or the same
version) and its entry in Cargo.lock; the `meshcache` entry of [workspace.dependencies];
python/pyproject.toml (or `dynamic = ["version"]`, which maturin takes from Cargo);
node/package.json, its per-platform packages (node/npm/*/package.json) and the
optionalDependencies naming them; node/package-lock.json; the pkg-config version
(C_VERSION, derived by mk/c.mk, passed in the environment by `make test-packaging`);
the version include/meshcache.h shows for meshcache_version(); a tarball name in
mk/node.mk; the newest release heading of CHANGELOG.md.

Usage: python3 mk/check-versions.py [REPO_ROOT]
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)


def toml(path: str) -> dict:
    with open(ROOT / path, "rb") as f:
        return tomllib.load(f)


def main() -> int:
    workspace = toml("Cargo.toml")
    version = workspace["workspace"]["package"]["version"]
    found: list[tuple[str, str]] = []  # (where, version)

    dep = workspace["workspace"].get("dependencies", {}).get("meshcache")
    if isinstance(dep, dict) and "version" in dep:
        found.append(("Cargo.toml [workspace.dependencies] meshcache", dep["version"].lstrip("=^~")))

    members: list[str] = []
    for member in workspace["workspace"]["members"]:
        manifest = toml(f"{member}/Cargo.toml")["package"]
        members.append(manifest["name"])
        v = manifest.get("version")
        if isinstance(v, dict) and v.get("workspace") is True:
            continue
        found.append((f"{member}/Cargo.toml", str(v)))

    lock = toml("Cargo.lock")
    for pkg in lock.get("package", []):
        if pkg["name"] in members and "source" not in pkg:
            found.append((f"Cargo.lock {pkg['name']}", pkg["version"]))

    project = toml("python/pyproject.toml")["project"]
    if "version" in project.get("dynamic", []):
        pass  # maturin takes it from the crate, i.e. the workspace version
    else:
        found.append(("python/pyproject.toml", project["version"]))

    package = json.loads((ROOT / "node/package.json").read_text())
    found.append(("node/package.json", package["version"]))
    platform_names = set()
    for path in sorted(glob.glob(str(ROOT / "node/npm/*/package.json"))):
        sub = json.loads(Path(path).read_text())
        platform_names.add(sub["name"])
        found.append((os.path.relpath(path, ROOT), sub["version"]))
    for name, spec in package.get("optionalDependencies", {}).items():
        if name in platform_names or name.startswith(package["name"] + "-"):
            found.append((f"node/package.json optionalDependencies {name}", spec.lstrip("=^~")))

    lockfile = json.loads((ROOT / "node/package-lock.json").read_text())
    found.append(("node/package-lock.json", lockfile["version"]))
    found.append(('node/package-lock.json packages[""]', lockfile["packages"][""]["version"]))

    c_version = os.environ.get("C_VERSION")
    if c_version is not None:
        found.append(("pkg-config meshcache.pc (mk/c.mk C_VERSION)", c_version))

    header = (ROOT / "include/meshcache.h").read_text()
    m = re.search(r'The library version, e\.g\. `"([^"]+)"`', header)
    if m is None:
        print("include/meshcache.h: no `The library version, e.g. \"X\"` comment", file=sys.stderr)
        return 1
    found.append(("include/meshcache.h meshcache_version()", m.group(1)))

    node_mk = ROOT / "mk/node.mk"
    if node_mk.exists():
        for v in re.findall(r"meshcache-(\d+\.\d+\.\d+[^\s/]*?)\.tgz", node_mk.read_text()):
            found.append(("mk/node.mk tarball name", v))

    changelog = (ROOT / "CHANGELOG.md").read_text()
    m = re.search(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", changelog, re.M)
    if m is None:
        print("CHANGELOG.md: no `## [x.y.z]` section", file=sys.stderr)
        return 1
    found.append(("CHANGELOG.md newest release", m.group(1)))

    wrong = [(where, v) for where, v in found if v != version]
    for where, v in wrong:
        print(f"version mismatch: {where} says {v}, Cargo.toml [workspace.package] says {version}", file=sys.stderr)
    if wrong:
        return 1
    print(f"versions: all {len(found) + 1} places say {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
