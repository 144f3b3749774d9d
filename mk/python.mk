# python binding: `make test-python` (run by `make test`) builds the extension into a
# venv, runs pytest (under with-etcd), mypy --strict on a typed example, and stubtest on
# the stubs.
# `make bench-python` runs python/bench (needs redis-server: installed if missing).
# Not here: a fresh-venv `pip install ./python` + the README example (checked by hand:
# it works, maturin comes from PyPI and protoc from `make deps`, but its release build
# took 1m32s with a warm target/ and much longer cold, too slow for this target).
PY_VENV := target/pyenv
PY := $(PY_VENV)/bin/python
# grpcio*, protobuf: a foreign gRPC client in the tests (tests/test_grpc_client.py), to
# check the peer port's token and TLS from outside meshcache's own code (wheels for
# CPython >= 3.10; grpcio-tools generates the stubs from core/proto/ at test time).
PY_PINS := maturin==1.16.0 pytest==8.3.4 mypy==1.13.0 cachetools==5.5.0 redis==5.2.1 \
  grpcio==1.85.1 grpcio-tools==1.85.1 grpcio-health-checking==1.85.1 protobuf==7.36.2 \
  setuptools==80.9.0

.PHONY: test-python python-env python-develop bench-python

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
