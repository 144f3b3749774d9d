//! What an entry costs against the byte budget.

use super::key::INLINE_KEY;

/// Fixed per-entry bytes charged on top of key and value (slab slot, table slot, queue
/// position, ghost slot and the shared-buffer header `Bytes` allocates on first clone).
/// Calibrated by `examples/memory.rs`: filling 640 MiB and 1 GiB budgets with 100-byte
/// and 1 KiB values measured 152-158 resident bytes per entry beyond the allocator-rounded
/// key and value; the few bytes on top cover hash tables caught at a lower load factor.
pub(super) const ENTRY_OVERHEAD: usize = 160;

/// What an entry costs against the budget: its bytes, what the allocator adds to each
/// allocation, and the fixed per-entry overhead of the table, slab and queues.
#[inline]
pub(super) fn charge(key_len: usize, value_len: usize) -> usize {
    let key_alloc = if key_len <= INLINE_KEY {
        0
    } else {
        alloc_size(key_len)
    };
    key_alloc + alloc_size(value_len) + ENTRY_OVERHEAD
}

/// glibc-style malloc chunk size for an `n`-byte allocation (8-byte header, 16-byte
/// alignment, 32-byte minimum).
#[inline]
fn alloc_size(n: usize) -> usize {
    if n == 0 { 0 } else { ((n + 8 + 15) & !15).max(32) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inline_key_is_not_charged_an_allocation() {
        assert_eq!(charge(INLINE_KEY, 0), ENTRY_OVERHEAD);
        assert!(charge(INLINE_KEY + 1, 0) > ENTRY_OVERHEAD);
    }

    #[test]
    fn allocations_round_like_malloc() {
        assert_eq!(alloc_size(0), 0);
        assert_eq!(alloc_size(1), 32);
        assert_eq!(alloc_size(24), 32);
        assert_eq!(alloc_size(25), 48);
        assert_eq!(charge(2, 100), 112 + ENTRY_OVERHEAD);
    }
}
