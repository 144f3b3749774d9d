/* C tests of replicas, the handoff of a graceful leave and the warm takeover of newly
 * owned keys. Built and run like test_meshcache.c by `make test-c` (mk/c.mk): with
 * -std=c11 -Wall -Wextra -Werror -pedantic, natively and under valgrind, under
 * target/debug/with-etcd (the handoff tests leave an etcd ring). Nothing sleeps: every
 * wait is on an event (a call returning, the ring changing), bounded by BOUND_MS. */
#include "test_common.h"

/* A node of these tests: a cluster and a group "r" with the counting loader. */
typedef struct rnode {
  meshcache_cluster *cluster;
  meshcache_group *group;
  counting_loader loader;
  char addr[64];
} rnode;

/* Starts `n` with `o` (then freed) and a group "r" with `replicas`; 0 on failure (the
 * last error says why). */
static int rnode_open(rnode *n, meshcache_cluster_options *o, size_t replicas) {
  memset(n, 0, sizeof *n);
  if (o == NULL) return 0;
  /* a node shut down mid-test does not wait long for connections the others keep open */
  meshcache_cluster_options_set_shutdown_grace_ms(o, 1000);
  meshcache_group_options *go = NULL;
  size_t len = 0;
  meshcache_result rc = meshcache_cluster_new(o, &n->cluster);
  meshcache_cluster_options_free(o);
  if (rc != MESHCACHE_OK) return 0;
  if (meshcache_cluster_advertise_addr(n->cluster, n->addr, sizeof n->addr, &len) != MESHCACHE_OK)
    return 0;
  if (meshcache_group_options_new(&go) != MESHCACHE_OK) return 0;
  meshcache_group_options_set_loader(go, count_loader, &n->loader, NULL);
  rc = meshcache_group_options_set_replicas(go, replicas);
  if (rc == MESHCACHE_OK) rc = meshcache_group_new(n->cluster, "r", go, &n->group);
  meshcache_group_options_free(go);
  return rc == MESHCACHE_OK;
}

static void rnode_close(rnode *n) {
  meshcache_group_free(n->group);
  meshcache_cluster_free(n->cluster);
}

/* Static membership: every node of `n[0..count)` gets the same peer list, all of them. */
static meshcache_result link_all(rnode *n, size_t count) {
  const char *peers[8];
  for (size_t i = 0; i < count; i++) peers[i] = n[i].addr;
  for (size_t i = 0; i < count; i++) {
    meshcache_result rc = meshcache_cluster_set_peers(n[i].cluster, peers, count);
    if (rc != MESHCACHE_OK) return rc;
  }
  return MESHCACHE_OK;
}

/* Whether `view`'s ring names `addr` as the owner (the primary) of `key`. */
static int owned_by(const rnode *view, const char *key, const char *addr) {
  char owner[64];
  size_t len = 0;
  if (meshcache_cluster_owner_of(view->cluster, K(key), owner, sizeof owner, &len) != MESHCACHE_OK)
    return 0;
  return strcmp(owner, addr) == 0;
}

/* Whether a get of `key` on `n` answers `want`. */
static int get_is(const rnode *n, const char *key, const char *want) {
  meshcache_value v = {0};
  int ok = meshcache_group_get(n->group, K(key), &v) == MESHCACHE_OK && value_is(&v, want);
  meshcache_value_free(&v);
  return ok;
}

static meshcache_result set_str(const rnode *n, const char *key, const char *value) {
  return meshcache_group_set(n->group, K(key), (const uint8_t *)value, strlen(value),
                             MESHCACHE_TTL_DEFAULT);
}

/* ---- options ------------------------------------------------------------------------ */

