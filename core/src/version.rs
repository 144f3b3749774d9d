//! Versions of cached entries: a hybrid logical clock.
//!
//! Every write (a `set`, a `delete`, a load) is stamped with a version: the wall clock in
//! unix milliseconds shifted left by 16 bits, plus a counter that keeps versions from one
//! node strictly increasing within a millisecond (and past any version it has seen from
//! another node). Copies of a key that meet (a replica write, a handoff, a warm takeover)
//! are resolved by **last writer wins**: the higher version stays. With clocks in sync to
//! within a few milliseconds, the later write wins; a node whose clock is behind still
//! orders its own writes after every version it has received.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::Clock;

/// Bits of a version below the milliseconds.
const COUNTER_BITS: u32 = 16;

/// A hybrid logical clock.
pub(crate) struct Hlc {
    last: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Hlc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hlc").field("last", &self.last).finish()
    }
}

impl Hlc {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Hlc {
            last: AtomicU64::new(0),
            clock,
        }
    }

    /// A version greater than every one this clock has given or seen.
    pub(crate) fn next(&self) -> u64 {
        let physical = self.clock.now_ms() << COUNTER_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let v = physical.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, v, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return v,
                Err(seen) => last = seen,
            }
        }
    }

    /// Moves the clock past `version`, received from another node.
    pub(crate) fn observe(&self, version: u64) {
        self.last.fetch_max(version, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn versions_increase_within_a_millisecond_and_past_what_was_seen() {
        let clock = ManualClock::new(1_000);
        let hlc = Hlc::new(Arc::new(clock.clone()));
        let a = hlc.next();
        let b = hlc.next();
        assert!(b > a && a >> COUNTER_BITS == 1_000);
        // A version from a node whose clock is ahead: ours go past it.
        hlc.observe(5_000 << COUNTER_BITS);
        assert!(hlc.next() > 5_000 << COUNTER_BITS);
        clock.advance(std::time::Duration::from_secs(10));
        assert_eq!(hlc.next(), 11_000 << COUNTER_BITS);
    }
}
