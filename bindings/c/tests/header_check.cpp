// The header compiles as C++17 (-Wall -Wextra -Werror -pedantic) and links from C++.
#include "meshcache.h"

#include <cstdio>

int main() {
  meshcache_value v{};
  meshcache_value_free(&v);
  meshcache_result rc = meshcache_group_get(nullptr, nullptr, 0, &v);
  std::printf("C++: %s\n", meshcache_result_name(static_cast<int>(rc)));
  return rc == MESHCACHE_INVALID_ARGUMENT ? 0 : 1;
}
