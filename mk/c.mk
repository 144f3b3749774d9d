# C binding (bindings/c, include/meshcache.h, examples/c). Targets:
#   make header           regenerate include/meshcache.h with the pinned cbindgen
#   make test-c           (run by make test) header check, C and C++ builds, the C test
#                         programs (C_TESTS, in bindings/c/tests) natively and under
#                         valgrind (each run under an etcd of its own: $(WITH_ETCD)),
#                         install into a temp prefix (c-prefix), pkg-config and CMake
#                         example, README's C programs (the first one, and the ones under
#                         ### Security and ### Membership)
#   make install PREFIX=  libmeshcache.so (with SONAME) + .a, meshcache.h, meshcache.pc,
#                         lib/cmake/meshcache/meshcacheConfig{,Version}.cmake
#   make bench-c          C get-hit cost vs the Rust API (release build), see BENCHMARKS.md
.PHONY: header header-check cbindgen c-lib c-prefix test-c install bench-c

CBINDGEN_VERSION := 0.29.4
CBINDGEN := $(HOME)/.cargo/bin/cbindgen
C_CRATE := bindings/c
C_OUT := $(CURDIR)/target/c
C_STRICT := -std=c11 -Wall -Wextra -Werror -pedantic
CXX_STRICT := -std=c++17 -Wall -Wextra -Werror -pedantic
# The C test programs: bindings/c/tests/<name>.c each, sharing tests/test_common.h.
C_TESTS := test_meshcache test_replicas test_metrics
C_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# The SONAME's version (bindings/c/build.rs): major, or 0.minor while the major is 0.
C_ABI := $(shell echo $(C_VERSION) | awk -F. '{ print ($$1 == 0) ? $$1 "." $$2 : $$1 }')
PREFIX ?= /usr/local
C_PROFILE ?= release
C_FEATURES ?=
C_CARGO_FLAGS = $(if $(filter release,$(C_PROFILE)),--release) $(if $(C_FEATURES),--features $(C_FEATURES))

cbindgen:
	@if ! $(CBINDGEN) --version 2>/dev/null | grep -qx 'cbindgen $(CBINDGEN_VERSION)'; then \
	  $(CARGO) install cbindgen --version $(CBINDGEN_VERSION) --locked; fi

header: cbindgen
	cd $(C_CRATE) && $(CBINDGEN) -q --config cbindgen.toml --output ../../include/meshcache.h

# Fails if the committed header is not what the pinned cbindgen generates.
header-check: cbindgen
	cd $(C_CRATE) && $(CBINDGEN) -q --config cbindgen.toml --output ../../include/meshcache.h --verify \
	  || { echo "include/meshcache.h is stale: run make header and commit it" >&2; exit 1; }

# Debug library with the test hooks; target/c/lib holds the SONAME link the loader looks for.
c-lib: deps
	$(CARGO) build -p meshcache-ffi --features test-hooks
	mkdir -p $(C_OUT)/lib
	ln -sf ../../debug/libmeshcache.so $(C_OUT)/lib/libmeshcache.so.$(C_ABI)
	ln -sf ../../debug/libmeshcache.so $(C_OUT)/lib/libmeshcache.so

