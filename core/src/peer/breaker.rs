//! A per-peer circuit breaker: after `threshold` consecutive failures the peer is skipped
//! (calls fail at once, and callers fall back) until `cooldown` has passed; then one probe
//! call is let through (half-open). A success closes the breaker; a failed probe opens it
//! for another cooldown.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The state of a peer's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once until the cooldown ends.
    Open,
    /// The cooldown ended; one probe call is (or may be) in flight.
    HalfOpen,
}

impl BreakerState {
    /// The state's name as every language shows it: `"closed"`, `"open"`, `"half_open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    /// Consecutive failures since the last success.
    failures: AtomicU32,
    /// When the breaker may let a probe through, in ms since `epoch`.
    open_until_ms: AtomicU64,
    /// A half-open probe is in flight.
    probing: AtomicBool,
    opened: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            opened: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn state(&self) -> BreakerState {
        if self.failures.load(Ordering::Acquire) < self.threshold {
            BreakerState::Closed
        } else if self.now_ms() < self.open_until_ms.load(Ordering::Acquire) {
            BreakerState::Open
        } else {
            BreakerState::HalfOpen
        }
    }

    /// Whether a call may go out now (`Some`). In the half-open state only one caller
    /// gets a permit. The permit must be kept until the call has reported
    /// [`Breaker::success`] or [`Breaker::failure`]: dropping it unreported (the caller
    /// was cancelled mid-probe) frees the probe slot, so the peer is not skipped forever.
    pub(crate) fn allow(&self) -> Option<Permit<'_>> {
        match self.state() {
            BreakerState::Closed => Some(Permit {
                breaker: self,
                probe: false,
            }),
            BreakerState::Open => None,
            // `then`, not `then_some`: a permit built and dropped for a refused caller
            // would free the slot of the probe in flight.
            BreakerState::HalfOpen => (!self.probing.swap(true, Ordering::AcqRel)).then(|| Permit {
                breaker: self,
                probe: true,
            }),
        }
    }

    pub(crate) fn success(&self) {
        self.failures.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    pub(crate) fn failure(&self) {
        let n = self.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if n >= self.threshold {
            if n == self.threshold || self.probing.load(Ordering::Acquire) {
                self.opened.fetch_add(1, Ordering::Relaxed);
            }
            self.open_until_ms.store(
                self.now_ms() + self.cooldown.as_millis() as u64,
                Ordering::Release,
            );
            self.probing.store(false, Ordering::Release);
        }
    }

    /// How many times the breaker opened.
    pub(crate) fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

/// Leave to make one call; see [`Breaker::allow`].
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe {
            // Reported or not, this probe is over; `success`/`failure` already cleared
            // the flag if it was reported.
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once_after_cooldown() {
        let b = Breaker::new(3, Duration::ZERO);
        for _ in 0..2 {
            b.failure();
            assert_eq!(b.state(), BreakerState::Closed);
        }
        b.failure();
        assert_eq!(b.opened(), 1);
        // Zero cooldown: immediately half-open, exactly one probe allowed.
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.allow();
        assert!(probe.is_some());
        assert!(b.allow().is_none());
        b.failure();
        drop(probe);
        assert_eq!(b.opened(), 2);
        let probe = b.allow();
        assert!(probe.is_some());
        b.success();
        drop(probe);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow().is_some() && b.allow().is_some());
    }

    #[test]
    fn stays_open_during_cooldown() {
        let b = Breaker::new(1, Duration::from_secs(3600));
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.allow().is_none());
    }

    #[test]
    fn a_cancelled_probe_frees_the_probe_slot() {
        let b = Breaker::new(1, Duration::ZERO);
        b.failure();
        let probe = b.allow().expect("half-open: one probe");
        assert!(b.allow().is_none());
        drop(probe); // the caller was cancelled before the call reported anything
        assert!(b.allow().is_some(), "the peer must not be skipped forever");
    }
}
