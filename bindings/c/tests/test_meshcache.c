/* C tests of the meshcache C ABI. Built with -std=c11 -Wall -Wextra -Werror -pedantic,
 * run natively and under valgrind by `make test-c` (mk/c.mk). No test sleeps to wait for
 * something: TTLs are driven by a manual clock, threads start together on a barrier, and
 * waits on another thread or a socket are bounded (BOUND_MS).
 *
 * The TLS test needs test certificates: `make test-c` builds `gencert` and exports its
 * path as MESHCACHE_GENCERT; run by hand, export it too (`make gencert` builds it). The
 * etcd membership test needs an etcd: `make test-c` runs the tests under
 * target/debug/with-etcd, which starts one and exports MESHCACHE_TEST_ETCD; without it
 * that test fails. Replicas, handoff and warm takeover are tested in test_replicas.c;
 * what both programs share is in test_common.h. */
#include "test_common.h"

/* A single-node cluster and a group "g" with the counting loader and `clock` (or NULL). */
typedef struct fixture {
  meshcache_cluster *cluster;
  meshcache_group *group;
  counting_loader loader;
} fixture;

static int fixture_open(fixture *f, meshcache_clock *clock) {
  memset(f, 0, sizeof *f);
  meshcache_group_options *o = NULL;
  if (meshcache_cluster_new(NULL, &f->cluster) != MESHCACHE_OK) return 0;
  if (meshcache_group_options_new(&o) != MESHCACHE_OK) return 0;
  meshcache_group_options_set_loader(o, count_loader, &f->loader, count_loader_free);
  meshcache_group_options_set_negative_ttl_ms(o, 1000);
  meshcache_group_options_set_max_key_len(o, 64);
  meshcache_group_options_set_max_value_len(o, 1024);
  if (clock != NULL) meshcache_group_options_set_clock(o, clock);
  meshcache_result rc = meshcache_group_new(f->cluster, "g", o, &f->group);
  meshcache_group_options_free(o);
  f->loader.self = f->group;
  return rc == MESHCACHE_OK;
}

