//! Arrays over the wire: the `array` of a submit, and an array as `GET /jobs/{id}` shows it.

use dwr_core::{ArrayInfo, JobId, JobState};
use serde::{Deserialize, Serialize};

use super::JobView;

/// `array` in `POST /jobs`: submit `count` tasks of the job, at most `parallelism` assigned or
/// running at once (extension; Slurm's `--array`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArrayRequest {
    /// How many tasks (1 to 10,000); task `i` gets `DWR_ARRAY_INDEX=i`.
    #[serde(deserialize_with = "super::request::required_whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub count: u32,
    /// At most this many tasks assigned or running at once (default: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "super::request::whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub parallelism: Option<u32>,
}

/// How many tasks of an array are in each status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusCounts {
    /// Pending.
    pub pending: u32,
    /// Assigned.
    pub assigned: u32,
    /// Running.
    pub running: u32,
    /// Succeeded.
    pub succeeded: u32,
    /// Failed.
    pub failed: u32,
    /// Aborted.
    pub aborted: u32,
}

impl StatusCounts {
    /// The counts of `states`.
    pub fn of(states: impl IntoIterator<Item = JobState>) -> Self {
        let mut counts = Self::default();
        for state in states {
            *match state {
                JobState::Pending => &mut counts.pending,
                JobState::Assigned => &mut counts.assigned,
                JobState::Running => &mut counts.running,
                JobState::Succeeded => &mut counts.succeeded,
                JobState::Failed => &mut counts.failed,
                JobState::Aborted => &mut counts.aborted,
            } += 1;
        }
        counts
    }
}

/// An array as `GET /jobs/{array_job_id}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArrayView {
    /// Its id (each task's `array_job_id`).
    pub array_job_id: String,
    /// `pending` (no task started), `running` (some started, not all ended), `succeeded`
    /// (every task succeeded) or `failed` (every task ended, not all succeeded).
    pub status: String,
    /// Its tasks.
    pub count: u32,
    /// At most this many tasks assigned or running at once (`null`: no limit).
    pub parallelism: Option<u32>,
    /// Its tasks in each status.
    pub status_counts: StatusCounts,
    /// When it was submitted.
    pub created_at: String,
    /// Its tasks' job ids, in index order.
    pub task_ids: Vec<String>,
}

impl ArrayView {
    /// The view of `info` with its tasks and their states (index order).
    pub fn new(info: &ArrayInfo, tasks: &[(JobId, JobState)]) -> Self {
        let status = if info.ended() {
            if info.not_ok == 0 {
                "succeeded"
            } else {
                "failed"
            }
        } else if info.active > 0 || info.done > 0 {
            "running"
        } else {
            "pending"
        };
        Self {
            array_job_id: info.id.to_string(),
            status: status.to_owned(),
            count: info.count,
            parallelism: info.parallelism,
            status_counts: StatusCounts::of(tasks.iter().map(|(_, s)| *s)),
            created_at: info.created_at.to_rfc3339(),
            task_ids: tasks.iter().map(|(id, _)| id.to_string()).collect(),
        }
    }

    /// Whether every task ended.
    pub fn ended(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "failed")
    }
}

/// What `POST /jobs` and `GET /jobs/{id}` answer: a job, or an array.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum JobOrArray {
    /// An array (it has `array_job_id` and no `job_id`).
    Array(ArrayView),
    /// A job.
    Job(Box<JobView>),
}
