//! Forwarding a job's output lines to the store in batches.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::RuntimeError;
use crate::ids::JobId;

use super::{retry, Shared};

/// Sends the lines of `lines` to the job's log in order, one `append_logs` per batch of at
/// most `log_batch_max` lines or `log_batch_max_bytes` bytes, or per `log_flush_interval`,
/// whichever fills first.
///
/// Returns when the stream ends or fails, or when `stop` fires (or its sender is dropped),
/// after sending what it holds. The stop and the flush timer are polled before the next
/// line, so a stream that always has a line ready cannot starve them. A batch the store refuses for longer than the retry budget
/// is dropped with a warning: losing log lines must never block the job.
pub(super) async fn forward(
    shared: Arc<Shared>,
    job: JobId,
    attempt: u32,
    lines: impl Stream<Item = Result<String, RuntimeError>> + Send,
    mut stop: oneshot::Receiver<()>,
) {
    let mut lines = std::pin::pin!(lines);
    let batch_max = shared.config.log_batch_max.max(1);
    let bytes_max = shared.config.log_batch_max_bytes.max(1);
    let mut batch: Vec<String> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut flush_at: Option<Instant> = None;
    loop {
        let deadline = flush_at;
        tokio::select! {
            biased;
            _ = &mut stop => break,
            () = sleep_until(deadline), if deadline.is_some() => {
                send(&shared, job, attempt, &mut batch).await;
                batch_bytes = 0;
                flush_at = None;
            }
            line = lines.next() => match line {
                Some(Ok(text)) => {
                    if batch.is_empty() {
                        flush_at = Some(Instant::now() + shared.config.log_flush_interval);
                    }
                    batch_bytes += text.len();
                    batch.push(text);
                    if batch.len() >= batch_max || batch_bytes >= bytes_max {
                        send(&shared, job, attempt, &mut batch).await;
                        batch_bytes = 0;
                        flush_at = None;
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%job, error = %error, "reading the container's output failed; no more lines are captured");
                    break;
                }
                None => break,
            },
        }
    }
    send(&shared, job, attempt, &mut batch).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Appends `batch` to the job's log and empties it.
async fn send(shared: &Shared, job: JobId, attempt: u32, batch: &mut Vec<String>) {
    if batch.is_empty() {
        return;
    }
    let lines = std::mem::take(batch);
    let result = retry::with_backoff("append logs", shared.config.store_retry_for, || {
        shared.store.append_logs(job, Some(attempt), &lines)
    })
    .await;
    if let Err(error) = result {
        tracing::warn!(%job, lines = lines.len(), error = %error, "dropping log lines the store did not take");
    }
}
