# python binding: `make test-python` (run by `make test`) builds the extension into a
# venv, runs pytest (under with-etcd), mypy --strict on a typed example, and stubtest on
# the stubs.
# `make bench-python` runs python/bench (needs redis-server: installed if missing).
# `make python-wheel` builds the wheel users install (target/wheels/); `make python-sdist`
# the source distribution; `make test-python-package` (run by `make test`) installs the
# wheel into fresh venvs with no Rust toolchain and runs the README example.
PY_VENV := target/pyenv
PY := $(PY_VENV)/bin/python
# grpcio*, protobuf: a foreign gRPC client in the tests (tests/test_grpc_client.py), to
# check the peer port's token and TLS from outside meshcache's own code (wheels for
# CPython >= 3.10; grpcio-tools generates the stubs from core/proto/ at test time).
PY_PINS := maturin==1.16.0 pytest==8.3.4 mypy==1.13.0 cachetools==5.5.0 redis==5.2.1 \
  grpcio==1.85.1 grpcio-tools==1.85.1 grpcio-health-checking==1.85.1 protobuf==7.36.2 \
  setuptools==80.9.0 ziglang==0.14.1

.PHONY: test-python python-env python-develop bench-python python-wheel python-sdist \
  test-python-package

$(PY_VENV)/.pins: mk/python.mk
	python3 -m venv $(PY_VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PY_PINS)
	touch $@

python-env: deps $(PY_VENV)/.pins

# --release: the tests spawn clusters and the bench times hits; the release build takes
# about two minutes from scratch on two cores, then seconds.
python-develop: python-env
	cd python && VIRTUAL_ENV=$(abspath $(PY_VENV)) PATH=$(abspath $(PY_VENV))/bin:$$PATH \
	  maturin develop --release --quiet

# gencert: the TLS tests make fresh certificates with $(MESHCACHE_GENCERT), and it builds
# $(WITH_ETCD): pytest runs with an etcd of its own (MESHCACHE_TEST_ETCD) for the
# membership tests, which fail without it.
# node-build and meshcached-bin: the mixed-cluster test (tests/test_mixed_cluster.py) runs a
# meshcached node and a Node.js node beside this Python process.
test-python: python-develop gencert node-build meshcached-bin
	@# pytest exits 5 when it collects no tests: that fails here like any other error.
	cd python && PATH=$(abspath $(PY_VENV))/bin:$$PATH $(WITH_ETCD) ../$(PY) -m pytest -q
	cd python && ../$(PY) -m mypy --strict tests/typed_example.py
	cd python && ../$(PY) -m mypy.stubtest meshcache._native
	@echo "test-python: pytest, mypy --strict and stubtest passed"

bench-python: python-develop
	@$(APT_INSTALL) redis-server
	$(PY) python/bench/bench.py

# The wheel for any x86-64 Linux with glibc >= 2.17 (manylinux2014: every mainstream
# distribution since 2014) and CPython >= 3.9 (pyo3's abi3-py39: one wheel for all of
# them). `--zig` links with zig (the `ziglang` pin above, from PyPI) against glibc 2.17's
# symbols instead of this machine's; maturin then audits the result against manylinux2014
# and fails if it needs a newer symbol or a library outside the policy. A release build
# of its own target dir (target/x86_64-unknown-linux-gnu/release): about 3 minutes from
# scratch on two cores, seconds when nothing changed.
PY_WHEEL_DIR := target/wheels
python-wheel: python-env
	rm -f $(PY_WHEEL_DIR)/meshcache-*.whl
	cd python && PATH=$(abspath $(PY_VENV))/bin:$$PATH \
	  maturin build --release --strip --zig --compatibility manylinux2014 --quiet --out ../$(PY_WHEEL_DIR)
	@ls $(PY_WHEEL_DIR)/meshcache-*.whl

# The sdist: pyproject.toml, the Python sources, and the Rust workspace members the
# extension needs (bindings/python, core with its proto/ and build.rs); building it
# (`pip install meshcache-*.tar.gz`) needs a Rust toolchain (>= 1.88) and protoc.
python-sdist: python-env
	rm -f $(PY_WHEEL_DIR)/meshcache-*.tar.gz
	cd python && PATH=$(abspath $(PY_VENV))/bin:$$PATH maturin sdist --out ../$(PY_WHEEL_DIR)
	@# What the build reads must be in it (a missing proto only shows when a user builds).
	@tar -tzf $(PY_WHEEL_DIR)/meshcache-*.tar.gz > target/python-sdist.list
	@for f in pyproject.toml meshcache/__init__.py meshcache/_native.pyi \
	  meshcache/py.typed bindings/python/Cargo.toml bindings/python/src/lib.rs \
	  core/Cargo.toml core/build.rs core/proto/meshcache/peer/v1/peer.proto Cargo.toml \
	  Cargo.lock; do \
	  grep -q "^meshcache-[^/]*/$$f$$" target/python-sdist.list || \
	    { echo "python-sdist: $$f is not in the sdist" >&2; exit 1; }; done
	@echo "python-sdist: $$(ls $(PY_WHEEL_DIR)/meshcache-*.tar.gz) holds the sources and the proto"

# The wheel as a user gets it: a fresh venv per Python (the oldest supported, 3.9, when
# this machine has one, and the system's python3), `pip install` of the wheel alone
# (offline, binary only) under `env -i PATH=/usr/bin:/bin`, then the README's Python
# example from an empty directory (python/tests/wheel_install.py). About 10 s after
# python-wheel.
PY_PACKAGE_PYTHONS := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.9*/bin/python3) \
  $(shell command -v python3.9)) /usr/bin/python3
test-python-package: python-wheel python-sdist
	python3 python/tests/wheel_install.py $(PY_WHEEL_DIR)/meshcache-*.whl \
	  target/py-package-test $(PY_PACKAGE_PYTHONS)
	@echo "test-python-package: the wheel installs without Rust and runs the README example"
