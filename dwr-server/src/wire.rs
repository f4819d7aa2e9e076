//! The JSON types of the HTTP API, shared by the server handlers and the client commands.
//!
//! Field names and status strings are those of the original system, so its clients keep
//! working unchanged (see DESIGN.md, "HTTP API"). Requests accept and ignore unknown fields;
//! responses only ever add fields. Units on the wire are the original's: CPU in cores (a
//! float), memory in GB where 1 GB = 1024 MiB, durations in seconds, times in RFC 3339 UTC.
//!
//! Choices where the original left room, made so its clients keep working:
//! * `GET /jobs` answers a plain JSON array of job objects ([`JobView`]).
//! * `GET /jobs/{id}/logs` answers [`LogsResponse`]: `lines` (one string per line, oldest
//!   first) and, for the original clients, `logs` (the same lines joined with `\n`). With
//!   `?follow=true` it streams `text/plain` instead, one line per log line.

use std::collections::BTreeMap;
use std::time::Duration;

use dwr_core::retry::MAX_RETRY_BACKOFF;
use dwr_core::spec::{MAX_CPU_MILLIS, MAX_MEMORY_MIB};
use dwr_core::{
    AttemptRecord, Executor, GpuModel, GpuRequest, Job, JobSpec, JobState, RetryCause, SpecError,
    Timestamp, VolumeMount,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// MiB per GB on the wire: the original system counted 1 GB as 1024 MiB.
pub const MIB_PER_GB: f64 = 1024.0;

/// The body of `POST /jobs`.
///
/// Unknown fields are accepted and ignored. Exactly one of `memory_gb` and `memory_mb` must
/// be given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRequest {
    /// Docker image reference, e.g. `busybox:latest`.
    #[schema(example = "dwr-test/busybox:latest")]
    pub docker_image: String,
    /// Command and arguments, not run through a shell.
    #[schema(example = json!(["echo", "hello from dwr"]))]
    pub command: Vec<String>,
    /// CPU cores (> 0); rounded up to whole millicores.
    #[schema(example = 0.5)]
    pub cpu_cores: f64,
    /// Memory in GB (> 0; 1 GB = 1024 MiB); rounded up to whole MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 0.25)]
    pub memory_gb: Option<f64>,
    /// Memory in MiB, an alternative to `memory_gb` (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    pub memory_mb: Option<u64>,
    /// `null` for no GPU, `"any"`, or a model name matched against the executors' GPUs
    /// (case-insensitive substring, `"A100"` matches `"NVIDIA A100-SXM4-80GB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    /// GPU devices wanted; defaults to 1 when `gpu_type` is set, else 0. A count without a
    /// `gpu_type` accepts any model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    pub gpu_count: Option<u32>,
    /// Seconds the job may wait for room before it fails (default 300, at least 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    pub allocation_timeout: Option<u64>,
    /// Regions the job may run in; empty or absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_regions: Option<Vec<String>>,
    /// Datacenters the job may run in; empty or absent means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_datacenters: Option<Vec<String>>,
    /// Host volumes, `host:container[:ro|rw]` with absolute paths (refused by executors
    /// without an allow-list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
    /// Extra environment variables for the container (extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    /// Longest run in seconds before the job is stopped and failed (default 3600; extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    pub max_runtime_seconds: Option<u64>,
    /// Retries after a failed first attempt, 0..=100 (default 0; extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 100)]
    pub max_retries: Option<u32>,
    /// Seconds before the first retry, doubling for each later one up to 600 (default 10;
    /// extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 600)]
    pub retry_backoff_seconds: Option<u64>,
    /// The failures that are retried, out of `executor_lost`, `start_failed`,
    /// `exit_nonzero` and `oom` (default: all of them; extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
    /// Run the container with a read-only root filesystem (default false; volumes keep
    /// their own mode; extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_rootfs: Option<bool>,
}

