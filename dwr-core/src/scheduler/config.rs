//! Scheduler settings.

use std::time::Duration;

use crate::queues::Queues;

/// How the scheduler behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// The safety-net tick: a full pass (with housekeeping: lost executors, max runtimes)
    /// runs at least this often even when nothing wakes the scheduler (`JOB_POLL_INTERVAL`).
    pub tick: Duration,
    /// A job that no live executor could ever run (too big, no GPU of its model, no
    /// eligible region) fails once it has been pending this long; `None` leaves it pending
    /// until its allocation timeout. Default: at once, as Slurm refuses a job no partition
    /// can run.
    pub infeasible_grace: Option<Duration>,
    /// At most this many pending jobs are considered per pass, shared equally among the
    /// queues with waiting jobs (each's first, in its order). Those behind them are still
    /// checked for their allocation timeout, a page per housekeeping pass.
    pub max_jobs_per_pass: usize,
    /// The queues jobs may name, their weights and quotas (`DWR_QUEUES_FILE`).
    pub queues: Queues,
    /// Whether a pending job that fits nowhere may preempt running jobs of lower priority
    /// (`DWR_PREEMPTION`; a queue's own setting wins). Off by default.
    pub preemption: bool,
    /// Which finished jobs (and their logs) are deleted in the background.
    pub retention: Retention,
}

/// How long finished jobs are kept: older than `max_age`, or beyond the `max_jobs` that
/// finished last, they are deleted (with their logs) in the background, in bounded batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Finished longer ago than this (by the store's clock): deleted. `None`: kept by age.
    pub max_age: Option<Duration>,
    /// More finished jobs than this: the first finished are deleted. `None`: no count.
    pub max_jobs: Option<u64>,
    /// How often the background deletion runs.
    pub every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_jobs: Some(1_000_000),
            every: Duration::from_secs(60),
        }
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(10),
            infeasible_grace: Some(Duration::ZERO),
            max_jobs_per_pass: 10_000,
            queues: Queues::default(),
            preemption: false,
            retention: Retention::default(),
        }
    }
}
