//! Conversions between dwr-core values and what Redis stores or the scripts answer: the job
//! hash, the executor snapshot, executor events and script status replies.

use std::collections::{BTreeMap, HashMap};

use dwr_core::{
    AbortCause, ArrayTask, AttemptRecord, Executor, ExecutorEvent, ExecutorId,
    ExecutorRegistration, HostUsage, Job, JobId, JobState, Resources, StoreError, Timestamp,
    DEFAULT_QUEUE,
};
use redis::Value;

use crate::error::{corrupt, corrupt_by};

/// Specs longer than this (JSON bytes) are stored with their placement view beside them
/// (`place`): a scheduling pass reads that instead. Shorter ones are read whole, which
/// costs no more than the view would, and saves writing it.
pub(crate) const PLACEMENT_VIEW_FROM: usize = 1024;

/// The fields of a job hash, as field/value pairs (optional fields only when set).
pub(crate) fn job_fields(job: &Job) -> Result<Vec<(&'static str, String)>, StoreError> {
    let unwritable = |e| corrupt_by(format!("spec of job {}", job.id), e);
    let spec = serde_json::to_string(&job.spec).map_err(unwritable)?;
    let place = (spec.len() > PLACEMENT_VIEW_FROM)
        .then(|| serde_json::to_string(&job.spec.for_placement()))
        .transpose()
        .map_err(unwritable)?;
    let millis = |t: Option<Timestamp>| t.map(|t| t.millis().to_string());
    let mut f = vec![
        ("id", job.id.to_string()),
        ("spec", spec),
        ("state", job.state.as_str().to_owned()),
        ("cpu", job.spec.cpu_millis.to_string()),
        ("mem", job.spec.memory_mib.to_string()),
        ("created_at", job.created_at.millis().to_string()),
    ];
    let mut opt = |name: &'static str, value: Option<String>| {
        if let Some(v) = value {
            f.push((name, v));
        }
    };
    // What a new job has is not written (every field is an argument through Lua and a field
    // of the hash read at each step); job_from_map reads its absence as the same, and the
    // scripts read no `ngpu` as none.
    opt(
        "ngpu",
        (job.spec.gpu.count > 0).then(|| job.spec.gpu.count.to_string()),
    );
    opt(
        "gpu_ids",
        (!job.gpu_ids.is_empty()).then(|| json_strings(&job.gpu_ids)),
    );
    opt("oom", job.oom_killed.then(|| "1".to_owned()));
    opt(
        "updated_at",
        (job.updated_at != job.created_at).then(|| job.updated_at.millis().to_string()),
    );
    opt("place", place);
    // The queue, for the scripts (the spec has it too), only when not the default.
    opt(
        "queue",
        (job.spec.queue != DEFAULT_QUEUE).then(|| job.spec.queue.clone()),
    );
    opt("executor", job.executor.as_ref().map(|e| e.to_string()));
    opt("executor_ip", job.executor_ip.clone());
    opt("exit_code", job.exit_code.map(|c| c.to_string()));
    opt("reason", job.reason.clone());
    opt(
        "abort",
        job.abort_requested.map(|c| abort_cause_str(c).to_owned()),
    );
    opt("assigned_at", millis(job.assigned_at));
    opt("started_at", millis(job.started_at));
    opt(
        "attempt",
        (job.attempt > 0).then(|| job.attempt.to_string()),
    );
    // What the scripts read to decide on a retry (the spec JSON has it too, for Rust).
    let retry = &job.spec.retry;
    if retry.max_retries > 0 {
        opt("max_retries", Some(retry.max_retries.to_string()));
        opt("retry_ms", Some(retry.backoff.as_millis().to_string()));
        opt("retry_on", Some(retry.retry_on_list()));
    }
    opt("retry_at", millis(job.retry_at));
    opt(
        "preemptions",
        (job.preemptions > 0).then(|| job.preemptions.to_string()),
    );
    // Dependencies: the type (the ids are in the spec); what is left and when they were
    // met are the scripts' to write, and written here only when a job carries them.
    opt(
        "dependency",
        (!job.spec.depends_on.is_empty()).then(|| job.spec.dependency.as_str().to_owned()),
    );
    opt(
        "deps_left",
        (job.deps_left > 0).then(|| job.deps_left.to_string()),
    );
    opt(
        "deps_not_ok",
        (job.deps_not_ok > 0).then(|| job.deps_not_ok.to_string()),
    );
    opt("ready_at", millis(job.ready_at));
    if let Some(task) = job.array {
        opt("array", Some(task.array_job_id.to_string()));
        opt("array_index", Some(task.index.to_string()));
    }
    if !job.attempts.is_empty() {
        let attempts = serde_json::to_string(&job.attempts)
            .map_err(|e| corrupt_by(format!("attempts of job {}", job.id), e))?;
        opt("attempts", Some(attempts));
    }
    opt("finished_at", millis(job.finished_at));
    Ok(f)
}