/// Deserializes an optional whole number written as an integer (`30`) or as a number without
/// a fraction (`30.0`): JSON Schema's `integer` admits both, and so did the original
/// system's server. A fraction, a negative number or one out of `T`'s range is refused,
/// naming the field.
fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::{Error, Unexpected};
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = match (number.as_u64(), number.as_f64()) {
        (Some(n), _) => n,
        // Below 2^64 (`u64::MAX as f64` rounds up to it), the cast is exact.
        (None, Some(f)) if f.fract() == 0.0 && (0.0..u64::MAX as f64).contains(&f) => f as u64,
        (None, Some(f)) => {
            return Err(D::Error::invalid_value(
                Unexpected::Float(f),
                &"a whole number, 0 or more",
            ))
        }
        (None, None) => {
            return Err(D::Error::invalid_value(
                Unexpected::Other("a number"),
                &"a whole number, 0 or more",
            ))
        }
    };
    T::try_from(whole).map(Some).map_err(|_| {
        D::Error::invalid_value(Unexpected::Unsigned(whole), &"a smaller whole number")
    })
}

impl JobRequest {
    /// A request for `image` running `command` with `cpu_cores` and `memory_gb`, all else
    /// default.
    pub fn new(
        image: impl Into<String>,
        command: Vec<String>,
        cpu_cores: f64,
        memory_gb: f64,
    ) -> Self {
        Self {
            docker_image: image.into(),
            command,
            cpu_cores,
            memory_gb: Some(memory_gb),
            ..Self::default()
        }
    }

    /// Converts to a validated [`JobSpec`]. Errors name the wire field (`cpu_cores`,
    /// `memory_gb`, `docker_image`, …), never an internal one.
    pub fn into_spec(self) -> Result<JobSpec, SpecError> {
        let cpu_millis = cores_to_millis(self.cpu_cores)?;
        let memory_mib = match (self.memory_gb, self.memory_mb) {
            (Some(_), Some(_)) => {
                return Err(SpecError::Invalid {
                    field: "memory_gb",
                    reason: "give memory_gb or memory_mb, not both".into(),
                })
            }
            (Some(gb), None) => gb_to_mib(gb)?,
            (None, Some(0)) => return Err(SpecError::NotPositive { field: "memory_mb" }),
            (None, Some(mb)) => mb,
            (None, None) => {
                return Err(SpecError::Invalid {
                    field: "memory_gb",
                    reason: "is required (or memory_mb)".into(),
                })
            }
        };
        let model = self.gpu_type.as_deref().map(GpuModel::parse);
        let gpu = match (model, self.gpu_count) {
            (None, None) | (None, Some(0)) => GpuRequest::default(),
            (None, Some(count)) => GpuRequest {
                count,
                model: Some(GpuModel::Any),
            },
            (Some(model), count) => GpuRequest {
                count: count.unwrap_or(1),
                model: Some(model),
            },
        };
        let volumes = self
            .volumes
            .unwrap_or_default()
            .iter()
            .map(|v| v.parse::<VolumeMount>())
            .collect::<Result<Vec<_>, _>>()?;
        let mut spec = JobSpec::new(self.docker_image, self.command, cpu_millis, memory_mib);
        spec.gpu = gpu;
        spec.env = self.env.unwrap_or_default();
        spec.eligible_regions = self.eligible_regions.unwrap_or_default();
        spec.eligible_datacenters = self.eligible_datacenters.unwrap_or_default();
        spec.volumes = volumes;
        spec.read_only_rootfs = self.read_only_rootfs.unwrap_or(false);
        if let Some(secs) = self.allocation_timeout {
            spec.allocation_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = self.max_runtime_seconds {
            spec.max_runtime = Duration::from_secs(secs);
        }
        if let Some(n) = self.max_retries {
            spec.retry.max_retries = n;
        }
        if let Some(secs) = self.retry_backoff_seconds {
            if secs > MAX_RETRY_BACKOFF.as_secs() {
                return Err(SpecError::OutOfRange {
                    field: "retry_backoff_seconds",
                    min: 0,
                    max: MAX_RETRY_BACKOFF.as_secs(),
                    value: secs,
                });
            }
            spec.retry.backoff = Duration::from_secs(secs);
        }
        if let Some(causes) = self.retry_on {
            spec.retry.retry_on = causes
                .iter()
                .map(|c| c.parse::<RetryCause>())
                .collect::<Result<_, _>>()
                .map_err(|e| SpecError::Invalid {
                    field: "retry_on",
                    reason: e.to_string(),
                })?;
        }
        spec.validate().map_err(to_wire_field)?;
        Ok(spec)
    }
}

/// Cores (a float) to millicores, rounding up; refuses non-finite, non-positive and too large.
fn cores_to_millis(cores: f64) -> Result<u64, SpecError> {
    if !cores.is_finite() || cores <= 0.0 {
        return Err(SpecError::NotPositive { field: "cpu_cores" });
    }
    let max = MAX_CPU_MILLIS as f64 / 1000.0;
    if cores > max {
        return Err(SpecError::Invalid {
            field: "cpu_cores",
            reason: format!("at most {max} cores, got {cores}"),
        });
    }
    Ok((cores * 1000.0).ceil() as u64)
}

/// GB (a float, 1 GB = 1024 MiB) to MiB, rounding up; refuses non-finite, non-positive and
/// too large.
fn gb_to_mib(gb: f64) -> Result<u64, SpecError> {
    if !gb.is_finite() || gb <= 0.0 {
        return Err(SpecError::NotPositive { field: "memory_gb" });
    }
    let max = MAX_MEMORY_MIB as f64 / MIB_PER_GB;
    if gb > max {
        return Err(SpecError::Invalid {
            field: "memory_gb",
            reason: format!("at most {max} GB, got {gb}"),
        });
    }
    Ok((gb * MIB_PER_GB).ceil() as u64)
}

/// Renames the core's field names to the wire's.
fn to_wire_field(err: SpecError) -> SpecError {
    fn rename(field: &'static str) -> &'static str {
        match field {
            "image" => "docker_image",
            "cpu" => "cpu_cores",
            "memory" => "memory_gb",
            "max_runtime" => "max_runtime_seconds",
            other => other,
        }
    }
    match err {
        SpecError::Empty { field } => SpecError::Empty {
            field: rename(field),
        },
        SpecError::NotPositive { field } => SpecError::NotPositive {
            field: rename(field),
        },
        SpecError::OutOfRange {
            field,
            min,
            max,
            value,
        } => SpecError::OutOfRange {
            field: rename(field),
            min,
            max,
            value,
        },
        SpecError::Invalid { field, reason } => SpecError::Invalid {
            field: rename(field),
            reason,
        },
        other => other,
    }
}

/// A job as the API shows it (`POST /jobs`, `GET /jobs`, `GET /jobs/{id}`, `DELETE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// `pending`, `assigned`, `running`, `succeeded`, `failed` or `aborted`.
    #[schema(value_type = String, example = "pending")]
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
    /// While pending for a retry: when it may be placed again.
    #[serde(default)]
    pub retry_at: Option<String>,
}

/// One ended attempt of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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

impl JobView {
    /// The view of `job`; `pending_reason` is shown only while the job is pending.
    pub fn from_job(job: &Job, pending_reason: Option<String>) -> Self {
        let spec = &job.spec;
        let ts = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
        Self {
            job_id: job.id.to_string(),
            docker_image: spec.image.clone(),
            command: spec.command.clone(),
            cpu_cores: spec.cpu_millis as f64 / 1000.0,
            memory_gb: spec.memory_mib as f64 / MIB_PER_GB,
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
            retry_at: ts(job.retry_at.filter(|_| job.state == JobState::Pending)),
        }
    }
}

/// One GPU device of an executor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GpuView {
    /// The driver's index.
    pub index: u32,
    /// The device UUID.
    pub uuid: String,
    /// Model name.
    pub model: String,
    /// Device memory, MiB.
    pub memory_mb: u64,
    /// The job holding it, if any.
    #[serde(default)]
    pub job_id: Option<String>,
}

