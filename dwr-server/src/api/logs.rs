//! `GET /jobs/{job_id}/logs`: all lines as JSON, or with `?follow=true` a `text/plain`
//! stream of lines that ends once the job is finished and every line is sent.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use dwr_core::{JobId, JobStore};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;

use super::jobs::{is_digits, parse_job_id};
use super::{ApiError, AppState};
use dwr_client::wire::{ErrorBody, LogsResponse};

/// How long one wait for new lines lasts before the job's state is checked again.
const FOLLOW_WAIT: Duration = Duration::from_secs(5);

/// Query of the logs route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LogParams {
    /// `true` (or `1`) to stream new lines as they come (text/plain, one line per log line);
    /// `false` (or `0`, the default) for all lines at once as JSON.
    #[param(value_type = Option<bool>)]
    follow: Option<String>,
    /// The first line to return (0-based line number; lines dropped by the line cap are
    /// skipped), at most 1,000,000,000 (400 beyond). Default 0.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 1_000_000_000)]
    offset: Option<String>,
}

/// Largest `offset` of a log read.
pub(super) const MAX_LOG_OFFSET: usize = 1_000_000_000;

/// The line number to start from: absent is 0; not a number is 422; past the bound 400.
fn parse_offset(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(0);
    };
    let shown = || text.chars().take(32).collect::<String>();
    if is_digits(text) {
        return match text.parse::<usize>() {
            Ok(n) if n <= MAX_LOG_OFFSET => Ok(n),
            _ => Err(ApiError::bad_request(
                "offset_out_of_range",
                format!("offset must be at most {MAX_LOG_OFFSET}, got {:?}", shown()),
            )),
        };
    }
    Err(ApiError::validation(format!(
        "offset must be a non-negative integer, got {:?}",
        shown()
    )))
}

/// `follow` as the OpenAPI document's boolean: `true` or `false` in any case, or `1` or `0`
/// (absent: false).
fn parse_follow(text: Option<&str>) -> Result<bool, ApiError> {
    match text.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
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
        (status = 200, description = "All lines (JSON), or with follow=true a text/plain stream of lines that ends once the job is finished", content(
            (LogsResponse = "application/json"),
            (String = "text/plain"),
        )),
        (status = 400, description = "Malformed job id, or offset past its bound", body = ErrorBody),
        (status = 404, description = "Unknown job", body = ErrorBody),
        (status = 422, description = "Bad follow or offset", body = ErrorBody),
        (status = 503, description = "The store is unavailable, too many log streams are open, or the request took longer than the server's limit", body = ErrorBody),
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
    let offset = parse_offset(params.offset.as_deref())?;
    let id = parse_job_id(&job_id)?;
    let store = state.scheduler.store().clone();
    // Existence first: an unknown job is a 404, not an empty log.
    store.job(id).await?;
    if !follow {
        // The lines are held once; the JSON (which carries them twice) is written from them
        // as the body is sent.
        let lines = store.logs(id, offset).await?;
        return Ok((
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(logs_json(id.to_string(), lines)),
        )
            .into_response());
    }
    // A stream holds its permit until it ends or the client goes away.
    let permit = state.followers.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too_many_followers",
            format!(
                "{} log streams are open, the most this server allows; retry later or read \
                 the log without follow",
                state.config.max_log_followers
            ),
        )
    })?;
    let body = Body::from_stream(follow_lines(store, id, offset).map(move |chunk| {
        let _held = &permit;
        chunk
    }));
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

/// Bytes of JSON gathered before a chunk of the log body is sent.
const JSON_CHUNK: usize = 64 * 1024;

/// The body of a [`LogsResponse`] for `lines`, written a chunk at a time: `lines` as a
/// JSON array, then `logs`, the same lines joined with `\n`.
fn logs_json(
    job_id: String,
    lines: Vec<String>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    // Phase 0: the array; phase 1: the joined string; (phase, index of the next line).
    let head = format!("{{\"job_id\":{},\"lines\":[", quoted(&job_id));
    stream::unfold(
        (lines, 0u8, 0usize, Some(head)),
        |(lines, mut phase, mut next, head)| async move {
            if phase > 1 {
                return None;
            }
            let mut out = head.unwrap_or_default();
            while out.len() < JSON_CHUNK {
                match (phase, lines.get(next)) {
                    (0, Some(line)) => {
                        if next > 0 {
                            out.push(',');
                        }
                        out.push_str(&quoted(line));
                        next += 1;
                    }
                    (0, None) => {
                        out.push_str("],\"logs\":\"");
                        phase = 1;
                        next = 0;
                    }
                    (_, Some(line)) => {
                        if next > 0 {
                            out.push_str("\\n");
                        }
                        let q = quoted(line);
                        out.push_str(&q[1..q.len() - 1]);
                        next += 1;
                    }
                    (_, None) => {
                        out.push_str("\"}");
                        phase = 2;
                        break;
                    }
                }
            }
            Some((Ok(Bytes::from(out)), (lines, phase, next, None)))
        },
    )
}

/// `text` as a JSON string literal.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
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
    from: usize,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let start = Follow {
        store,
        id,
        next: from,
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
    fn offsets_are_bounded() {
        assert_eq!(parse_offset(None).unwrap(), 0);
        assert_eq!(parse_offset(Some("12")).unwrap(), 12);
        let too_far = parse_offset(Some("99999999999999999999999")).unwrap_err();
        assert_eq!(too_far.status, axum::http::StatusCode::BAD_REQUEST);
        let too_far = parse_offset(Some("1000000001")).unwrap_err();
        assert_eq!(too_far.status, axum::http::StatusCode::BAD_REQUEST);
        let negative = parse_offset(Some("-1")).unwrap_err();
        assert_eq!(
            negative.status,
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    #[tokio::test]
    async fn the_streamed_json_is_a_logs_response() {
        for lines in [
            vec![],
            vec!["one".to_owned()],
            vec![
                "a \"quoted\" \\ line\twith\u{1}controls".to_owned(),
                "ünï".to_owned(),
                String::new(),
            ],
            (0..5000)
                .map(|i| format!("line {i} {}", "x".repeat(i % 97)))
                .collect(),
        ] {
            let chunks: Vec<Bytes> = logs_json("j1".into(), lines.clone())
                .map(|c| c.unwrap())
                .collect()
                .await;
            assert!(chunks.iter().all(|c| c.len() < 2 * JSON_CHUNK));
            let body: Vec<u8> = chunks.concat();
            let parsed: LogsResponse = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                parsed,
                LogsResponse {
                    job_id: "j1".into(),
                    logs: lines.join("\n"),
                    lines,
                }
            );
        }
    }

    #[test]
    fn follow_values() {
        assert!(!parse_follow(None).unwrap());
        assert!(parse_follow(Some("true")).unwrap());
        assert!(parse_follow(Some("TRUE")).unwrap());
        assert!(!parse_follow(Some("false")).unwrap());
        assert!(parse_follow(Some("1")).unwrap());
        assert!(!parse_follow(Some("0")).unwrap());
        for bad in ["maybe", "", "yes", " true"] {
            assert!(parse_follow(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