/// A JSON array of strings (what the scripts decode with cjson, read-only).
pub(crate) fn json_strings(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

/// The wire name of an abort cause.
pub(crate) fn abort_cause_str(cause: AbortCause) -> &'static str {
    match cause {
        AbortCause::User => "user",
        AbortCause::TimedOut => "timed_out",
        AbortCause::Preempted => "preempted",
    }
}

fn parse_abort_cause(text: &str) -> Option<AbortCause> {
    match text {
        "user" => Some(AbortCause::User),
        "timed_out" => Some(AbortCause::TimedOut),
        "preempted" => Some(AbortCause::Preempted),
        _ => None,
    }
}

/// Every field of a job hash that [`job_from_map`] reads but `spec` and `attempts`: what a
/// scheduling pass reads of a job with a placement view (`place`, read in `spec`'s stead;
/// the commit reads the hash whole for the executor). A test checks that nothing else
/// changes the job read.
pub(crate) const PLACEMENT_FIELDS: [&str; 22] = [
    "id",
    "state",
    "executor",
    "executor_ip",
    "gpu_ids",
    "exit_code",
    "reason",
    "oom",
    "abort",
    "attempt",
    "preemptions",
    "deps_left",
    "deps_not_ok",
    "ready_at",
    "array",
    "array_index",
    "retry_at",
    "created_at",
    "updated_at",
    "assigned_at",
    "started_at",
    "finished_at",
];

/// The answer to `HMGET <job> PLACEMENT_FIELDS... place` as a map: the fields present, and
/// the placement view as `spec`.
pub(crate) fn placement_view_map(
    value: &Value,
    what: &str,
) -> Result<HashMap<String, String>, StoreError> {
    let values = array(value, what)?;
    if values.len() != PLACEMENT_FIELDS.len() + 1 {
        return Err(corrupt(
            what,
            format!(
                "{} values for {} fields",
                values.len(),
                PLACEMENT_FIELDS.len() + 1
            ),
        ));
    }
    let mut map = HashMap::new();
    for (field, value) in PLACEMENT_FIELDS.iter().chain(["spec"].iter()).zip(values) {
        match value {
            Value::Nil => {}
            Value::BulkString(bytes) => {
                let text = String::from_utf8(bytes.clone()).map_err(|e| corrupt_by(what, e))?;
                map.insert((*field).to_owned(), text);
            }
            other => return Err(corrupt(what, format!("{field} is {other:?}"))),
        }
    }
    Ok(map)
}