/// An executor as `GET /executors` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutorView {
    /// Its id (`EXECUTOR_ID`, defaults to its IP).
    pub id: String,
    /// Its IP.
    pub ip: String,
    /// CPU cores it offers.
    pub total_cpu_cores: f64,
    /// CPU cores not allocated to jobs.
    pub available_cpu_cores: f64,
    /// Memory it offers, GB.
    pub total_memory_gb: f64,
    /// Memory not allocated to jobs, GB.
    pub available_memory_gb: f64,
    /// Distinct GPU models it has.
    pub gpu_types: Vec<String>,
    /// GPU devices it has.
    pub total_gpus: u32,
    /// GPU devices not held by jobs.
    pub available_gpus: u32,
    /// Its GPU devices.
    #[serde(default)]
    pub gpus: Vec<GpuView>,
    /// Its region.
    #[serde(default)]
    pub region: Option<String>,
    /// Its datacenter.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// Time of its last heartbeat.
    pub last_heartbeat: String,
    /// Whether its last heartbeat is within the liveness TTL.
    pub alive: bool,
    /// Allocated CPU, percent of its capacity.
    pub cpu_utilization: f64,
    /// Allocated memory, percent of its capacity.
    pub memory_utilization: f64,
    /// Observed host CPU use, percent (from its heartbeat).
    #[serde(default)]
    pub observed_cpu_percent: f64,
    /// Observed host memory use, GB (from its heartbeat).
    #[serde(default)]
    pub observed_memory_used_gb: f64,
    /// Jobs assigned to it or running on it.
    pub running_jobs: usize,
    /// Their ids.
    #[serde(default)]
    pub job_ids: Vec<String>,
}

