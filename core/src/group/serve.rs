//! Answers to other nodes: their gets, sets and deletes for keys this node owns.

use bytes::Bytes;

use super::Group;
use super::stats::bump;
use crate::entry::Entry;
use crate::error::Result;
use crate::route::Stamp;
use crate::store::Tier;

impl Group {
    /// A get forwarded by a peer: answered from the store or loaded here, and never
    /// forwarded again, even if this node's ring names another owner (rings disagree
    /// while membership changes; forwarding again could bounce the key between nodes).
    pub(crate) async fn serve_get(&self, key: Bytes) -> Result<Entry> {
        self.check_open()?;
        self.inner.limits.check_key(&key)?;
        bump(&self.inner.counters.served);
        if let Some(hit) = self.inner.store.get_uncounted(&key) {
            return Ok(hit);
        }
        self.load_local(key).await
    }

    /// A `set` sent by a peer to this node as an owner (the primary or a replica). A
    /// versioned write is kept only if newer than the copy held (see `copies.rs`); an
    /// unversioned one (a foreign client's) is stamped here.
    pub(crate) fn serve_set(&self, key: Bytes, value: Bytes, deadline: u64, stamp: Stamp) -> Result<()> {
        self.check_open()?;
        self.inner.limits.check_key(&key)?;
        self.inner.limits.check_value(&value)?;
        self.check_storable(&key, &value)?;
        if stamp.version == 0 {
            let version = self.inner.hlc.next();
            self.write_local(Tier::Main, key, Some(value), deadline, version);
        } else {
            self.accept_copy(key, Entry::value(value, deadline).with_version(stamp.version));
        }
        Ok(())
    }

    /// A `delete` (or an invalidation) sent by a peer: removes a copy older than the
    /// stamp's version (any copy when unversioned).
    pub(crate) fn serve_delete(&self, key: &[u8], stamp: Stamp) -> Result<bool> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        Ok(self.remove_versioned(key, stamp.version, stamp.tombstone))
    }

    /// A peek by a node that newly owns `key`: this node's main-tier copy, never loaded.
    pub(crate) fn serve_peek(&self, key: &[u8]) -> Result<Option<Entry>> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        if self.inner.store.tier_of(key) != Some(Tier::Main) {
            return Ok(None);
        }
        Ok(self.inner.store.get_uncounted(key))
    }
}
