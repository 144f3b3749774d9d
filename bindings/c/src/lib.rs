//! The C ABI of meshcache (see include/meshcache.h).