/// A job read back from its hash.
pub(crate) fn job_from_map(map: &HashMap<String, String>) -> Result<Job, StoreError> {
    let what = || format!("job {}", map.get("id").map(String::as_str).unwrap_or("?"));
    let req = |name: &str| {
        map.get(name)
            .ok_or_else(|| corrupt(what(), format!("field {name} missing")))
    };
    let int = |name: &str| -> Result<Option<i64>, StoreError> {
        map.get(name)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| corrupt(what(), format!("field {name} is not an integer")))
            })
            .transpose()
    };
    let ts = |name: &str| int(name).map(|v| v.map(Timestamp));
    let id: JobId = req("id")?.parse().map_err(|e| corrupt_by(what(), e))?;
    let spec = serde_json::from_str(req("spec")?).map_err(|e| corrupt_by(what(), e))?;
    let state: JobState = req("state")?.parse().map_err(|e| corrupt_by(what(), e))?;
    let gpu_ids: Vec<String> = match map.get("gpu_ids") {
        Some(text) => serde_json::from_str(text).map_err(|e| corrupt_by(what(), e))?,
        None => Vec::new(),
    };
    let created_at = ts("created_at")?.ok_or_else(|| corrupt(what(), "created_at missing"))?;
    let mut job = Job {
        id,
        spec,
        state,
        executor: map.get("executor").map(|e| ExecutorId::new(e.as_str())),
        executor_ip: map.get("executor_ip").filter(|s| !s.is_empty()).cloned(),
        gpu_ids,
        exit_code: int("exit_code")?,
        reason: map.get("reason").cloned(),
        oom_killed: map.get("oom").is_some_and(|v| v == "1"),
        abort_requested: map.get("abort").and_then(|c| parse_abort_cause(c)),
        attempt: int("attempt")?.map_or(0, |a| u32::try_from(a).unwrap_or(u32::MAX)),
        attempts: match map.get("attempts") {
            // Written by the scripts with cjson, which encodes an empty table as `{}`.
            Some(text) if text != "{}" => {
                serde_json::from_str(text).map_err(|e| corrupt_by(what(), e))?
            }
            _ => Vec::new(),
        },
        preemptions: int("preemptions")?.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        deps_left: int("deps_left")?.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        deps_not_ok: int("deps_not_ok")?.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        ready_at: ts("ready_at")?,
        array: match (map.get("array"), int("array_index")?) {
            (Some(array), Some(index)) => Some(ArrayTask {
                array_job_id: array.parse().map_err(|e| corrupt_by(what(), e))?,
                index: u32::try_from(index).map_err(|e| corrupt_by(what(), e))?,
            }),
            _ => None,
        },
        retry_at: ts("retry_at")?,
        created_at,
        updated_at: created_at,
        assigned_at: ts("assigned_at")?,
        started_at: ts("started_at")?,
        finished_at: ts("finished_at")?,
    };
    // The scripts write `updated_at` only beside no other time (see `now_s` in
    // common.lua): the job was last changed at the latest of its times.
    job.updated_at = [
        ts("updated_at")?,
        job.ready_at,
        job.assigned_at,
        job.started_at,
        job.finished_at,
    ]
    .into_iter()
    .flatten()
    .fold(created_at, Timestamp::max);
    // The scripts keep only the attempts that ended in a retry; the final one is the
    // job's own fields (dwr_core::Job::end_attempt records it, so both stores agree).
    let recorded = job
        .attempts
        .last()
        .is_some_and(|a| a.attempt == job.attempt);
    if job.state.is_terminal() && job.attempt > 0 && !recorded {
        job.attempts.push(AttemptRecord {
            attempt: job.attempt,
            executor: job.executor.clone(),
            executor_ip: job.executor_ip.clone(),
            started_at: job.started_at,
            ended_at: job.finished_at.unwrap_or(job.updated_at),
            exit_code: job.exit_code,
            reason: job.reason.clone(),
        });
    }
    Ok(job)
}

/// A flat `HGETALL` answer as a map.
pub(crate) fn flat_map(value: &Value, what: &str) -> Result<HashMap<String, String>, StoreError> {
    let items = strings(value, what)?;
    if items.len() % 2 != 0 {
        return Err(corrupt(what, "odd number of hash items"));
    }
    let mut map = HashMap::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(k, v);
    }
    Ok(map)
}

/// An array of strings.
pub(crate) fn strings(value: &Value, what: &str) -> Result<Vec<String>, StoreError> {
    redis::from_redis_value_ref(value).map_err(|e| corrupt_by(what, e))
}

/// The items of an array answer.
pub(crate) fn array<'a>(value: &'a Value, what: &str) -> Result<&'a [Value], StoreError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(&[]),
        other => Err(corrupt(what, format!("expected an array, got {other:?}"))),
    }
}

/// A script's `{status, payload...}` answer split into the status and the rest.
pub(crate) fn status_reply<'a>(
    value: &'a Value,
    script: &str,
) -> Result<(String, &'a [Value]), StoreError> {
    let items = array(value, script)?;
    let (first, rest) = items
        .split_first()
        .ok_or_else(|| corrupt(script, "empty reply"))?;
    let status: String = redis::from_redis_value_ref(first).map_err(|e| corrupt_by(script, e))?;
    Ok((status, rest))
}

/// The `i`-th payload item as a string.
pub(crate) fn text_at(rest: &[Value], i: usize, script: &str) -> Result<String, StoreError> {
    rest.get(i)
        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        .ok_or_else(|| corrupt(script, format!("payload item {i} missing")))
}