/// Percent of `part` in `whole`, 0 when `whole` is 0.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 1000.0).round() / 10.0
    }
}

impl ExecutorView {
    /// The view of `executor`, alive while its own lease holds at `now` (the store's clock).
    pub fn from_executor(executor: &Executor, now: Timestamp) -> Self {
        let reg = &executor.registration;
        let cap = executor.capacity();
        let free = executor.free();
        let mut gpu_types: Vec<String> = reg.gpus.iter().map(|g| g.model.clone()).collect();
        gpu_types.sort();
        gpu_types.dedup();
        let gpus = reg
            .gpus
            .iter()
            .map(|g| GpuView {
                index: g.index,
                uuid: g.uuid.clone(),
                model: g.model.clone(),
                memory_mb: g.memory_mib,
                job_id: executor.gpu_holders.get(&g.uuid).map(ToString::to_string),
            })
            .collect();
        Self {
            id: reg.id.to_string(),
            ip: reg.ip.clone(),
            total_cpu_cores: cap.cpu_millis as f64 / 1000.0,
            available_cpu_cores: free.cpu_millis as f64 / 1000.0,
            total_memory_gb: cap.memory_mib as f64 / MIB_PER_GB,
            available_memory_gb: free.memory_mib as f64 / MIB_PER_GB,
            gpu_types,
            total_gpus: reg.gpus.len() as u32,
            available_gpus: executor.free_gpus().len() as u32,
            gpus,
            region: reg.region.clone(),
            datacenter: reg.datacenter.clone(),
            last_heartbeat: executor.last_heartbeat.to_rfc3339(),
            alive: executor.is_alive(now),
            cpu_utilization: percent(executor.allocated.cpu_millis, cap.cpu_millis),
            memory_utilization: percent(executor.allocated.memory_mib, cap.memory_mib),
            observed_cpu_percent: (f64::from(executor.usage.cpu_percent) * 10.0).round() / 10.0,
            observed_memory_used_gb: executor.usage.memory_used_mib as f64 / MIB_PER_GB,
            running_jobs: executor.jobs.len(),
            job_ids: executor.jobs.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Totals over the cluster's executors (live ones only for capacity figures).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStats {
    /// Registered executors.
    pub total_executors: usize,
    /// Executors whose heartbeat is within the TTL.
    pub alive_executors: usize,
    /// CPU cores of the live executors.
    pub total_cpu_cores: f64,
    /// Unallocated CPU cores of the live executors.
    pub available_cpu_cores: f64,
    /// Memory of the live executors, GB.
    pub total_memory_gb: f64,
    /// Unallocated memory of the live executors, GB.
    pub available_memory_gb: f64,
    /// GPU devices of the live executors.
    pub total_gpus: u32,
    /// Unheld GPU devices of the live executors.
    pub available_gpus: u32,
    /// Allocated CPU, percent of live capacity.
    pub cpu_utilization: f64,
    /// Allocated memory, percent of live capacity.
    pub memory_utilization: f64,
    /// Jobs assigned to or running on any executor.
    pub running_jobs: usize,
    /// Allocated CPU, percent of live capacity, 2 decimals (the original system's name).
    #[serde(default)]
    pub cluster_cpu_utilization: f64,
    /// Allocated memory, percent of live capacity, 2 decimals (the original system's name).
    #[serde(default)]
    pub cluster_memory_utilization: f64,
}

impl ClusterStats {
    /// Totals over `executors`.
    pub fn from_executors(views: &[ExecutorView]) -> Self {
        let mut s = ClusterStats {
            total_executors: views.len(),
            ..Self::default()
        };
        for v in views {
            s.running_jobs += v.running_jobs;
            if !v.alive {
                continue;
            }
            s.alive_executors += 1;
            s.total_cpu_cores += v.total_cpu_cores;
            s.available_cpu_cores += v.available_cpu_cores;
            s.total_memory_gb += v.total_memory_gb;
            s.available_memory_gb += v.available_memory_gb;
            s.total_gpus += v.total_gpus;
            s.available_gpus += v.available_gpus;
        }
        // Allocated percent of live capacity, rounded to `decimals`.
        let used = |total: f64, free: f64, decimals: i32| {
            let scale = 10f64.powi(decimals);
            if total <= 0.0 {
                0.0
            } else {
                ((total - free) / total * 100.0 * scale).round() / scale
            }
        };
        let (cpu, mem) = (
            (s.total_cpu_cores, s.available_cpu_cores),
            (s.total_memory_gb, s.available_memory_gb),
        );
        s.cpu_utilization = used(cpu.0, cpu.1, 1);
        s.memory_utilization = used(mem.0, mem.1, 1);
        // The original system's fields: two decimals.
        s.cluster_cpu_utilization = used(cpu.0, cpu.1, 2);
        s.cluster_memory_utilization = used(mem.0, mem.1, 2);
        s
    }
}

/// The answer of `GET /executors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutorsResponse {
    /// Every registered executor, ordered by id.
    pub executors: Vec<ExecutorView>,
    /// Totals.
    pub cluster_stats: ClusterStats,
}

/// Job counts per status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingBySize {
    /// At most 2 cores and 4 GB.
    pub small: u64,
    /// At most 8 cores and 16 GB (and not small).
    pub medium: u64,
    /// Larger.
    pub large: u64,
}

