//! The JSON types of the HTTP API, shared by the server's handlers, the [`Client`](crate::Client)
//! and the `dwr` command line.
//!
//! Field names and status strings are those of the original system, so its clients keep
//! working unchanged (see DESIGN.md, "HTTP API"). Requests accept and ignore unknown fields;
//! responses only ever add fields. Units on the wire are the original's: CPU in cores (a
//! float), memory in GB where 1 GB = 1024 MiB, durations in seconds, times in RFC 3339 UTC; [`dwr_core::units`]
//! converts them.
//!
//! Choices where the original left room, made so its clients keep working:
//! * `GET /jobs` answers a plain JSON array of job objects ([`JobView`]).
//! * `GET /jobs/{id}/logs` answers [`LogsResponse`]: `lines` (one string per line, oldest
//!   first) and, for the original clients, `logs` (the same lines joined with `\n`). With
//!   `?follow=true` it streams `text/plain` instead, one line per log line.

mod array;
mod cluster;
mod job;
mod ops;
mod queues;
mod request;
mod stats;

pub use array::{ArrayRequest, ArrayView, JobOrArray, StatusCounts};
pub use cluster::{ClusterStats, ExecutorView, ExecutorsResponse, GpuView};
pub use job::{AttemptView, JobView, HIDDEN_ENV_VALUE};
pub use ops::{
    AssignmentView, CleanupResponse, ErrorBody, HealthResponse, LogsResponse, ScheduleResponse,
};
pub use queues::{QueueAmounts, QueueView, QueuesResponse};
pub use request::JobRequest;
pub use stats::{
    OldestPending, PendingBySize, QueueStats, SchedulerStats, StatsResponse, PENDING_SCAN,
};