/// A time in ms (Redis TIME, as a script read it) in a script's payload.
pub(crate) fn millis_at(rest: &[Value], i: usize, script: &str) -> Result<Timestamp, StoreError> {
    text_at(rest, i, script)?
        .parse()
        .map(Timestamp)
        .map_err(|_| corrupt(script, format!("payload item {i} is not a time")))
}

/// A status `script` should not send.
pub(crate) fn unexpected(script: &str, status: &str) -> StoreError {
    corrupt(script, format!("unexpected status {status:?}"))
}

/// The error a script's refusal `status` (payload `rest`) about job `id` stands for: the
/// refusals several scripts share, `job_not_found`, `terminal`, `invalid` (of `action`)
/// and `stale` (of the caller's `attempt`); any other status is [`unexpected`].
pub(crate) fn refusal(
    script: &str,
    action: &'static str,
    id: JobId,
    attempt: Option<u32>,
    status: &str,
    rest: &[Value],
) -> StoreError {
    let error = match status {
        "job_not_found" => Ok(StoreError::JobNotFound { id }),
        "terminal" => state_at(rest, script).map(|state| StoreError::AlreadyTerminal { id, state }),
        "invalid" => {
            state_at(rest, script).map(|state| StoreError::InvalidTransition { id, state, action })
        }
        "stale" => stale_at(id, attempt.unwrap_or_default(), rest, script),
        other => Ok(unexpected(script, other)),
    };
    error.unwrap_or_else(|unreadable| unreadable)
}

/// Nothing for a script's `ok`; the [`refusal`] any other status stands for.
pub(crate) fn ok_or_refusal(
    reply: &Value,
    script: &str,
    action: &'static str,
    id: JobId,
    attempt: Option<u32>,
) -> Result<(), StoreError> {
    let (status, rest) = status_reply(reply, script)?;
    match status.as_str() {
        "ok" => Ok(()),
        other => Err(refusal(script, action, id, attempt, other, rest)),
    }
}

/// The refusal of a write about `attempt` of job `id` that a script found stale: its
/// payload is the job's state and current attempt.
fn stale_at(
    id: JobId,
    attempt: u32,
    rest: &[Value],
    script: &str,
) -> Result<StoreError, StoreError> {
    Ok(StoreError::StaleAttempt {
        id,
        attempt,
        current: text_at(rest, 1, script)?.parse().unwrap_or(0),
        state: state_at(rest, script)?,
    })
}

/// The job hash in a script's payload.
pub(crate) fn job_at(rest: &[Value], script: &str) -> Result<Job, StoreError> {
    let value = rest
        .first()
        .ok_or_else(|| corrupt(script, "job missing from reply"))?;
    job_from_map(&flat_map(value, script)?)
}

/// The job hashes (`HGETALL` answers) of an array answer.
pub(crate) fn jobs_from(value: &Value, script: &str) -> Result<Vec<Job>, StoreError> {
    array(value, script)?
        .iter()
        .map(|hash| job_from_map(&flat_map(hash, script)?))
        .collect()
}

/// The `i`-th payload item as a job id.
pub(crate) fn job_id_at(rest: &[Value], i: usize, script: &str) -> Result<JobId, StoreError> {
    text_at(rest, i, script)?
        .parse()
        .map_err(|e| corrupt_by(script, e))
}

/// A job state named by a script.
pub(crate) fn state_at(rest: &[Value], script: &str) -> Result<JobState, StoreError> {
    text_at(rest, 0, script)?
        .parse()
        .map_err(|e| corrupt_by(script, e))
}

/// An executor from its `{hash, gpu holders, job ids}` snapshot.
pub(crate) fn executor_from(value: &Value) -> Result<Executor, StoreError> {
    let parts = array(value, "executor snapshot")?;
    let [hash, holders, jobs] = parts else {
        return Err(corrupt("executor snapshot", "expected three parts"));
    };
    let map = flat_map(hash, "executor hash")?;
    let what = format!(
        "executor {}",
        map.get("id").map(String::as_str).unwrap_or("?")
    );
    let registration: ExecutorRegistration = serde_json::from_str(
        map.get("reg")
            .ok_or_else(|| corrupt(&what, "registration missing"))?,
    )
    .map_err(|e| corrupt_by(&what, e))?;
    let num = |name: &str| -> Result<i64, StoreError> {
        map.get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| corrupt(&what, format!("field {name} missing or not an integer")))
    };
    let allocated = Resources::new(
        num("cpu_alloc")?.max(0) as u64,
        num("mem_alloc")?.max(0) as u64,
        num("gpu_alloc")?.clamp(0, i64::from(u32::MAX)) as u32,
    );
    let usage: HostUsage = match map.get("usage") {
        Some(text) => serde_json::from_str(text).map_err(|e| corrupt_by(&what, e))?,
        None => HostUsage::default(),
    };
    let mut gpu_holders = BTreeMap::new();
    for (uuid, job) in flat_map(holders, &what)? {
        let job: JobId = job.parse().map_err(|e| corrupt_by(&what, e))?;
        gpu_holders.insert(uuid, job);
    }
    let job_ids = strings(jobs, &what)?
        .iter()
        .map(|j| j.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt_by(&what, e))?;
    Ok(Executor {
        registration,
        allocated,
        gpu_holders,
        jobs: job_ids,
        registered_at: Timestamp(num("registered_at")?),
        last_heartbeat: Timestamp(num("last_heartbeat")?),
        usage,
    })
}

