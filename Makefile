# meshcache: `make demo` runs the main demo, `make test` runs every test in every language.
# Both install what they need on a fresh Debian machine (as root, or with sudo available).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
APT_PACKAGES := protobuf-compiler

.PHONY: all deps demo test test-rust lint fmt bench

all: test

# System packages the build needs (protoc for the peer protocol).
deps:
	@missing=""; command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

demo: deps
	$(CARGO) run --release -p meshcache --example demo

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings

test-rust: deps
	$(CARGO) test

test: lint test-rust

fmt:
	$(CARGO) fmt --all

# Benchmarks (BENCHMARKS.md): throughput (interleaved), hit ratio, memory, then criterion.
bench: deps
	$(CARGO) run --release -p meshcache --example throughput
	$(CARGO) run --release -p meshcache --example hit_ratio
	$(CARGO) run --release -p meshcache --example memory
	$(CARGO) bench -p meshcache --bench store
