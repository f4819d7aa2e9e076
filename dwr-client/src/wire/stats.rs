//! The figures of `GET /stats`: jobs per status, the pending queue, the scheduler.

use std::collections::BTreeMap;

use dwr_core::{Job, JobState, Timestamp};
use serde::{Deserialize, Serialize};

use super::ClusterStats;

/// Job counts per status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStats {
    /// Pending jobs.
    pub pending: u64,
    /// Assigned jobs.
    pub assigned: u64,
    /// Running jobs.
    pub running: u64,
    /// Succeeded jobs.
    pub succeeded: u64,
    /// Failed jobs.
    pub failed: u64,
    /// Aborted jobs.
    pub aborted: u64,
    /// All jobs.
    pub total: u64,
    /// Pending jobs (the original system's name).
    #[serde(default)]
    pub pending_jobs: u64,
    /// Assigned and running jobs (the original system's name).
    #[serde(default)]
    pub running_jobs: u64,
    /// Pending jobs by size, among the oldest [`PENDING_SCAN`] (the original system's).
    #[serde(default)]
    pub pending_by_size: PendingBySize,
    /// The pending job that has waited longest; null when none is pending.
    #[serde(default)]
    pub oldest_pending_job: Option<OldestPending>,
}

/// Pending jobs read for the figures about them in `GET /stats`.
pub const PENDING_SCAN: usize = 10_000;

/// Pending jobs by size, as the original system classed them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingBySize {
    /// At most 2 cores and 4 GB.
    pub small: u64,
    /// At most 8 cores and 16 GB (and not small).
    pub medium: u64,
    /// Larger.
    pub large: u64,
}

/// The pending job that has waited longest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OldestPending {
    /// Its id.
    pub job_id: String,
    /// When it was submitted (RFC 3339).
    pub created_at: String,
    /// How long it has waited, seconds.
    pub wait_seconds: u64,
}

impl QueueStats {
    /// Adds the figures about the pending jobs `oldest_first` (the oldest pending ones) as
    /// of `now`.
    pub fn with_pending(mut self, oldest_first: &[Job], now: Timestamp) -> Self {
        for job in oldest_first {
            let (millis, mib) = (job.spec.cpu_millis, job.spec.memory_mib);
            if millis <= 2000 && mib <= 4 * 1024 {
                self.pending_by_size.small += 1;
            } else if millis <= 8000 && mib <= 16 * 1024 {
                self.pending_by_size.medium += 1;
            } else {
                self.pending_by_size.large += 1;
            }
        }
        self.oldest_pending_job = oldest_first.first().map(|job| OldestPending {
            job_id: job.id.to_string(),
            created_at: job.created_at.to_rfc3339(),
            wait_seconds: now.since(job.created_at).as_secs(),
        });
        self
    }

    /// Counts from the store's per-state map.
    pub fn from_counts(counts: &BTreeMap<JobState, u64>) -> Self {
        let get = |s: JobState| counts.get(&s).copied().unwrap_or(0);
        Self {
            pending_jobs: get(JobState::Pending),
            running_jobs: get(JobState::Assigned) + get(JobState::Running),
            pending_by_size: PendingBySize::default(),
            oldest_pending_job: None,
            pending: get(JobState::Pending),
            assigned: get(JobState::Assigned),
            running: get(JobState::Running),
            succeeded: get(JobState::Succeeded),
            failed: get(JobState::Failed),
            aborted: get(JobState::Aborted),
            total: counts.values().sum(),
        }
    }
}

/// Scheduler figures in `GET /stats` (extension).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchedulerStats {
    /// Scheduling passes run.
    pub passes: u64,
    /// Jobs placed.
    pub placements: u64,
    /// Placement failures by reason.
    pub placement_failures: BTreeMap<String, u64>,
    /// Duration of the last pass, seconds.
    pub last_pass_seconds: f64,
    /// Seconds since this server started.
    pub uptime_seconds: u64,
}

/// The answer of `GET /stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsResponse {
    /// Job counts per status.
    pub queue: QueueStats,
    /// Cluster totals.
    pub cluster: ClusterStats,
    /// Scheduler figures (extension).
    #[serde(default)]
    pub scheduler: SchedulerStats,
    /// When these figures were taken (RFC 3339).
    pub timestamp: String,
}
