//! Scheduler settings.

use std::time::Duration;

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
    /// At most this many pending jobs are considered per pass (oldest first).
    pub max_jobs_per_pass: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(10),
            infeasible_grace: Some(Duration::ZERO),
            max_jobs_per_pass: 10_000,
        }
    }
}