static void test_replica_options(void) {
  const meshcache_result INV = MESHCACHE_INVALID_ARGUMENT;
  CHECK_RC(meshcache_group_options_set_replicas(NULL, 2), INV);
  CHECK_RC(meshcache_group_options_set_replicate_loads(NULL, true), INV);
  CHECK_RC(meshcache_cluster_options_set_warm_window_ms(NULL, 1), INV);
  CHECK_RC(meshcache_cluster_options_set_handoff(NULL, 1, 1), INV);
  /* warm takeover and handoff off: the node works as before */
  meshcache_cluster_options *co = NULL;
  meshcache_cluster *c = NULL;
  OK(meshcache_cluster_options_new(&co));
  OK(meshcache_cluster_options_set_warm_window_ms(co, 0));
  OK(meshcache_cluster_options_set_handoff(co, 0, 0));
  OK(meshcache_cluster_new(co, &c));
  meshcache_cluster_options_free(co);
  /* 0 replicas: recorded by the setter, refused by meshcache_group_new */
  meshcache_group_options *go = NULL;
  meshcache_group *g = NULL;
  counting_loader l;
  memset(&l, 0, sizeof l);
  OK(meshcache_group_options_new(&go));
  OK(meshcache_group_options_set_replicas(go, 0));
  CHECK_RC(meshcache_group_new(c, "r", go, &g), INV);
  CHECK(g == NULL);
  CHECK(strstr(meshcache_last_error_message(), "replicas") != NULL);
  /* more replicas than nodes, loads replicated: a lone node holds the one copy */
  OK(meshcache_group_options_set_replicas(go, 3));
  OK(meshcache_group_options_set_replicate_loads(go, true));
  OK(meshcache_group_options_set_loader(go, count_loader, &l, count_loader_free));
  OK(meshcache_group_new(c, "r", go, &g));
  meshcache_group_options_free(go);
  meshcache_value v = {0};
  for (int i = 0; i < 2; i++) {
    OK(meshcache_group_get(g, K("k1"), &v));
    CHECK(value_is(&v, "v:k1"));
    meshcache_value_free(&v);
  }
  CHECK(atomic_load(&l.calls) == 1);
  OK(meshcache_group_set(g, K("k2"), (const uint8_t *)"x", 1, MESHCACHE_TTL_DEFAULT));
  OK(meshcache_group_peek(g, K("k2"), &v));
  CHECK(value_is(&v, "x"));
  meshcache_value_free(&v);
  OK(meshcache_group_delete(g, K("k2")));
  CHECK_RC(meshcache_group_peek(g, K("k2"), &v), MESHCACHE_NOT_FOUND);
  meshcache_group_stats s;
  OK(meshcache_group_stats_get(g, &s));
  CHECK(s.replica_writes == 0 && s.replica_write_errors == 0 && s.replica_reads == 0);
  CHECK(s.handoff_sent == 0 && s.handoff_received == 0 && s.warm_takeovers == 0);
  /* owner_of: a lone node owns every key */
  char addr[64], owner[64];
  size_t n = 0, m = 0;
  OK(meshcache_cluster_advertise_addr(c, addr, sizeof addr, &n));
  OK(meshcache_cluster_owner_of(c, K("k1"), owner, sizeof owner, &m));
  CHECK(strcmp(owner, addr) == 0 && m == n);
  OK(meshcache_cluster_owner_of(c, NULL, 0, owner, sizeof owner, &m));
  CHECK(strcmp(owner, addr) == 0);
  char tiny[4] = "abc";
  size_t t = 99;
  CHECK_RC(meshcache_cluster_owner_of(c, K("k1"), tiny, sizeof tiny, &t), MESHCACHE_INSUFFICIENT_SIZE);
  CHECK(t == 99 && strcmp(tiny, "abc") == 0);
  CHECK_RC(meshcache_cluster_owner_of(NULL, K("k1"), owner, sizeof owner, &m), INV);
  CHECK_RC(meshcache_cluster_owner_of(c, NULL, 3, owner, sizeof owner, &m), INV);
  CHECK_RC(meshcache_cluster_owner_of(c, K("k1"), NULL, sizeof owner, &m), INV);
  CHECK_RC(meshcache_cluster_owner_of(c, K("k1"), owner, sizeof owner, NULL), INV);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
  CHECK(atomic_load(&l.freed) == 1);
}

/* ---- replicas: a written value survives its primary ---------------------------------- */

#define NODES 3
#define REPLICA_KEYS 200
#define MIN_DEAD_KEYS 20