static void fixture_close(fixture *f) {
  meshcache_group_free(f->group);
  meshcache_cluster_free(f->cluster);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_version_names_sizes(void) {
  CHECK(strcmp(meshcache_version(), "0.1.0") == 0);
  CHECK(strcmp(meshcache_result_name(MESHCACHE_NOT_FOUND), "MESHCACHE_NOT_FOUND") == 0);
  CHECK(strcmp(meshcache_result_name(12345), "MESHCACHE_UNKNOWN") == 0);
  /* The numbers are ABI: they must never change. */
  CHECK(MESHCACHE_OK == 0 && MESHCACHE_NOT_FOUND == 1 && MESHCACHE_LOAD == 2 &&
        MESHCACHE_PEER == 3 && MESHCACHE_TIMEOUT == 4 && MESHCACHE_INVALID_ARGUMENT == 5 &&
        MESHCACHE_CLOSED == 6 && MESHCACHE_PANIC == 7 && MESHCACHE_INSUFFICIENT_SIZE == 8);
  size_t n = 0;
  OK(meshcache_parse_size("64MiB", &n));
  CHECK(n == (size_t)64 << 20);
  n = 7;
  CHECK_RC(meshcache_parse_size("12 parsecs", &n), MESHCACHE_INVALID_ARGUMENT);
  CHECK(n == 7); /* outputs are written only on success */
  CHECK(strstr(meshcache_last_error_message(), "byte size") != NULL);
}

static void test_set_get_peek_delete(void) {
  fixture f;
  CHECK(fixture_open(&f, NULL));
  meshcache_value v = {0};
  CHECK_RC(meshcache_group_peek(f.group, K("a"), &v), MESHCACHE_NOT_FOUND);
  CHECK(v.data == NULL);
  OK(meshcache_group_set(f.group, K("a"), (const uint8_t *)"one", 3, MESHCACHE_TTL_DEFAULT));
  OK(meshcache_group_peek(f.group, K("a"), &v));
  CHECK(value_is(&v, "one"));
  meshcache_value_free(&v);
  CHECK(v.data == NULL);
  meshcache_value_free(&v); /* twice is fine */
  OK(meshcache_group_get(f.group, K("a"), &v));
  CHECK(value_is(&v, "one"));
  CHECK(atomic_load(&f.loader.calls) == 0);
  /* The value outlives the key's deletion: it is an owned reference to the bytes. */
  OK(meshcache_group_delete(f.group, K("a")));
  CHECK(value_is(&v, "one"));
  meshcache_value_free(&v);
  CHECK_RC(meshcache_group_peek(f.group, K("a"), &v), MESHCACHE_NOT_FOUND);
  OK(meshcache_group_delete(f.group, K("never-set")));
  /* get loads it now */
  OK(meshcache_group_get(f.group, K("a"), &v));
  CHECK(value_is(&v, "v:a"));
  meshcache_value_free(&v);
  CHECK(atomic_load(&f.loader.calls) == 1);
  /* an empty value is a value, with a non-NULL data pointer */
  OK(meshcache_group_set(f.group, K("empty"), NULL, 0, MESHCACHE_TTL_DEFAULT));
  OK(meshcache_group_get(f.group, K("empty"), &v));
  CHECK(v.data != NULL && v.len == 0);
  meshcache_value_free(&v);
  meshcache_group_stats s;
  OK(meshcache_group_stats_get(f.group, &s));
  CHECK(s.loads == 1 && s.hits >= 3 && s.main.items == 2 && s.hot.items == 0 &&
        s.capacity == (uint64_t)64 << 20);
  CHECK(s.main.hits == s.hits && s.main.gets == s.gets && s.main.bytes > 0);
  fixture_close(&f);
  CHECK(atomic_load(&f.loader.freed) == 1);
}

static void test_ttl_with_manual_clock(void) {
  meshcache_clock *clock = NULL;
  OK(meshcache_clock_new(1000000, &clock));
  fixture f;
  CHECK(fixture_open(&f, clock));
  meshcache_value v = {0};
  /* set with a TTL */
  OK(meshcache_group_set(f.group, K("s"), (const uint8_t *)"x", 1, 100));
  OK(meshcache_clock_advance(clock, 99));
  OK(meshcache_group_peek(f.group, K("s"), &v));
  meshcache_value_free(&v);
  OK(meshcache_clock_advance(clock, 2));
  CHECK_RC(meshcache_group_peek(f.group, K("s"), &v), MESHCACHE_NOT_FOUND);
  /* a never-expiring set survives a long time */
  OK(meshcache_group_set(f.group, K("forever"), (const uint8_t *)"x", 1, MESHCACHE_TTL_NEVER));
  /* the loader's own TTL (500 ms for "ttl*" keys) */
  OK(meshcache_group_get(f.group, K("ttl-k"), &v));
  meshcache_value_free(&v);
  OK(meshcache_clock_advance(clock, 499));
  OK(meshcache_group_get(f.group, K("ttl-k"), &v));
  meshcache_value_free(&v);
  CHECK(atomic_load(&f.loader.calls) == 1);
  OK(meshcache_clock_advance(clock, 2));
  OK(meshcache_group_get(f.group, K("ttl-k"), &v));
  CHECK(value_is(&v, "v:ttl-k"));
  meshcache_value_free(&v);
  CHECK(atomic_load(&f.loader.calls) == 2);
  /* negative caching for the group's negative TTL (1000 ms) */
  CHECK_RC(meshcache_group_get(f.group, K("missing-1"), &v), MESHCACHE_NOT_FOUND);
  CHECK_RC(meshcache_group_get(f.group, K("missing-1"), &v), MESHCACHE_NOT_FOUND);
  CHECK(atomic_load(&f.loader.calls) == 3);
  OK(meshcache_clock_advance(clock, 1001));
  CHECK_RC(meshcache_group_get(f.group, K("missing-1"), &v), MESHCACHE_NOT_FOUND);
  CHECK(atomic_load(&f.loader.calls) == 4);
  OK(meshcache_clock_advance(clock, (uint64_t)1000 * 3600 * 24 * 365));
  OK(meshcache_group_peek(f.group, K("forever"), &v));
  meshcache_value_free(&v);
  uint64_t now = 0;
  OK(meshcache_clock_now(clock, &now));
  OK(meshcache_clock_set(clock, now + 1));
  meshcache_clock_free(clock); /* the group keeps its own reference */
  CHECK_RC(meshcache_group_peek(f.group, K("s"), &v), MESHCACHE_NOT_FOUND);
  fixture_close(&f);
}

static void test_default_ttl(void) {
  meshcache_clock *clock = NULL;
  meshcache_cluster *c = NULL;
  meshcache_group_options *o = NULL;
  meshcache_group *g = NULL;
  meshcache_value v = {0};
  OK(meshcache_clock_new(5000, &clock));
  OK(meshcache_cluster_new(NULL, &c));
  OK(meshcache_group_options_new(&o));
  OK(meshcache_group_options_set_default_ttl_ms(o, 50));
  OK(meshcache_group_options_set_capacity_str(o, "1MiB"));
  OK(meshcache_group_options_set_clock(o, clock));
  OK(meshcache_group_new(c, "ttl", o, &g));
  meshcache_group_options_free(o);
  OK(meshcache_group_set(g, K("k"), (const uint8_t *)"x", 1, MESHCACHE_TTL_DEFAULT));
  OK(meshcache_clock_advance(clock, 49));
  OK(meshcache_group_peek(g, K("k"), &v));
  meshcache_value_free(&v);
  OK(meshcache_clock_advance(clock, 2));
  CHECK_RC(meshcache_group_peek(g, K("k"), &v), MESHCACHE_NOT_FOUND);
  /* no loader: a miss is NotFound */
  CHECK_RC(meshcache_group_get(g, K("k"), &v), MESHCACHE_NOT_FOUND);
  meshcache_group_stats s;
  OK(meshcache_group_stats_get(g, &s));
  CHECK(s.capacity == 1u << 20);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
  meshcache_clock_free(clock);
}

static void test_loader_errors(void) {
  fixture f;
  CHECK(fixture_open(&f, NULL));
  meshcache_value v = {0};
  CHECK_RC(meshcache_group_get(f.group, K("missing-x"), &v), MESHCACHE_NOT_FOUND);
  CHECK(v.data == NULL);
  CHECK_RC(meshcache_group_get(f.group, K("fail-x"), &v), MESHCACHE_LOAD);
  CHECK(strstr(meshcache_last_error_message(), "database is down") != NULL);
  CHECK(v.data == NULL);
  /* errors are not cached: the next get calls the loader again */
  CHECK_RC(meshcache_group_get(f.group, K("fail-x"), &v), MESHCACHE_LOAD);
  CHECK(atomic_load(&f.loader.calls) == 3);
  CHECK_RC(meshcache_group_get(f.group, K("nothing-x"), &v), MESHCACHE_LOAD);
  CHECK(strstr(meshcache_last_error_message(), "no result") != NULL);
  /* an oversized loaded value (max 1024) */
  CHECK_RC(meshcache_group_get(f.group, K("huge-1"), &v), MESHCACHE_INVALID_ARGUMENT);
  CHECK(strstr(meshcache_last_error_message(), "too large") != NULL);
  meshcache_group_stats s;
  OK(meshcache_group_stats_get(f.group, &s));
  CHECK(s.load_errors == 4 && s.not_found == 1);
  fixture_close(&f);
}

static void test_panic_becomes_result(void) {
  CHECK_RC(meshcache_test_panic(), MESHCACHE_PANIC);
  CHECK(strstr(meshcache_last_error_message(), "panic") != NULL);
  fixture f;
  CHECK(fixture_open(&f, NULL));
  meshcache_value v = {0};
  CHECK_RC(meshcache_group_get(f.group, K("panic-1"), &v), MESHCACHE_PANIC);
  CHECK(strstr(meshcache_last_error_message(), "injected") != NULL);
  /* the key is not stuck and the process is fine: it loads again (and panics again) */
  CHECK_RC(meshcache_group_get(f.group, K("panic-1"), &v), MESHCACHE_PANIC);
  CHECK(atomic_load(&f.loader.calls) == 2);
  OK(meshcache_group_get(f.group, K("after-panic"), &v));
  CHECK(value_is(&v, "v:after-panic"));
  meshcache_value_free(&v);
  fixture_close(&f);
}

static void test_loader_reentry(void) {
  fixture f;
  CHECK(fixture_open(&f, NULL));
  meshcache_value v = {0};
  f.loader.nested_same = MESHCACHE_OK;
  f.loader.nested_many = MESHCACHE_OK;
  f.loader.nested_other = MESHCACHE_UNKNOWN;
  OK(meshcache_group_get(f.group, K("reenter-1"), &v));
  CHECK(value_is(&v, "v:reenter-1"));
  meshcache_value_free(&v);
  /* the same key from its own loader is refused (by the core) instead of deadlocking,
   * through get and get_many... */
  CHECK(f.loader.nested_same == MESHCACHE_INVALID_ARGUMENT);
  CHECK(f.loader.nested_many == MESHCACHE_INVALID_ARGUMENT);
  /* ...and another key loads (on another thread) */
  CHECK(f.loader.nested_other == MESHCACHE_OK);
  OK(meshcache_group_peek(f.group, K("other-key"), &v));
  meshcache_value_free(&v);
  fixture_close(&f);
}

static void test_get_many(void) {
  fixture f;
  CHECK(fixture_open(&f, NULL));
  OK(meshcache_group_set(f.group, K("b"), (const uint8_t *)"B", 1, MESHCACHE_TTL_DEFAULT));
  meshcache_bytes keys[4] = {{(const uint8_t *)"a", 1},
                             {(const uint8_t *)"b", 1},
                             {(const uint8_t *)"missing-m", 9},
                             {(const uint8_t *)"a", 1}};
  meshcache_entries *e = NULL;
  OK(meshcache_group_get_many(f.group, keys, 4, &e));
  CHECK(meshcache_entries_len(e) == 2);
  meshcache_bytes k, val;
  OK(meshcache_entries_get(e, 0, &k, &val));
  CHECK(k.len == 1 && k.data[0] == 'a' && val.len == 3 && memcmp(val.data, "v:a", 3) == 0);
  OK(meshcache_entries_get(e, 1, &k, NULL));
  CHECK(k.len == 1 && k.data[0] == 'b');
  CHECK_RC(meshcache_entries_get(e, 2, &k, &val), MESHCACHE_INVALID_ARGUMENT);
  meshcache_value v = {0};
  OK(meshcache_entries_value(e, 1, &v));
  meshcache_entries_free(e);
  CHECK(value_is(&v, "B")); /* outlives the entries */
  meshcache_value_free(&v);
  CHECK(atomic_load(&f.loader.calls) == 2);
  /* an error other than NotFound fails the call; no keys is fine */
  keys[1].data = (const uint8_t *)"fail-m";
  keys[1].len = 6;
  e = NULL;
  CHECK_RC(meshcache_group_get_many(f.group, keys, 2, &e), MESHCACHE_LOAD);
  CHECK(e == NULL);
  OK(meshcache_group_get_many(f.group, NULL, 0, &e));
  CHECK(meshcache_entries_len(e) == 0);
  meshcache_entries_free(e);
  fixture_close(&f);
}

static void test_limits(void) {
  fixture f;
  CHECK(fixture_open(&f, NULL));
  meshcache_value v = {0};
  char key[65];
  memset(key, 'k', 64);
  key[64] = 0;
  OK(meshcache_group_set(f.group, K(key), (const uint8_t *)"x", 1, 0));
  key[63] = 0;
  OK(meshcache_group_peek(f.group, (const uint8_t *)key, 63, &v) == MESHCACHE_NOT_FOUND
         ? MESHCACHE_OK
         : MESHCACHE_UNKNOWN);
  CHECK_RC(meshcache_group_get(f.group, (const uint8_t *)key, 65, &v), MESHCACHE_INVALID_ARGUMENT);
  CHECK_RC(meshcache_group_get(f.group, (const uint8_t *)"", 0, &v), MESHCACHE_INVALID_ARGUMENT);
  CHECK_RC(meshcache_group_get(f.group, NULL, 0, &v), MESHCACHE_INVALID_ARGUMENT);
  static uint8_t big[1025];
  CHECK_RC(meshcache_group_set(f.group, K("k"), big, sizeof big, 0), MESHCACHE_INVALID_ARGUMENT);
  OK(meshcache_group_set(f.group, K("k"), big, 1024, 0));
  CHECK(v.data == NULL);
  fixture_close(&f);
}

static void test_closed_after_shutdown(void) {
  fixture f;
  CHECK(fixture_open(&f, NULL));
  meshcache_value v = {0};
  OK(meshcache_group_set(f.group, K("a"), (const uint8_t *)"1", 1, 0));
  OK(meshcache_cluster_shutdown(f.cluster));
  OK(meshcache_cluster_shutdown(f.cluster)); /* idempotent */
  CHECK_RC(meshcache_group_get(f.group, K("a"), &v), MESHCACHE_CLOSED);
  CHECK_RC(meshcache_group_peek(f.group, K("a"), &v), MESHCACHE_CLOSED);
  CHECK_RC(meshcache_group_set(f.group, K("a"), (const uint8_t *)"1", 1, 0), MESHCACHE_CLOSED);
  CHECK_RC(meshcache_group_delete(f.group, K("a")), MESHCACHE_CLOSED);
  meshcache_entries *e = NULL;
  meshcache_bytes key = {(const uint8_t *)"a", 1};
  CHECK_RC(meshcache_group_get_many(f.group, &key, 1, &e), MESHCACHE_CLOSED);
  const char *peers[1] = {"127.0.0.1:1"};
  CHECK_RC(meshcache_cluster_set_peers(f.cluster, peers, 1), MESHCACHE_CLOSED);
  meshcache_group *g2 = NULL;
  CHECK_RC(meshcache_group_new(f.cluster, "g2", NULL, &g2), MESHCACHE_CLOSED);
  CHECK(g2 == NULL);
  meshcache_group_stats s;
  OK(meshcache_group_stats_get(f.group, &s));
  CHECK(v.data == NULL);
  /* freeing the cluster first is fine: the group handle only reports CLOSED */
  meshcache_cluster_free(f.cluster);
  CHECK_RC(meshcache_group_get(f.group, K("a"), &v), MESHCACHE_CLOSED);
  meshcache_group_free(f.group);
  CHECK(atomic_load(&f.loader.freed) == 1);
}

static void test_cluster_options_and_addrs(void) {
  meshcache_cluster_options *o = NULL;
  meshcache_cluster *c = NULL;
  OK(meshcache_cluster_options_new(&o));
  OK(meshcache_cluster_options_set_listen(o, "127.0.0.1:0"));
  OK(meshcache_cluster_options_set_peer_timeout_ms(o, 2000));
  OK(meshcache_cluster_options_set_connect_timeout_ms(o, 1000));
  OK(meshcache_cluster_options_set_retries(o, 2, 5));
  OK(meshcache_cluster_options_set_breaker(o, 3, 100));
  OK(meshcache_cluster_options_set_max_message_size(o, 1 << 20));
  OK(meshcache_cluster_options_set_vnodes(o, 64));
  OK(meshcache_cluster_options_set_worker_threads(o, 1));
  OK(meshcache_cluster_new(o, &c));
  char addr[64], adv[64];
  size_t n = 0, m = 0;
  OK(meshcache_cluster_local_addr(c, addr, sizeof addr, &n));
  CHECK(n == strlen(addr) && strncmp(addr, "127.0.0.1:", 10) == 0 && strcmp(addr, "127.0.0.1:0") != 0);
  OK(meshcache_cluster_advertise_addr(c, adv, sizeof adv, &m));
  CHECK(strcmp(addr, adv) == 0);
  char tiny[4] = "abc";
  size_t t = 99;
  CHECK_RC(meshcache_cluster_local_addr(c, tiny, sizeof tiny, &t), MESHCACHE_INSUFFICIENT_SIZE);
  CHECK(t == 99 && strcmp(tiny, "abc") == 0);
  meshcache_cluster_stats *s = NULL;
  OK(meshcache_cluster_stats_get(c, &s));
  CHECK(meshcache_cluster_stats_peers_len(s) == 0);
  CHECK(strcmp(meshcache_cluster_stats_node(s), adv) == 0);
  meshcache_cluster_stats_free(s);
  meshcache_cluster_free(c);
  /* a bad address, a wildcard without advertise */
  c = NULL;
  OK(meshcache_cluster_options_set_listen(o, "not an address"));
  CHECK_RC(meshcache_cluster_new(o, &c), MESHCACHE_INVALID_ARGUMENT);
  OK(meshcache_cluster_options_set_listen(o, "0.0.0.0:0"));
  CHECK_RC(meshcache_cluster_new(o, &c), MESHCACHE_INVALID_ARGUMENT);
  OK(meshcache_cluster_options_set_advertise(o, "127.0.0.1:1"));
  OK(meshcache_cluster_options_add_peer(o, "127.0.0.1:1"));
  OK(meshcache_cluster_new(o, &c));
  OK(meshcache_cluster_advertise_addr(c, adv, sizeof adv, &m));
  CHECK(strcmp(adv, "127.0.0.1:1") == 0);
  const char *bad[1] = {"no port"};
  CHECK_RC(meshcache_cluster_set_peers(c, bad, 1), MESHCACHE_INVALID_ARGUMENT);
  OK(meshcache_cluster_set_peers(c, NULL, 0));
  meshcache_group *g = NULL, *dup = NULL;
  OK(meshcache_group_new(c, "same", NULL, &g));
  CHECK_RC(meshcache_group_new(c, "same", NULL, &dup), MESHCACHE_INVALID_ARGUMENT);
  CHECK_RC(meshcache_group_new(c, "", NULL, &dup), MESHCACHE_INVALID_ARGUMENT);
  CHECK(dup == NULL);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
  meshcache_cluster_options_free(o);
}

/* ---- three nodes ------------------------------------------------------------------ */

#define NODES 3
#define CLUSTER_KEYS 60

static void test_three_node_cluster(void) {
  meshcache_cluster *c[NODES] = {0};
  meshcache_group *g[NODES] = {0};
  counting_loader loaders[NODES];
  char addrs[NODES][64];
  const char *peers[NODES];
  memset(loaders, 0, sizeof loaders);
  for (int i = 0; i < NODES; i++) {
    meshcache_cluster_options *o = NULL;
    size_t n;
    OK(meshcache_cluster_options_new(&o));
    /* generous deadlines so that a slow run (valgrind) never falls back to local loads */
    OK(meshcache_cluster_options_set_peer_timeout_ms(o, 30000));
    OK(meshcache_cluster_options_set_connect_timeout_ms(o, 30000));
    OK(meshcache_cluster_new(o, &c[i]));
    meshcache_cluster_options_free(o);
    OK(meshcache_cluster_advertise_addr(c[i], addrs[i], sizeof addrs[i], &n));
    peers[i] = addrs[i];
  }
  for (int i = 0; i < NODES; i++) {
    meshcache_group_options *o = NULL;
    OK(meshcache_cluster_set_peers(c[i], peers, NODES));
    OK(meshcache_group_options_new(&o));
    OK(meshcache_group_options_set_loader(o, count_loader, &loaders[i], count_loader_free));
    OK(meshcache_group_options_set_hot_sample(o, 1));
    OK(meshcache_group_new(c[i], "users", o, &g[i]));
    meshcache_group_options_free(o);
  }
  /* every node reads every key: each key is loaded once in the whole cluster */
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < NODES; i++) {
      for (int k = 0; k < CLUSTER_KEYS; k++) {
        char key[32], want[40];
        snprintf(key, sizeof key, "user-%d", k);
        snprintf(want, sizeof want, "v:%s", key);
        meshcache_value v = {0};
        OK(meshcache_group_get(g[i], K(key), &v));
        CHECK(value_is(&v, want));
        meshcache_value_free(&v);
      }
    }
  }
  int total = 0, busy = 0;
  for (int i = 0; i < NODES; i++) {
    int n = atomic_load(&loaders[i].calls);
    total += n;
    busy += n > 0;
  }
  CHECK(total == CLUSTER_KEYS);
  CHECK(busy == NODES); /* the keys are spread over the nodes */
  /* get_many across owners */
  meshcache_bytes keys[CLUSTER_KEYS];
  char names[CLUSTER_KEYS][32];
  for (int k = 0; k < CLUSTER_KEYS; k++) {
    snprintf(names[k], sizeof names[k], "user-%d", k);
    keys[k].data = (const uint8_t *)names[k];
    keys[k].len = strlen(names[k]);
  }
  meshcache_entries *e = NULL;
  OK(meshcache_group_get_many(g[1], keys, CLUSTER_KEYS, &e));
  CHECK(meshcache_entries_len(e) == CLUSTER_KEYS);
  meshcache_entries_free(e);
  /* set on one node is seen on every node; delete on another reaches every node */
  meshcache_value v = {0};
  for (int k = 0; k < 6; k++) {
    char key[32];
    snprintf(key, sizeof key, "user-%d", k);
    OK(meshcache_group_set(g[0], K(key), (const uint8_t *)"new", 3, MESHCACHE_TTL_DEFAULT));
    for (int i = 0; i < NODES; i++) {
      OK(meshcache_group_get(g[i], K(key), &v));
      CHECK(value_is(&v, "new"));
      meshcache_value_free(&v);
    }
    OK(meshcache_group_delete(g[2], K(key)));
    for (int i = 0; i < NODES; i++) {
      CHECK_RC(meshcache_group_peek(g[i], K(key), &v), MESHCACHE_NOT_FOUND);
    }
  }
  CHECK(total == CLUSTER_KEYS);
  meshcache_cluster_stats *s = NULL;
  OK(meshcache_cluster_stats_get(c[0], &s));
  CHECK(strcmp(meshcache_cluster_stats_node(s), addrs[0]) == 0);
  CHECK(meshcache_cluster_stats_peers_len(s) == NODES - 1);
  uint64_t requests = 0;
  for (size_t i = 0; i < meshcache_cluster_stats_peers_len(s); i++) {
    meshcache_peer_stats p;
    OK(meshcache_cluster_stats_peer(s, i, &p));
    CHECK(strcmp(p.addr, addrs[1]) == 0 || strcmp(p.addr, addrs[2]) == 0);
    CHECK(strcmp(p.breaker, "closed") == 0);
    CHECK(p.failures == 0 && p.rejected == 0 && p.breaker_opened == 0);
    requests += p.requests;
  }
  CHECK(requests > 0);
  meshcache_cluster_stats_free(s);
  for (int i = 0; i < NODES; i++) OK(meshcache_cluster_shutdown(c[i]));
  for (int i = 0; i < NODES; i++) {
    meshcache_group_free(g[i]);
    meshcache_cluster_free(c[i]);
    CHECK(atomic_load(&loaders[i].freed) == 1);
  }
}

