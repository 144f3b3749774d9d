//! An entry's key: short keys inline in the entry, longer ones in the caller's `Bytes`.

use bytes::Bytes;

/// Keys up to this many bytes are stored inside the entry.
pub(super) const INLINE_KEY: usize = 23;

/// An entry's key. Short keys (the common case: ids, hashes, short names) live inline,
/// so a lookup compares them without following a pointer to another allocation (one
/// cache miss fewer per get, measured in `examples/throughput.rs`) and the store holds no
/// allocation for them; longer keys keep the caller's `Bytes`.
#[derive(Debug)]
pub(super) enum Key {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Bytes),
}

impl Key {
    pub(super) fn new(key: Bytes) -> Self {
        Key::take(key).0
    }

    /// The key, and the caller's `Bytes` back when the key was copied inline (so that the
    /// caller can drop it later, e.g. outside a lock).
    pub(super) fn take(key: Bytes) -> (Self, Option<Bytes>) {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(&key);
            let inline = Key::Inline {
                len: key.len() as u8,
                bytes,
            };
            (inline, Some(key))
        } else {
            (Key::Heap(key), None)
        }
    }

    #[inline]
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_inline_and_long_keys_on_the_heap() {
        for len in [0, 1, INLINE_KEY] {
            let k = Bytes::from(vec![b's'; len]);
            let key = Key::new(k.clone());
            assert!(matches!(key, Key::Inline { .. }));
            assert_eq!(key.as_slice(), &k[..]);
        }
        let long = Bytes::from(vec![b'l'; INLINE_KEY + 1]);
        let key = Key::new(long.clone());
        assert!(
            matches!(&key, Key::Heap(b) if b.as_ptr() == long.as_ptr()),
            "a long key is not copied"
        );
        assert_eq!(key.as_slice(), &long[..]);
    }
}