static void test_replicas_survive_a_dead_primary(void) {
  rnode n[NODES];
  for (int i = 0; i < NODES; i++) CHECK(rnode_open(&n[i], slow_run_options(), 2));
  OK(link_all(n, NODES));
  /* Each key written through node 0 goes to its primary and the next node on the ring. */
  char key[32], want[40];
  for (int k = 0; k < REPLICA_KEYS; k++) {
    snprintf(key, sizeof key, "rep-%d", k);
    snprintf(want, sizeof want, "set:%s", key);
    OK(set_str(&n[0], key, want));
  }
  meshcache_group_stats s0, s1;
  OK(meshcache_group_stats_get(n[0].group, &s0));
  CHECK(s0.replica_writes == REPLICA_KEYS && s0.replica_write_errors == 0); /* one copy each */
  /* The keys whose primary is node 2, on every ring. */
  static int dead[REPLICA_KEYS];
  int n_dead = 0;
  for (int k = 0; k < REPLICA_KEYS; k++) {
    snprintf(key, sizeof key, "rep-%d", k);
    if (!owned_by(&n[0], key, n[2].addr)) continue;
    CHECK(owned_by(&n[1], key, n[2].addr) && owned_by(&n[2], key, n[2].addr));
    dead[n_dead++] = k;
  }
  printf("     node 0 wrote %llu replica copies; node 2 is the primary of %d keys\n",
         (unsigned long long)s0.replica_writes, n_dead);
  CHECK(n_dead >= MIN_DEAD_KEYS);
  OK(meshcache_cluster_shutdown(n[2].cluster));
  /* Every one of them, from both survivors: the value written, never the loader's. */
  for (int i = 0; i < 2; i++) {
    for (int d = 0; d < n_dead; d++) {
      snprintf(key, sizeof key, "rep-%d", dead[d]);
      snprintf(want, sizeof want, "set:%s", key);
      CHECK(get_is(&n[i], key, want));
    }
  }
  for (int i = 0; i < NODES; i++) CHECK(atomic_load(&n[i].loader.calls) == 0);
  /* A key's second replica is one survivor, which answers from its own store; the other
   * survivor, unable to reach node 2, asked it (replica_reads, see core's replicate.rs):
   * one replica read per key in all. */
  OK(meshcache_group_stats_get(n[0].group, &s0));
  OK(meshcache_group_stats_get(n[1].group, &s1));
  printf("     replica reads: %llu on node 0, %llu on node 1\n",
         (unsigned long long)s0.replica_reads, (unsigned long long)s1.replica_reads);
  CHECK(s0.replica_reads + s1.replica_reads == (uint64_t)n_dead);
  CHECK(s0.fallback_loads == 0 && s1.fallback_loads == 0);
  CHECK(s0.remote_errors + s1.remote_errors == (uint64_t)n_dead);
  for (int i = 0; i < NODES; i++) rnode_close(&n[i]);
}

/* ---- warm takeover: a joining node asks the previous owner first --------------------- */

#define WARM_KEYS 60

/* Nodes a and b hold WARM_KEYS written keys; c joins with `warm_window_ms` (or the
 * default, 60 s, for UINT64_MAX) and gets the keys it now owns. */
static void warm_case(uint64_t warm_window_ms) {
  rnode n[3];
  for (int i = 0; i < 2; i++) CHECK(rnode_open(&n[i], slow_run_options(), 1));
  OK(link_all(n, 2));
  char key[32], want[40];
  for (int k = 0; k < WARM_KEYS; k++) {
    snprintf(key, sizeof key, "warm-%d", k);
    snprintf(want, sizeof want, "v:%s", key); /* what c's loader would answer too */
    OK(set_str(&n[0], key, want));
  }
  meshcache_cluster_options *o = slow_run_options();
  CHECK(o != NULL);
  if (warm_window_ms != UINT64_MAX) OK(meshcache_cluster_options_set_warm_window_ms(o, warm_window_ms));
  CHECK(rnode_open(&n[2], o, 1));
  OK(link_all(n, 3));
  /* c's connections to a and b are up before the timed peeks: a get of a key each owns */
  int owned = 0, warmed[2] = {0, 0};
  for (int k = 0; k < WARM_KEYS; k++) {
    snprintf(key, sizeof key, "warm-%d", k);
    snprintf(want, sizeof want, "v:%s", key);
    for (int i = 0; i < 2; i++) {
      if (!warmed[i] && owned_by(&n[2], key, n[i].addr)) {
        CHECK(get_is(&n[2], key, want));
        warmed[i] = 1;
      }
    }
  }
  CHECK(warmed[0] && warmed[1]);
  for (int k = 0; k < WARM_KEYS; k++) {
    snprintf(key, sizeof key, "warm-%d", k);
    if (!owned_by(&n[2], key, n[2].addr)) continue;
    snprintf(want, sizeof want, "v:%s", key);
    CHECK(get_is(&n[2], key, want));
    owned++;
  }
  meshcache_group_stats s;
  OK(meshcache_group_stats_get(n[2].group, &s));
  printf("     warm window %s: the new node owns %d keys, %llu from their previous owner, "
         "%llu loaded\n",
         warm_window_ms == 0 ? "off" : "60 s", owned, (unsigned long long)s.warm_takeovers,
         (unsigned long long)s.loads);
  CHECK(owned > 0);
  CHECK(atomic_load(&n[0].loader.calls) == 0 && atomic_load(&n[1].loader.calls) == 0);
  CHECK(s.loads == (uint64_t)atomic_load(&n[2].loader.calls));
  if (warm_window_ms == 0) {
    CHECK(s.warm_takeovers == 0 && s.loads == (uint64_t)owned);
  } else {
    /* Each peek waits 250 ms at most (then the key is loaded): a slow run (valgrind) may
     * load a few, never all. */
    CHECK(s.warm_takeovers > 0 && s.warm_takeovers + s.loads == (uint64_t)owned);
  }
  for (int i = 0; i < 3; i++) rnode_close(&n[i]);
}