/* ---- 8 threads -------------------------------------------------------------------- */

#define THREADS 8
#define THREAD_KEYS 50

typedef struct thread_arg {
  meshcache_group *group;
  pthread_barrier_t *barrier;
  int id;
  int errors;
} thread_arg;

static void *reader(void *p) {
  thread_arg *a = (thread_arg *)p;
  pthread_barrier_wait(a->barrier);
  for (int r = 0; r < 4; r++) {
    for (int k = 0; k < THREAD_KEYS; k++) {
      /* threads walk the keys from different starting points, so that they collide */
      int key_i = (k + a->id * 7) % THREAD_KEYS;
      char key[32], want[40];
      snprintf(key, sizeof key, "t-%d", key_i);
      snprintf(want, sizeof want, "v:%s", key);
      meshcache_value v = {0};
      if (meshcache_group_get(a->group, K(key), &v) != MESHCACHE_OK || !value_is(&v, want)) {
        a->errors++;
      }
      meshcache_value_free(&v);
    }
  }
  return NULL;
}

static void test_eight_threads(void) {
  fixture f;
  CHECK(fixture_open(&f, NULL));
  pthread_t t[THREADS];
  thread_arg args[THREADS];
  pthread_barrier_t barrier;
  CHECK(pthread_barrier_init(&barrier, NULL, THREADS) == 0);
  for (int i = 0; i < THREADS; i++) {
    args[i].group = f.group;
    args[i].barrier = &barrier;
    args[i].id = i;
    args[i].errors = 0;
    CHECK(pthread_create(&t[i], NULL, reader, &args[i]) == 0);
  }
  int errors = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(t[i], NULL);
    errors += args[i].errors;
  }
  pthread_barrier_destroy(&barrier);
  CHECK(errors == 0);
  CHECK(atomic_load(&f.loader.calls) == THREAD_KEYS); /* singleflight: once per key */
  meshcache_group_stats s;
  OK(meshcache_group_stats_get(f.group, &s));
  CHECK(s.gets == THREADS * 4 * THREAD_KEYS);
  fixture_close(&f);
}

/* ---- NULL and bad arguments to every function ------------------------------------ */

