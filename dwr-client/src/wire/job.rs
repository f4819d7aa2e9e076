//! A job as the API shows it, with its ended attempts.

use std::collections::BTreeMap;

use dwr_core::{units, AttemptRecord, Dependency, Job, JobState, Timestamp};
use serde::{Deserialize, Serialize};

/// A job as the API shows it (`POST /jobs`, `GET /jobs`, `GET /jobs/{id}`, `DELETE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    /// The job id (a UUID).
    pub job_id: String,
    /// Docker image reference.
    pub docker_image: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// CPU cores requested.
    pub cpu_cores: f64,
    /// Memory requested, GB (1 GB = 1024 MiB).
    pub memory_gb: f64,
    /// Memory requested, MiB (extension).
    #[serde(default)]
    pub memory_mb: u64,
    /// GPU model rule: `null`, `"any"` or a model name.
    #[serde(default)]
    pub gpu_type: Option<String>,
    /// GPU devices requested.
    #[serde(default)]
    pub gpu_count: u32,
    /// Seconds the job may wait for room.
    #[serde(default)]
    pub allocation_timeout: u64,
    /// Regions the job may run in (empty: any).
    #[serde(default)]
    pub eligible_regions: Vec<String>,
    /// Datacenters the job may run in (empty: any).
    #[serde(default)]
    pub eligible_datacenters: Vec<String>,
    /// Host volumes, `host:container:ro|rw`.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Longest run, seconds.
    #[serde(default)]
    pub max_runtime_seconds: u64,
    /// The container's root filesystem is read-only.
    #[serde(default)]
    pub read_only_rootfs: bool,
    /// The tenant that submitted it (`null` without named tokens).
    #[serde(default)]
    pub owner: Option<String>,
    /// 0 (lowest) to 100.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// The queue it waits or waited in.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// The jobs it waits or waited for.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// When its dependencies are met (`null` without dependencies).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "afterok"))]
    pub dependency: Option<Dependency>,
    /// Of its dependencies, how many have not ended yet (0 once they are met).
    #[serde(default)]
    pub dependencies_left: u32,
    /// The array it is a task of (`null` for a job of its own).
    #[serde(default)]
    pub array_job_id: Option<String>,
    /// Its index in that array.
    #[serde(default)]
    pub array_index: Option<u32>,
    /// While pending, in `GET /jobs/{id}`: how many pending jobs are ahead of it in its
    /// queue (`null` elsewhere, and once it is placed).
    #[serde(default)]
    pub queue_position: Option<u64>,
    /// `pending`, `assigned`, `running`, `succeeded`, `failed` or `aborted`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "pending"))]
    pub status: JobState,
    /// When the job entered its current status.
    pub status_date: String,
    /// IP of the executor it was assigned to.
    #[serde(default)]
    pub executor_ip: Option<String>,
    /// Id of the executor it was assigned to (extension).
    #[serde(default)]
    pub executor_id: Option<String>,
    /// Submission time.
    pub created_at: String,
    /// Time of the last change.
    pub updated_at: String,
    /// Time it was assigned.
    #[serde(default)]
    pub assigned_at: Option<String>,
    /// Time its container started.
    #[serde(default)]
    pub started_at: Option<String>,
    /// Time it reached its final status.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The container's exit code.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Why it ended (failed, aborted).
    #[serde(default)]
    pub reason: Option<String>,
    /// UUIDs of the GPU devices it holds or held.
    #[serde(default)]
    pub gpu_ids: Vec<String>,
    /// Whether the container was OOM-killed.
    #[serde(default)]
    pub oom_killed: bool,
    /// While pending: why nothing fits yet (the placement explanation).
    #[serde(default)]
    pub pending_reason: Option<String>,
    /// An abort was requested and is being carried out.
    #[serde(default)]
    pub abort_requested: bool,
    /// Retries after a failed first attempt.
    #[serde(default)]
    pub max_retries: u32,
    /// Seconds before the first retry (doubling for each later one, up to 600).
    #[serde(default)]
    pub retry_backoff_seconds: u64,
    /// The failures that are retried.
    #[serde(default)]
    pub retry_on: Vec<String>,
    /// The current attempt: 0 before the first assignment, then 1, 2, ...
    #[serde(default)]
    pub attempt: u32,
    /// Every attempt that ended, oldest first.
    #[serde(default)]
    pub attempts: Vec<AttemptView>,
    /// How many of its attempts ended in a preemption (they use up no retry).
    #[serde(default)]
    pub preemptions: u32,
    /// While pending for a retry: when it may be placed again.
    #[serde(default)]
    pub retry_at: Option<String>,
}

