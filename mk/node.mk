# node binding (issue 6): `make test-node` (run by `make test`).
#
# npm ci (pinned @napi-rs/cli and typescript; the install script's release build is
# skipped), a debug build of the addon that also regenerates index.js / index.d.ts (a
# diff against git means they were stale), node --test (fails if it ran no test), tsc
# --strict on a typed example, then `npm pack` installed into an empty project, where the
# README's examples run. The TLS tests make their certificates with $$MESHCACHE_GENCERT
# (`make gencert`, exported by the Makefile) in a temp dir; the membership tests (and the
# README's Membership example) join through an etcd that $(WITH_ETCD) (also built by
# `gencert`) starts for each `node --test` run: without MESHCACHE_TEST_ETCD they fail.
NODE_DIR := node
NODE_TGZ := $(NODE_DIR)/meshcache-0.1.0.tgz

.PHONY: test-node node-build bench-node

node-build:
	@# npm ci needs every optional platform package of @napi-rs/cli's deps in the lock; a
	@# registry mirror without some of them (404) leaves them out: fall back, loudly.
	cd $(NODE_DIR) && { MESHCACHE_NODE_SKIP_BUILD=1 npm ci --no-audit --no-fund --loglevel=error 2>/dev/null \
	  || { echo "npm ci refused the lock file (registry mirror gaps): npm install from it instead" >&2; \
	       MESHCACHE_NODE_SKIP_BUILD=1 npm install --no-save --no-audit --no-fund --loglevel=error; }; }
	cd $(NODE_DIR) && npx napi build --platform --manifest-path ../bindings/node/Cargo.toml --js index.js --dts index.d.ts -o .
	@git diff --exit-code -- $(NODE_DIR)/index.js $(NODE_DIR)/index.d.ts \
	  || { echo "node/index.js or node/index.d.ts is stale: commit the regenerated files" >&2; exit 1; }

test-node: deps gencert node-build
	cd $(NODE_DIR) && $(WITH_ETCD) node --test test/*.test.mjs 2>&1 | tee ../target/node-test.log
	@n=$$(grep -Eo '^# pass [0-9]+' target/node-test.log | awk '{print $$3}'); f=$$(grep -Eo '^# fail [0-9]+' target/node-test.log | awk '{print $$3}'); \
	  echo "node --test: $${n:-0} passed, $${f:-?} failed"; \
	  [ "$${n:-0}" -gt 0 ] && [ "$$f" = 0 ] || { echo "node --test failed or ran no tests" >&2; exit 1; }
	cd $(NODE_DIR) && ./node_modules/.bin/tsc -p test/tsconfig.json
	rm -f $(NODE_TGZ)
	cd $(NODE_DIR) && npm pack --loglevel=error >/dev/null
	@proj=$$(mktemp -d) && trap 'rm -rf "$$proj"' EXIT && cd "$$proj" && npm init -y >/dev/null \
	  && npm install --no-audit --no-fund --loglevel=error "$(CURDIR)/$(NODE_TGZ)" \
	  && cd "$(CURDIR)/$(NODE_DIR)" && MESHCACHE_README_PROJECT="$$proj" $(WITH_ETCD) node --test test/readme.test.mjs >/dev/null \
	  && echo "npm pack: the tarball installs into an empty project and the README examples run"
	rm -f $(NODE_TGZ)

# Release addon; bench.mjs: hits vs lru-cache; remote.mjs: remote get vs ioredis GET against
# a redis-server it starts (redis-server on PATH: `make bench` installs it).
bench-node: node-build
	cd $(NODE_DIR) && npm run build && node bench/bench.mjs && node bench/remote.mjs