static void test_null_and_bad_arguments(void) {
  const meshcache_result INV = MESHCACHE_INVALID_ARGUMENT;
  fixture f;
  CHECK(fixture_open(&f, NULL));
  meshcache_value v = {0};
  meshcache_entries *e = NULL;
  meshcache_clock *clock = NULL;
  meshcache_cluster_options *co = NULL;
  meshcache_group_options *go = NULL;
  meshcache_group *g = NULL;
  meshcache_cluster *c = NULL;
  size_t n = 0;
  uint64_t u = 0;
  char buf[64];
  meshcache_group_stats gs;
  meshcache_cluster_stats *cs = NULL;
  meshcache_peer_stats ps;
  meshcache_bytes kb = {NULL, 3};

  CHECK_RC(meshcache_parse_size(NULL, &n), INV);
  CHECK_RC(meshcache_parse_size("1", NULL), INV);
  CHECK(meshcache_last_error_message() != NULL);
  /* clock */
  CHECK_RC(meshcache_clock_new(0, NULL), INV);
  CHECK_RC(meshcache_clock_advance(NULL, 1), INV);
  CHECK_RC(meshcache_clock_set(NULL, 1), INV);
  CHECK_RC(meshcache_clock_now(NULL, &u), INV);
  OK(meshcache_clock_new(0, &clock));
  CHECK_RC(meshcache_clock_now(clock, NULL), INV);
  meshcache_clock_free(clock);
  meshcache_clock_free(NULL);
  /* cluster options */
  CHECK_RC(meshcache_cluster_options_new(NULL), INV);
  CHECK_RC(meshcache_cluster_options_set_listen(NULL, "127.0.0.1:0"), INV);
  CHECK_RC(meshcache_cluster_options_set_advertise(NULL, "127.0.0.1:0"), INV);
  CHECK_RC(meshcache_cluster_options_add_peer(NULL, "127.0.0.1:0"), INV);
  CHECK_RC(meshcache_cluster_options_set_peer_timeout_ms(NULL, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_connect_timeout_ms(NULL, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_retries(NULL, 1, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_breaker(NULL, 1, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_max_message_size(NULL, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_vnodes(NULL, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_worker_threads(NULL, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_token(NULL, "t"), INV);
  CHECK_RC(meshcache_cluster_options_set_token_file(NULL, "/t"), INV);
  CHECK_RC(meshcache_cluster_options_set_previous_token(NULL, "t"), INV);
  CHECK_RC(meshcache_cluster_options_set_tls(NULL, "c", "k", "ca"), INV);
  CHECK_RC(meshcache_cluster_options_set_tls_client_auth(NULL, true), INV);
  CHECK_RC(meshcache_cluster_options_set_tls_server_name(NULL, "n"), INV);
  CHECK_RC(meshcache_cluster_options_set_shutdown_grace_ms(NULL, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_handshake_timeout_ms(NULL, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_idle_timeout_ms(NULL, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_max_peer_requests(NULL, 1), INV);
  OK(meshcache_cluster_options_new(&co));
  CHECK_RC(meshcache_cluster_options_set_listen(co, NULL), INV);
  CHECK_RC(meshcache_cluster_options_set_listen(co, "\xff\xfe"), INV); /* not UTF-8 */
  CHECK_RC(meshcache_cluster_options_set_advertise(co, NULL), INV);
  CHECK_RC(meshcache_cluster_options_add_peer(co, NULL), INV);
  CHECK_RC(meshcache_cluster_options_set_token(co, NULL), INV);
  CHECK_RC(meshcache_cluster_options_set_token(co, "\xff"), INV);
  CHECK_RC(meshcache_cluster_options_set_token_file(co, NULL), INV);
  CHECK_RC(meshcache_cluster_options_set_token_file(co, "\xff"), INV);
  CHECK_RC(meshcache_cluster_options_set_previous_token(co, NULL), INV);
  CHECK_RC(meshcache_cluster_options_set_previous_token(co, "\xff"), INV);
  CHECK_RC(meshcache_cluster_options_set_tls(co, NULL, "k", "ca"), INV);
  CHECK_RC(meshcache_cluster_options_set_tls(co, "c", NULL, "ca"), INV);
  CHECK_RC(meshcache_cluster_options_set_tls(co, "c", "k", NULL), INV);
  CHECK_RC(meshcache_cluster_options_set_tls(co, "c", "k", "\xff"), INV);
  CHECK_RC(meshcache_cluster_options_set_tls_server_name(co, NULL), INV);
  CHECK_RC(meshcache_cluster_options_set_tls_server_name(co, "\xff"), INV);
  /* a failed setter records nothing: these options still start a node */
  OK(meshcache_cluster_new(co, &c));
  meshcache_cluster_free(c);
  c = NULL;
  meshcache_cluster_options_free(co);
  meshcache_cluster_options_free(NULL);
  /* cluster */
  CHECK_RC(meshcache_cluster_new(NULL, NULL), INV);
  CHECK_RC(meshcache_cluster_set_peers(NULL, NULL, 0), INV);
  CHECK_RC(meshcache_cluster_set_peers(f.cluster, NULL, 2), INV);
  const char *null_peer[1] = {NULL};
  CHECK_RC(meshcache_cluster_set_peers(f.cluster, null_peer, 1), INV);
  CHECK_RC(meshcache_cluster_local_addr(NULL, buf, sizeof buf, &n), INV);
  CHECK_RC(meshcache_cluster_local_addr(f.cluster, NULL, sizeof buf, &n), INV);
  CHECK_RC(meshcache_cluster_local_addr(f.cluster, buf, sizeof buf, NULL), INV);
  CHECK_RC(meshcache_cluster_local_addr(f.cluster, buf, 0, &n), MESHCACHE_INSUFFICIENT_SIZE);
  CHECK_RC(meshcache_cluster_advertise_addr(NULL, buf, sizeof buf, &n), INV);
  CHECK_RC(meshcache_cluster_advertise_addr(f.cluster, NULL, sizeof buf, &n), INV);
  CHECK_RC(meshcache_cluster_advertise_addr(f.cluster, buf, sizeof buf, NULL), INV);
  CHECK_RC(meshcache_cluster_stats_get(NULL, &cs), INV);
  CHECK_RC(meshcache_cluster_stats_get(f.cluster, NULL), INV);
  CHECK(cs == NULL);
  CHECK(strcmp(meshcache_cluster_stats_node(NULL), "") == 0);
  CHECK(meshcache_cluster_stats_peers_len(NULL) == 0);
  CHECK_RC(meshcache_cluster_stats_peer(NULL, 0, &ps), INV);
  OK(meshcache_cluster_stats_get(f.cluster, &cs));
  CHECK_RC(meshcache_cluster_stats_peer(cs, 0, &ps), INV); /* no peers */
  CHECK_RC(meshcache_cluster_stats_peer(cs, 0, NULL), INV);
  meshcache_server_stats ss;
  CHECK_RC(meshcache_cluster_stats_server(NULL, &ss), INV);
  CHECK_RC(meshcache_cluster_stats_server(cs, NULL), INV);
  meshcache_cluster_stats_free(cs);
  meshcache_cluster_stats_free(NULL);
  CHECK_RC(meshcache_cluster_shutdown(NULL), INV);
  meshcache_cluster_free(NULL);
  CHECK(c == NULL);
  /* group options */
  CHECK_RC(meshcache_group_options_new(NULL), INV);
  CHECK_RC(meshcache_group_options_set_capacity(NULL, 1), INV);
  CHECK_RC(meshcache_group_options_set_capacity_str(NULL, "1"), INV);
  CHECK_RC(meshcache_group_options_set_default_ttl_ms(NULL, 1), INV);
  CHECK_RC(meshcache_group_options_set_negative_ttl_ms(NULL, 1), INV);
  CHECK_RC(meshcache_group_options_set_max_key_len(NULL, 1), INV);
  CHECK_RC(meshcache_group_options_set_max_value_len(NULL, 1), INV);
  CHECK_RC(meshcache_group_options_set_hot_sample(NULL, 1), INV);
  CHECK_RC(meshcache_group_options_set_loader(NULL, count_loader, NULL, NULL), INV);
  CHECK_RC(meshcache_group_options_set_clock(NULL, NULL), INV);
  OK(meshcache_group_options_new(&go));
  CHECK_RC(meshcache_group_options_set_capacity_str(go, NULL), INV);
  CHECK_RC(meshcache_group_options_set_capacity_str(go, "lots"), INV);
  counting_loader unused;
  memset(&unused, 0, sizeof unused);
  CHECK_RC(meshcache_group_options_set_loader(go, NULL, &unused, count_loader_free), INV);
  CHECK(atomic_load(&unused.freed) == 0); /* not taken on failure */
  CHECK_RC(meshcache_group_options_set_clock(go, NULL), INV);
  /* replacing a loader releases the old one's user data */
  OK(meshcache_group_options_set_loader(go, count_loader, &unused, count_loader_free));
  OK(meshcache_group_options_set_loader(go, count_loader, &unused, NULL));
  CHECK(atomic_load(&unused.freed) == 1);
  meshcache_group_options_free(go);
  meshcache_group_options_free(NULL);
  /* group */
  CHECK_RC(meshcache_group_new(NULL, "x", NULL, &g), INV);
  CHECK_RC(meshcache_group_new(f.cluster, NULL, NULL, &g), INV);
  CHECK_RC(meshcache_group_new(f.cluster, "x", NULL, NULL), INV);
  CHECK(g == NULL);
  meshcache_group_free(NULL);
  CHECK_RC(meshcache_group_get(NULL, K("a"), &v), INV);
  CHECK_RC(meshcache_group_get(f.group, NULL, 1, &v), INV);
  CHECK_RC(meshcache_group_get(f.group, K("a"), NULL), INV);
  CHECK_RC(meshcache_group_peek(NULL, K("a"), &v), INV);
  CHECK_RC(meshcache_group_peek(f.group, NULL, 1, &v), INV);
  CHECK_RC(meshcache_group_peek(f.group, K("a"), NULL), INV);
  CHECK_RC(meshcache_group_get_many(NULL, &kb, 1, &e), INV);
  CHECK_RC(meshcache_group_get_many(f.group, NULL, 1, &e), INV);
  CHECK_RC(meshcache_group_get_many(f.group, &kb, 1, &e), INV); /* NULL key data, len 3 */
  CHECK_RC(meshcache_group_get_many(f.group, &kb, 0, NULL), INV);
  CHECK_RC(meshcache_group_set(NULL, K("a"), (const uint8_t *)"x", 1, 0), INV);
  CHECK_RC(meshcache_group_set(f.group, NULL, 1, (const uint8_t *)"x", 1, 0), INV);
  CHECK_RC(meshcache_group_set(f.group, K("a"), NULL, 1, 0), INV);
  CHECK_RC(meshcache_group_delete(NULL, K("a")), INV);
  CHECK_RC(meshcache_group_delete(f.group, NULL, 1), INV);
  CHECK_RC(meshcache_group_stats_get(NULL, &gs), INV);
  CHECK_RC(meshcache_group_stats_get(f.group, NULL), INV);
  /* loader out (outside a loader only NULL can be passed) */
  CHECK_RC(meshcache_loader_out_set_value(NULL, (const uint8_t *)"x", 1, 0), INV);
  CHECK_RC(meshcache_loader_out_set_not_found(NULL, 0), INV);
  CHECK_RC(meshcache_loader_out_set_error(NULL, "x"), INV);
  CHECK_RC(meshcache_loader_out_inject_panic(NULL), INV);
  /* values and entries */
  meshcache_value_free(NULL);
  meshcache_value_free(&v);
  CHECK(meshcache_entries_len(NULL) == 0);
  CHECK_RC(meshcache_entries_get(NULL, 0, NULL, NULL), INV);
  CHECK_RC(meshcache_entries_value(NULL, 0, &v), INV);
  OK(meshcache_group_get_many(f.group, NULL, 0, &e));
  CHECK_RC(meshcache_entries_value(e, 0, NULL), INV);
  CHECK_RC(meshcache_entries_value(e, 0, &v), INV);
  meshcache_entries_free(e);
  meshcache_entries_free(NULL);
  double d1, d2, d3;
  CHECK_RC(meshcache_bench_rust_get_hit(NULL, K("a"), 1, &d1, &d2, &d3), INV);
  CHECK(v.data == NULL);
  fixture_close(&f);
}

/* Values in the loader's bad-argument paths, from inside a loader. */
static void bad_out_loader(void *user_data, const uint8_t *key, size_t key_len,
                           meshcache_loader_out *out) {
  int *bad = (int *)user_data;
  (void)key;
  (void)key_len;
  *bad += meshcache_loader_out_set_value(out, NULL, 5, 0) == MESHCACHE_INVALID_ARGUMENT;
  *bad += meshcache_loader_out_set_error(out, "\xff") == MESHCACHE_INVALID_ARGUMENT;
  meshcache_loader_out_set_not_found(out, 0);
}

static void test_loader_out_bad_arguments(void) {
  meshcache_cluster *c = NULL;
  meshcache_group_options *o = NULL;
  meshcache_group *g = NULL;
  meshcache_value v = {0};
  int bad = 0;
  OK(meshcache_cluster_new(NULL, &c));
  OK(meshcache_group_options_new(&o));
  OK(meshcache_group_options_set_loader(o, bad_out_loader, &bad, NULL));
  OK(meshcache_group_new(c, "b", o, &g));
  meshcache_group_options_free(o);
  CHECK_RC(meshcache_group_get(g, K("k"), &v), MESHCACHE_NOT_FOUND);
  CHECK(bad == 2);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
}

/* ---- options that can never work ------------------------------------------------- */

typedef enum zero_option {
  ZERO_PEER_TIMEOUT,
  ZERO_CONNECT_TIMEOUT,
  ZERO_MAX_MESSAGE_SIZE,
  ZERO_VNODES,
  ZERO_BREAKER_THRESHOLD,
  ZERO_WORKER_THREADS,
  ZERO_HANDSHAKE_TIMEOUT,
  ZERO_IDLE_TIMEOUT,
  ZERO_MAX_PEER_REQUESTS,
  ZERO_OPTIONS
} zero_option;

/* The setters take any value; meshcache_cluster_new refuses a zero. */
static void test_options_refused_by_meshcache_cluster_new(void) {
  static const char *const what[ZERO_OPTIONS] = {
      "timeout", "timeout", "max_message_size", "vnodes", "threshold", "worker_threads",
      "handshake_timeout", "idle_timeout", "max_peer_requests"};
  for (int z = 0; z < ZERO_OPTIONS; z++) {
    meshcache_cluster_options *o = NULL;
    meshcache_cluster *c = NULL;
    OK(meshcache_cluster_options_new(&o));
    switch ((zero_option)z) {
      case ZERO_PEER_TIMEOUT: OK(meshcache_cluster_options_set_peer_timeout_ms(o, 0)); break;
      case ZERO_CONNECT_TIMEOUT: OK(meshcache_cluster_options_set_connect_timeout_ms(o, 0)); break;
      case ZERO_MAX_MESSAGE_SIZE: OK(meshcache_cluster_options_set_max_message_size(o, 0)); break;
      case ZERO_VNODES: OK(meshcache_cluster_options_set_vnodes(o, 0)); break;
      case ZERO_BREAKER_THRESHOLD: OK(meshcache_cluster_options_set_breaker(o, 0, 100)); break;
      case ZERO_WORKER_THREADS: OK(meshcache_cluster_options_set_worker_threads(o, 0)); break;
      case ZERO_HANDSHAKE_TIMEOUT: OK(meshcache_cluster_options_set_handshake_timeout_ms(o, 0)); break;
      case ZERO_IDLE_TIMEOUT: OK(meshcache_cluster_options_set_idle_timeout_ms(o, 0)); break;
      case ZERO_MAX_PEER_REQUESTS: OK(meshcache_cluster_options_set_max_peer_requests(o, 0)); break;
      case ZERO_OPTIONS: break;
    }
    meshcache_result rc = meshcache_cluster_new(o, &c);
    meshcache_cluster_options_free(o);
    CHECK_RC(rc, MESHCACHE_INVALID_ARGUMENT);
    CHECK(c == NULL);
    CHECK(strstr(meshcache_last_error_message(), what[z]) != NULL);
  }
  /* group options: refused by meshcache_group_new */
  fixture f;
  CHECK(fixture_open(&f, NULL));
  for (int z = 0; z < 4; z++) {
    meshcache_group_options *o = NULL;
    meshcache_group *g = NULL;
    OK(meshcache_group_options_new(&o));
    if (z == 0) OK(meshcache_group_options_set_capacity(o, 0));
    if (z == 1) OK(meshcache_group_options_set_capacity_str(o, "0"));
    if (z == 2) OK(meshcache_group_options_set_max_key_len(o, 0));
    if (z == 3) OK(meshcache_group_options_set_max_value_len(o, 0));
    meshcache_result rc = meshcache_group_new(f.cluster, "zero", o, &g);
    meshcache_group_options_free(o);
    CHECK_RC(rc, MESHCACHE_INVALID_ARGUMENT);
    CHECK(g == NULL);
  }
  fixture_close(&f);
}

/* ---- a peer that is down: the breaker opens ---------------------------------------- */

static void test_breaker_opens_on_a_dead_peer(void) {
  /* a port that was just bound and is free again: nothing listens there */
  meshcache_cluster *dead = NULL;
  char dead_addr[64];
  size_t n = 0;
  OK(meshcache_cluster_new(NULL, &dead));
  OK(meshcache_cluster_local_addr(dead, dead_addr, sizeof dead_addr, &n));
  meshcache_cluster_free(dead);

  meshcache_cluster_options *o = NULL;
  meshcache_cluster *c = NULL;
  OK(meshcache_cluster_options_new(&o));
  OK(meshcache_cluster_options_add_peer(o, dead_addr));
  OK(meshcache_cluster_options_set_retries(o, 0, 1));
  OK(meshcache_cluster_options_set_breaker(o, 1, 3600 * 1000)); /* opens at once, for 1 h */
  OK(meshcache_cluster_new(o, &c));
  meshcache_cluster_options_free(o);
  counting_loader loader;
  memset(&loader, 0, sizeof loader);
  meshcache_group_options *go = NULL;
  meshcache_group *g = NULL;
  OK(meshcache_group_options_new(&go));
  OK(meshcache_group_options_set_loader(go, count_loader, &loader, NULL));
  OK(meshcache_group_new(c, "dead", go, &g));
  meshcache_group_options_free(go);
  /* keys the dead peer owns are loaded here instead (20 keys: some are its) */
  for (int k = 0; k < 20; k++) {
    char key[16];
    snprintf(key, sizeof key, "k%d", k);
    meshcache_value v = {0};
    OK(meshcache_group_get(g, K(key), &v));
    meshcache_value_free(&v);
  }
  meshcache_group_stats gs;
  OK(meshcache_group_stats_get(g, &gs));
  CHECK(gs.fallback_loads > 0 && gs.remote_errors > 0 && gs.hot.items > 0);
  meshcache_cluster_stats *s = NULL;
  OK(meshcache_cluster_stats_get(c, &s));
  CHECK(meshcache_cluster_stats_peers_len(s) == 1);
  meshcache_peer_stats p;
  OK(meshcache_cluster_stats_peer(s, 0, &p));
  printf("     peer %s: breaker %s, %llu failures, %llu rejected\n", p.addr, p.breaker,
         (unsigned long long)p.failures, (unsigned long long)p.rejected);
  CHECK(strcmp(p.addr, dead_addr) == 0);
  CHECK(strcmp(p.breaker, "open") == 0);
  CHECK(p.failures >= 1 && p.breaker_opened == 1);
  meshcache_cluster_stats_free(s);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
}

/* ---- stats: the C fields are the core's names -------------------------------------- */

typedef struct field {
  const char *name;
  size_t offset;
  size_t size;
} field;

#define FIELD(type, member) {#member, offsetof(type, member), sizeof(((type *)0)->member)}
#define GS(member) FIELD(meshcache_group_stats, member)
#define PS(member) FIELD(meshcache_peer_stats, member)
#define SS(member) FIELD(meshcache_server_stats, member)

/* Every field, by its C name: this list does not compile if a field is renamed, and the
 * layout check below fails if a field is added that it does not name. */
static const field GROUP_STATS_FIELDS[] = {
    GS(gets),           GS(hits),
    GS(hot_hits),       GS(deduplicated),
    GS(loads),          GS(load_errors),
    GS(not_found),      GS(remote_fetches),
    GS(remote_not_found), GS(remote_errors),
    GS(fallback_loads), GS(hot_inserts),
    GS(served),         GS(invalidation_errors),
    GS(invalidations_retried), GS(invalidations_dropped),
    GS(replica_writes), GS(replica_write_errors),
    GS(replica_reads),  GS(handoff_sent),
    GS(handoff_received), GS(warm_takeovers),
    GS(capacity),       GS(main.items),
    GS(main.bytes),     GS(main.gets),
    GS(main.hits),      GS(main.evictions),
    GS(main.expirations), GS(hot.items),
    GS(hot.bytes),      GS(hot.gets),
    GS(hot.hits),       GS(hot.evictions),
    GS(hot.expirations),
};

static const field PEER_STATS_FIELDS[] = {
    PS(addr),    PS(breaker), PS(requests), PS(successes),     PS(failures),
    PS(timeouts), PS(retries), PS(rejected), PS(breaker_opened),
};

static const field SERVER_STATS_FIELDS[] = {
    SS(rejected_unauthenticated), SS(rejected_overloaded), SS(rejected_too_many_keys),
    SS(accept_errors),            SS(handshake_timeouts),  SS(idle_closed),
    SS(closed_at_shutdown),       SS(rejected_protocol_mismatch),
};

/* The ring of a cluster's stats is read through accessors, one per field (two for
 * `members`: `_members_len` and `_member`): this list names each field by its accessor,
 * so it does not compile if one is renamed or missing. */
typedef struct accessor {
  const char *name;
  void (*fn)(void);
} accessor;

#define RING(field, suffix) {#field, (void (*)(void))meshcache_cluster_stats_ring_##field##suffix}

static const accessor RING_STATS_ACCESSORS[] = {
    RING(source, ),         RING(members, _len), RING(epoch, ),
    RING(changed_at_ms, ),  RING(healthy, ),     RING(error, ),
};

/* The fields' names, comma-separated, into `out`; 0 unless the fields tile the struct in
 * order, each starting where the previous one ends (so no field goes unnamed). */
static int field_names(const field *f, size_t n, size_t struct_size, char *out, size_t len) {
  size_t end = 0;
  out[0] = 0;
  for (size_t i = 0; i < n; i++) {
    if (f[i].offset != end) return 0;
    end += f[i].size;
    if (i > 0) strncat(out, ",", len - strlen(out) - 1);
    strncat(out, f[i].name, len - strlen(out) - 1);
  }
  return end == struct_size;
}

static void test_stats_field_names_are_the_cores(void) {
  char names[1024];
  CHECK(field_names(GROUP_STATS_FIELDS, sizeof GROUP_STATS_FIELDS / sizeof GROUP_STATS_FIELDS[0],
                    sizeof(meshcache_group_stats), names, sizeof names));
  printf("     meshcache_group_stats: %s\n", names);
  CHECK(strcmp(names, meshcache_test_group_stats_names()) == 0);
  CHECK(field_names(PEER_STATS_FIELDS, sizeof PEER_STATS_FIELDS / sizeof PEER_STATS_FIELDS[0],
                    sizeof(meshcache_peer_stats), names, sizeof names));
  printf("     meshcache_peer_stats: %s\n", names);
  CHECK(strcmp(names, meshcache_test_peer_stats_names()) == 0);
  CHECK(field_names(SERVER_STATS_FIELDS,
                    sizeof SERVER_STATS_FIELDS / sizeof SERVER_STATS_FIELDS[0],
                    sizeof(meshcache_server_stats), names, sizeof names));
  printf("     meshcache_server_stats: %s\n", names);
  CHECK(strcmp(names, meshcache_test_server_stats_names()) == 0);
  names[0] = 0;
  for (size_t i = 0; i < sizeof RING_STATS_ACCESSORS / sizeof RING_STATS_ACCESSORS[0]; i++) {
    CHECK(RING_STATS_ACCESSORS[i].fn != NULL);
    if (i > 0) strncat(names, ",", sizeof names - strlen(names) - 1);
    strncat(names, RING_STATS_ACCESSORS[i].name, sizeof names - strlen(names) - 1);
  }
  CHECK(meshcache_cluster_stats_ring_member != NULL); /* the other accessor of `members` */
  printf("     meshcache_cluster_stats_ring_*: %s\n", names);
  CHECK(strcmp(names, meshcache_test_ring_stats_names()) == 0);
}

/* ---- security: a cluster token, TLS, a shutdown that always ends ------------------- */

#define SECURE_KEYS 20

/* A node of the security tests: a cluster, a group "sec" with the counting loader. */
typedef struct node {
  meshcache_cluster *cluster;
  meshcache_group *group;
  counting_loader loader;
  char addr[64];
} node;

/* Starts `n` with `o` (then freed); 0 on failure (the last error says why). */
static int node_open(node *n, meshcache_cluster_options *o) {
  memset(n, 0, sizeof *n);
  meshcache_group_options *go = NULL;
  size_t len = 0;
  meshcache_result rc = meshcache_cluster_new(o, &n->cluster);
  meshcache_cluster_options_free(o);
  if (rc != MESHCACHE_OK) return 0;
  if (meshcache_cluster_advertise_addr(n->cluster, n->addr, sizeof n->addr, &len) != MESHCACHE_OK)
    return 0;
  if (meshcache_group_options_new(&go) != MESHCACHE_OK) return 0;
  meshcache_group_options_set_loader(go, count_loader, &n->loader, NULL);
  rc = meshcache_group_new(n->cluster, "sec", go, &n->group);
  meshcache_group_options_free(go);
  return rc == MESHCACHE_OK;
}

static void node_close(node *n) {
  meshcache_group_free(n->group);
  meshcache_cluster_free(n->cluster);
}

/* `caller`'s ring becomes {owner, caller}: about half the keys are the owner's. */
static meshcache_result join(node *caller, const node *owner) {
  const char *peers[2] = {owner->addr, caller->addr};
  return meshcache_cluster_set_peers(caller->cluster, peers, 2);
}

/* `n` gets SECURE_KEYS keys ("<prefix>-<i>"); the number of gets that failed. */
static int get_keys(node *n, const char *prefix) {
  int failed = 0;
  for (int k = 0; k < SECURE_KEYS; k++) {
    char key[32];
    snprintf(key, sizeof key, "%s-%d", prefix, k);
    meshcache_value v = {0};
    failed += meshcache_group_get(n->group, K(key), &v) != MESHCACHE_OK;
    meshcache_value_free(&v);
  }
  return failed;
}

static meshcache_result server_stats(const node *n, meshcache_server_stats *out) {
  meshcache_cluster_stats *s = NULL;
  meshcache_result rc = meshcache_cluster_stats_get(n->cluster, &s);
  if (rc == MESHCACHE_OK) rc = meshcache_cluster_stats_server(s, out);
  meshcache_cluster_stats_free(s);
  return rc;
}

/* Whether `caller`'s gets of keys `owner` owns were served by `owner` (a remote get
 * works): the owner loaded each of them, the caller fetched them all and fell back on
 * none. */
static int fetched_remotely(const node *caller, int owner_loads_before, const node *owner) {
  meshcache_group_stats s;
  if (meshcache_group_stats_get(caller->group, &s) != MESHCACHE_OK) return 0;
  int owner_loads = atomic_load(&owner->loader.calls) - owner_loads_before;
  return owner_loads > 0 && s.remote_fetches == (uint64_t)owner_loads && s.fallback_loads == 0 &&
         s.remote_errors == 0;
}

/* Whether `caller`'s gets of the owner's keys were refused, so loaded locally. */
static int fell_back(const node *caller, int owner_loads_before, const node *owner) {
  meshcache_group_stats s;
  if (meshcache_group_stats_get(caller->group, &s) != MESHCACHE_OK) return 0;
  return s.fallback_loads > 0 && s.remote_fetches == 0 &&
         atomic_load(&owner->loader.calls) == owner_loads_before &&
         atomic_load(&caller->loader.calls) == SECURE_KEYS;
}

/* Options with a token (and a previous one, unless NULL). */
static meshcache_cluster_options *with_token(const char *token, const char *previous) {
  meshcache_cluster_options *o = slow_run_options();
  if (o == NULL) return NULL;
  meshcache_cluster_options_set_token(o, token);
  if (previous != NULL) meshcache_cluster_options_set_previous_token(o, previous);
  return o;
}

/* A fresh temporary directory into `dir`; 0 on failure. */
static int temp_dir(char *dir, size_t len, const char *name) {
  snprintf(dir, len, "/tmp/meshcache-c-%s-XXXXXX", name);
  return mkdtemp(dir) != NULL;
}

static void remove_files(const char *dir, const char *const *names, size_t n) {
  char path[256];
  for (size_t i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
}

static void test_token(void) {
  node a, same, rotating, wrong;
  /* a: the new token, and the old one while the cluster rotates */
  CHECK(node_open(&a, with_token("new-token", "old-token")));
  CHECK(node_open(&same, with_token("new-token", NULL)));
  CHECK(node_open(&rotating, with_token("old-token", NULL)));
  CHECK(node_open(&wrong, with_token("not-our-token", NULL)));
  meshcache_server_stats before, after;
  OK(server_stats(&a, &before));
  CHECK(before.rejected_unauthenticated == 0);
  /* the same token: a remote get works */
  int loads = atomic_load(&a.loader.calls);
  OK(join(&same, &a));
  CHECK(get_keys(&same, "same") == 0);
  CHECK(fetched_remotely(&same, loads, &a));
  /* the previous token is accepted during a rotation */
  loads = atomic_load(&a.loader.calls);
  OK(join(&rotating, &a));
  CHECK(get_keys(&rotating, "rotating") == 0);
  CHECK(fetched_remotely(&rotating, loads, &a));
  /* a wrong token: refused, counted, and the caller loads locally */
  loads = atomic_load(&a.loader.calls);
  OK(join(&wrong, &a));
  CHECK(get_keys(&wrong, "wrong") == 0);
  CHECK(fell_back(&wrong, loads, &a));
  OK(server_stats(&a, &after));
  printf("     refused %llu calls with a wrong token\n",
         (unsigned long long)after.rejected_unauthenticated);
  CHECK(after.rejected_unauthenticated > before.rejected_unauthenticated);
  node_close(&wrong);
  node_close(&rotating);
  node_close(&same);
  node_close(&a);
}

static void test_token_file_and_bad_tokens(void) {
  static const char *const files[] = {"token"};
  char dir[64], path[128];
  CHECK(temp_dir(dir, sizeof dir, "token"));
  snprintf(path, sizeof path, "%s/token", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("  from-a-file  \nsecond line\n", f);
  fclose(f);
  /* the file's first line, trimmed, overrides a token given too */
  node t, u;
  meshcache_cluster_options *o = with_token("overridden", NULL);
  CHECK(o != NULL);
  OK(meshcache_cluster_options_set_token_file(o, path));
  CHECK(node_open(&t, o));
  CHECK(node_open(&u, with_token("from-a-file", NULL)));
  OK(join(&u, &t));
  CHECK(get_keys(&u, "file") == 0);
  CHECK(fetched_remotely(&u, 0, &t));
  node_close(&u);
  node_close(&t);

  /* refused by meshcache_cluster_new, and the message never shows the token */
  static const char *const bad[] = {"two words", "", "tab\tbed"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    meshcache_cluster *c = NULL;
    o = with_token(bad[i], NULL);
    CHECK(o != NULL);
    meshcache_result rc = meshcache_cluster_new(o, &c);
    meshcache_cluster_options_free(o);
    CHECK_RC(rc, MESHCACHE_INVALID_ARGUMENT);
    CHECK(c == NULL);
    CHECK(strstr(meshcache_last_error_message(), "token") != NULL);
    CHECK(bad[i][0] == 0 || strstr(meshcache_last_error_message(), bad[i]) == NULL);
  }
  /* a previous token without a current one; a token file that does not exist */
  for (int i = 0; i < 2; i++) {
    meshcache_cluster *c = NULL;
    o = slow_run_options();
    CHECK(o != NULL);
    if (i == 0) OK(meshcache_cluster_options_set_previous_token(o, "old-token"));
    if (i == 1) {
      snprintf(path, sizeof path, "%s/missing", dir);
      OK(meshcache_cluster_options_set_token_file(o, path));
    }
    meshcache_result rc = meshcache_cluster_new(o, &c);
    meshcache_cluster_options_free(o);
    CHECK_RC(rc, MESHCACHE_INVALID_ARGUMENT);
    CHECK(c == NULL);
  }
  remove_files(dir, files, sizeof files / sizeof files[0]);
}

static const char *const CERT_FILES[] = {"ca.pem",       "node.pem",      "node.key",
                                         "stranger.pem", "stranger.key", "stranger-ca.pem"};

/* Test certificates into a fresh directory `dir`, by $MESHCACHE_GENCERT; 0 (saying why)
 * when they could not be made. */
static int gen_certs(char *dir, size_t len) {
  const char *gencert = getenv("MESHCACHE_GENCERT");
  if (gencert == NULL || gencert[0] == 0) {
    fprintf(stderr, "  MESHCACHE_GENCERT is not set: run the C tests with `make test-c` (it "
                    "builds gencert and exports its path), or export it (`make gencert`)\n");
    return 0;
  }
  if (!temp_dir(dir, len, "tls")) return 0;
  char cmd[512];
  snprintf(cmd, sizeof cmd, "'%s' '%s' > /dev/null", gencert, dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "  %s failed\n", cmd);
    return 0;
  }
  return 1;
}

/* Options with TLS from the files `cert`, `key` and `ca` of `dir`. */
static meshcache_cluster_options *with_tls(const char *dir, const char *cert, const char *key,
                                           const char *ca) {
  char c[256], k[256], a[256];
  meshcache_cluster_options *o = slow_run_options();
  if (o == NULL) return NULL;
  snprintf(c, sizeof c, "%s/%s", dir, cert);
  snprintf(k, sizeof k, "%s/%s", dir, key);
  snprintf(a, sizeof a, "%s/%s", dir, ca);
  meshcache_cluster_options_set_tls(o, c, k, a);
  return o;
}

static void test_tls(void) {
  char dir[64];
  CHECK(gen_certs(dir, sizeof dir));
  node a, b, plain, stranger, lenient, misnamed;
  CHECK(node_open(&a, with_tls(dir, "node.pem", "node.key", "ca.pem")));
  /* mutual TLS (the default): a member gets from a member. The TLS options of b are
   * given before meshcache_cluster_options_set_tls, and count all the same. */
  meshcache_cluster_options *o = slow_run_options();
  CHECK(o != NULL);
  OK(meshcache_cluster_options_set_tls_server_name(o, "localhost"));
  OK(meshcache_cluster_options_set_tls_client_auth(o, true));
  char cert[128], key[128], ca[128];
  snprintf(cert, sizeof cert, "%s/node.pem", dir);
  snprintf(key, sizeof key, "%s/node.key", dir);
  snprintf(ca, sizeof ca, "%s/ca.pem", dir);
  OK(meshcache_cluster_options_set_tls(o, cert, key, ca));
  CHECK(node_open(&b, o));
  int loads = atomic_load(&a.loader.calls);
  OK(join(&b, &a));
  CHECK(get_keys(&b, "member") == 0);
  CHECK(fetched_remotely(&b, loads, &a));
  /* a plaintext node: refused, counted as a protocol mismatch, loads locally */
  meshcache_server_stats before, after;
  OK(server_stats(&a, &before));
  CHECK(node_open(&plain, slow_run_options()));
  loads = atomic_load(&a.loader.calls);
  OK(join(&plain, &a));
  CHECK(get_keys(&plain, "plain") == 0);
  CHECK(fell_back(&plain, loads, &a));
  OK(server_stats(&a, &after));
  printf("     refused %llu plaintext connections\n",
         (unsigned long long)after.rejected_protocol_mismatch);
  CHECK(after.rejected_protocol_mismatch > before.rejected_protocol_mismatch);
  /* a certificate from another CA: refused by a (mutual TLS)... */
  CHECK(node_open(&stranger, with_tls(dir, "stranger.pem", "stranger.key", "ca.pem")));
  loads = atomic_load(&a.loader.calls);
  OK(join(&stranger, &a));
  CHECK(get_keys(&stranger, "stranger") == 0);
  CHECK(fell_back(&stranger, loads, &a));
  /* ...served by a node that does not ask for client certificates */
  o = with_tls(dir, "node.pem", "node.key", "ca.pem");
  CHECK(o != NULL);
  OK(meshcache_cluster_options_set_tls_client_auth(o, false));
  CHECK(node_open(&lenient, o));
  meshcache_group_stats gs;
  OK(meshcache_group_stats_get(stranger.group, &gs));
  uint64_t fetched = gs.remote_fetches;
  OK(join(&stranger, &lenient));
  CHECK(get_keys(&stranger, "lenient") == 0);
  OK(meshcache_group_stats_get(stranger.group, &gs));
  CHECK(atomic_load(&lenient.loader.calls) > 0 &&
        gs.remote_fetches - fetched == (uint64_t)atomic_load(&lenient.loader.calls));
  /* a server name the certificates do not have: the caller refuses a, loads locally */
  o = with_tls(dir, "node.pem", "node.key", "ca.pem");
  CHECK(o != NULL);
  OK(meshcache_cluster_options_set_tls_server_name(o, "not-a-member.example"));
  CHECK(node_open(&misnamed, o));
  loads = atomic_load(&a.loader.calls);
  OK(join(&misnamed, &a));
  CHECK(get_keys(&misnamed, "misnamed") == 0);
  CHECK(fell_back(&misnamed, loads, &a));
  node_close(&misnamed);
  node_close(&lenient);
  node_close(&stranger);
  node_close(&plain);
  node_close(&b);
  node_close(&a);
  /* a file that cannot be read: refused at start */
  for (int i = 0; i < 3; i++) {
    meshcache_cluster *c = NULL;
    o = with_tls(dir, i == 0 ? "missing.pem" : "node.pem", i == 1 ? "missing.key" : "node.key",
                 i == 2 ? "missing-ca.pem" : "ca.pem");
    CHECK(o != NULL);
    meshcache_result rc = meshcache_cluster_new(o, &c);
    meshcache_cluster_options_free(o);
    CHECK_RC(rc, MESHCACHE_INVALID_ARGUMENT);
    CHECK(c == NULL && strstr(meshcache_last_error_message(), "missing") != NULL);
  }
  remove_files(dir, CERT_FILES, sizeof CERT_FILES / sizeof CERT_FILES[0]);
}

/* ---- shutdown always ends --------------------------------------------------------- */

#define IDLE_CONNECTIONS 200
#define GRACE_MS 300

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The port the cluster's server is bound to; 0 on failure. */
static int port_of(meshcache_cluster *c) {
  char addr[64];
  size_t n = 0;
  if (meshcache_cluster_local_addr(c, addr, sizeof addr, &n) != MESHCACHE_OK) return 0;
  const char *colon = strrchr(addr, ':');
  return colon == NULL ? 0 : atoi(colon + 1);
}

/* A plain TCP connection to 127.0.0.1:port; -1 on failure. */
static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Sends the HTTP/2 preface and an empty SETTINGS frame on `fd`, then waits (at most
 * BOUND_MS) for the server's SETTINGS frame: the server has accepted this connection,
 * and so every connection opened before it. Never answers after that. */
static int say_hello_then_nothing(int fd) {
  static const char hello[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
  if (write(fd, hello, sizeof hello - 1) != (ssize_t)(sizeof hello - 1)) return 0;
  struct timeval t = {BOUND_MS / 1000, 0};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t) != 0) return 0;
  char frame[9];
  size_t got = 0;
  while (got < sizeof frame) {
    ssize_t n = read(fd, frame + got, sizeof frame - got);
    if (n <= 0) return 0;
    got += (size_t)n;
  }
  return frame[3] == 0x04; /* a SETTINGS frame */
}

/* meshcache_cluster_shutdown (free_it = 0) or meshcache_cluster_free (1) on a thread of
 * its own, so that the test can bound its wait. */
typedef struct closer {
  meshcache_cluster *cluster;
  int free_it;
  meshcache_result rc;
  int done;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} closer;

static void *run_closer(void *p) {
  closer *c = (closer *)p;
  meshcache_result rc = MESHCACHE_OK;
  if (c->free_it) {
    meshcache_cluster_free(c->cluster);
  } else {
    rc = meshcache_cluster_shutdown(c->cluster);
  }
  pthread_mutex_lock(&c->mu);
  c->rc = rc;
  c->done = 1;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* Runs the closer and waits for it at most BOUND_MS: the milliseconds it took, or -1 if
 * it did not return in time (its thread is then left behind). */
static double close_within_bound(meshcache_cluster *cluster, int free_it, meshcache_result *rc) {
  closer c;
  memset(&c, 0, sizeof c);
  c.cluster = cluster;
  c.free_it = free_it;
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_mutex_init(&c.mu, NULL);
  pthread_cond_init(&c.cv, &attr);
  pthread_condattr_destroy(&attr);
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += BOUND_MS / 1000;
  double started = now_ms();
  pthread_t t;
  if (pthread_create(&t, NULL, run_closer, &c) != 0) return -1;
  pthread_mutex_lock(&c.mu);
  while (!c.done) {
    if (pthread_cond_timedwait(&c.cv, &c.mu, &deadline) != 0 && !c.done) break;
  }
  int done = c.done;
  pthread_mutex_unlock(&c.mu);
  if (!done) {
    /* `c` lives on this stack: the stuck thread must not touch it later. */
    fprintf(stderr, "  %s did not return within %d ms\n",
            free_it ? "meshcache_cluster_free" : "meshcache_cluster_shutdown", BOUND_MS);
    fflush(stderr);
    _exit(1);
  }
  double took = now_ms() - started;
  pthread_join(t, NULL);
  pthread_cond_destroy(&c.cv);
  pthread_mutex_destroy(&c.mu);
  *rc = c.rc;
  return took;
}

/* A node with a short grace period, 200 idle TCP connections and one that said hello and
 * then nothing: meshcache_cluster_shutdown returns once the grace period is over and
 * counts the connections it closed; meshcache_cluster_free (without a shutdown first)
 * returns too. */
static void test_shutdown_ends_with_idle_connections(void) {
  for (int free_it = 0; free_it < 2; free_it++) {
    meshcache_cluster_options *o = NULL;
    meshcache_cluster *c = NULL;
    OK(meshcache_cluster_options_new(&o));
    OK(meshcache_cluster_options_set_shutdown_grace_ms(o, GRACE_MS));
    meshcache_result rc = meshcache_cluster_new(o, &c);
    meshcache_cluster_options_free(o);
    OK(rc);
    int port = port_of(c);
    CHECK(port > 0);
    int fds[IDLE_CONNECTIONS + 1];
    for (int i = 0; i < IDLE_CONNECTIONS; i++) {
      fds[i] = connect_to(port);
      CHECK(fds[i] >= 0);
    }
    fds[IDLE_CONNECTIONS] = connect_to(port);
    CHECK(fds[IDLE_CONNECTIONS] >= 0);
    CHECK(say_hello_then_nothing(fds[IDLE_CONNECTIONS]));
    double took = close_within_bound(c, free_it, &rc);
    printf("     %s with %d idle connections and a silent one: %.0f ms (grace %d ms)\n",
           free_it ? "meshcache_cluster_free" : "meshcache_cluster_shutdown",
           IDLE_CONNECTIONS, took, GRACE_MS);
    OK(rc);
    /* the silent connection held it for the grace period, no longer than the bound */
    CHECK(took + 1 >= GRACE_MS && took < BOUND_MS);
    if (!free_it) {
      meshcache_cluster_stats *s = NULL;
      meshcache_server_stats server;
      OK(meshcache_cluster_stats_get(c, &s));
      OK(meshcache_cluster_stats_server(s, &server));
      meshcache_cluster_stats_free(s);
      printf("     closed at shutdown: %llu connections\n",
             (unsigned long long)server.closed_at_shutdown);
      CHECK(server.closed_at_shutdown >= 1);
      took = close_within_bound(c, 1, &rc);
      CHECK(took < BOUND_MS);
    }
    for (int i = 0; i <= IDLE_CONNECTIONS; i++) close(fds[i]);
  }
}

/* ---- meshcache_cluster_free waits for a loader still running ----------------------- */

/* A loader that says it started and then blocks (a condition variable) until the test
 * lets it finish, and records that it finished just before returning; a thread that frees
 * the cluster meanwhile and records whether the loader had finished when
 * meshcache_cluster_free returned. Every step is signalled on `cv`; nothing sleeps. */
typedef struct slow_loader {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int started;
  int may_finish;
  atomic_int finished;
  atomic_int free_called;
  meshcache_cluster *cluster;
  int finished_when_free_returned;
} slow_loader;

static void slow_load(void *user_data, const uint8_t *key, size_t key_len,
                      meshcache_loader_out *out) {
  slow_loader *l = (slow_loader *)user_data;
  pthread_mutex_lock(&l->mu);
  l->started = 1;
  pthread_cond_broadcast(&l->cv);
  while (!l->may_finish) pthread_cond_wait(&l->cv, &l->mu);
  pthread_mutex_unlock(&l->mu);
  meshcache_loader_out_set_value(out, key, key_len, MESHCACHE_TTL_DEFAULT);
  atomic_store(&l->finished, 1);
}

static void *free_slow_cluster(void *p) {
  slow_loader *l = (slow_loader *)p;
  pthread_mutex_lock(&l->mu);
  atomic_store(&l->free_called, 1);
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
  meshcache_cluster_free(l->cluster);
  /* read by the test after joining this thread */
  l->finished_when_free_returned = atomic_load(&l->finished);
  return NULL;
}

static int slow_started(slow_loader *l) { return l->started; }
static int slow_free_called(slow_loader *l) { return atomic_load(&l->free_called); }

/* Waits at most BOUND_MS (on `cv`) until `ready(l)`; threads blocked on `l` (which lives
 * on the test's stack) make returning unsafe, so a missed bound aborts. */
static void slow_wait(slow_loader *l, int (*ready)(slow_loader *), const char *what) {
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += BOUND_MS / 1000;
  pthread_mutex_lock(&l->mu);
  while (!ready(l)) {
    if (pthread_cond_timedwait(&l->cv, &l->mu, &deadline) != 0 && !ready(l)) {
      fprintf(stderr, "  %s:%d: %s: not within %d ms\n", __FILE__, __LINE__, what, BOUND_MS);
      abort();
    }
  }
  pthread_mutex_unlock(&l->mu);
}

typedef struct getter_arg {
  meshcache_group *group;
  meshcache_result rc;
} getter_arg;

static void *get_slow_key(void *p) {
  getter_arg *a = (getter_arg *)p;
  meshcache_value v = {0};
  a->rc = meshcache_group_get(a->group, K("slow"), &v);
  meshcache_value_free(&v);
  return NULL;
}

static void test_free_waits_for_a_running_loader(void) {
  slow_loader l;
  memset(&l, 0, sizeof l);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_mutex_init(&l.mu, NULL);
  pthread_cond_init(&l.cv, &attr);
  pthread_condattr_destroy(&attr);
  meshcache_group_options *o = NULL;
  getter_arg a = {NULL, MESHCACHE_UNKNOWN};
  OK(meshcache_cluster_new(NULL, &l.cluster));
  OK(meshcache_group_options_new(&o));
  OK(meshcache_group_options_set_loader(o, slow_load, &l, NULL));
  OK(meshcache_group_new(l.cluster, "slow", o, &a.group));
  meshcache_group_options_free(o);
  pthread_t getter, freer;
  CHECK(pthread_create(&getter, NULL, get_slow_key, &a) == 0);
  slow_wait(&l, slow_started, "the loader started");
  if (pthread_create(&freer, NULL, free_slow_cluster, &l) != 0) abort();
  slow_wait(&l, slow_free_called, "meshcache_cluster_free called");
  /* Free is under way once the cluster's groups are closed (its shutdown is done; the
   * threads are stopped next): only then may the loader finish. */
  double until = now_ms() + BOUND_MS;
  meshcache_value v = {0};
  while (meshcache_group_peek(a.group, K("slow"), &v) != MESHCACHE_CLOSED) {
    if (now_ms() > until) {
      fprintf(stderr, "  %s:%d: the group did not close within %d ms\n", __FILE__, __LINE__,
              BOUND_MS);
      abort();
    }
    sched_yield();
  }
  pthread_mutex_lock(&l.mu);
  l.may_finish = 1;
  pthread_cond_broadcast(&l.cv);
  pthread_mutex_unlock(&l.mu);
  pthread_join(freer, NULL);
  /* every thread of the cluster had exited when free returned: the loader too */
  CHECK(l.finished_when_free_returned == 1);
  pthread_join(getter, NULL);
  /* the get that waited for it: the load finished first, or the runtime stopped first */
  CHECK(a.rc == MESHCACHE_OK || a.rc == MESHCACHE_CLOSED);
  meshcache_group_free(a.group);
  pthread_cond_destroy(&l.cv);
  pthread_mutex_destroy(&l.mu);
}

/* ---- deadlines: a load timeout, a caller's timeout, shutdown releasing waiters ------ */

/* A loader whose first `hang_calls` calls wait until released (a condition variable, so
 * nothing spins under valgrind); later calls answer "v:<key>" at once. Every call and
 * every finished waiter is signalled on `cv`, and the tests wait on it at most BOUND_MS. */
typedef struct hung_loader {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int calls;
  int hang_calls;
  int released;
  int waiters_done;
} hung_loader;

static void hung_init(hung_loader *l, int hang_calls) {
  memset(l, 0, sizeof *l);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, &attr);
  pthread_condattr_destroy(&attr);
  l->hang_calls = hang_calls;
}

static void hung_destroy(hung_loader *l) {
  pthread_cond_destroy(&l->cv);
  pthread_mutex_destroy(&l->mu);
}

static void hung_load(void *user_data, const uint8_t *key, size_t key_len,
                      meshcache_loader_out *out) {
  hung_loader *l = (hung_loader *)user_data;
  pthread_mutex_lock(&l->mu);
  int call = ++l->calls;
  pthread_cond_broadcast(&l->cv);
  while (call <= l->hang_calls && !l->released) pthread_cond_wait(&l->cv, &l->mu);
  pthread_mutex_unlock(&l->mu);
  char buf[128];
  int n = snprintf(buf, sizeof buf, "v:%.*s", (int)key_len, (const char *)key);
  meshcache_loader_out_set_value(out, (const uint8_t *)buf, (size_t)n, MESHCACHE_TTL_DEFAULT);
}

/* Calls hung so far stay hung (until released); later calls answer. */
static void hung_answer_from_now(hung_loader *l) {
  pthread_mutex_lock(&l->mu);
  l->hang_calls = l->calls;
  pthread_mutex_unlock(&l->mu);
}

static void hung_release(hung_loader *l) {
  pthread_mutex_lock(&l->mu);
  l->released = 1;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
}

/* Waits at most BOUND_MS until `*counter >= n` (`counter` is a field of `l`); a test that
 * got here with threads still blocked cannot return safely, so a missed bound aborts. */
static void hung_wait(hung_loader *l, const int *counter, int n, const char *what) {
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += BOUND_MS / 1000;
  pthread_mutex_lock(&l->mu);
  while (*counter < n) {
    if (pthread_cond_timedwait(&l->cv, &l->mu, &deadline) != 0 && *counter < n) {
      fprintf(stderr, "  %s:%d: %s: %d of %d within %d ms\n", __FILE__, __LINE__, what,
              *counter, n, BOUND_MS);
      abort();
    }
  }
  pthread_mutex_unlock(&l->mu);
}

/* A thread blocked in meshcache_group_get of "k" (no deadline). */
typedef struct hung_waiter {
  meshcache_group *group;
  hung_loader *loader;
  meshcache_result rc;
  meshcache_value value;
} hung_waiter;

static void *hung_wait_get(void *p) {
  hung_waiter *w = (hung_waiter *)p;
  w->rc = meshcache_group_get(w->group, K("k"), &w->value);
  pthread_mutex_lock(&w->loader->mu);
  w->loader->waiters_done++;
  pthread_cond_broadcast(&w->loader->cv);
  pthread_mutex_unlock(&w->loader->mu);
  return NULL;
}

#define HUNG_WAITERS 4

/* Starts `n` threads getting "k" (aborts if one cannot be started). */
static void start_waiters(hung_waiter *w, pthread_t *t, int n, meshcache_group *g, hung_loader *l) {
  for (int i = 0; i < n; i++) {
    w[i].group = g;
    w[i].loader = l;
    w[i].rc = MESHCACHE_UNKNOWN;
    memset(&w[i].value, 0, sizeof w[i].value);
  }
  for (int i = 0; i < n; i++) {
    if (pthread_create(&t[i], NULL, hung_wait_get, &w[i]) != 0) {
      fprintf(stderr, "  pthread_create failed\n");
      abort();
    }
  }
}

/* Joins the waiters (once all are done, within BOUND_MS); how many returned `want`. */
static int join_waiters(hung_waiter *w, pthread_t *t, int n, hung_loader *l, meshcache_result want) {
  hung_wait(l, &l->waiters_done, n, "waiters returned");
  int got = 0;
  for (int i = 0; i < n; i++) {
    pthread_join(t[i], NULL);
    if (w[i].rc == want) got++;
    else
      fprintf(stderr, "  waiter %d returned %s, want %s\n", i, meshcache_result_name((int)w[i].rc),
              meshcache_result_name((int)want));
    meshcache_value_free(&w[i].value);
  }
  return got;
}

static meshcache_group *hung_group(meshcache_cluster *c, hung_loader *l, uint64_t load_timeout_ms) {
  meshcache_group_options *o = NULL;
  meshcache_group *g = NULL;
  if (meshcache_group_options_new(&o) != MESHCACHE_OK) return NULL;
  meshcache_group_options_set_loader(o, hung_load, l, NULL);
  if (load_timeout_ms != 0) meshcache_group_options_set_load_timeout_ms(o, load_timeout_ms);
  meshcache_group_new(c, "hung", o, &g);
  meshcache_group_options_free(o);
  return g;
}

/* A loader that never answers in time: every waiting get is MESHCACHE_TIMEOUT, and the
 * next get loads again (the loader answers from then on). */
static void test_load_timeout(void) {
  hung_loader l;
  hung_init(&l, 1 << 30);
  meshcache_cluster *c = NULL;
  meshcache_group_options *o = NULL;
  meshcache_group *g = NULL;
  OK(meshcache_cluster_new(NULL, &c));
  OK(meshcache_group_options_new(&o));
  CHECK_RC(meshcache_group_options_set_load_timeout_ms(NULL, 100), MESHCACHE_INVALID_ARGUMENT);
  OK(meshcache_group_options_set_load_timeout_ms(o, 0));
  CHECK_RC(meshcache_group_new(c, "zero", o, &g), MESHCACHE_INVALID_ARGUMENT);
  CHECK(g == NULL);
  meshcache_group_options_free(o);
  g = hung_group(c, &l, 100);
  CHECK(g != NULL);

  hung_waiter w[HUNG_WAITERS];
  pthread_t t[HUNG_WAITERS];
  start_waiters(w, t, HUNG_WAITERS, g, &l);
  /* each waiter joined a load or started one: every load hangs past its timeout */
  int timed_out = join_waiters(w, t, HUNG_WAITERS, &l, MESHCACHE_TIMEOUT);
  hung_answer_from_now(&l);
  meshcache_value v = {0};
  meshcache_result rc = meshcache_group_get(g, K("k"), &v);
  int loaded = rc == MESHCACHE_OK && value_is(&v, "v:k");
  meshcache_value_free(&v);
  meshcache_group_stats s;
  meshcache_group_stats_get(g, &s);
  /* the stuck calls return now; what they set is dropped, and free waits for them */
  hung_release(&l);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
  hung_destroy(&l);
  CHECK(timed_out == HUNG_WAITERS);
  CHECK_RC(rc, MESHCACHE_OK);
  CHECK(loaded);
  CHECK(s.load_errors >= 1);
}

/* A caller's deadline: that caller gets MESHCACHE_TIMEOUT while the load goes on, and a
 * caller without a deadline gets the value once the loader answers. */
static void test_get_with_timeout(void) {
  hung_loader l;
  hung_init(&l, 1);
  meshcache_cluster *c = NULL;
  OK(meshcache_cluster_new(NULL, &c));
  meshcache_group *g = hung_group(c, &l, 0);
  CHECK(g != NULL);
  meshcache_value v = {0};
  meshcache_entries *e = NULL;
  meshcache_bytes key = {(const uint8_t *)"k", 1};
  CHECK_RC(meshcache_group_get_with_timeout(g, K("k"), 0, &v), MESHCACHE_INVALID_ARGUMENT);
  CHECK_RC(meshcache_group_get_with_timeout(NULL, K("k"), 10, &v), MESHCACHE_INVALID_ARGUMENT);
  CHECK_RC(meshcache_group_get_with_timeout(g, NULL, 1, 10, &v), MESHCACHE_INVALID_ARGUMENT);
  CHECK_RC(meshcache_group_get_with_timeout(g, K("k"), 10, NULL), MESHCACHE_INVALID_ARGUMENT);
  CHECK_RC(meshcache_group_get_many_with_timeout(g, &key, 1, 0, &e), MESHCACHE_INVALID_ARGUMENT);
  CHECK_RC(meshcache_group_get_many_with_timeout(NULL, &key, 1, 10, &e),
           MESHCACHE_INVALID_ARGUMENT);
  CHECK_RC(meshcache_group_get_many_with_timeout(g, NULL, 1, 10, &e), MESHCACHE_INVALID_ARGUMENT);
  CHECK_RC(meshcache_group_get_many_with_timeout(g, &key, 1, 10, NULL),
           MESHCACHE_INVALID_ARGUMENT);
  CHECK(e == NULL && v.data == NULL);

  hung_waiter w[1];
  pthread_t t[1];
  start_waiters(w, t, 1, g, &l);
  hung_wait(&l, &l.calls, 1, "loader calls");
  meshcache_result one = meshcache_group_get_with_timeout(g, K("k"), 50, &v);
  meshcache_result many = meshcache_group_get_many_with_timeout(g, &key, 1, 50, &e);
  pthread_mutex_lock(&l.mu);
  int calls_meanwhile = l.calls;
  pthread_mutex_unlock(&l.mu);
  hung_release(&l);
  int waited = join_waiters(w, t, 1, &l, MESHCACHE_OK);
  /* now a hit: answered whatever the deadline */
  meshcache_result hit = meshcache_group_get_with_timeout(g, K("k"), 1, &v);
  int hit_value = hit == MESHCACHE_OK && value_is(&v, "v:k");
  meshcache_value_free(&v);
  meshcache_entries *hits = NULL;
  meshcache_result hit_many = meshcache_group_get_many_with_timeout(g, &key, 1, 1000, &hits);
  size_t n_hits = meshcache_entries_len(hits);
  meshcache_entries_free(hits);
  meshcache_group_stats s;
  meshcache_group_stats_get(g, &s);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
  hung_destroy(&l);
  CHECK_RC(one, MESHCACHE_TIMEOUT);
  CHECK_RC(many, MESHCACHE_TIMEOUT);
  CHECK(e == NULL);
  CHECK(calls_meanwhile == 1); /* the callers that gave up did not restart the load */
  CHECK(waited == 1);
  CHECK_RC(hit, MESHCACHE_OK);
  CHECK(hit_value);
  CHECK_RC(hit_many, MESHCACHE_OK);
  CHECK(n_hits == 1);
  CHECK(s.loads == 1);
}

/* meshcache_cluster_shutdown while threads wait on a hung loader: it returns, and every
 * waiting get returns MESHCACHE_CLOSED (the loader is released afterwards, for free). */
static void test_shutdown_releases_waiters_on_a_hung_loader(void) {
  hung_loader l;
  hung_init(&l, 1 << 30);
  meshcache_cluster *c = NULL;
  meshcache_cluster_options *co = NULL;
  OK(meshcache_cluster_options_new(&co));
  OK(meshcache_cluster_options_set_shutdown_grace_ms(co, 200));
  OK(meshcache_cluster_new(co, &c));
  meshcache_cluster_options_free(co);
  meshcache_group *g = hung_group(c, &l, 0);
  CHECK(g != NULL);
  hung_waiter w[HUNG_WAITERS];
  pthread_t t[HUNG_WAITERS];
  start_waiters(w, t, HUNG_WAITERS, g, &l);
  hung_wait(&l, &l.calls, 1, "loader calls");
  /* every waiter is in its get (bounded poll of the counters, yielding: under valgrind
   * threads run one at a time; a late one gets CLOSED too, which is checked below) */
  meshcache_group_stats s;
  double until = now_ms() + BOUND_MS;
  do {
    sched_yield();
    meshcache_group_stats_get(g, &s);
  } while (s.gets < HUNG_WAITERS && now_ms() < until);
  double start = now_ms();
  meshcache_result rc = meshcache_cluster_shutdown(c);
  double took = now_ms() - start;
  int closed = join_waiters(w, t, HUNG_WAITERS, &l, MESHCACHE_CLOSED);
  pthread_mutex_lock(&l.mu);
  int calls = l.calls;
  pthread_mutex_unlock(&l.mu);
  hung_release(&l);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
  hung_destroy(&l);
  CHECK(s.gets >= 1);
  CHECK_RC(rc, MESHCACHE_OK);
  CHECK(took < BOUND_MS);
  CHECK(closed == HUNG_WAITERS);
  CHECK(calls == 1);
}

/* ---- membership: etcd, the ring in stats, waiting for members --------------------- */

/* The bound on a node's leave being seen by another through etcd: the leaver revokes its
 * lease on shutdown, so well under the 2 s lease of these tests. */
#define LEAVE_MS 1000

/* Whether the ring in `s` lists `addr`. */
static int ring_has(const meshcache_cluster_stats *s, const char *addr) {
  for (size_t i = 0; i < meshcache_cluster_stats_ring_members_len(s); i++) {
    if (strcmp(meshcache_cluster_stats_ring_member(s, i), addr) == 0) return 1;
  }
  return 0;
}

/* Whether `ms` (unix milliseconds) lies in [since, now] seconds, a second either side. */
static int unix_ms_between(uint64_t ms, time_t since) {
  return ms / 1000 + 1 >= (uint64_t)since && ms / 1000 <= (uint64_t)time(NULL) + 1;
}

static void test_membership_through_etcd(void) {
  const char *ep = test_etcd();
  CHECK(ep != NULL);
  char prefix[64];
  time_t start = time(NULL);
  snprintf(prefix, sizeof prefix, "meshcache-c-%ld-%.0f", (long)getpid(), now_ms());
  node a, b;
  CHECK(node_open(&a, with_etcd(ep, prefix)));
  CHECK(node_open(&b, with_etcd(ep, prefix)));
  OK(meshcache_cluster_wait_for_members(a.cluster, 2, BOUND_MS));
  OK(meshcache_cluster_wait_for_members(b.cluster, 2, BOUND_MS));
  /* Every key is loaded once in the whole cluster, by its owner's loader: each node
   * fetched from the other exactly the keys the other loaded, and fell back on none. */
  CHECK(get_keys(&a, "etcd") == 0);
  CHECK(get_keys(&b, "etcd") == 0);
  int la = atomic_load(&a.loader.calls), lb = atomic_load(&b.loader.calls);
  printf("     %d keys loaded by one node, %d by the other\n", la, lb);
  CHECK(la + lb == SECURE_KEYS);
  meshcache_group_stats ga, gb;
  OK(meshcache_group_stats_get(a.group, &ga));
  OK(meshcache_group_stats_get(b.group, &gb));
  CHECK(ga.remote_fetches == (uint64_t)lb && gb.remote_fetches == (uint64_t)la);
  CHECK(ga.fallback_loads == 0 && gb.fallback_loads == 0);
  /* The ring in stats: from etcd, healthy, both nodes, sorted. */
  meshcache_cluster_stats *s = NULL;
  OK(meshcache_cluster_stats_get(a.cluster, &s));
  CHECK(strcmp(meshcache_cluster_stats_ring_source(s), "etcd") == 0);
  CHECK(meshcache_cluster_stats_ring_healthy(s));
  CHECK(meshcache_cluster_stats_ring_error(s) == NULL);
  CHECK(meshcache_cluster_stats_ring_members_len(s) == 2);
  CHECK(ring_has(s, a.addr) && ring_has(s, b.addr));
  CHECK(strcmp(meshcache_cluster_stats_ring_member(s, 0), meshcache_cluster_stats_ring_member(s, 1)) < 0);
  CHECK(meshcache_cluster_stats_ring_member(s, 2) == NULL);
  uint64_t epoch = meshcache_cluster_stats_ring_epoch(s);
  CHECK(epoch >= 2);
  CHECK(unix_ms_between(meshcache_cluster_stats_ring_changed_at_ms(s), start));
  meshcache_cluster_stats_free(s);
  /* Its peers come from etcd: set_peers is refused. */
  const char *peers[2] = {a.addr, b.addr};
  CHECK_RC(meshcache_cluster_set_peers(a.cluster, peers, 2), MESHCACHE_INVALID_ARGUMENT);
  CHECK(strstr(meshcache_last_error_message(), "etcd or DNS") != NULL);
  /* A graceful shutdown revokes b's lease first: a drops b at once (while b's shutdown
   * may still be closing connections), not when the lease ends. */
  closer shut;
  memset(&shut, 0, sizeof shut);
  shut.cluster = b.cluster;
  pthread_mutex_init(&shut.mu, NULL);
  pthread_cond_init(&shut.cv, NULL);
  double t0 = now_ms();
  pthread_t t;
  CHECK(pthread_create(&t, NULL, run_closer, &shut) == 0);
  meshcache_result rc = meshcache_cluster_wait_for_members(a.cluster, 1, LEAVE_MS);
  double seen = now_ms() - t0;
  pthread_join(t, NULL); /* shutdown returns within about its grace plus a second */
  printf("     the other node saw the leave %.0f ms after the shutdown began (it took %.0f ms)\n",
         seen, now_ms() - t0);
  pthread_mutex_destroy(&shut.mu);
  pthread_cond_destroy(&shut.cv);
  CHECK_RC(rc, MESHCACHE_OK);
  CHECK_RC(shut.rc, MESHCACHE_OK);
  OK(meshcache_cluster_stats_get(a.cluster, &s));
  CHECK(meshcache_cluster_stats_ring_members_len(s) == 1 && ring_has(s, a.addr));
  CHECK(meshcache_cluster_stats_ring_epoch(s) > epoch);
  CHECK(meshcache_cluster_stats_ring_healthy(s));
  meshcache_cluster_stats_free(s);
  node_close(&b);
  node_close(&a);
}

static void test_membership_specs_refused(void) {
  const meshcache_result INV = MESHCACHE_INVALID_ARGUMENT;
  /* The setter records the spec; meshcache_cluster_new refuses what does not parse. */
  static const char *const bad[] = {"consul://x", "etcd://h:1", "etcd://h:1/p?lease_ttl=0",
                                    "dns://name"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    meshcache_cluster_options *o = NULL;
    meshcache_cluster *c = NULL;
    OK(meshcache_cluster_options_new(&o));
    OK(meshcache_cluster_options_set_membership(o, bad[i]));
    meshcache_result rc = meshcache_cluster_new(o, &c);
    meshcache_cluster_options_free(o);
    CHECK_RC(rc, INV);
    CHECK(c == NULL);
    CHECK(strstr(meshcache_last_error_message(), "membership") != NULL);
  }
  /* A peer list with etcd: the peers come from etcd (refused before any connection). */
  meshcache_cluster_options *o = NULL;
  meshcache_cluster *c = NULL;
  OK(meshcache_cluster_options_new(&o));
  OK(meshcache_cluster_options_set_membership(o, "etcd://127.0.0.1:1/p"));
  OK(meshcache_cluster_options_add_peer(o, "127.0.0.1:2"));
  CHECK_RC(meshcache_cluster_new(o, &c), INV);
  CHECK(c == NULL);
  CHECK(strstr(meshcache_last_error_message(), "peer list") != NULL);
  /* NULL pointers */
  CHECK_RC(meshcache_cluster_options_set_membership(o, NULL), INV);
  CHECK_RC(meshcache_cluster_options_set_membership(NULL, "static"), INV);
  /* "static", spelled out, is the default */
  OK(meshcache_cluster_options_set_membership(o, "static"));
  OK(meshcache_cluster_new(o, &c));
  meshcache_cluster_options_free(o);
  meshcache_cluster_stats *s = NULL;
  OK(meshcache_cluster_stats_get(c, &s));
  CHECK(strcmp(meshcache_cluster_stats_ring_source(s), "static") == 0);
  CHECK(meshcache_cluster_stats_ring_members_len(s) == 2); /* the peer list counts again */
  meshcache_cluster_stats_free(s);
  CHECK_RC(meshcache_cluster_wait_for_members(NULL, 1, BOUND_MS), INV);
  CHECK_RC(meshcache_cluster_wait_for_members(c, 1, 0), INV);
  meshcache_cluster_free(c);
}

typedef struct member_waiter {
  meshcache_cluster *cluster;
  size_t n;
  meshcache_result rc;
} member_waiter;

static void *wait_for_members(void *p) {
  member_waiter *w = (member_waiter *)p;
  w->rc = meshcache_cluster_wait_for_members(w->cluster, w->n, BOUND_MS);
  return NULL;
}

static void test_static_ring_stats_and_waits(void) {
  fixture f;
  time_t start = time(NULL);
  CHECK(fixture_open(&f, NULL));
  char addr[64];
  size_t n = 0;
  OK(meshcache_cluster_advertise_addr(f.cluster, addr, sizeof addr, &n));
  meshcache_cluster_stats *s = NULL;
  OK(meshcache_cluster_stats_get(f.cluster, &s));
  CHECK(strcmp(meshcache_cluster_stats_ring_source(s), "static") == 0);
  CHECK(meshcache_cluster_stats_ring_healthy(s));
  CHECK(meshcache_cluster_stats_ring_error(s) == NULL);
  CHECK(meshcache_cluster_stats_ring_members_len(s) == 1);
  CHECK(strcmp(meshcache_cluster_stats_ring_member(s, 0), addr) == 0);
  CHECK(meshcache_cluster_stats_ring_member(s, 1) == NULL);
  CHECK(meshcache_cluster_stats_ring_member(s, (size_t)-1) == NULL);
  CHECK(meshcache_cluster_stats_ring_epoch(s) == 1);
  CHECK(unix_ms_between(meshcache_cluster_stats_ring_changed_at_ms(s), start));
  meshcache_cluster_stats_free(s);
  /* NULL stats: defaults, no crash */
  CHECK(strcmp(meshcache_cluster_stats_ring_source(NULL), "") == 0);
  CHECK(meshcache_cluster_stats_ring_members_len(NULL) == 0);
  CHECK(meshcache_cluster_stats_ring_member(NULL, 0) == NULL);
  CHECK(meshcache_cluster_stats_ring_epoch(NULL) == 0);
  CHECK(meshcache_cluster_stats_ring_changed_at_ms(NULL) == 0);
  CHECK(!meshcache_cluster_stats_ring_healthy(NULL));
  CHECK(meshcache_cluster_stats_ring_error(NULL) == NULL);
  /* Waits: already there returns at once; a ring that never forms times out. */
  OK(meshcache_cluster_wait_for_members(f.cluster, 1, BOUND_MS));
  double t0 = now_ms();
  CHECK_RC(meshcache_cluster_wait_for_members(f.cluster, 2, 100), MESHCACHE_TIMEOUT);
  CHECK(now_ms() - t0 >= 99);
  /* A waiter on another thread is woken by set_peers (or finds two members, if it
   * starts after it). */
  member_waiter w = {f.cluster, 2, MESHCACHE_UNKNOWN};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, wait_for_members, &w) == 0);
  const char *peers[2] = {addr, "127.0.0.1:1"};
  meshcache_result rc = meshcache_cluster_set_peers(f.cluster, peers, 2);
  pthread_join(t, NULL);
  CHECK_RC(rc, MESHCACHE_OK);
  CHECK_RC(w.rc, MESHCACHE_OK);
  OK(meshcache_cluster_stats_get(f.cluster, &s));
  CHECK(meshcache_cluster_stats_ring_members_len(s) == 2 && ring_has(s, "127.0.0.1:1"));
  CHECK(meshcache_cluster_stats_ring_epoch(s) == 2);
  meshcache_cluster_stats_free(s);
  OK(meshcache_cluster_shutdown(f.cluster));
  CHECK_RC(meshcache_cluster_wait_for_members(f.cluster, 2, BOUND_MS), MESHCACHE_CLOSED);
  fixture_close(&f);
}

/* ---- runner ----------------------------------------------------------------------- */

static const test_case TESTS[] = {
    T(test_version_names_sizes),    T(test_set_get_peek_delete), T(test_ttl_with_manual_clock),
    T(test_default_ttl),            T(test_loader_errors),       T(test_panic_becomes_result),
    T(test_loader_reentry),         T(test_get_many),            T(test_limits),
    T(test_closed_after_shutdown),  T(test_cluster_options_and_addrs),
    T(test_three_node_cluster),     T(test_eight_threads),       T(test_null_and_bad_arguments),
    T(test_loader_out_bad_arguments),
    T(test_options_refused_by_meshcache_cluster_new),
    T(test_breaker_opens_on_a_dead_peer),
    T(test_stats_field_names_are_the_cores), T(test_free_waits_for_a_running_loader),
    T(test_token),                  T(test_token_file_and_bad_tokens), T(test_tls),
    T(test_shutdown_ends_with_idle_connections),
    T(test_load_timeout),           T(test_get_with_timeout),
    T(test_shutdown_releases_waiters_on_a_hung_loader),
    T(test_membership_through_etcd), T(test_membership_specs_refused),
    T(test_static_ring_stats_and_waits),
};

int main(int argc, char **argv) {
  return run_tests(TESTS, sizeof TESTS / sizeof TESTS[0], argc, argv);
}