static void test_warm_takeover_on_join(void) { warm_case(UINT64_MAX); }
static void test_warm_window_off_loads(void) { warm_case(0); }

/* ---- handoff: a graceful leave streams entries to their new owners ------------------- */

#define HANDOFF_KEYS 40

/* Nodes a and b join through etcd; keys are written through a; b leaves gracefully,
 * with the default handoff (`on`) or with handoff off; a gets b's keys. */
static void handoff_case(int on) {
  const char *ep = test_etcd();
  CHECK(ep != NULL);
  char prefix[64];
  snprintf(prefix, sizeof prefix, "meshcache-c-handoff-%ld-%d", (long)getpid(), on);
  meshcache_cluster_options *oa = with_etcd(ep, prefix), *ob = with_etcd(ep, prefix);
  CHECK(oa != NULL && ob != NULL);
  if (!on) {
    OK(meshcache_cluster_options_set_handoff(ob, 0, 1 << 20));
    /* nor a warm takeover from b once it is gone: a loads what b held */
    OK(meshcache_cluster_options_set_warm_window_ms(oa, 0));
  }
  rnode a, b;
  CHECK(rnode_open(&a, oa, 1));
  CHECK(rnode_open(&b, ob, 1));
  OK(meshcache_cluster_wait_for_members(a.cluster, 2, BOUND_MS));
  OK(meshcache_cluster_wait_for_members(b.cluster, 2, BOUND_MS));
  char key[32], want[40];
  int of_b = 0, is_b[HANDOFF_KEYS];
  for (int k = 0; k < HANDOFF_KEYS; k++) {
    snprintf(key, sizeof key, "hand-%d", k);
    snprintf(want, sizeof want, "set:%s", key);
    OK(set_str(&a, key, want));
    is_b[k] = owned_by(&a, key, b.addr);
    CHECK(is_b[k] == owned_by(&b, key, b.addr));
    of_b += is_b[k];
  }
  CHECK(of_b > 0);
  /* b revokes its lease, hands its entries to a (or not), stops */
  OK(meshcache_cluster_shutdown(b.cluster));
  OK(meshcache_cluster_wait_for_members(a.cluster, 1, BOUND_MS));
  meshcache_group_stats sa, sb;
  OK(meshcache_group_stats_get(b.group, &sb)); /* readable after shutdown */
  OK(meshcache_group_stats_get(a.group, &sa));
  printf("     handoff %s: b owned %d keys, sent %llu, a kept %llu\n", on ? "on" : "off", of_b,
         (unsigned long long)sb.handoff_sent, (unsigned long long)sa.handoff_received);
  uint64_t want_handed = on ? (uint64_t)of_b : 0;
  CHECK(sb.handoff_sent == want_handed && sa.handoff_received == want_handed);
  /* every key on a: b's from the handoff (the written value), or loaded again */
  for (int k = 0; k < HANDOFF_KEYS; k++) {
    snprintf(key, sizeof key, "hand-%d", k);
    snprintf(want, sizeof want, "set:%s", key);
    if (!on && is_b[k]) snprintf(want, sizeof want, "v:%s", key);
    CHECK(get_is(&a, key, want));
  }
  CHECK(atomic_load(&a.loader.calls) == (on ? 0 : of_b));
  rnode_close(&b);
  rnode_close(&a);
}

static void test_handoff_on_graceful_leave(void) { handoff_case(1); }
static void test_handoff_off(void) { handoff_case(0); }

/* ---- runner ----------------------------------------------------------------------- */

static const test_case TESTS[] = {
    T(test_replica_options),       T(test_replicas_survive_a_dead_primary),
    T(test_warm_takeover_on_join), T(test_warm_window_off_loads),
    T(test_handoff_on_graceful_leave), T(test_handoff_off),
};

int main(int argc, char **argv) {
  return run_tests(TESTS, sizeof TESTS / sizeof TESTS[0], argc, argv);
}
