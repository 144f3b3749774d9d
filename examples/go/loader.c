#include "loader.h"

#include <string.h>
#include <sys/prctl.h>

#include "_cgo_export.h"

/* Set on a thread while it is inside mcgo_group_get (a thread Go called C from). */
static __thread int mcgo_in_go_get;

/* Whether the calling thread is one of meshcache's runtime threads: its name is
 * "meshcache" (the runtime names its workers and blocking threads so) and it is not a
 * thread Go is calling meshcache_group_get from. */
static int mcgo_on_meshcache_thread(void) {
  char name[17] = {0};
  if (mcgo_in_go_get) return 0;
  if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0) return 0;
  return strcmp(name, "meshcache") == 0;
}

static void mcgo_loader(void *user_data, const uint8_t *key, size_t key_len,
                        meshcache_loader_out *out) {
  mcgoLoad((uintptr_t)user_data, (uint8_t *)key, key_len, out, mcgo_on_meshcache_thread());
}

static void mcgo_free(void *user_data) { mcgoFreeLoader((uintptr_t)user_data); }

enum meshcache_result mcgo_set_loader(meshcache_group_options *opts, uintptr_t handle) {
  return meshcache_group_options_set_loader(opts, mcgo_loader, (void *)handle, mcgo_free);
}

enum meshcache_result mcgo_group_get(const meshcache_group *group, const uint8_t *key,
                                     size_t key_len, meshcache_value *out) {
  enum meshcache_result r;
  mcgo_in_go_get = 1;
  r = meshcache_group_get(group, key, key_len, out);
  mcgo_in_go_get = 0;
  return r;
}
