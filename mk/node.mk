# node binding (issue 6): `make test-node` (run by `make test`).
#
# npm ci (pinned @napi-rs/cli and typescript; the install script's release build is
# skipped; a lock out of sync with package.json fails here), a debug build of the addon
# that also regenerates index.js / index.d.ts (a diff against git means they were stale),
# node --test (fails if it ran no test), tsc --strict on a typed example, then the npm
# packages (scripts/pack.mjs, napi-rs layout: `meshcache` plus `meshcache-linux-x64-gnu`
# with the addon, an optional dependency of the first), checked to hold a stripped addon
# of a sane size and installed offline into an empty project, where the README's examples
# run (ESM and CommonJS). The TLS tests make their certificates with $$MESHCACHE_GENCERT
# (`make gencert`, exported by the Makefile) in a temp dir; the membership tests (and the
# README's Membership example) join through an etcd that $(WITH_ETCD) (also built by
# `gencert`) starts for each `node --test` run: without MESHCACHE_TEST_ETCD they fail.
#
# `make node-pack`: the packages to publish, with the release addon (napi build --release
# --strip), in target/npm/. make test-node packs its debug build instead (stripped: the
# same layout and checks, without a second, release build of the addon).
NODE_DIR := node
NODE_ADDON := $(NODE_DIR)/meshcache.linux-x64-gnu.node

.PHONY: test-node node-build node-pack bench-node

node-build:
	cd $(NODE_DIR) && MESHCACHE_NODE_SKIP_BUILD=1 npm ci --no-audit --no-fund --loglevel=error
	cd $(NODE_DIR) && npx napi build --platform --manifest-path ../bindings/node/Cargo.toml --js index.js --dts index.d.ts -o .
	@git diff --exit-code -- $(NODE_DIR)/index.js $(NODE_DIR)/index.d.ts \
	  || { echo "node/index.js or node/index.d.ts is stale: commit the regenerated files" >&2; exit 1; }

test-node: deps gencert node-build
	cd $(NODE_DIR) && $(WITH_ETCD) node --test test/*.test.mjs 2>&1 | tee ../target/node-test.log
	@n=$$(grep -Eo '^# pass [0-9]+' target/node-test.log | awk '{print $$3}'); f=$$(grep -Eo '^# fail [0-9]+' target/node-test.log | awk '{print $$3}'); \
	  echo "node --test: $${n:-0} passed, $${f:-?} failed"; \
	  [ "$${n:-0}" -gt 0 ] && [ "$$f" = 0 ] || { echo "node --test failed or ran no tests" >&2; exit 1; }
	cd $(NODE_DIR) && ./node_modules/.bin/tsc -p test/tsconfig.json
	@out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT \
	  && cd $(NODE_DIR) && node scripts/pack.mjs --addon "$(CURDIR)/$(NODE_ADDON)" --out "$$out/tgz" >/dev/null \
	  && cd "$$out" && tar -xzf tgz/meshcache-linux-x64-gnu-0.1.0.tgz package/meshcache.linux-x64-gnu.node \
	  && { ! tar -tzf tgz/meshcache-0.1.0.tgz | grep -E '\.node$$|scripts/' \
	       || { echo "the meshcache package ships an addon or a script" >&2; exit 1; }; } \
	  && { ! readelf -S package/meshcache.linux-x64-gnu.node | grep -E '\.debug_|\.symtab' \
	       || { echo "the packed addon is not stripped" >&2; exit 1; }; } \
	  && size=$$(stat -c %s package/meshcache.linux-x64-gnu.node) \
	  && { [ "$$size" -lt $$((32 << 20)) ] || { echo "the packed addon is $$size bytes (> 32 MiB)" >&2; exit 1; }; } \
	  && mkdir proj && cd proj && npm init -y >/dev/null \
	  && npm install --offline --no-audit --no-fund --loglevel=error ../tgz/meshcache-0.1.0.tgz ../tgz/meshcache-linux-x64-gnu-0.1.0.tgz \
	  && test -f node_modules/meshcache-linux-x64-gnu/meshcache.linux-x64-gnu.node \
	  && cd "$(CURDIR)/$(NODE_DIR)" && MESHCACHE_README_PROJECT="$$out/proj" $(WITH_ETCD) node --test test/readme.test.mjs >/dev/null \
	  && echo "npm packages: meshcache + meshcache-linux-x64-gnu (stripped addon, $$size bytes) install offline into an empty project and the README examples run (ESM, CommonJS)"

# The packages to publish: the release addon, stripped, in target/npm/.
node-pack: node-build
	rm -rf target/npm
	cd $(NODE_DIR) && node scripts/pack.mjs --out "$(CURDIR)/target/npm"

# Release addon; bench.mjs: hits vs lru-cache; remote.mjs: remote get vs ioredis GET against
# a redis-server it starts (redis-server on PATH: `make bench` installs it).
bench-node: node-build
	cd $(NODE_DIR) && npm run build && node bench/bench.mjs && node bench/remote.mjs
