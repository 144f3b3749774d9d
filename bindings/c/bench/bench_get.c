/* C get-hit cost per call beside the Rust API's, on the same group in the same process:
 * meshcache_group_get (+ meshcache_value_free) from C, against Group::get_now (what
 * meshcache_group_get calls), Group::peek and a blocking Group::get (Handle::block_on)
 * timed inside the library (meshcache_bench_rust_get_hit).
 * Rounds alternate between the two; the best round of each is reported.
 * Run by `make bench-c` (release build). */
#define _POSIX_C_SOURCE 200809L
#define MESHCACHE_TEST_HOOKS 1

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "meshcache.h"

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

#define CHECK(x)                                                                   \
  do {                                                                             \
    if ((x) != MESHCACHE_OK) {                                                     \
      fprintf(stderr, "%s failed: %s\n", #x, meshcache_last_error_message());      \
      return 1;                                                                    \
    }                                                                              \
  } while (0)

int main(int argc, char **argv) {
  uint64_t iters = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
  int rounds = argc > 2 ? atoi(argv[2]) : 15;
  meshcache_cluster *c = NULL;
  meshcache_group *g = NULL;
  const uint8_t key[] = "user:000042";
  uint8_t value[100];
  memset(value, 'v', sizeof value);
  CHECK(meshcache_cluster_new(NULL, &c));
  CHECK(meshcache_group_new(c, "bench", NULL, &g));
  CHECK(meshcache_group_set(g, key, sizeof key - 1, value, sizeof value, MESHCACHE_TTL_DEFAULT));

  double best_c = 1e18, best_cpeek = 1e18, best_peek = 1e18, best_get = 1e18, best_now = 1e18;
  size_t sink = 0;
  for (int r = 0; r < rounds; r++) {
    double t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
      meshcache_value v = {0};
      if (meshcache_group_get(g, key, sizeof key - 1, &v) != MESHCACHE_OK) return 1;
      sink += v.len;
      meshcache_value_free(&v);
    }
    double c_ns = (now_ns() - t0) / (double)iters;
    t0 = now_ns();
    for (uint64_t i = 0; i < iters; i++) {
      meshcache_value v = {0};
      if (meshcache_group_peek(g, key, sizeof key - 1, &v) != MESHCACHE_OK) return 1;
      sink += v.len;
      meshcache_value_free(&v);
    }
    double cpeek_ns = (now_ns() - t0) / (double)iters;
    double peek_ns = 0, get_ns = 0, get_now_ns = 0;
    CHECK(meshcache_bench_rust_get_hit(g, key, sizeof key - 1, iters, &peek_ns, &get_ns, &get_now_ns));
    if (c_ns < best_c) best_c = c_ns;
    if (cpeek_ns < best_cpeek) best_cpeek = cpeek_ns;
    if (get_now_ns < best_now) best_now = get_now_ns;
    if (peek_ns < best_peek) best_peek = peek_ns;
    if (get_ns < best_get) best_get = get_ns;
  }
  if (sink != 2 * iters * rounds * sizeof value) return 1;
  printf("get hit, 100-byte value, %llu calls x %d rounds, best round (ns/call):\n",
         (unsigned long long)iters, rounds);
  printf("  C    meshcache_group_get + value_free   %7.1f\n", best_c);
  printf("  C    meshcache_group_peek + value_free  %7.1f\n", best_cpeek);
  printf("  Rust Group::get_now (a hit: Now::Ready)  %7.1f   C get / this = %.2fx (ABI overhead)\n",
         best_now, best_c / best_now);
  printf("  Rust Group::peek                        %7.1f   C peek / this = %.2fx (ABI overhead), "
         "C get / this = %.2fx\n",
         best_peek, best_cpeek / best_peek, best_c / best_peek);
  printf("  Rust block_on(Group::get)               %7.1f   C get / this = %.2fx\n", best_get,
         best_c / best_get);
  meshcache_group_free(g);
  meshcache_cluster_free(c);
  return 0;
}
