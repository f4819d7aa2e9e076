//! Committing an assignment (`commit_assignment.lua`): its arguments, the scheduler's copy
//! of the job it sends along, and the decoding of the reply into the job committed.

use dwr_core::{Assignment, Dimension, Job, JobState, Rejection, StoreError, Timestamp};

use crate::codec::{
    job_at, job_fields, json_strings, millis_at, state_at, status_reply, text_at, unexpected,
};
use crate::error::corrupt;

const SCRIPT: &str = "commit_assignment";

/// The arguments of `commit_assignment.lua` after the prefix.
pub(super) fn args(assignment: &Assignment) -> Vec<String> {
    let mut args = vec![
        assignment.job.to_string(),
        assignment.executor.to_string(),
        snapshot_arg(assignment),
    ];
    // The queue's quota in one argument: '' for none, else each limit or '-'.
    let quota = &assignment.quota;
    let limits = [
        quota.cpu_millis,
        quota.memory_mib,
        quota.gpus.map(u64::from),
    ];
    let quota = if limits.iter().all(Option::is_none) {
        String::new()
    } else {
        limits
            .map(|limit| limit.map_or_else(|| "-".to_owned(), |n| n.to_string()))
            .join(" ")
    };
    // The quota and the GPUs only when there are any (each argument costs the server about
    // as much as a small command's own work).
    if assignment.gpu_ids.is_empty() {
        if !quota.is_empty() {
            args.push(quota);
        }
    } else {
        args.push(quota);
        args.push(json_strings(&assignment.gpu_ids));
        args.extend(assignment.gpu_ids.iter().cloned());
    }
    args
}

/// The job in `assignment`'s snapshot (when it has one of that job) as the script splices
/// it into the executor's event: the JSON array of its hash's fields and values, without
/// the closing bracket. `''` (read the job back) without a usable snapshot.
fn snapshot_arg(assignment: &Assignment) -> String {
    let Some(job) = assignment.snapshot.as_deref() else {
        return String::new();
    };
    if job.id != assignment.job {
        return String::new();
    }
    // A placement view lacks what the executor needs: the script reads the job for the
    // event, and the reply still builds on the snapshot.
    if job.spec.is_placement_view() {
        return "-".to_owned();
    }
    let Ok(fields) = job_fields(job) else {
        return String::new();
    };
    let flat: Vec<&str> = fields
        .iter()
        .flat_map(|(field, value)| [*field, value.as_str()])
        .collect();
    let mut json = serde_json::to_string(&flat).unwrap_or_default();
    if json.len() < 3 || json.pop() != Some(']') {
        return String::new();
    }
    json
}

/// The job `assignment` committed, from its snapshot: what the script wrote over it.
fn committed_from_snapshot(
    assignment: &Assignment,
    snapshot: &Job,
    executor_ip: String,
    now: Timestamp,
) -> Job {
    let mut job = snapshot.clone();
    job.state = JobState::Assigned;
    job.executor = Some(assignment.executor.clone());
    job.executor_ip = Some(executor_ip).filter(|ip| !ip.is_empty());
    job.gpu_ids = assignment.gpu_ids.clone();
    job.assigned_at = Some(now);
    job.updated_at = now;
    job.attempt = snapshot.attempt.saturating_add(1);
    job.retry_at = None;
    job
}

/// Decodes the reply of `commit_assignment.lua` for `assignment` (sent with [`args`]): the
/// job read back, or the executor's IP and Redis's time of the commit.
pub(super) fn reply(assignment: &Assignment, reply: &redis::Value) -> Result<Job, StoreError> {
    let (status, rest) = status_reply(reply, SCRIPT)?;
    let reject = |reason: Rejection| StoreError::Rejected {
        job: assignment.job,
        executor: assignment.executor.clone(),
        reason,
    };
    match status.as_str() {
        // The job hash read back, or, when the script used the snapshot, the IP.
        "ok" => match (rest.first(), assignment.snapshot.as_deref()) {
            (Some(redis::Value::Array(_)), _) => job_at(rest, SCRIPT),
            (Some(_), Some(snapshot)) => Ok(committed_from_snapshot(
                assignment,
                snapshot,
                text_at(rest, 0, SCRIPT)?,
                millis_at(rest, 1, SCRIPT)?,
            )),
            _ => Err(corrupt(
                SCRIPT,
                "an IP in reply to a commit without a snapshot",
            )),
        },
        "job_not_found" => Err(StoreError::JobNotFound { id: assignment.job }),
        "not_pending" => Err(reject(Rejection::JobNotPending {
            state: state_at(rest, SCRIPT)?,
        })),
        "executor_gone" => Err(reject(Rejection::ExecutorGone)),
        "blocked" => Err(reject(Rejection::DependenciesNotMet)),
        "array_full" => Err(reject(Rejection::ArrayAtParallelism {
            array: crate::codec::job_id_at(rest, 0, SCRIPT)?,
        })),
        "executor_not_alive" => Err(reject(Rejection::ExecutorNotAlive)),
        "no_room" => Err(reject(Rejection::NoRoom {
            dimension: dimension_at(rest, 0)?,
        })),
        "quota" => Err(reject(Rejection::QuotaReached {
            queue: text_at(rest, 0, SCRIPT)?,
            dimension: dimension_at(rest, 1)?,
        })),
        "gpu_unavailable" => Err(reject(Rejection::GpuUnavailable {
            uuid: text_at(rest, 0, SCRIPT)?,
        })),
        "gpu_count_mismatch" => {
            let given = text_at(rest, 0, SCRIPT)?.parse().unwrap_or(usize::MAX);
            let wanted = text_at(rest, 1, SCRIPT)?.parse().unwrap_or(u32::MAX);
            Err(reject(Rejection::GpuCountMismatch { given, wanted }))
        }
        other => Err(unexpected(SCRIPT, other)),
    }
}

/// The dimension named by the `i`-th payload item.
fn dimension_at(rest: &[redis::Value], i: usize) -> Result<Dimension, StoreError> {
    match text_at(rest, i, SCRIPT)?.as_str() {
        "cpu" => Ok(Dimension::Cpu),
        "memory" => Ok(Dimension::Memory),
        "gpu" => Ok(Dimension::Gpu),
        other => Err(unexpected(SCRIPT, other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwr_core::{ExecutorId, JobId, Quota};

    #[test]
    fn a_commit_sends_a_quota_and_gpus_only_when_it_has_them() {
        let (job, ex) = (JobId::new(), ExecutorId::new("x"));
        let plain = Assignment::new(job, ex.clone(), Vec::new());
        assert_eq!(args(&plain), [job.to_string(), "x".into(), String::new()]);
        let quota = Quota {
            cpu_millis: Some(2_000),
            ..Quota::default()
        };
        let limited = Assignment {
            quota,
            ..plain.clone()
        };
        assert_eq!(&args(&limited)[3..], ["2000 - -"]);
        let gpus = vec!["GPU-a".to_owned(), "GPU-b".to_owned()];
        let with_gpus = Assignment::new(job, ex, gpus);
        assert_eq!(
            &args(&with_gpus)[3..],
            ["", r#"["GPU-a","GPU-b"]"#, "GPU-a", "GPU-b"]
        );
    }
}
