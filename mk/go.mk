# Go over the C header (examples/go: a cgo package linked with pkg-config). Target:
#   make test-go   (run by make test) go vet and go test against the C library installed
#                  into test-c's temporary prefix (c-prefix): the README-style example, the
#                  Go loader running on a meshcache thread, and a Go + Python cluster
#                  (target/pyenv's meshcache, built by python-develop) loading each key once.
# Go: on PATH, else /usr/local/go/bin/go. No dependencies (no network); its cache and
# GOPATH live under target/go.
.PHONY: test-go

GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GO_OUT := $(CURDIR)/target/go
GO_ENV = GOFLAGS=-mod=mod GOCACHE=$(GO_OUT)/cache GOPATH=$(GO_OUT)/path GOTOOLCHAIN=local \
  CGO_ENABLED=1 PKG_CONFIG_PATH=$(C_OUT)/prefix/lib/pkgconfig LD_LIBRARY_PATH=$(C_OUT)/prefix/lib \
  MESHCACHE_PYTHON=$(abspath $(PY))

test-go: c-prefix python-develop
	@test -x $(GO) || { echo "test-go: no go on PATH nor at /usr/local/go/bin/go" >&2; exit 1; }
	mkdir -p $(GO_OUT)
	cd examples/go && out=$$($$($(GO_ENV) $(GO) env GOROOT)/bin/gofmt -l .) && \
	  { [ -z "$$out" ] || { echo "test-go: not gofmt'd: $$out" >&2; exit 1; }; }
	cd examples/go && $(GO_ENV) $(GO) vet ./...
	cd examples/go && $(GO_ENV) RUST_BACKTRACE=0 $(GO) test -v -count=1 ./... 2>&1 | tee $(GO_OUT)/test.log
	@# Every test ran and passed; none was skipped (the mixed cluster needs MESHCACHE_PYTHON).
	@! grep -q -- '--- SKIP' $(GO_OUT)/test.log || { echo "test-go: a Go test was skipped" >&2; exit 1; }
	@n=$$(grep -c -- '^--- PASS' $(GO_OUT)/test.log || true); echo "go test: $$n tests passed"; \
	  [ "$$n" -ge 3 ] || { echo "go test ran fewer tests than the 3 of examples/go" >&2; exit 1; }
	@grep -q -- '^--- PASS: TestMixedClusterWithPython' $(GO_OUT)/test.log
	@echo "test-go: the Go example, its loader on a meshcache thread and the Go + Python cluster passed"