/// The pending job that has waited longest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
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

/// One assignment made by `POST /schedule`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssignmentView {
    /// The job.
    pub job_id: String,
    /// The executor's IP.
    pub executor_ip: String,
    /// The executor's id (extension).
    #[serde(default)]
    pub executor_id: String,
    /// GPU UUIDs given to the job (extension).
    #[serde(default)]
    pub gpu_ids: Vec<String>,
}

/// The answer of `POST /schedule`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleResponse {
    /// How many jobs this pass assigned.
    pub scheduled_jobs: usize,
    /// The assignments.
    pub assignments: Vec<AssignmentView>,
    /// Jobs failed by this pass (allocation timeout, infeasible; extension).
    #[serde(default)]
    pub failed_jobs: Vec<String>,
    /// Jobs stopped for running past their max runtime (extension).
    #[serde(default)]
    pub timed_out_jobs: Vec<String>,
    /// Executors expired by this pass (extension).
    #[serde(default)]
    pub expired_executors: Vec<String>,
    /// Jobs still pending after the pass (extension).
    #[serde(default)]
    pub pending_jobs: usize,
}

/// The answer of `POST /cleanup`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CleanupResponse {
    /// Terminal jobs (and their logs) deleted.
    pub cleaned_jobs: u64,
    /// Executors expired for missed heartbeats.
    pub expired_executors: Vec<String>,
    /// Jobs failed because their executor was lost or their allocation timed out.
    pub failed_jobs: Vec<String>,
    /// The age limit applied, minutes.
    pub timeout_minutes: u64,
    /// A sentence saying what was done.
    pub message: String,
}

/// The answer of `GET /jobs/{id}/logs` (without `follow`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogsResponse {
    /// The job.
    pub job_id: String,
    /// The log lines, oldest first.
    pub lines: Vec<String>,
    /// The same lines joined with `\n` (what the original clients read).
    pub logs: String,
}

/// The answer of `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// `healthy` or `unhealthy`.
    pub status: String,
    /// `ok`, or why the store cannot be reached.
    pub store: String,
    /// Server version.
    pub version: String,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
    /// Current time (RFC 3339).
    pub timestamp: String,
}

