//! Routes of jobs: `POST /jobs`, `GET /jobs`, `GET /jobs/{job_id}`, `DELETE /jobs/{job_id}`.

use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use dwr_core::deps::short;
use dwr_core::{
    AbortRequested, ArrayInfo, ArraySubmission, Job, JobId, JobQuery, JobState, JobStore,
    StoreError, Submission, SubmitError, Timestamp,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::{ApiError, ApiJson, AppState};
use dwr_client::wire::{ArrayView, ErrorBody, JobOrArray, JobRequest, JobView};

/// Default of `limit` on `GET /jobs`.
pub const DEFAULT_LIST_LIMIT: usize = 100;
/// Largest `limit` on `GET /jobs`.
pub const MAX_LIST_LIMIT: usize = 1000;
/// Largest `offset` on `GET /jobs` (a 400 beyond).
pub const MAX_LIST_OFFSET: usize = 100_000_000;

/// The view of `job` for `caller` (without its `env` values unless the caller may see them)
/// with its pending reason, if any: the retry it waits for (as of `now`, the store's
/// clock), or why the last pass could not place it.
pub(super) fn view(state: &AppState, caller: &Caller, job: &Job, now: Timestamp) -> JobView {
    let reason = (job.state == JobState::Pending)
        .then(|| {
            job.retry_reason(now)
                .or_else(|| job.is_blocked().then(|| waiting_for(job)))
                .or_else(|| {
                    state
                        .scheduler
                        .pending_reason(job.id)
                        .map(|why| why.to_string())
                })
        })
        .flatten();
    let view = JobView::from_job(job, reason);
    if caller.sees_env_of(job.spec.owner.as_deref()) {
        view
    } else {
        view.without_env_values()
    }
}

/// The [`view`] of `job` as of the store's clock now (retry reasons count the seconds left
/// by it), with its place in the queue while it is pending, and what it waits behind.
async fn view_now(state: &AppState, caller: &Caller, job: &Job) -> Result<Json<JobView>, ApiError> {
    let store = state.scheduler.store();
    let now = store.now().await?;
    let mut view = view(state, caller, job, now);
    if job.is_blocked() {
        view.pending_reason = Some(waiting_for_now(store.as_ref(), job).await?);
    } else if job.state == JobState::Pending {
        view.queue_position = store.queue_position(job.id).await?;
        if let Some(ahead @ 1..) = view.queue_position {
            let queue = match job.spec.queue.as_str() {
                dwr_core::DEFAULT_QUEUE => "the queue".to_owned(),
                name => format!("queue {name}"),
            };
            let behind = format!("behind {ahead} job{} in {queue}", plural(ahead));
            view.pending_reason = Some(match view.pending_reason.take() {
                Some(why) => format!("{behind}; {why}"),
                None => behind,
            });
        }
    }
    Ok(Json(view))
}

/// The [`view_now`] of `job` for the dashboard.
pub(crate) async fn job_view_now(
    state: &AppState,
    caller: &Caller,
    job: &Job,
) -> Result<JobView, ApiError> {
    Ok(view_now(state, caller, job).await?.0)
}

/// Why a job waiting for its dependencies waits: `waiting for 2 of 3 dependencies`.
fn waiting_for(job: &Job) -> String {
    let total = job.spec.depends_on.len();
    format!(
        "waiting for {} of {total} dependenc{}",
        job.deps_left,
        if total == 1 { "y" } else { "ies" }
    )
}

/// [`waiting_for`] with the states of the first three dependencies that have not ended:
/// `waiting for 2 of 3 dependencies (7d8a1b2c... running, 0c4f9e1d... pending)`.
async fn waiting_for_now(store: &dyn JobStore, job: &Job) -> Result<String, ApiError> {
    let mut open = Vec::new();
    for &dep in &job.spec.depends_on {
        if open.len() == 3 {
            break;
        }
        match store.job(dep).await {
            Ok(d) if !d.state.is_terminal() => open.push(format!("{}... {}", short(dep), d.state)),
            // Ended, or deleted since by retention: not what it waits for.
            Ok(_) | Err(StoreError::JobNotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let base = waiting_for(job);
    Ok(if open.is_empty() {
        base
    } else {
        format!("{base} ({})", open.join(", "))
    })
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// True when `text` is a whole number as the OpenAPI document's `integer` query parameters
/// take it: ASCII digits only, without a sign or a space.
pub(super) fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a path's job id: 400 naming it when it is not a UUID.
pub(super) fn parse_job_id(text: &str) -> Result<JobId, ApiError> {
    Ok(text.trim().parse::<JobId>()?)
}

/// The header that makes a submit idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `Idempotency-Key` header, if any: 1 to 255 visible ASCII characters (400 naming the
/// header otherwise).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    if text.is_empty()
        || text.len() > MAX_IDEMPOTENCY_KEY
        || !text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(bad());
    }
    Ok(Some(text.to_owned()))
}

/// Submits a job. 201 and the job (pending) on success; nothing is stored on a 4xx. With an
/// `Idempotency-Key` already used in the last 24 h for the same request: 200 and the job it
/// created then (as it is now), and nothing new is stored.
#[utoipa::path(
    post, path = "/jobs", request_body = JobRequest, tag = "jobs",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the submit idempotent for 24 h: 1 to 255 visible ASCII characters"),
    ),
    responses(
        (status = 201, description = "Job accepted, pending (with `array`: the array, its tasks pending)", body = JobOrArray),
        (status = 200, description = "The job (or array) already submitted with this Idempotency-Key", body = JobOrArray),
        (status = 400, description = "Malformed JSON, or a malformed Idempotency-Key", body = ErrorBody),
        (status = 409, description = "The job submitted with this Idempotency-Key was deleted since", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "A field is missing, of the wrong type or invalid, or the Idempotency-Key was used with another request", body = ErrorBody),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(super) async fn submit_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<JobRequest>,
) -> Result<(StatusCode, Json<JobOrArray>), ApiError> {
    // A tenant's keys are its own: another's same key names another job.
    let key = idempotency_key(&headers)?.map(|key| match &caller.name {
        Some(owner) => format!("{owner}/{key}"),
        None => key,
    });
    let array = request.array.clone();
    let mut spec = request.into_spec()?;
    caller.may_submit_to(&spec.queue)?;
    spec.owner = caller.name.clone();
    if let Some(array) = array {
        let submitted = state
            .scheduler
            .submit_array(spec, array.count, array.parallelism, key.as_deref())
            .await?;
        let (status, info) = match submitted {
            ArraySubmission::Created(info) => (StatusCode::CREATED, info),
            ArraySubmission::Existing(info) => (StatusCode::OK, info),
        };
        tracing::info!(array = %info.id, tasks = info.count, "array submitted");
        return Ok((status, Json(array_view(&state, &info).await?)));
    }
    let Some(key) = key else {
        let job = state.scheduler.submit(spec).await?;
        tracing::info!(job = %job.id, image = %job.spec.image, "job submitted");
        let view = JobView::from_job(&job, None);
        return Ok((StatusCode::CREATED, Json(JobOrArray::Job(Box::new(view)))));
    };
    match state.scheduler.submit_idempotent(spec, &key).await {
        Ok(Submission::Created(job)) => {
            tracing::info!(job = %job.id, image = %job.spec.image, "job submitted (idempotency key)");
            let view = JobView::from_job(&job, None);
            Ok((StatusCode::CREATED, Json(JobOrArray::Job(Box::new(view)))))
        }
        Ok(Submission::Existing(job)) => {
            tracing::info!(job = %job.id, "submit repeated with its idempotency key");
            let view = view_now(&state, &caller, &job).await?.0;
            Ok((StatusCode::OK, Json(JobOrArray::Job(Box::new(view)))))
        }
        Err(SubmitError::Store(StoreError::JobNotFound { id })) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("the job {id} submitted with this Idempotency-Key was deleted since"),
        )),
        Err(other) => Err(other.into()),
    }
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
        // Exactly one of the six names, as the OpenAPI document's enum says.
        let state = match self.status_filter.as_deref() {
            None => None,
            Some(text) => Some(
                text.parse::<JobState>()
                    .map_err(|e| ApiError::validation(format!("status_filter: {e}")))?,
            ),
        };
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIST_LIMIT,
            Some(text) => match is_digits(text).then(|| text.parse::<usize>()) {
                Some(Ok(n)) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
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
            Some(text) if is_digits(text) => match text.parse::<usize>() {
                Ok(n) if n <= MAX_LIST_OFFSET => n,
                _ => {
                    return Err(ApiError::bad_request(
                        "offset_out_of_range",
                        format!(
                            "offset must be at most {MAX_LIST_OFFSET}, got {:?}",
                            text.chars().take(32).collect::<String>()
                        ),
                    ))
                }
            },
            Some(text) => {
                return Err(ApiError::validation(format!(
                    "offset must be a non-negative integer, got {:?}",
                    text.chars().take(32).collect::<String>()
                )))
            }
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
        (status = 400, description = "offset past its bound", body = ErrorBody),
        (status = 422, description = "Bad status_filter, limit or offset", body = ErrorBody),
    )
)]
pub(super) async fn list_jobs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<JobView>>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::validation(format!("bad query string: {}", e.body_text())))?;
    let query = params.to_query()?;
    let jobs = state.scheduler.store().jobs(&query).await?;
    let now = state.scheduler.store().now().await?;
    Ok(Json(
        jobs.iter()
            .map(|job| view(&state, &caller, job, now))
            .collect(),
    ))
}

