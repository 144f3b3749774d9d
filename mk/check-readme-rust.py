#!/usr/bin/env python3
"""The repository README's Rust examples are core/README.md's, verbatim and in the same
order: core/README.md is the crate's README (it ships in the published crate) and its
examples run as doctests (core/src/lib.rs includes it), so this keeps the top README's
examples doctested too. Exit 1, with the first difference, if they drift apart.

Usage: python3 mk/check-readme-rust.py [REPO_ROOT]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
BLOCK = re.compile(r"^```rust[^\n]*\n.*?^```$", re.M | re.S)


def main() -> int:
    top = BLOCK.findall((ROOT / "README.md").read_text())
    core = BLOCK.findall((ROOT / "core/README.md").read_text())
    if not top:
        print("README.md: no ```rust block found", file=sys.stderr)
        return 1
    for i, (a, b) in enumerate(zip(top, core)):
        if a != b:
            print(f"Rust example {i + 1} differs between README.md and core/README.md:", file=sys.stderr)
            print(f"--- README.md\n{a}\n--- core/README.md\n{b}", file=sys.stderr)
            return 1
    if len(top) != len(core):
        print(
            f"README.md has {len(top)} Rust examples, core/README.md {len(core)}: copy them verbatim",
            file=sys.stderr,
        )
        return 1
    print(f"README.md's {len(top)} Rust examples are core/README.md's (doctested)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
