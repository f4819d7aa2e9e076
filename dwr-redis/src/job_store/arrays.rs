//! Arrays (`submit_array.lua`, `array.lua`): an array and its tasks stored in one script
//! call, its record read back with or without its tasks' states.

use std::collections::HashMap;
use std::time::Duration;

use dwr_core::{ArrayInfo, ArraySubmission, Job, JobId, JobState, NewArray, StoreError, Timestamp};

use crate::codec::{
    array, flat_map, job_fields, job_id_at, millis_at, status_reply, strings, unexpected,
};
use crate::error::{corrupt, corrupt_by};
use crate::store::RedisJobStore;

const SUBMIT: &str = "submit_array";
const READ: &str = "array";

/// Stores `new` and its tasks; see `JobStore::submit_array`.
pub(super) async fn submit(
    store: &RedisJobStore,
    new: &NewArray,
    key: Option<(&str, Duration)>,
) -> Result<ArraySubmission, StoreError> {
    let (key, ttl) = key.unwrap_or(("", Duration::ZERO));
    let spec = &new.spec;
    let joined = |ids: &mut dyn Iterator<Item = &JobId>| {
        ids.map(ToString::to_string).collect::<Vec<_>>().join(",")
    };
    let mut args = vec![
        new.id.to_string(),
        new.parallelism.map(|p| p.to_string()).unwrap_or_default(),
        key.to_owned(),
        ttl.as_millis().max(1).to_string(),
        spec.priority.to_string(),
        if spec.queue == dwr_core::DEFAULT_QUEUE {
            String::new()
        } else {
            spec.queue.clone()
        },
        spec.dependency.as_str().to_owned(),
        joined(&mut spec.depends_on.iter()),
        joined(&mut new.tasks.iter()),
    ];
    // A task's hash as a template: what every task shares (the script adds the state and
    // each one's id, times, array and index).
    let template = Job::new(new.id, spec.clone(), Timestamp::default());
    for (field, value) in job_fields(&template)?
        .into_iter()
        .filter(|(field, _)| !matches!(*field, "id" | "state" | "created_at" | "updated_at"))
    {
        args.push(field.to_owned());
        args.push(value);
    }
    let reply = store
        .eval_write(SUBMIT, &store.inner.scripts.submit_array, args)
        .await?;
    let (status, rest) = status_reply(&reply, SUBMIT)?;
    match status.as_str() {
        "ok" => {
            let created_at = millis_at(rest, 0, SUBMIT)?;
            Ok(ArraySubmission::Created(ArrayInfo {
                id: new.id,
                count: new.tasks.len() as u32,
                parallelism: new.parallelism,
                active: 0,
                done: 0,
                not_ok: 0,
                created_at,
            }))
        }
        "existing" => {
            let id = job_id_at(rest, 0, SUBMIT)?;
            read(store, id, false)
                .await
                .map(|(info, _)| ArraySubmission::Existing(info))
        }
        "unknown_dependency" => Err(StoreError::UnknownDependency {
            id: job_id_at(rest, 0, SUBMIT)?,
        }),
        "job_exists" => Err(StoreError::JobExists {
            id: job_id_at(rest, 0, SUBMIT)?,
        }),
        other => Err(unexpected(SUBMIT, other)),
    }
}

/// The array `id`, with its tasks and their states when `tasks`.
pub(super) async fn read(
    store: &RedisJobStore,
    id: JobId,
    tasks: bool,
) -> Result<(ArrayInfo, Vec<(JobId, JobState)>), StoreError> {
    let args = vec![id.to_string(), if tasks { "1" } else { "" }.to_owned()];
    let reply = store.eval(READ, &store.inner.scripts.array, args).await?;
    let parts = array(&reply, READ)?;
    let [hash, listed] = parts else {
        return Err(StoreError::JobNotFound { id });
    };
    let info = info_from(id, &flat_map(hash, READ)?)?;
    let listed = strings(listed, READ)?;
    let mut states = Vec::with_capacity(listed.len() / 2);
    for pair in listed.chunks_exact(2) {
        let task = pair[0].parse().map_err(|e| corrupt_by(READ, e))?;
        let state = pair[1].parse().map_err(|e| corrupt_by(READ, e))?;
        states.push((task, state));
    }
    Ok((info, states))
}

fn info_from(id: JobId, map: &HashMap<String, String>) -> Result<ArrayInfo, StoreError> {
    let int = |name: &str| -> Result<Option<u32>, StoreError> {
        map.get(name)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .and_then(|n| u32::try_from(n.max(0)).ok())
                    .ok_or_else(|| corrupt(READ, format!("array {id}: {name} is {v:?}")))
            })
            .transpose()
    };
    let created_at = map
        .get("created_at")
        .and_then(|v| v.parse().ok())
        .map(Timestamp)
        .ok_or_else(|| corrupt(READ, format!("array {id}: created_at missing")))?;
    Ok(ArrayInfo {
        id,
        count: int("count")?.unwrap_or_default(),
        parallelism: int("parallelism")?,
        active: int("active")?.unwrap_or_default(),
        done: int("done")?.unwrap_or_default(),
        not_ok: int("not_ok")?.unwrap_or_default(),
        created_at,
    })
}