/// Every error response: a short machine-readable kind and a sentence naming the problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The kind: `validation_error` (422), `invalid_json`, `invalid_body`,
    /// `invalid_job_id`, `invalid_state` (400), `unauthorized` (401), `not_found` (404),
    /// `method_not_allowed` (405), `conflict` (409), `payload_too_large` (413),
    /// `unavailable`, `timeout` (503), `internal` (500).
    #[schema(example = "validation_error")]
    pub error: String,
    /// What is wrong, naming the field or id.
    #[schema(example = "cpu_cores must be greater than 0")]
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwr_core::JobId;

    fn req() -> JobRequest {
        JobRequest::new("busybox", vec!["echo".into(), "hi".into()], 0.5, 0.25)
    }

    #[test]
    fn a_request_converts_with_rounding_up() {
        let spec = JobRequest {
            cpu_cores: 0.0001,
            memory_gb: Some(0.0001),
            ..req()
        }
        .into_spec()
        .unwrap();
        assert_eq!((spec.cpu_millis, spec.memory_mib), (1, 1));
        let spec = req().into_spec().unwrap();
        assert_eq!((spec.cpu_millis, spec.memory_mib), (500, 256));
        assert_eq!(spec.allocation_timeout, Duration::from_secs(300));
        assert_eq!(spec.gpu.count, 0);
    }

    #[test]
    fn gpu_defaults() {
        let spec = JobRequest {
            gpu_type: Some("A100".into()),
            ..req()
        }
        .into_spec()
        .unwrap();
        assert_eq!(spec.gpu.count, 1);
        assert_eq!(spec.gpu.model, Some(GpuModel::Named("A100".into())));
        let spec = JobRequest {
            gpu_count: Some(2),
            ..req()
        }
        .into_spec()
        .unwrap();
        assert_eq!((spec.gpu.count, spec.gpu.model), (2, Some(GpuModel::Any)));
    }

    #[test]
    fn errors_name_wire_fields() {
        let cases: Vec<(JobRequest, &str)> = vec![
            (
                JobRequest {
                    cpu_cores: 0.0,
                    ..req()
                },
                "cpu_cores",
            ),
            (
                JobRequest {
                    cpu_cores: -1.0,
                    ..req()
                },
                "cpu_cores",
            ),
            (
                JobRequest {
                    cpu_cores: f64::NAN,
                    ..req()
                },
                "cpu_cores",
            ),
            (
                JobRequest {
                    cpu_cores: 1e12,
                    ..req()
                },
                "cpu_cores",
            ),
            (
                JobRequest {
                    memory_gb: Some(-2.0),
                    ..req()
                },
                "memory_gb",
            ),
            (
                JobRequest {
                    memory_gb: None,
                    ..req()
                },
                "memory_gb",
            ),
            (
                JobRequest {
                    memory_mb: Some(0),
                    memory_gb: None,
                    ..req()
                },
                "memory_mb",
            ),
            (
                JobRequest {
                    command: vec![],
                    ..req()
                },
                "command",
            ),
            (
                JobRequest {
                    docker_image: "".into(),
                    ..req()
                },
                "docker_image",
            ),
            (
                JobRequest {
                    allocation_timeout: Some(5),
                    ..req()
                },
                "allocation_timeout",
            ),
            (
                JobRequest {
                    max_runtime_seconds: Some(0),
                    ..req()
                },
                "max_runtime_seconds",
            ),
            (
                JobRequest {
                    volumes: Some(vec!["relative:/x".into()]),
                    ..req()
                },
                "volumes",
            ),
        ];
        for (request, field) in cases {
            let err = request.into_spec().expect_err(field);
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn whole_numbers_may_be_written_with_a_zero_fraction() {
        let parse = |extra: serde_json::Value| {
            let mut body = serde_json::json!({
                "docker_image": "busybox", "command": ["true"], "cpu_cores": 1
            });
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<JobRequest>(body)
        };
        let r = parse(serde_json::json!({"memory_mb": 256.0, "gpu_count": 0.0, "max_retries": 2}))
            .unwrap();
        assert_eq!(
            (r.memory_mb, r.gpu_count, r.max_retries),
            (Some(256), Some(0), Some(2))
        );
        for bad in [
            serde_json::json!({"memory_mb": 1.5}),
            serde_json::json!({"allocation_timeout": -30}),
            serde_json::json!({"gpu_count": 5e9}),
            serde_json::json!({"max_runtime_seconds": "60"}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        assert_eq!(
            parse(serde_json::json!({"memory_mb": null}))
                .unwrap()
                .memory_mb,
            None
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_nulls_accepted() {
        let r: JobRequest = serde_json::from_value(serde_json::json!({
            "docker_image": "busybox", "command": ["true"], "cpu_cores": 1, "memory_gb": 1,
            "gpu_type": null, "eligible_regions": null, "priority": 5
        }))
        .unwrap();
        assert_eq!(r.into_spec().unwrap().cpu_millis, 1000);
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
