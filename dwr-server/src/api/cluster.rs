//! Routes of the cluster: `POST /schedule`, `POST /cleanup`, `GET /executors`, `GET /stats`.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use dwr_core::{Resources, Timestamp};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiError, AppState};
use dwr_client::wire::{
    AssignmentView, CleanupResponse, ClusterStats, ErrorBody, ExecutorView, ExecutorsResponse,
    QueueStats, QueueView, QueuesResponse, ScheduleResponse, SchedulerStats, StatsResponse,
    PENDING_SCAN,
};

/// Default age, minutes, of the finished jobs `POST /cleanup` deletes.
pub const DEFAULT_CLEANUP_MINUTES: u64 = 60;
/// Largest `timeout_minutes` accepted (one year).
pub const MAX_CLEANUP_MINUTES: u64 = 365 * 24 * 60;

/// Runs one scheduling pass now (with housekeeping) and says what it assigned.
#[utoipa::path(
    post, path = "/schedule", tag = "cluster",
    responses(
        (status = 200, description = "What the pass did", body = ScheduleResponse),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(super) async fn schedule(
    State(state): State<AppState>,
) -> Result<Json<ScheduleResponse>, ApiError> {
    let report = state.scheduler.run_pass().await?;
    let assignments: Vec<AssignmentView> = report
        .assignments
        .iter()
        .map(|p| AssignmentView {
            job_id: p.job.to_string(),
            executor_ip: p.executor_ip.clone(),
            executor_id: p.executor.to_string(),
            gpu_ids: p.gpu_ids.clone(),
        })
        .collect();
    Ok(Json(ScheduleResponse {
        scheduled_jobs: assignments.len(),
        assignments,
        failed_jobs: report.failed.iter().map(ToString::to_string).collect(),
        timed_out_jobs: report.timed_out.iter().map(ToString::to_string).collect(),
        expired_executors: report
            .expired_executors
            .iter()
            .map(ToString::to_string)
            .collect(),
        pending_jobs: report.pending,
    }))
}

/// Query of `POST /cleanup`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CleanupParams {
    /// Delete finished jobs older than this many minutes (default 60).
    #[param(value_type = Option<u64>)]
    timeout_minutes: Option<String>,
}

/// Expires lost executors and timed-out pending jobs (a housekeeping pass), then deletes
/// finished jobs (and their logs) that finished more than `timeout_minutes` ago.
#[utoipa::path(
    post, path = "/cleanup", params(CleanupParams), tag = "cluster",
    responses(
        (status = 200, description = "What was cleaned", body = CleanupResponse),
        (status = 422, description = "Bad timeout_minutes", body = ErrorBody),
    )
)]
pub(super) async fn cleanup(
    State(state): State<AppState>,
    params: Result<Query<CleanupParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<CleanupResponse>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::validation(format!("bad query string: {}", e.body_text())))?;
    let minutes = match params.timeout_minutes.as_deref() {
        None => DEFAULT_CLEANUP_MINUTES,
        Some(text) => match super::jobs::is_digits(text).then(|| text.parse::<u64>()) {
            Some(Ok(n)) if n <= MAX_CLEANUP_MINUTES => n,
            _ => {
                return Err(ApiError::validation(format!(
                "timeout_minutes must be an integer between 0 and {MAX_CLEANUP_MINUTES}, got {:?}",
                text.chars().take(32).collect::<String>()
            )))
            }
        },
    };
    let report = state.scheduler.run_pass().await?;
    let age = Duration::from_secs(minutes * 60);
    let cleaned = state.scheduler.store().purge_finished(age).await?;
    let expired: Vec<String> = report
        .expired_executors
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(cleaned, expired = expired.len(), minutes, "cleanup");
    Ok(Json(CleanupResponse {
        message: format!(
            "deleted {cleaned} jobs finished more than {minutes} minutes ago; expired {} executors",
            expired.len()
        ),
        cleaned_jobs: cleaned,
        expired_executors: expired,
        failed_jobs: report.failed.iter().map(ToString::to_string).collect(),
        timeout_minutes: minutes,
    }))
}

/// Every queue: weight, quota, what its jobs hold, its dominant share and pending count.
#[utoipa::path(
    get, path = "/queues", tag = "cluster",
    responses(
        (status = 200, description = "The queues", body = QueuesResponse),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(super) async fn queues(
    State(state): State<AppState>,
) -> Result<Json<QueuesResponse>, ApiError> {
    let store = state.scheduler.store();
    let usage = store.queue_usage().await?;
    let now = store.now().await?;
    // Shares of the live executors, as the scheduler counts them.
    let total = store
        .executors()
        .await?
        .iter()
        .filter(|e| e.is_alive(now))
        .fold(Resources::ZERO, |total, e| {
            total.checked_add(&e.capacity()).unwrap_or(total)
        });
    let defined = &state.scheduler.config().queues;
    let preemption = state.scheduler.config().preemption;
    let mut queues: Vec<QueueView> = defined
        .iter()
        .map(|q| {
            QueueView::new(
                q,
                true,
                &usage.get(&q.name).copied().unwrap_or_default(),
                &total,
                preemption,
            )
        })
        .collect();
    queues.extend(
        usage
            .iter()
            .filter(|(name, _)| defined.get(name).is_none())
            .map(|(name, usage)| {
                QueueView::new(&defined.settings(name), false, usage, &total, preemption)
            }),
    );
    Ok(Json(QueuesResponse { queues }))
}

async fn executor_views(state: &AppState) -> Result<Vec<ExecutorView>, ApiError> {
    // Liveness by the store's clock, as the scheduler judges it.
    let now = state.scheduler.store().now().await?;
    Ok(state
        .scheduler
        .store()
        .executors()
        .await?
        .iter()
        .map(|e| ExecutorView::from_executor(e, now))
        .collect())
}

/// Every registered executor with its capacity, free room, liveness and jobs.
#[utoipa::path(
    get, path = "/executors", tag = "cluster",
    responses((status = 200, description = "Executors and totals", body = ExecutorsResponse))
)]
pub(super) async fn executors(
    State(state): State<AppState>,
) -> Result<Json<ExecutorsResponse>, ApiError> {
    let executors = executor_views(&state).await?;
    let cluster_stats = ClusterStats::from_executors(&executors);
    Ok(Json(ExecutorsResponse {
        executors,
        cluster_stats,
    }))
}

/// Job counts per status, cluster totals and scheduler figures.
#[utoipa::path(
    get, path = "/stats", tag = "cluster",
    responses((status = 200, description = "Queue and cluster figures", body = StatsResponse))
)]
pub(super) async fn stats(State(state): State<AppState>) -> Result<Json<StatsResponse>, ApiError> {
    let store = state.scheduler.store();
    let counts = store.counts().await?;
    let pending = store.pending_jobs(PENDING_SCAN).await?;
    let now = store.now().await?;
    let executors = executor_views(&state).await?;
    let m = state.scheduler.metrics();
    Ok(Json(StatsResponse {
        queue: QueueStats::from_counts(&counts).with_pending(&pending, now),
        cluster: ClusterStats::from_executors(&executors),
        scheduler: SchedulerStats {
            passes: m.passes,
            placements: m.placements,
            placement_failures: m
                .placement_failures
                .iter()
                .map(|(reason, n)| (reason.as_str().to_owned(), *n))
                .collect(),
            last_pass_seconds: m.last_pass_seconds,
            uptime_seconds: state.started.elapsed().as_secs(),
        },
        timestamp: Timestamp::now().to_rfc3339(),
    }))
}