# The TLS tests run $(MESHCACHE_GENCERT) (exported by the Makefile), and the membership
# tests need an etcd, which $(WITH_ETCD) starts for each run: both are built by gencert.
test-c: header-check c-lib gencert c-prefix
	@$(APT_INSTALL) valgrind
	$(CARGO) clippy -q -p meshcache-ffi --features test-hooks --all-targets -- -D warnings
	readelf -d target/debug/libmeshcache.so | grep -q 'SONAME.*libmeshcache.so.$(C_ABI)'
	for t in $(C_TESTS); do \
	  cc $(C_STRICT) -Iinclude $(C_CRATE)/tests/$$t.c -o $(C_OUT)/$$t -L$(C_OUT)/lib -lmeshcache -pthread \
	    || exit 1; done
	c++ $(CXX_STRICT) -Iinclude $(C_CRATE)/tests/header_check.cpp -o $(C_OUT)/header_check \
	  -L$(C_OUT)/lib -lmeshcache
	LD_LIBRARY_PATH=$(C_OUT)/lib $(C_OUT)/header_check
	@# Rust panics (injected on purpose by the panic tests) print to stderr; RUST_BACKTRACE=0 keeps that short.
	for t in $(C_TESTS); do \
	  LD_LIBRARY_PATH=$(C_OUT)/lib RUST_BACKTRACE=0 $(WITH_ETCD) $(C_OUT)/$$t | tee $(C_OUT)/$$t.log; \
	  grep -Eq '^[1-9][0-9]* passed, 0 failed$$' $(C_OUT)/$$t.log || { echo "$$t failed" >&2; exit 1; }; done
	@# No leak suppressions: the runtime's threads are joined when a cluster is freed. The two
	@# suppressions are a false report inside rustls + ring's AES-GCM (see the file); they
	@# match deep stacks, hence --num-callers.
	for t in $(C_TESTS); do \
	  LD_LIBRARY_PATH=$(C_OUT)/lib RUST_BACKTRACE=0 $(WITH_ETCD) valgrind -q --error-exitcode=1 --leak-check=full \
	    --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
	    --suppressions=$(C_CRATE)/tests/valgrind.supp --num-callers=50 \
	    $(C_OUT)/$$t | tee $(C_OUT)/$$t.valgrind.log; \
	  grep -Eq '^[1-9][0-9]* passed, 0 failed$$' $(C_OUT)/$$t.valgrind.log \
	    || { echo "$$t failed under valgrind" >&2; exit 1; }; done
	@# The example built from the temporary install prefix (c-prefix) with pkg-config, as a user would.
	PKG_CONFIG_PATH=$(C_OUT)/prefix/lib/pkgconfig cc $(C_STRICT) examples/c/hello.c -o $(C_OUT)/hello \
	  $$(PKG_CONFIG_PATH=$(C_OUT)/prefix/lib/pkgconfig pkg-config --cflags --libs meshcache)
	test "$$(LD_LIBRARY_PATH=$(C_OUT)/prefix/lib $(C_OUT)/hello)" = "user 42"
	@# Statically linked too.
	cc $(C_STRICT) examples/c/hello.c -o $(C_OUT)/hello-static \
	  $$(PKG_CONFIG_PATH=$(C_OUT)/prefix/lib/pkgconfig pkg-config --cflags meshcache) \
	  $(C_OUT)/prefix/lib/libmeshcache.a -lpthread -ldl -lm
	test "$$($(C_OUT)/hello-static)" = "user 42"
	@# And with CMake: find_package(meshcache <this version>) from the prefix, shared and static.
	rm -rf $(C_OUT)/cmake-hello $(C_OUT)/cmake-hello-new
	cmake -S examples/c -B $(C_OUT)/cmake-hello -DCMAKE_PREFIX_PATH=$(C_OUT)/prefix \
	  -DMESHCACHE_MIN_VERSION=$(C_VERSION) -DCMAKE_C_FLAGS="$(C_STRICT)" > $(C_OUT)/cmake-hello.log
	cmake --build $(C_OUT)/cmake-hello >> $(C_OUT)/cmake-hello.log
	test "$$(LD_LIBRARY_PATH=$(C_OUT)/prefix/lib $(C_OUT)/cmake-hello/hello)" = "user 42"
	test "$$($(C_OUT)/cmake-hello/hello-static)" = "user 42"
	@# A version from another major (another 0.minor) is refused.
	! cmake -S examples/c -B $(C_OUT)/cmake-hello-new -DCMAKE_PREFIX_PATH=$(C_OUT)/prefix \
	  -DMESHCACHE_MIN_VERSION=99.0 > $(C_OUT)/cmake-hello-new.log 2>&1
	grep -q 'version: $(C_VERSION)' $(C_OUT)/cmake-hello-new.log
	@# The README's C program is examples/c/hello.c, verbatim.
	awk '/^## C$$/{c=1;next} /^## /{c=0} c&&/^```c$$/{p=1;next} p&&/^```$$/{exit} p' README.md \
	  | diff -u examples/c/hello.c - || { echo "README's C program differs from examples/c/hello.c" >&2; exit 1; }
	@# The README's C Security program (the C block under ### Security in ## C), built from the
	@# install prefix and run: it starts a node with a token.
	awk '/^## C$$/{c=1;next} /^## /{c=0} c&&/^### Security$$/{s=1;next} c&&/^### /{s=0} \
	  s&&/^```c$$/{p=1;next} p&&/^```$$/{exit} p' README.md > $(C_OUT)/readme_security.c
	test -s $(C_OUT)/readme_security.c || { echo "README has no C program under ## C / ### Security" >&2; exit 1; }
	PKG_CONFIG_PATH=$(C_OUT)/prefix/lib/pkgconfig cc $(C_STRICT) $(C_OUT)/readme_security.c \
	  -o $(C_OUT)/readme_security $$(PKG_CONFIG_PATH=$(C_OUT)/prefix/lib/pkgconfig pkg-config --cflags --libs meshcache)
	test "$$(LD_LIBRARY_PATH=$(C_OUT)/prefix/lib $(C_OUT)/readme_security)" = "rejected_unauthenticated 0"
	@# The README's C Membership program (the C block under ### Membership in ## C) joins
	@# etcd://127.0.0.1:2379/myservice: built with this run's etcd endpoint in its place,
	@# from the install prefix, and run under $(WITH_ETCD).
	awk '/^## C$$/{c=1;next} /^## /{c=0} c&&/^### Membership$$/{s=1;next} c&&/^### /{s=0} \
	  s&&/^```c$$/{p=1;next} p&&/^```$$/{exit} p' README.md > $(C_OUT)/readme_membership.c
	grep -q '"etcd://127.0.0.1:2379/myservice"' $(C_OUT)/readme_membership.c \
	  || { echo "README has no C program joining etcd://127.0.0.1:2379/myservice under ## C / ### Membership" >&2; exit 1; }
	$(WITH_ETCD) sh -c 'sed "s|127.0.0.1:2379|$$MESHCACHE_TEST_ETCD|" $(C_OUT)/readme_membership.c \
	  > $(C_OUT)/readme_membership_etcd.c && \
	  PKG_CONFIG_PATH=$(C_OUT)/prefix/lib/pkgconfig cc $(C_STRICT) $(C_OUT)/readme_membership_etcd.c \
	    -o $(C_OUT)/readme_membership $$(PKG_CONFIG_PATH=$(C_OUT)/prefix/lib/pkgconfig pkg-config --cflags --libs meshcache) && \
	  out=$$(LD_LIBRARY_PATH=$(C_OUT)/prefix/lib $(C_OUT)/readme_membership) && echo "$$out" && \
	  test "$$out" = "user 42, ring etcd: 1 member(s), healthy"'
	@echo "test-c: C tests, valgrind, C++ header, install + pkg-config and CMake example, README programs: all passed"

