/* The C side of the Go loader: meshcache calls mcgo_loader (a meshcache_loader_fn) on one
 * of its runtime threads; mcgo_loader calls the exported Go function mcgoLoad. */
#ifndef MCGO_LOADER_H
#define MCGO_LOADER_H

#include <meshcache.h>
#include <stdint.h>

/* Sets the Go loader whose cgo.Handle is `handle` on `opts` (mcgo_free deletes the
 * handle when meshcache no longer uses the loader). */
enum meshcache_result mcgo_set_loader(meshcache_group_options *opts, uintptr_t handle);

/* meshcache_group_get, with this thread marked as a Go caller during the call: the loader
 * reports whether it ran on such a thread (it never should: it runs on meshcache's). */
enum meshcache_result mcgo_group_get(const meshcache_group *group, const uint8_t *key,
                                     size_t key_len, meshcache_value *out);

#endif
