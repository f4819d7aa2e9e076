//! Retries: a job's [`RetryPolicy`], the [`RetryCause`] of a failed attempt, and the
//! [`AttemptRecord`] each ended attempt leaves.
//!
//! A failed attempt whose cause the policy names, of a job with retries left and no abort
//! requested, does not end the job: the store releases what the attempt held, records the
//! attempt, and puts the job back to `pending` until its backoff has passed
//! ([`Job::retry_at`](crate::Job::retry_at)). The next commit is the next attempt, and the
//! fencing by attempt number keeps the old one from writing anything more: an attempt runs
//! at most once, and a retry may repeat what an earlier attempt did before it was lost.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::ExecutorId;
use crate::time::Timestamp;

/// Default wait before the first retry; it doubles for each later one.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(10);
/// Longest wait before a retry, however many came before.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(600);
/// Most retries a job may ask for.
pub const MAX_RETRIES: u32 = 100;

/// Why an attempt failed, as far as retries care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryCause {
    /// Its executor was lost (lease expired), or its container was lost with it.
    ExecutorLost,
    /// The image could not be had, or the container could not be created or started.
    StartFailed,
    /// The container exited with a non-zero code.
    ExitNonzero,
    /// The container was OOM-killed.
    Oom,
}

impl RetryCause {
    /// Every cause, in wire order.
    pub const ALL: [RetryCause; 4] = [
        RetryCause::ExecutorLost,
        RetryCause::StartFailed,
        RetryCause::ExitNonzero,
        RetryCause::Oom,
    ];

    /// The wire name: `executor_lost`, `start_failed`, `exit_nonzero`, `oom`.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::ExecutorLost => "executor_lost",
            RetryCause::StartFailed => "start_failed",
            RetryCause::ExitNonzero => "exit_nonzero",
            RetryCause::Oom => "oom",
        }
    }

    /// The cause in words, as a pending reason says it: `retry 1/3 in 10 s after: <this>`.
    pub fn describe(self) -> &'static str {
        match self {
            RetryCause::ExecutorLost => "executor lost",
            RetryCause::StartFailed => "start failed",
            RetryCause::ExitNonzero => "non-zero exit",
            RetryCause::Oom => "out of memory",
        }
    }
}

impl fmt::Display for RetryCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the four causes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown retry cause {value:?}: expected executor_lost, start_failed, exit_nonzero or oom")]
pub struct UnknownRetryCause {
    /// The text given.
    pub value: String,
}

impl FromStr for RetryCause {
    type Err = UnknownRetryCause;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RetryCause::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownRetryCause {
                value: s.chars().take(64).collect(),
            })
    }
}

/// How a job is retried after a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: none, the default).
    pub max_retries: u32,
    /// Wait before the first retry; it doubles for each later one, up to
    /// [`MAX_RETRY_BACKOFF`].
    #[serde(with = "millis")]
    pub backoff: Duration,
    /// The causes that are retried (default: all of them).
    pub retry_on: BTreeSet<RetryCause>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 0,
            backoff: DEFAULT_RETRY_BACKOFF,
            retry_on: RetryCause::ALL.into_iter().collect(),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first): the backoff doubled
    /// `retry - 1` times, at most [`MAX_RETRY_BACKOFF`].
    pub fn delay_before(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(32);
        self.backoff
            .saturating_mul(1u32 << doublings.min(31))
            .min(MAX_RETRY_BACKOFF)
    }

    /// Whether a job whose attempt number `attempt` failed for `cause` is retried.
    pub fn retries(&self, cause: Option<RetryCause>, attempt: u32) -> bool {
        cause.is_some_and(|c| self.retry_on.contains(&c)) && attempt <= self.max_retries
    }

    /// `retry_on` as the comma-separated wire names (what the Redis scripts read).
    pub fn retry_on_list(&self) -> String {
        self.retry_on
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One ended attempt of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Its number (1 for the first).
    pub attempt: u32,
    /// The executor it ran on.
    #[serde(default)]
    pub executor: Option<ExecutorId>,
    /// That executor's IP.
    #[serde(default)]
    pub executor_ip: Option<String>,
    /// When its container was started, if it was.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Timestamp,
    /// The container's exit code, if it exited.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Why it ended.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A `Duration` as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let p = RetryPolicy {
            max_retries: 20,
            ..RetryPolicy::default()
        };
        let secs: Vec<u64> = (1..=8).map(|r| p.delay_before(r).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(p.delay_before(1_000), MAX_RETRY_BACKOFF);
        let zero = RetryPolicy {
            backoff: Duration::ZERO,
            ..p
        };
        assert_eq!(zero.delay_before(5), Duration::ZERO);
    }

    #[test]
    fn retries_follow_the_count_and_the_causes() {
        let mut p = RetryPolicy {
            max_retries: 2,
            ..RetryPolicy::default()
        };
        assert!(p.retries(Some(RetryCause::Oom), 1));
        assert!(p.retries(Some(RetryCause::Oom), 2));
        assert!(
            !p.retries(Some(RetryCause::Oom), 3),
            "attempt 3 was the last"
        );
        assert!(!p.retries(None, 1), "timeouts and aborts are not retried");
        p.retry_on = [RetryCause::ExecutorLost].into();
        assert!(!p.retries(Some(RetryCause::ExitNonzero), 1));
        assert!(p.retries(Some(RetryCause::ExecutorLost), 1));
        assert!(!RetryPolicy::default().retries(Some(RetryCause::Oom), 1));
    }

    #[test]
    fn causes_parse_and_print() {
        for c in RetryCause::ALL {
            assert_eq!(c.as_str().parse::<RetryCause>(), Ok(c));
        }
        assert!("executor-lost".parse::<RetryCause>().is_err());
        assert_eq!(
            RetryPolicy::default().retry_on_list(),
            "executor_lost,start_failed,exit_nonzero,oom"
        );
    }
}
