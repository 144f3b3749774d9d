#include <meshcache.h>
#include <stdio.h>

/* Called on a miss, on a meshcache thread: look the key up, answer through `out`. */
static void load_user(void *user_data, const uint8_t *key, size_t key_len,
                      meshcache_loader_out *out) {
  char value[64];
  int n = snprintf(value, sizeof value, "user %.*s", (int)key_len, (const char *)key);
  (void)user_data;
  meshcache_loader_out_set_value(out, (const uint8_t *)value, (size_t)n, 60000 /* ms */);
}

int main(void) {
  meshcache_cluster *cluster = NULL;
  meshcache_group_options *opts = NULL;
  meshcache_group *users = NULL;
  meshcache_value v = {0};

  if (meshcache_cluster_new(NULL, &cluster) != MESHCACHE_OK) goto fail; /* one node */
  meshcache_group_options_new(&opts);
  meshcache_group_options_set_capacity_str(opts, "64MiB");
  meshcache_group_options_set_loader(opts, load_user, NULL, NULL);
  if (meshcache_group_new(cluster, "users", opts, &users) != MESHCACHE_OK) goto fail;

  if (meshcache_group_get(users, (const uint8_t *)"42", 2, &v) != MESHCACHE_OK) goto fail;
  printf("%.*s\n", (int)v.len, (const char *)v.data); /* loaded once, then cached */
  meshcache_value_free(&v);

  meshcache_group_options_free(opts);
  meshcache_group_free(users);
  meshcache_cluster_free(cluster);
  return 0;
fail:
  fprintf(stderr, "meshcache: %s\n", meshcache_last_error_message());
  return 1;
}
