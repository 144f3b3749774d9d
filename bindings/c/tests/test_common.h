/* What every C test program of meshcache shares: the includes, the check macros, the
 * counting loader and the runner. Included first (it defines _POSIX_C_SOURCE and
 * MESHCACHE_TEST_HOOKS before any include), by one source file per program: the
 * functions are static, and marked unused (TEST_HELPER) so that a program that needs
 * only some of them (test_metrics.c has no etcd) builds with -Werror. */
#ifndef MESHCACHE_TEST_COMMON_H
#define MESHCACHE_TEST_COMMON_H

#define _POSIX_C_SOURCE 200809L
#define MESHCACHE_TEST_HOOKS 1

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "meshcache.h"

#define TEST_HELPER static __attribute__((unused))

static int failed_checks;

#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "  %s:%d: check failed: %s\n    last error: %s\n", __FILE__,       \
              __LINE__, #cond, meshcache_last_error_message());                          \
      failed_checks++;                                                                   \
      return;                                                                            \
    }                                                                                    \
  } while (0)

#define CHECK_RC(expr, want)                                                             \
  do {                                                                                   \
    meshcache_result rc_ = (expr);                                                       \
    if (rc_ != (want)) {                                                                 \
      fprintf(stderr, "  %s:%d: %s returned %s, want %s\n    last error: %s\n",          \
              __FILE__, __LINE__, #expr, meshcache_result_name((int)rc_),                \
              meshcache_result_name((int)(want)), meshcache_last_error_message());       \
      failed_checks++;                                                                   \
      return;                                                                            \
    }                                                                                    \
  } while (0)

#define OK(expr) CHECK_RC(expr, MESHCACHE_OK)
#define K(s) (const uint8_t *)(s), strlen(s)

TEST_HELPER int value_is(const meshcache_value *v, const char *s) {
  return v->data != NULL && v->len == strlen(s) && memcmp(v->data, s, v->len) == 0;
}

/* A loader that answers "v:<key>", counts its calls, and obeys a few key prefixes:
 * "missing" -> NotFound, "fail" -> error, "nothing" -> sets nothing, "panic" -> Rust
 * panic (test hook), "ttl" -> value with a 500 ms TTL. */
typedef struct counting_loader {
  atomic_int calls;
  atomic_int freed;
  meshcache_group *self; /* for the re-entrant tests */
  meshcache_result nested_same;
  meshcache_result nested_many;
  meshcache_result nested_other;
} counting_loader;

TEST_HELPER int has_prefix(const uint8_t *key, size_t len, const char *p) {
  size_t n = strlen(p);
  return len >= n && memcmp(key, p, n) == 0;
}

TEST_HELPER void count_loader(void *user_data, const uint8_t *key, size_t key_len,
                              meshcache_loader_out *out) {
  counting_loader *l = (counting_loader *)user_data;
  atomic_fetch_add(&l->calls, 1);
  if (has_prefix(key, key_len, "missing")) {
    meshcache_loader_out_set_not_found(out, MESHCACHE_TTL_DEFAULT);
    return;
  }
  if (has_prefix(key, key_len, "fail")) {
    meshcache_loader_out_set_error(out, "database is down");
    return;
  }
  if (has_prefix(key, key_len, "nothing")) return;
  if (has_prefix(key, key_len, "huge")) {
    static const uint8_t huge[2000];
    meshcache_loader_out_set_value(out, huge, sizeof huge, MESHCACHE_TTL_DEFAULT);
    return;
  }
  if (has_prefix(key, key_len, "panic")) {
    meshcache_loader_out_set_value(out, key, key_len, MESHCACHE_TTL_DEFAULT);
    meshcache_loader_out_inject_panic(out);
    return;
  }
  if (has_prefix(key, key_len, "reenter") && l->self != NULL) {
    meshcache_value v = {0};
    l->nested_same = meshcache_group_get(l->self, key, key_len, &v);
    meshcache_value_free(&v);
    meshcache_bytes own = {key, key_len};
    meshcache_entries *e = NULL;
    l->nested_many = meshcache_group_get_many(l->self, &own, 1, &e);
    meshcache_entries_free(e);
    l->nested_other = meshcache_group_get(l->self, K("other-key"), &v);
    meshcache_value_free(&v);
  }
  char buf[2048];
  int n = snprintf(buf, sizeof buf, "v:%.*s", (int)key_len, (const char *)key);
  uint64_t ttl = has_prefix(key, key_len, "ttl") ? 500 : MESHCACHE_TTL_DEFAULT;
  meshcache_loader_out_set_value(out, (const uint8_t *)buf, (size_t)n, ttl);
}

TEST_HELPER void count_loader_free(void *user_data) {
  atomic_fetch_add(&((counting_loader *)user_data)->freed, 1);
}

/* ---- clusters ---------------------------------------------------------------------- */

/* The bound on every wait of these tests: generous, for valgrind; nothing sleeps. */
#define BOUND_MS 20000

/* New cluster options with deadlines generous enough for a slow run (valgrind, TLS
 * handshakes in a debug build), so that only a refusal makes a get fall back. */
TEST_HELPER meshcache_cluster_options *slow_run_options(void) {
  meshcache_cluster_options *o = NULL;
  if (meshcache_cluster_options_new(&o) != MESHCACHE_OK) return NULL;
  meshcache_cluster_options_set_peer_timeout_ms(o, 30000);
  meshcache_cluster_options_set_connect_timeout_ms(o, 30000);
  return o;
}

/* The etcd of `make test-c` (each run of the tests has one of its own, from with-etcd):
 * its `host:port`, or NULL (saying why). Without it the etcd test fails, never skips. */
TEST_HELPER const char *test_etcd(void) {
  const char *ep = getenv("MESHCACHE_TEST_ETCD");
  if (ep == NULL || ep[0] == 0) {
    fprintf(stderr, "  MESHCACHE_TEST_ETCD is not set: run the C tests with `make test-c` (it "
                    "runs them under target/debug/with-etcd, which starts an etcd), or run "
                    "them under with-etcd yourself (`make gencert` builds it)\n");
    return NULL;
  }
  return ep;
}

/* Options that join the etcd `ep` under `prefix`, with a 2 s lease. */
TEST_HELPER meshcache_cluster_options *with_etcd(const char *ep, const char *prefix) {
  char spec[256];
  meshcache_cluster_options *o = slow_run_options();
  if (o == NULL) return NULL;
  snprintf(spec, sizeof spec, "etcd://%s/%s?lease_ttl=2", ep, prefix);
  if (meshcache_cluster_options_set_membership(o, spec) != MESHCACHE_OK) {
    meshcache_cluster_options_free(o);
    return NULL;
  }
  return o;
}

/* ---- runner ----------------------------------------------------------------------- */

typedef struct test_case {
  const char *name;
  void (*fn)(void);
} test_case;

#define T(name) {#name, name}

/* Runs the tests whose names contain argv[1] (all without it) and prints
 * "<n> passed, <m> failed" (what mk/c.mk greps for); the exit status. */
TEST_HELPER int run_tests(const test_case *tests, size_t n, int argc, char **argv) {
  int passed = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    if (argc > 1 && strstr(tests[i].name, argv[1]) == NULL) continue;
    int before = failed_checks;
    tests[i].fn();
    if (failed_checks == before) {
      passed++;
      printf("ok   %s\n", tests[i].name);
    } else {
      failed++;
      printf("FAIL %s\n", tests[i].name);
    }
    fflush(stdout);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return (failed == 0 && passed > 0) ? 0 : 1;
}

#endif
