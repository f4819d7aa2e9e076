//! The clock a store keeps time by.
//!
//! Every instant that is compared across machines (a heartbeat against a lease, a job's
//! creation against its allocation timeout, its start against its max runtime, its end
//! against the purge age) is read from one clock: the store's. The Redis store reads Redis
//! `TIME` inside its scripts; the in-memory store reads a [`Clock`], the process clock
//! ([`SystemClock`]) unless a test hands it a [`ManualClock`]. Callers never stamp a
//! transition with their own clock, so an executor whose clock is minutes off is judged
//! exactly like one whose clock is right.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::time::Timestamp;

/// A source of wall-clock instants.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The process's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to: for tests that must pick the instant.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self {
            millis: AtomicI64::new(at.millis()),
        }
    }

    /// Sets the clock to `at` (it may go backwards: tests of a stepped clock do that).
    pub fn set(&self, at: Timestamp) {
        self.millis.store(at.millis(), Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = by.as_millis().min(i64::MAX as u128) as i64;
        self.millis.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.millis.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp(1_000));
        assert_eq!(clock.now(), Timestamp(1_000));
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now(), Timestamp(1_250));
        clock.set(Timestamp(10));
        assert_eq!(clock.now(), Timestamp(10));
    }
}
