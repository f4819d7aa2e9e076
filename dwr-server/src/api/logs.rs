//! `GET /jobs/{job_id}/logs`: all lines as JSON, or with `?follow=true` a `text/plain`
//! stream of lines that ends once the job is finished and every line is sent.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dwr_core::{JobId, JobStore};
use futures::stream::{self, Stream};
use serde::Deserialize;
use utoipa::IntoParams;

use super::jobs::parse_job_id;
use super::{ApiError, AppState};
use crate::wire::{ErrorBody, LogsResponse};

/// How long one wait for new lines lasts before the job's state is checked again.
const FOLLOW_WAIT: Duration = Duration::from_secs(5);

/// Query of the logs route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LogParams {
    /// `true` to stream new lines as they come (text/plain, one line per log line).
    #[param(value_type = Option<bool>)]
    follow: Option<String>,
}

fn parse_follow(text: Option<&str>) -> Result<bool, ApiError> {
    match text.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("false") | Some("0") | Some("no") => Ok(false),
        Some("true") | Some("1") | Some("yes") => Ok(true),
        Some(other) => Err(ApiError::validation(format!(
            "follow must be true or false, got {:?}",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// A job's log, oldest first.
#[utoipa::path(
    get, path = "/jobs/{job_id}/logs", tag = "jobs",
    params(("job_id" = String, Path, description = "The job id (a UUID)"), LogParams),
    responses(
        (status = 200, description = "All lines (JSON), or with follow=true a text/plain stream", body = LogsResponse),
        (status = 400, description = "Malformed job id", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody),
    )
)]
pub(super) async fn job_logs(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    params: Result<Query<LogParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::validation(format!("bad query string: {}", e.body_text())))?;
    let follow = parse_follow(params.follow.as_deref())?;
    let id = parse_job_id(&job_id)?;
    let store = state.scheduler.store().clone();
    // Existence first: an unknown job is a 404, not an empty log.
    store.job(id).await?;
    if !follow {
        let lines = store.logs(id, 0).await?;
        let logs = lines.join("\n");
        return Ok(Json(LogsResponse {
            job_id: id.to_string(),
            lines,
            logs,
        })
        .into_response());
    }
    let body = Body::from_stream(follow_lines(store, id));
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::HeaderName::from_static("x-content-type-options"),
                "nosniff",
            ),
        ],
        body,
    )
        .into_response())
}

/// Where a follow stream is.
struct Follow {
    store: Arc<dyn JobStore>,
    id: JobId,
    next: usize,
    done: bool,
}

/// Lines of job `id` from the first on, each ending in `\n`, until the job is terminal and
/// its last line is sent. A store error ends the stream (logged).
fn follow_lines(
    store: Arc<dyn JobStore>,
    id: JobId,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let start = Follow {
        store,
        id,
        next: 0,
        done: false,
    };
    stream::unfold(start, |mut f| async move {
        loop {
            if f.done {
                return None;
            }
            match next_chunk(&mut f).await {
                Ok(Some(bytes)) => return Some((Ok(bytes), f)),
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(job = %f.id, error = %e, "log follow ended by a store error");
                    return None;
                }
            }
        }
    })
}

/// The next lines as one chunk, or `None` when there were none this round (and the job may
/// have finished: then `done` is set after the last lines are collected).
async fn next_chunk(f: &mut Follow) -> Result<Option<Bytes>, dwr_core::StoreError> {
    let mut lines = f.store.wait_logs(f.id, f.next, FOLLOW_WAIT).await?;
    if lines.is_empty() {
        if !f.store.job(f.id).await?.state.is_terminal() {
            return Ok(None);
        }
        // Finished: whatever was appended before the finish is there now.
        lines = f.store.logs(f.id, f.next).await?;
        f.done = true;
        if lines.is_empty() {
            return Ok(None);
        }
    }
    f.next += lines.len();
    let mut text = String::new();
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    Ok(Some(Bytes::from(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_values() {
        assert!(!parse_follow(None).unwrap());
        assert!(parse_follow(Some("true")).unwrap());
        assert!(parse_follow(Some("TRUE")).unwrap());
        assert!(!parse_follow(Some("false")).unwrap());
        assert!(parse_follow(Some("maybe")).is_err());
    }
}
