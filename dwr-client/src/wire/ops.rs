//! The answers of the operator endpoints (`POST /schedule`, `POST /cleanup`, `GET /health`),
//! of `GET /jobs/{id}/logs`, and the body of every error.

use serde::{Deserialize, Serialize};

/// One assignment made by `POST /schedule`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogsResponse {
    /// The job.
    pub job_id: String,
    /// The log lines, oldest first.
    pub lines: Vec<String>,
    /// The same lines joined with `\n` (what the original clients read).
    pub logs: String,
}

/// The answer of `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The kind: `validation_error` (422), `invalid_json`, `invalid_body`,
    /// `invalid_job_id`, `invalid_state` (400), `unauthorized` (401), `not_found` (404),
    /// `method_not_allowed` (405), `conflict` (409), `payload_too_large` (413),
    /// `unavailable`, `timeout` (503), `internal` (500).
    #[cfg_attr(feature = "openapi", schema(example = "validation_error"))]
    pub error: String,
    /// What is wrong, naming the field or id.
    #[cfg_attr(
        feature = "openapi",
        schema(example = "cpu_cores must be greater than 0")
    )]
    pub detail: String,
}
