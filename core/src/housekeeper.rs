//! The housekeeper: removes expired entries in the background so they stop holding memory.
//!
//! Reads never return an expired entry (expiry is checked on every lookup); this task is
//! what frees the memory of entries nobody reads again.

use std::sync::Weak;
use std::time::Duration;

use crate::store::Store;

/// How often a group's housekeeper removes expired entries, when it has a runtime.
pub const REAP_INTERVAL: Duration = Duration::from_secs(1);
/// Slots of each shard one pass looks at.
const REAP_SCAN: usize = 4096;

/// What the housekeeper needs of a group: its store, and whether it is still open.
pub(crate) trait Reapable: Send + Sync + 'static {
    fn store(&self) -> &Store;
    fn is_closed(&self) -> bool;
}

/// Reaps `target`'s store every [`REAP_INTERVAL`] until it is dropped or closed.
pub(crate) async fn run<T: Reapable>(target: Weak<T>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(t) = target.upgrade() else { return };
        if t.is_closed() {
            return;
        }
        t.store().reap(REAP_SCAN);
    }
}
