//! Routes of jobs: `POST /jobs`, `GET /jobs`, `GET /jobs/{job_id}`, `DELETE /jobs/{job_id}`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use dwr_core::{AbortRequested, Job, JobId, JobQuery, JobState, Timestamp};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiError, ApiJson, AppState};
use crate::wire::{ErrorBody, JobRequest, JobView};

/// Default of `limit` on `GET /jobs`.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// Largest `limit` on `GET /jobs`.
pub const MAX_LIST_LIMIT: usize = 1000;

/// The view of `job` with its pending reason, if any: the retry it waits for (as of `now`,
/// the store's clock), or why the last pass could not place it.
pub(super) fn view(state: &AppState, job: &Job, now: Timestamp) -> JobView {
    let reason = (job.state == JobState::Pending)
        .then(|| {
            job.retry_reason(now).or_else(|| {
                state
                    .scheduler
                    .pending_reason(job.id)
                    .map(|why| why.to_string())
            })
        })
        .flatten();
    JobView::from_job(job, reason)
}

/// The store's clock (retry reasons count the seconds left by it).
async fn store_now(state: &AppState) -> Result<Timestamp, ApiError> {
    Ok(state.scheduler.store().now().await?)
}

/// Parses a path's job id: 400 naming it when it is not a UUID.
pub(super) fn parse_job_id(text: &str) -> Result<JobId, ApiError> {
    Ok(text.trim().parse::<JobId>()?)
}

/// Submits a job. 201 and the job (pending) on success; nothing is stored on a 4xx.
#[utoipa::path(
    post, path = "/jobs", request_body = JobRequest, tag = "jobs",
    responses(
        (status = 201, description = "Job accepted, pending", body = JobView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A field is missing, of the wrong type or invalid", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(super) async fn submit_job(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<JobRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let spec = request.into_spec()?;
    let job = state.scheduler.submit(spec).await?;
    tracing::info!(job = %job.id, image = %job.spec.image, "job submitted");
    Ok((StatusCode::CREATED, Json(JobView::from_job(&job, None))))
}

/// Query of `GET /jobs`. Values are taken as text and checked here so that a bad one is
/// named in a 422.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListParams {
    /// Only jobs in this status: pending, assigned, running, succeeded, failed, aborted.
    status_filter: Option<String>,
    /// At most this many jobs, 1..=1000 (default 100).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// Skip this many jobs (paging; extension).
    #[param(value_type = Option<u32>)]
    offset: Option<String>,
}

impl ListParams {
    fn to_query(&self) -> Result<JobQuery, ApiError> {
        let state = match self.status_filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(
                text.to_ascii_lowercase()
                    .parse::<JobState>()
                    .map_err(|e| ApiError::validation(format!("status_filter: {e}")))?,
            ),
        };
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIST_LIMIT,
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::validation(format!(
                        "limit must be an integer between 1 and {MAX_LIST_LIMIT}, got {:?}",
                        text.chars().take(32).collect::<String>()
                    )))
                }
            },
        };
        let offset = match self.offset.as_deref() {
            None => 0,
            Some(text) => text.trim().parse::<usize>().map_err(|_| {
                ApiError::validation(format!(
                    "offset must be a non-negative integer, got {:?}",
                    text.chars().take(32).collect::<String>()
                ))
            })?,
        };
        Ok(JobQuery {
            state,
            offset,
            limit,
        })
    }
}

/// Lists jobs, newest first: a plain JSON array of jobs.
#[utoipa::path(
    get, path = "/jobs", params(ListParams), tag = "jobs",
    responses(
        (status = 200, description = "Jobs, newest first", body = [JobView]),
        (status = 422, description = "Bad status_filter, limit or offset", body = ErrorBody),
    )
)]
pub(super) async fn list_jobs(
    State(state): State<AppState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::validation(format!("bad query string: {}", e.body_text())))?;
    let query = params.to_query()?;
    let jobs = state.scheduler.store().jobs(&query).await?;
    let now = store_now(&state).await?;
    Ok(Json(
        jobs.iter().map(|job| view(&state, job, now)).collect(),
    ))
}

/// One job; while pending, `pending_reason` says why it has not been placed.
#[utoipa::path(
    get, path = "/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "The job id (a UUID)")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 400, description = "Malformed job id", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody),
    )
)]
pub(super) async fn get_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_job_id(&job_id)?;
    let job = state.scheduler.store().job(id).await?;
    let now = store_now(&state).await?;
    Ok(Json(view(&state, &job, now)))
}

/// Aborts a job: a pending one at once (`aborted`), an assigned or running one through its
/// executor (`abort_requested` true until it is stopped). 400 if already finished.
#[utoipa::path(
    delete, path = "/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "The job id (a UUID)")),
    responses(
        (status = 200, description = "Aborted, or abort requested", body = JobView),
        (status = 400, description = "Malformed id, or the job is already finished", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody),
    )
)]
pub(super) async fn abort_job(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_job_id(&job_id)?;
    let job = match state.scheduler.abort(id).await? {
        AbortRequested::AbortedAtOnce(job) | AbortRequested::Signalled(job) => job,
    };
    tracing::info!(job = %id, state = %job.state, "abort requested");
    let now = store_now(&state).await?;
    Ok(Json(view(&state, &job, now)))
}