/// An executor event as the scripts queue it: `assigned <job> <hash>`, where `<hash>` is the
/// job hash as commit_assignment.lua stored it (its `HGETALL` array as JSON), or
/// `abort <job> <cause>`.
pub(crate) fn parse_event(text: &str) -> Result<ExecutorEvent, StoreError> {
    let bad = || corrupt("executor event", format!("unreadable event {text:?}"));
    // The hash is JSON and may hold spaces: split off the kind and the id only.
    let mut parts = text.splitn(3, ' ');
    let kind = parts.next().ok_or_else(bad)?;
    let id: JobId = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    match (kind, parts.next()) {
        ("assigned", Some(hash)) => {
            let job = job_from_event_hash(hash)?;
            if job.id != id {
                return Err(bad());
            }
            Ok(ExecutorEvent::Assigned(Box::new(job)))
        }
        ("abort", Some(cause)) => Ok(ExecutorEvent::Abort(
            id,
            parse_abort_cause(cause).ok_or_else(bad)?,
        )),
        _ => Err(bad()),
    }
}

/// The job in an `assigned` event: a flat `HGETALL` array encoded as JSON.
fn job_from_event_hash(json: &str) -> Result<Job, StoreError> {
    const WHAT: &str = "job in an assigned event";
    let items: Vec<String> = serde_json::from_str(json).map_err(|e| corrupt_by(WHAT, e))?;
    if !items.len().is_multiple_of(2) {
        return Err(corrupt(WHAT, "odd number of hash items"));
    }
    let map: HashMap<String, String> = items
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    job_from_map(&map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwr_core::{GpuModel, JobSpec, Outcome};

    /// The job's hash as [`job_fields`] writes it.
    fn fields(job: &Job) -> HashMap<String, String> {
        job_fields(job)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    #[test]
    fn a_job_survives_the_hash() {
        let mut spec = JobSpec::new("img", vec![], 1500, 512).with_gpus(2, GpuModel::Any);
        spec.read_only_rootfs = true;
        let mut job = Job::new(JobId::new(), spec, Timestamp(1_700_000_000_123));
        job.transition(JobState::Assigned, Timestamp(1_700_000_000_200))
            .unwrap();
        job.executor = Some(ExecutorId::new("e-1"));
        job.executor_ip = Some("10.0.0.1".into());
        job.gpu_ids = vec!["GPU-a".into(), "GPU-b".into()];
        job.abort_requested = Some(AbortCause::TimedOut);
        assert_eq!(job_from_map(&fields(&job)).unwrap(), job);

        job.finish(&Outcome::exited(3, false), Timestamp(1_700_000_001_000))
            .unwrap();
        assert_eq!(job_from_map(&fields(&job)).unwrap(), job);
    }

    #[test]
    fn a_spec_stored_before_read_only_rootfs_reads_as_writable() {
        let job = Job::new(
            JobId::new(),
            JobSpec::new("img", vec![], 100, 64),
            Timestamp(1_700_000_000_000),
        );
        let mut map = fields(&job);
        let mut spec: serde_json::Value = serde_json::from_str(&map["spec"]).unwrap();
        spec.as_object_mut().unwrap().remove("read_only_rootfs");
        map.insert("spec".to_owned(), spec.to_string());
        let read = job_from_map(&map).unwrap();
        assert!(!read.spec.read_only_rootfs);
        assert_eq!(read, job);
    }

    /// A job of `spec` assigned to executor e-1 (10.0.0.1), on GPU-a.
    fn assigned_on_a_gpu(spec: JobSpec) -> Job {
        let mut job = Job::new(JobId::new(), spec, Timestamp(1_700_000_000_000));
        job.transition(JobState::Assigned, Timestamp(1_700_000_000_100))
            .unwrap();
        job.executor = Some(ExecutorId::new("e-1"));
        job.executor_ip = Some("10.0.0.1".into());
        job.gpu_ids = vec!["GPU-a".into()];
        job
    }

    /// A job with a placement view reads the same from PLACEMENT_FIELDS and `place` as
    /// from its whole hash, but for its spec (the view) and its retried attempts.
    #[test]
    fn the_placement_fields_are_every_field_a_job_is_read_from() {
        let mut spec = JobSpec::new("img", vec!["x".repeat(PLACEMENT_VIEW_FROM)], 100, 64)
            .with_gpus(1, GpuModel::Any);
        spec.retry.max_retries = 2;
        let mut job = assigned_on_a_gpu(spec);
        job.assigned_at = Some(Timestamp(1_700_000_000_100));
        job.started_at = Some(Timestamp(1_700_000_000_200));
        job.finished_at = Some(Timestamp(1_700_000_000_300));
        job.retry_at = Some(Timestamp(1_700_000_000_400));
        job.ready_at = Some(Timestamp(1_700_000_000_050));
        job.exit_code = Some(3);
        job.reason = Some("why".into());
        job.oom_killed = true;
        job.abort_requested = Some(AbortCause::User);
        job.attempt = 2;
        job.preemptions = 1;
        job.deps_left = 2;
        job.deps_not_ok = 1;
        job.array = Some(ArrayTask {
            array_job_id: JobId::new(),
            index: 7,
        });
        let map = fields(&job);
        assert!(map.contains_key("place"), "a large spec has its view");
        let values: Vec<Value> = PLACEMENT_FIELDS
            .iter()
            .chain(["place"].iter())
            .map(|f| {
                map.get(*f)
                    .map_or(Value::Nil, |v| Value::BulkString(v.clone().into_bytes()))
            })
            .collect();
        let view = job_from_map(&placement_view_map(&Value::Array(values), "t").unwrap()).unwrap();
        let whole = job_from_map(&map).unwrap();
        assert_eq!(view.spec, whole.spec.for_placement());
        assert_eq!(
            Job {
                spec: whole.spec.clone(),
                attempts: whole.attempts.clone(),
                ..view
            },
            whole
        );
        assert!(placement_view_map(&Value::Array(vec![Value::Nil]), "t").is_err());
    }

    /// An `assigned` event as commit_assignment.lua queues it: the hash as a JSON array.
    fn assigned_event(job: &Job) -> String {
        let flat: Vec<String> = job_fields(job)
            .unwrap()
            .into_iter()
            .flat_map(|(k, v)| [k.to_owned(), v])
            .collect();
        format!(
            "assigned {} {}",
            job.id,
            serde_json::to_string(&flat).unwrap()
        )
    }

    #[test]
    fn events_parse_and_garbage_is_refused() {
        // A spec with spaces and quotes, as a JSON string inside the JSON array.
        let spec = JobSpec::new(
            "img",
            vec!["sh".into(), "-c".into(), "echo \"a b\"".into()],
            100,
            64,
        )
        .with_gpus(1, GpuModel::Any);
        let job = assigned_on_a_gpu(spec);
        let id = job.id;
        assert_eq!(
            parse_event(&assigned_event(&job)).unwrap(),
            ExecutorEvent::Assigned(Box::new(job.clone()))
        );
        assert_eq!(
            parse_event(&format!("abort {id} timed_out")).unwrap(),
            ExecutorEvent::Abort(id, AbortCause::TimedOut)
        );
        let other = JobId::new();
        let wrong_id = assigned_event(&job).replacen(&id.to_string(), &other.to_string(), 1);
        for bad in [
            "",
            "assigned",
            "assigned nope",
            &format!("assigned {id}"),
            &format!("assigned {id} [\"id\"]"),
            &format!("assigned {id} not-json"),
            &wrong_id,
            &format!("abort {id}"),
            &format!("abort {id} later"),
            &format!("abort {id} user extra"),
        ] {
            assert!(parse_event(bad).is_err(), "{bad:?}");
        }
    }
}