# A temporary install prefix (the debug library with the test hooks), from which test-c
# builds the README's programs (pkg-config, CMake) and test-go the Go example.
c-prefix: deps
	@$(APT_INSTALL) cmake
	rm -rf $(C_OUT)/prefix
	$(MAKE) --no-print-directory install PREFIX=$(C_OUT)/prefix C_PROFILE=debug C_FEATURES=test-hooks

install: deps
	$(CARGO) build -p meshcache-ffi $(C_CARGO_FLAGS)
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 target/$(C_PROFILE)/libmeshcache.so $(DESTDIR)$(PREFIX)/lib/libmeshcache.so.$(C_VERSION)
	ln -sf libmeshcache.so.$(C_VERSION) $(DESTDIR)$(PREFIX)/lib/libmeshcache.so.$(C_ABI)
	ln -sf libmeshcache.so.$(C_ABI) $(DESTDIR)$(PREFIX)/lib/libmeshcache.so
	install -m 644 target/$(C_PROFILE)/libmeshcache.a $(DESTDIR)$(PREFIX)/lib/libmeshcache.a
	install -m 644 include/meshcache.h $(DESTDIR)$(PREFIX)/include/meshcache.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(C_VERSION)|' $(C_CRATE)/meshcache.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/meshcache.pc
	install -d $(DESTDIR)$(PREFIX)/lib/cmake/meshcache
	for f in meshcacheConfig meshcacheConfigVersion; do \
	  sed -e 's|@VERSION@|$(C_VERSION)|g' -e 's|@ABI@|$(C_ABI)|g' $(C_CRATE)/cmake/$$f.cmake.in \
	    > $(DESTDIR)$(PREFIX)/lib/cmake/meshcache/$$f.cmake || exit 1; done

bench-c: deps
	$(CARGO) build --release -p meshcache-ffi --features test-hooks
	mkdir -p $(C_OUT)/release-lib
	ln -sf ../../release/libmeshcache.so $(C_OUT)/release-lib/libmeshcache.so.$(C_ABI)
	ln -sf ../../release/libmeshcache.so $(C_OUT)/release-lib/libmeshcache.so
	cc -O2 $(C_STRICT) -Iinclude $(C_CRATE)/bench/bench_get.c -o $(C_OUT)/bench_get \
	  -L$(C_OUT)/release-lib -lmeshcache
	LD_LIBRARY_PATH=$(C_OUT)/release-lib $(C_OUT)/bench_get
