//! Submitting jobs and reading them: one job, a page of jobs, the pending queue as a
//! scheduling pass reads it, and the count per state.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use dwr_core::{Job, JobId, JobState, StoreError, Submission};
use redis::AsyncCommands;

use crate::codec::{
    job_fields, job_from_map, job_id_at, jobs_from, millis_at, status_reply, unexpected,
};
use crate::error::store_error;
use crate::store::RedisJobStore;

/// `submit.lua`: stores `job`, under an idempotency key when given (see
/// [`JobStore::submit_idempotent`](dwr_core::JobStore::submit_idempotent)).
pub(super) async fn submit(
    store: &RedisJobStore,
    mut job: Job,
    key: Option<(&str, Duration)>,
) -> Result<Submission, StoreError> {
    if job.state != JobState::Pending {
        return Err(StoreError::InvalidTransition {
            id: job.id,
            state: job.state,
            action: "submit",
        });
    }
    let (key, ttl) = key.unwrap_or(("", Duration::ZERO));
    let mut args = vec![
        job.id.to_string(),
        job.state.as_str().to_owned(),
        key.to_owned(),
        ttl.as_millis().max(1).to_string(),
        job.spec.priority.to_string(),
    ];
    // The script stamps the creation time itself.
    for (field, value) in job_fields(&job)?
        .into_iter()
        .filter(|(field, _)| !matches!(*field, "created_at" | "updated_at"))
    {
        args.push(field.to_owned());
        args.push(value);
    }
    let reply = store.inner.batchers.submit.call(args).await?;
    let (status, rest) = status_reply(&reply, "submit")?;
    match status.as_str() {
        "ok" => {
            let now = millis_at(rest, 0, "submit")?;
            job.created_at = now;
            job.updated_at = now;
            Ok(Submission::Created(job))
        }
        "existing" => get(store, job_id_at(rest, 0, "submit")?)
            .await
            .map(Submission::Existing),
        "job_exists" => Err(StoreError::JobExists { id: job.id }),
        other => Err(unexpected("submit", other)),
    }
}

/// The job's hash, read whole.
pub(super) async fn get(store: &RedisJobStore, id: JobId) -> Result<Job, StoreError> {
    let map: HashMap<String, String> = store
        .conn()
        .hgetall(store.inner.keys.job(id))
        .await
        .map_err(|e| store_error("job", e))?;
    if map.is_empty() {
        return Err(StoreError::JobNotFound { id });
    }
    job_from_map(&map)
}

/// `list_jobs.lua`: a page of the jobs in `index` (a state or `all`), `order` `rev`
/// (newest first) or `fwd`.
pub(super) async fn list(
    store: &RedisJobStore,
    index: &str,
    offset: usize,
    limit: usize,
    order: &str,
) -> Result<Vec<Job>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let script = &store.inner.scripts.list_jobs;
    let args = vec![
        index.to_owned(),
        offset.to_string(),
        limit.to_string(),
        order.to_owned(),
    ];
    let reply = store.eval("jobs", script, args).await?;
    jobs_from(&reply, "list_jobs")
}

/// `pending_placement.lua`: the first `limit` pending jobs in queue order, a large spec
/// as its placement view.
pub(super) async fn pending_for_placement(
    store: &RedisJobStore,
    limit: usize,
) -> Result<Vec<Job>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let script = &store.inner.scripts.pending_placement;
    let args = vec![limit.to_string()];
    let reply = store.eval("pending_for_placement", script, args).await?;
    jobs_from(&reply, "pending_placement")
}

/// The job's rank in the queue (`ZRANK`), and whether it exists, in one round trip.
pub(super) async fn queue_position(
    store: &RedisJobStore,
    id: JobId,
) -> Result<Option<u64>, StoreError> {
    let (rank, exists): (Option<u64>, bool) = redis::pipe()
        .zrank(store.inner.keys.queue(), id.to_string())
        .exists(store.inner.keys.job(id))
        .query_async(&mut store.conn())
        .await
        .map_err(|e| store_error("queue_position", e))?;
    if !exists {
        return Err(StoreError::JobNotFound { id });
    }
    Ok(rank)
}

/// The size of every per-state index, in one pipelined round trip.
pub(super) async fn counts(store: &RedisJobStore) -> Result<BTreeMap<JobState, u64>, StoreError> {
    let mut pipe = redis::pipe();
    for state in JobState::ALL {
        pipe.zcard(store.inner.keys.jobs_in(state));
    }
    let counts: Vec<u64> = pipe
        .query_async(&mut store.conn())
        .await
        .map_err(|e| store_error("counts", e))?;
    Ok(JobState::ALL.into_iter().zip(counts).collect())
}
