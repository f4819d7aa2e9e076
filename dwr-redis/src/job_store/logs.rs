//! A job's log: appending an executor's lines (`append_logs.lua`), reading them from an
//! absolute line number (`read_logs.lua`), and following a job until it writes or ends.

use std::time::Duration;

use dwr_core::{JobId, JobState, StoreError};

use super::timed_out;
use crate::batch::Batched;
use crate::codec::{array, ok_or_refusal, state_at, strings, text_at};
use crate::store::RedisJobStore;

/// Appends `lines` as `attempt`'s output (`None`: not an executor's), within the caps.
pub(super) async fn append(
    store: &RedisJobStore,
    id: JobId,
    attempt: Option<u32>,
    lines: &[String],
) -> Result<(), StoreError> {
    if lines.is_empty() {
        return Ok(());
    }
    let config = &store.inner.config;
    let mut args = Vec::with_capacity(lines.len() + 5);
    args.push(id.to_string());
    args.push(attempt.map(|a| a.to_string()).unwrap_or_default());
    args.push(config.log_max_lines.to_string());
    args.push(store.log_ttl_secs());
    args.push(config.log_max_bytes.to_string());
    args.extend(lines.iter().cloned());
    let reply = store.batched(Batched::AppendLogs, args).await?;
    ok_or_refusal(&reply, "append_logs", "append logs", id, attempt)
}

/// Lines from absolute line `from` on, with the job's state.
pub(super) async fn read(
    store: &RedisJobStore,
    id: JobId,
    from: usize,
) -> Result<(JobState, Vec<String>), StoreError> {
    let script = &store.inner.scripts.read_logs;
    let reply = store
        .eval("logs", script, vec![id.to_string(), from.to_string()])
        .await?;
    let parts = array(&reply, "read_logs")?;
    let lines = match parts.get(1) {
        Some(v) => strings(v, "read_logs")?,
        None => Vec::new(),
    };
    if text_at(parts, 0, "read_logs")?.is_empty() {
        return Err(StoreError::JobNotFound { id });
    }
    Ok((state_at(parts, "read_logs")?, lines))
}

/// Lines from `from` on, waiting up to `wait` for the first while the job is not terminal.
pub(super) async fn follow(
    store: &RedisJobStore,
    id: JobId,
    from: usize,
    wait: Duration,
) -> Result<Vec<String>, StoreError> {
    let (state, lines) = read(store, id, from).await?;
    if !lines.is_empty() || state.is_terminal() || wait.is_zero() {
        return Ok(lines);
    }
    // Watch first, then read again, so a line appended in between is not missed. The
    // followers of this process share one subscription (pub/sub, not a per-job list,
    // because any number of followers may watch one job).
    let connect = store.inner.config.connect_timeout;
    let mut watching = match store.inner.log_watch.watch(&id.to_string(), connect).await {
        Ok(watching) => watching,
        Err(()) => return Err(timed_out("wait_logs")),
    };
    let (state, lines) = read(store, id, from).await?;
    if !lines.is_empty() || state.is_terminal() {
        return Ok(lines);
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let woke = tokio::time::timeout_at(deadline, watching.changed())
            .await
            .is_ok();
        // A purged job is gone for its followers too (`JobNotFound`).
        let (state, lines) = read(store, id, from).await?;
        // A message about lines before `from` wakes us without news: wait on.
        if !woke || !lines.is_empty() || state.is_terminal() {
            return Ok(lines);
        }
    }
}