/// One job; while pending, `pending_reason` says why it has not been placed.
#[utoipa::path(
    get, path = "/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "The job id (a UUID)")),
    responses(
        (status = 200, description = "The job, or the array with this id", body = JobOrArray),
        (status = 400, description = "Malformed job id", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody),
    )
)]
pub(super) async fn get_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(job_id): Path<String>,
) -> Result<Json<JobOrArray>, ApiError> {
    let id = parse_job_id(&job_id)?;
    let store = state.scheduler.store();
    match store.job(id).await {
        Ok(job) => {
            let view = view_now(&state, &caller, &job).await?.0;
            Ok(Json(JobOrArray::Job(Box::new(view))))
        }
        Err(StoreError::JobNotFound { .. }) => {
            let info = store.array(id).await?;
            Ok(Json(array_view(&state, &info).await?))
        }
        Err(e) => Err(e.into()),
    }
}

/// The array `info` with its tasks' states.
async fn array_view(state: &AppState, info: &ArrayInfo) -> Result<JobOrArray, ApiError> {
    let tasks = state.scheduler.store().array_tasks(info.id).await?;
    Ok(JobOrArray::Array(ArrayView::new(info, &tasks)))
}

/// Aborts a job: a pending one at once (`aborted`), an assigned or running one through its
/// executor (`abort_requested` true until it is stopped). 400 if already finished.
#[utoipa::path(
    delete, path = "/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "The job id (a UUID)")),
    responses(
        (status = 200, description = "Aborted, or abort requested (an array: every task not ended)", body = JobOrArray),
        (status = 400, description = "Malformed id, or the job is already finished", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody),
        (status = 409, description = "The job changed state meanwhile", body = ErrorBody),
    )
)]
pub(super) async fn abort_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(job_id): Path<String>,
) -> Result<Json<JobOrArray>, ApiError> {
    let id = parse_job_id(&job_id)?;
    let store = state.scheduler.store();
    let owner = match store.job(id).await {
        Ok(job) => job.spec.owner,
        Err(StoreError::JobNotFound { .. }) => {
            // An array: every task not ended, if the caller may abort its tasks.
            let info = store.array(id).await?;
            let tasks = store.array_tasks(id).await?;
            if let Some((first, _)) = tasks.first() {
                caller.may_abort(store.job(*first).await?.spec.owner.as_deref(), &job_id)?;
            }
            let asked = state.scheduler.abort_array(id).await?;
            tracing::info!(array = %id, tasks = asked, "abort of an array requested");
            let info = store.array(info.id).await?;
            return Ok(Json(array_view(&state, &info).await?));
        }
        Err(e) => return Err(e.into()),
    };
    caller.may_abort(owner.as_deref(), &job_id)?;
    let job = match state.scheduler.abort(id).await? {
        AbortRequested::AbortedAtOnce(job) | AbortRequested::Signalled(job) => job,
    };
    tracing::info!(job = %id, state = %job.state, "abort requested");
    let view = view_now(&state, &caller, &job).await?.0;
    Ok(Json(JobOrArray::Job(Box::new(view))))
}
