# meshcache: `make demo` runs the main demo, `make test` runs every test in every language.
# Both install what they need on a fresh Debian machine (as root, or with sudo available).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
# $(APT_INSTALL) [COMMAND:]PACKAGE...: apt-get installs each package whose command is
# missing (as root, or with sudo); see mk/apt-install.sh.
APT_INSTALL := sh $(CURDIR)/mk/apt-install.sh

.PHONY: all deps demo test test-rust test-packaging lint fmt bench bench-deps bench-rust

all: test

# System packages the build and the tests need, installed when their command is missing:
# protoc (the peer protocol), pkg-config and valgrind (the C tests), etcd (the membership
# tests of every language), prometheus and chromium (a real scrape of a node's metrics, and
# its status page rendered headless).
deps:
	@$(APT_INSTALL) protoc:protobuf-compiler pkg-config valgrind etcd:etcd-server prometheus chromium

# The demo is a binary of the testkit crate (testkit/src/bin/demo.rs), built without its
# `contenders` feature: a first run compiles meshcache and the demo, none of core's
# dev-dependencies (criterion, proptest, moka, quick_cache, lru).
demo: deps
	$(CARGO) run --release -p meshcache-testkit --bin demo

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# `cargo test` builds and runs every default member, i.e. the whole workspace: core's
# tests, and the C ABI, pyo3 and napi crates, which link without a host but hold no Rust
# tests; those three are tested by test-c, pytest (test-python) and node --test (test-node).
test-rust: deps
	$(CARGO) test 2>&1 | tee target/cargo-test.log
	@n=$$(grep -Eo 'test result: ok\. [0-9]+ passed' target/cargo-test.log | awk '{s+=$$4} END {print s+0}'); \
	  echo "cargo test: $$n tests passed"; [ "$$n" -gt 0 ] || { echo "cargo test ran no tests" >&2; exit 1; }

# The crate as crates.io would get it: `cargo publish --dry-run` packages core/ (its
# README.md and proto/ included) and builds the package alone; its docs build with no
# warning; the top README's Rust examples are core/README.md's, which run as doctests;
# every package (crate, C library and pkg-config, wheel, npm) states the same version.
# The dry run reads the crates.io index and uploads nothing.
test-packaging: deps
	C_VERSION=$(C_VERSION) python3 mk/check-versions.py
	python3 mk/check-readme-rust.py
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -q -p meshcache --no-deps
	$(CARGO) publish -q --dry-run -p meshcache --allow-dirty

# Test certificates for the TLS tests of every language: `$$MESHCACHE_GENCERT DIR` writes
# a fresh CA, a node certificate and a stranger's certificate into DIR (rcgen; nothing
# is committed).
export MESHCACHE_GENCERT := $(CURDIR)/target/debug/gencert
.PHONY: gencert
gencert: deps
	$(CARGO) build -q -p meshcache-testkit --features certs --bin gencert --bin with-etcd

# `$(WITH_ETCD) COMMAND...` runs a suite with an etcd of its own on loopback ports
# (MESHCACHE_TEST_ETCD=127.0.0.1:<port>), stopped when the suite ends; built by `gencert`.
WITH_ETCD := $(CURDIR)/target/debug/with-etcd

# The standalone node (server/), for the tests that run it beside embedded nodes.
.PHONY: meshcached-bin
meshcached-bin: deps
	$(CARGO) build -q -p meshcached

# Each binding's targets live in mk/<language>.mk.
include mk/c.mk mk/python.mk mk/node.mk mk/go.mk

test: lint test-packaging test-rust test-c test-python test-python-package test-node test-go
	@echo "make test: every suite passed"

fmt:
	$(CARGO) fmt --all

# Benchmarks (BENCHMARKS.md): remote get, membership (etcd), throughput (interleaved), hit
# ratio, memory, then criterion.
# Every benchmark in BENCHMARKS.md. redis-server/redis-benchmark (apt) are the peers of
# the remote-get benches; they are installed here when missing. The remote bench also runs
# golang/groupcache (bench/groupcache) when `go` (1.26+) is on PATH, and says so when not.
bench-deps: deps
	@$(APT_INSTALL) redis-server redis-benchmark:redis-tools

bench: bench-deps bench-rust bench-rest bench-c bench-python bench-node

# meshcached's REST GET beside redis-server GET (bench/rest.sh): wrk and redis from apt.
.PHONY: bench-rest
bench-rest: bench-deps
	@$(APT_INSTALL) wrk curl
	sh bench/rest.sh

bench-rust: bench-deps
	$(CARGO) run --release -p meshcache-bench --bin remote
	$(CARGO) run --release -p meshcache-bench --bin membership
	$(CARGO) run --release -p meshcache-bench --bin replicas
	$(CARGO) run --release -p meshcache --example throughput
	$(CARGO) run --release -p meshcache --example hit_ratio
	$(CARGO) run --release -p meshcache --example memory
	$(CARGO) bench -p meshcache --bench store
