//! `Entry`: a cached answer as it moves between the store, flights and peers.

use bytes::Bytes;

/// A cached answer for one key: a value, or a remembered "not found", with its expiry.
///
/// The same type is what a store lookup returns, what a load or a fetch from the owner
/// hands to every caller waiting on the key, and what a peer sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value; `None` is a "not found".
    pub value: Option<Bytes>,
    /// Absolute expiry in unix milliseconds; `0` never expires.
    pub deadline: u64,
    /// When the value was written or loaded, as a hybrid logical clock reading (see
    /// `version.rs`): of two copies of a key, the higher version wins. `0`: unknown (the
    /// oldest).
    pub version: u64,
}

impl Entry {
    /// A value expiring at `deadline`.
    pub fn value(value: Bytes, deadline: u64) -> Self {
        Entry {
            value: Some(value),
            deadline,
            version: 0,
        }
    }

    /// A "not found" remembered until `deadline`.
    pub fn not_found(deadline: u64) -> Self {
        Entry {
            value: None,
            deadline,
            version: 0,
        }
    }

    /// This entry with `version`.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// The value, or [`crate::ErrorKind::NotFound`].
    pub(crate) fn into_result(self) -> crate::Result<Bytes> {
        self.value.ok_or_else(crate::Error::not_found)
    }
}