/// One ended attempt of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttemptView {
    /// Its number (1 for the first).
    pub attempt: u32,
    /// The executor it ran on.
    #[serde(default)]
    pub executor_id: Option<String>,
    /// That executor's IP.
    #[serde(default)]
    pub executor_ip: Option<String>,
    /// When its container started, if it did.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it ended.
    pub ended_at: String,
    /// The container's exit code, if it exited.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Why it ended.
    #[serde(default)]
    pub reason: Option<String>,
}

impl AttemptView {
    /// The view of an attempt record.
    pub fn from_record(record: &AttemptRecord) -> Self {
        Self {
            attempt: record.attempt,
            executor_id: record.executor.as_ref().map(ToString::to_string),
            executor_ip: record.executor_ip.clone(),
            started_at: record.started_at.map(Timestamp::to_rfc3339),
            ended_at: record.ended_at.to_rfc3339(),
            exit_code: record.exit_code,
            reason: record.reason.clone(),
        }
    }
}

fn default_queue() -> String {
    dwr_core::DEFAULT_QUEUE.to_owned()
}

fn default_priority() -> u8 {
    dwr_core::spec::DEFAULT_PRIORITY
}

/// What a caller that may not see a job's `env` values sees instead of each.
pub const HIDDEN_ENV_VALUE: &str = "(hidden)";

impl JobView {
    /// The view without its `env` values (the names stay): for callers that are not its
    /// owner.
    pub fn without_env_values(mut self) -> Self {
        for value in self.env.values_mut() {
            HIDDEN_ENV_VALUE.clone_into(value);
        }
        self
    }

    /// The view of `job`; `pending_reason` is shown only while the job is pending.
    pub fn from_job(job: &Job, pending_reason: Option<String>) -> Self {
        let spec = &job.spec;
        let ts = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
        Self {
            job_id: job.id.to_string(),
            docker_image: spec.image.clone(),
            command: spec.command.clone(),
            cpu_cores: units::cores(spec.cpu_millis),
            memory_gb: units::gb(spec.memory_mib),
            memory_mb: spec.memory_mib,
            gpu_type: spec.gpu.model.as_ref().map(ToString::to_string),
            gpu_count: spec.gpu.count,
            allocation_timeout: spec.allocation_timeout.as_secs(),
            eligible_regions: spec.eligible_regions.clone(),
            eligible_datacenters: spec.eligible_datacenters.clone(),
            volumes: spec.volumes.iter().map(ToString::to_string).collect(),
            env: spec.env.clone(),
            max_runtime_seconds: spec.max_runtime.as_secs(),
            read_only_rootfs: spec.read_only_rootfs,
            owner: spec.owner.clone(),
            priority: spec.priority,
            queue: spec.queue.clone(),
            depends_on: spec.depends_on.iter().map(ToString::to_string).collect(),
            dependency: (!spec.depends_on.is_empty()).then_some(spec.dependency),
            dependencies_left: job.deps_left,
            array_job_id: job.array.map(|t| t.array_job_id.to_string()),
            array_index: job.array.map(|t| t.index),
            queue_position: None,
            status: job.state,
            status_date: job.status_date().to_rfc3339(),
            executor_ip: job.executor_ip.clone(),
            executor_id: job.executor.as_ref().map(ToString::to_string),
            created_at: job.created_at.to_rfc3339(),
            updated_at: job.updated_at.to_rfc3339(),
            assigned_at: ts(job.assigned_at),
            started_at: ts(job.started_at),
            finished_at: ts(job.finished_at),
            exit_code: job.exit_code,
            reason: job.reason.clone(),
            gpu_ids: job.gpu_ids.clone(),
            oom_killed: job.oom_killed,
            pending_reason: pending_reason.filter(|_| job.state == JobState::Pending),
            abort_requested: job.abort_requested.is_some(),
            max_retries: spec.retry.max_retries,
            retry_backoff_seconds: spec.retry.backoff.as_secs(),
            retry_on: spec
                .retry
                .retry_on
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            attempt: job.attempt,
            attempts: job.attempts.iter().map(AttemptView::from_record).collect(),
            preemptions: job.preemptions,
            retry_at: ts(job.retry_at.filter(|_| job.state == JobState::Pending)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::JobRequest;
    use dwr_core::JobId;

    fn req() -> JobRequest {
        JobRequest::new("busybox", vec!["echo".into(), "hi".into()], 0.5, 0.25)
    }

    #[test]
    fn a_job_view_round_trips_and_uses_wire_names() {
        let spec = req().into_spec().unwrap();
        let job = Job::new(JobId::new(), spec, Timestamp(1_000));
        let view = JobView::from_job(&job, Some("no executors".into()));
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["status"], "pending");
        assert_eq!(json["cpu_cores"], 0.5);
        assert_eq!(json["memory_gb"], 0.25);
        assert_eq!(json["created_at"], "1970-01-01T00:00:01Z");
        assert_eq!(json["pending_reason"], "no executors");
        let back: JobView = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
    }
}
