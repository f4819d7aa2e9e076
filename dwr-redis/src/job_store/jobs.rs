//! Submitting jobs and reading them: one job, a page of jobs, the pending queue as a
//! scheduling pass reads it, and the count per state.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use dwr_core::spec::DEFAULT_PRIORITY;
use dwr_core::{Job, JobId, JobState, QueueUsage, Queued, StoreError, Submission, DEFAULT_QUEUE};
use redis::{AsyncCommands, Value};

use crate::batch::Batched;
use crate::codec::{
    array, flat_map, job_fields, job_from_map, job_id_at, jobs_from, millis_at, placement_view_map,
    status_reply, strings, text_at, unexpected, PLACEMENT_FIELDS,
};
use crate::error::{corrupt, corrupt_by, store_error};
use crate::store::RedisJobStore;

/// The arguments of `submit.lua` (see there) for `job`, under idempotency key `key` when
/// given.
fn submit_args(job: &Job, key: Option<(&str, Duration)>) -> Result<Vec<String>, StoreError> {
    let (key, ttl) = key.unwrap_or(("", Duration::ZERO));
    let mut fields = job_fields(job)?;
    let view = fields.iter().any(|(field, _)| *field == "place");
    let mut take = |name: &str| {
        fields
            .iter()
            .position(|(field, _)| *field == name)
            .map(|at| fields.remove(at).1)
            .ok_or_else(|| corrupt("submit", format!("no {name} among the job's fields")))
    };
    // The fields every job has, by position, and its GPU count; the script writes the id
    // and the state and stamps the creation time itself.
    let mut args = vec![job.id.to_string()];
    for name in ["spec", "cpu", "mem"] {
        args.push(take(name)?);
    }
    fields.retain(|(field, _)| {
        !matches!(
            *field,
            "id" | "state" | "created_at" | "updated_at" | "ngpu"
        )
    });
    // The rest only for a job that has any of it: a plain job without GPUs is four
    // arguments (each costs the server about as much as a small command's own work).
    let plain = !view
        && key.is_empty()
        && job.spec.priority == DEFAULT_PRIORITY
        && job.spec.queue == DEFAULT_QUEUE
        && job.spec.depends_on.is_empty()
        && fields.is_empty();
    if plain {
        if job.spec.gpu.count > 0 {
            args.push(job.spec.gpu.count.to_string());
        }
        return Ok(args);
    }
    args.extend([
        job.spec.gpu.count.to_string(),
        if view { "1" } else { "" }.to_owned(),
        key.to_owned(),
        ttl.as_millis().max(1).to_string(),
        job.spec.priority.to_string(),
        if job.spec.queue == DEFAULT_QUEUE {
            String::new()
        } else {
            job.spec.queue.clone()
        },
        job.spec.dependency.as_str().to_owned(),
        job.spec
            .depends_on
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    ]);
    for (field, value) in fields {
        args.push(field.to_owned());
        args.push(value);
    }
    Ok(args)
}

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
    let args = submit_args(&job, key)?;
    let reply = store.batched(Batched::Submit, args).await?;
    let (status, rest) = status_reply(&reply, "submit")?;
    match status.as_str() {
        "ok" => {
            let now = millis_at(rest, 0, "submit")?;
            job.created_at = now;
            job.updated_at = now;
            let count = |i| -> Result<u32, StoreError> {
                text_at(rest, i, "submit")?
                    .parse()
                    .map_err(|_| corrupt("submit", format!("payload item {i} is not a count")))
            };
            match rest
                .get(1)
                .map(|_| text_at(rest, 1, "submit"))
                .transpose()?
                .as_deref()
            {
                None => {}
                Some("ready") => job.ready_at = Some(now),
                Some("blocked") => {
                    job.deps_left = count(2)?;
                    job.deps_not_ok = count(3)?;
                }
                Some("failed") => {
                    job.state = JobState::Failed;
                    job.reason = Some(text_at(rest, 2, "submit")?);
                    job.finished_at = Some(now);
                }
                Some(other) => return Err(unexpected("submit", other)),
            }
            Ok(Submission::Created(job))
        }
        "unknown_dependency" => Err(StoreError::UnknownDependency {
            id: job_id_at(rest, 0, "submit")?,
        }),
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

/// The first `limit` pending jobs of each queue in its order, each with its queue key, a
/// large spec as its placement view: `pending_placement.lua` names them (atomically, with
/// the queues), then one pipeline reads them with plain commands, `HGETALL` for most and
/// `HMGET` of [`PLACEMENT_FIELDS`] and `place` for a job with a placement view. A job that
/// left its queue between the two (committed, ended, deleted) is left out: only pending
/// jobs are returned.
pub(super) async fn pending_for_placement(
    store: &RedisJobStore,
    limit: usize,
) -> Result<Vec<Queued>, StoreError> {
    const SCRIPT: &str = "pending_placement";
    if limit == 0 {
        return Ok(Vec::new());
    }
    let script = &store.inner.scripts.pending_placement;
    let reply = store
        .eval("pending_for_placement", script, vec![limit.to_string()])
        .await?;
    let reply = array(&reply, SCRIPT)?;
    if reply.len() % 3 != 1 {
        return Err(corrupt(
            SCRIPT,
            format!("{} items, not a count and triples", reply.len()),
        ));
    }
    let (requeued, heads) = (text_at(reply, 0, SCRIPT)?, &reply[1..]);
    // The jobs the last pass read, while no job has gone back to a queue since: a job's hash
    // does not change while it waits in its queue (it changes when it leaves).
    let mut cached = {
        let mut cache = lock(&store.inner.queued);
        if cache.requeued.as_deref() == Some(requeued.as_str()) {
            std::mem::take(&mut cache.jobs)
        } else {
            HashMap::new()
        }
    };
    let mut named = Vec::with_capacity(heads.len() / 3);
    let mut pipe = redis::pipe();
    for head in heads.chunks(3) {
        let id: JobId = text_at(head, 0, SCRIPT)?
            .parse()
            .map_err(|e| corrupt_by(SCRIPT, e))?;
        let key = text_at(head, 1, SCRIPT)?
            .parse::<f64>()
            .map_err(|_| corrupt(SCRIPT, "a queued job without its queue key"))?
            as i64;
        let place = text_at(head, 2, SCRIPT)? == "1";
        let slot = (id, key, place);
        if let Some(job) = cached.remove(&slot) {
            named.push((slot, Some(job)));
            continue;
        }
        let hash = store.inner.keys.job(id);
        if place {
            pipe.cmd("HMGET")
                .arg(hash)
                .arg(&PLACEMENT_FIELDS[..])
                .arg("place");
        } else {
            pipe.cmd("HGETALL").arg(hash);
        }
        named.push((slot, None));
    }
    let hashes = if named.iter().any(|(_, job)| job.is_none()) {
        let mut conn = store.conn();
        let read = pipe.query_async::<Vec<Value>>(&mut conn).await;
        store
            .inner
            .endpoint
            .settle(&mut conn, read, false)
            .await
            .map_err(|e| store_error("pending_for_placement", e))?
    } else {
        Vec::new()
    };
    let mut hashes = hashes.iter();
    let mut queued = Vec::with_capacity(named.len());
    let mut kept = HashMap::with_capacity(named.len());
    for (slot, job) in named {
        let (_, key, place) = slot;
        let job = match job {
            Some(job) => job,
            None => {
                let hash = hashes
                    .next()
                    .ok_or_else(|| corrupt(SCRIPT, "fewer hashes than heads"))?;
                let map = if place {
                    placement_view_map(hash, SCRIPT)?
                } else {
                    flat_map(hash, SCRIPT)?
                };
                // Gone, or no longer pending, since the heads were read.
                if map.get("state").map(String::as_str) != Some(JobState::Pending.as_str()) {
                    continue;
                }
                job_from_map(&map)?
            }
        };
        kept.insert(slot, job.clone());
        queued.push(Queued { key, job });
    }
    // What this pass read, under the count it was read with: the jobs no longer at the
    // heads are forgotten, so the cache holds at most one pass's jobs.
    *lock(&store.inner.queued) = QueuedCache {
        requeued: Some(requeued),
        jobs: kept,
    };
    Ok(queued)
}

/// The queued jobs the last scheduling pass of this process read, by id, queue key and
/// whether read as the placement view, with the count of jobs gone back to a queue
/// (`jobs:counts` `requeued`) they were read under. A job's hash does not change while it
/// waits in its queue: it leaves it to be assigned or to end, and comes back (a retry, a
/// preemption) only through a move that counts `requeued`. So while the count holds, a pass
/// reads only the jobs new at the heads, not every job waiting (at 10,000 waiting jobs that
/// do not fit, 10,000 hashes a pass).
#[derive(Debug, Default)]
pub(crate) struct QueuedCache {
    requeued: Option<String>,
    jobs: HashMap<(JobId, i64, bool), Job>,
}

fn lock(cache: &std::sync::Mutex<QueuedCache>) -> std::sync::MutexGuard<'_, QueuedCache> {
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The job's rank in its queue (`ZRANK`): its queue read first, with whether it exists.
pub(super) async fn queue_position(
    store: &RedisJobStore,
    id: JobId,
) -> Result<Option<u64>, StoreError> {
    let keys = &store.inner.keys;
    let (exists, queue): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(keys.job(id))
        .arg("id")
        .arg("queue")
        .query_async(&mut store.conn())
        .await
        .map_err(|e| store_error("queue_position", e))?;
    if exists.is_none() {
        return Err(StoreError::JobNotFound { id });
    }
    let queue = keys.queue(queue.as_deref().unwrap_or(DEFAULT_QUEUE));
    store
        .conn()
        .zrank(queue, id.to_string())
        .await
        .map_err(|e| store_error("queue_position", e))
}

/// `queue_usage.lua`: per queue, the pending count and what its jobs hold. A queue with
/// neither is left out.
pub(super) async fn queue_usage(
    store: &RedisJobStore,
) -> Result<BTreeMap<String, QueueUsage>, StoreError> {
    const SCRIPT: &str = "queue_usage";
    let reply = store
        .eval(SCRIPT, &store.inner.scripts.queue_usage, Vec::new())
        .await?;
    let parts = array(&reply, SCRIPT)?;
    let [names, pending, held] = parts else {
        return Err(corrupt(SCRIPT, "not three parts"));
    };
    let mut usage: BTreeMap<String, QueueUsage> = BTreeMap::new();
    let pending: Vec<u64> =
        redis::from_redis_value_ref(pending).map_err(|e| corrupt_by(SCRIPT, e))?;
    for (name, pending) in strings(names, SCRIPT)?.into_iter().zip(pending) {
        if pending > 0 {
            usage.entry(name).or_default().pending = pending;
        }
    }
    for (field, amount) in flat_map(held, SCRIPT)? {
        let amount: u64 = match amount.parse::<i64>() {
            Ok(0) => continue,
            Ok(n) => u64::try_from(n).map_err(|_| corrupt(SCRIPT, format!("{field} is {n}")))?,
            Err(_) => return Err(corrupt(SCRIPT, format!("{field} is {amount:?}"))),
        };
        let Some((queue, dimension)) = field.rsplit_once(':') else {
            return Err(corrupt(SCRIPT, format!("field {field:?}")));
        };
        let held = &mut usage.entry(queue.to_owned()).or_default().held;
        match dimension {
            "cpu" => held.cpu_millis = amount,
            "mem" => held.memory_mib = amount,
            "gpu" => held.gpus = u32::try_from(amount).unwrap_or(u32::MAX),
            _ => return Err(corrupt(SCRIPT, format!("field {field:?}"))),
        }
    }
    Ok(usage)
}

/// How many jobs are in each state, in one pipelined round trip: the size of each state's
/// index, and for the two states under way, which share one index, the running count
/// beside it (the assigned jobs are the rest).
pub(super) async fn counts(store: &RedisJobStore) -> Result<BTreeMap<JobState, u64>, StoreError> {
    let keys = &store.inner.keys;
    // Every state's index once: Assigned's is the one of both states under way.
    let indexed: Vec<JobState> = JobState::ALL
        .into_iter()
        .filter(|state| *state != JobState::Running)
        .collect();
    let mut pipe = redis::pipe();
    for state in &indexed {
        pipe.zcard(keys.jobs_in(*state));
    }
    pipe.hget(keys.job_counts(), "running");
    let mut sizes: Vec<Option<i64>> = pipe
        .query_async(&mut store.conn())
        .await
        .map_err(|e| store_error("counts", e))?;
    let size = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let running = size(sizes.pop().flatten());
    let mut counts: BTreeMap<JobState, u64> = indexed
        .into_iter()
        .zip(sizes)
        .map(|(state, n)| (state, size(n)))
        .collect();
    let under_way = counts[&JobState::Assigned];
    counts.insert(JobState::Assigned, under_way.saturating_sub(running));
    counts.insert(JobState::Running, running);
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwr_core::{JobSpec, Timestamp};

    fn job(spec: impl FnOnce(&mut JobSpec)) -> Job {
        let mut s = JobSpec::new("img", vec!["true".into()], 500, 64);
        spec(&mut s);
        Job::new(JobId::new(), s, Timestamp::now())
    }

    #[test]
    fn a_plain_job_is_sent_as_its_id_spec_and_resources_alone() {
        let plain = job(|_| {});
        let args = submit_args(&plain, None).unwrap();
        let spec = serde_json::to_string(&plain.spec).unwrap();
        assert_eq!(
            args,
            [plain.id.to_string(), spec, "500".into(), "64".into()]
        );
        // Its GPU count when it has GPUs.
        let gpus = job(|s| s.gpu.count = 2);
        let args = submit_args(&gpus, None).unwrap();
        assert_eq!(args.len(), 5);
        assert_eq!(args[4], "2");
    }

    #[test]
    fn a_job_with_anything_more_sends_every_option_then_its_other_fields() {
        let at = |args: &[String], i: usize| args[i].clone();
        // Options by position after the five: view, key, TTL, priority, queue, dependency
        // type, dependencies.
        let urgent = submit_args(&job(|s| s.priority = 90), None).unwrap();
        assert_eq!(urgent.len(), 12);
        assert_eq!(at(&urgent, 8), "90");
        let keyed = submit_args(&job(|_| {}), Some(("k", Duration::from_secs(2)))).unwrap();
        assert_eq!((at(&keyed, 6), at(&keyed, 7)), ("k".into(), "2000".into()));
        let queued = submit_args(&job(|s| s.queue = "batch".into()), None).unwrap();
        assert_eq!(at(&queued, 9), "batch");
        assert_eq!(&queued[12..], ["queue", "batch"]);
        let retried = submit_args(&job(|s| s.retry.max_retries = 2), None).unwrap();
        assert_eq!(at(&retried, 8), DEFAULT_PRIORITY.to_string());
        assert_eq!(at(&retried, 12), "max_retries");
        assert_eq!(at(&retried, 13), "2");
    }
}
