//! Answers to other nodes: their gets, sets and deletes for keys this node owns.

use bytes::Bytes;

use super::Group;
use super::stats::bump;
use crate::entry::Entry;
use crate::error::Result;
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

    /// A `set` sent by a peer to this node as the owner.
    pub(crate) fn serve_set(&self, key: Bytes, value: Bytes, deadline: u64) -> Result<()> {
        self.check_open()?;
        self.inner.limits.check_key(&key)?;
        self.inner.limits.check_value(&value)?;
        self.check_storable(&key, &value)?;
        self.write_local(Tier::Main, key, Some(value), deadline);
        Ok(())
    }

    /// A `delete` (or an invalidation) sent by a peer.
    pub(crate) fn serve_delete(&self, key: &[u8]) -> Result<bool> {
        self.check_open()?;
        self.inner.limits.check_key(key)?;
        Ok(self.remove_local(key))
    }
}
