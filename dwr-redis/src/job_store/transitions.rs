//! What happens to a job after its assignment: its executor marks it running
//! (`mark_running.lua`), it finishes (`finish.lua`), or an abort is requested
//! (`request_abort.lua`).

use std::sync::LazyLock;

use dwr_core::job::preempted_by;
use dwr_core::{
    AbortCause, AbortRequested, ExecutorId, Finished, Job, JobId, JobState, Outcome, StoreError,
};

use crate::batch::Batched;
use crate::codec::{abort_cause_str, job_at, ok_or_refusal, refusal, state_at, status_reply};
use crate::config::DEFAULT_LOG_TTL;
use crate::error::corrupt;
use crate::store::RedisJobStore;

/// assigned → running, only by the executor of `attempt`.
pub(super) async fn mark_running(
    store: &RedisJobStore,
    id: JobId,
    executor: &ExecutorId,
    attempt: u32,
) -> Result<(), StoreError> {
    let args = vec![id.to_string(), executor.to_string(), attempt.to_string()];
    let reply = store.batched(Batched::MarkRunning, args).await?;
    ok_or_refusal(&reply, "mark_running", "mark running", id, Some(attempt))
}

/// Ends the job's attempt with `outcome` (idempotent once terminal); a failure its retry
/// policy covers sends it back to pending.
pub(super) async fn finish(
    store: &RedisJobStore,
    id: JobId,
    outcome: &Outcome,
    attempt: Option<u32>,
) -> Result<Finished, StoreError> {
    let args = finish_args(id, outcome, attempt, store.log_ttl_secs());
    let reply = store.batched(Batched::Finish, args).await?;
    let (status, rest) = status_reply(&reply, "finish")?;
    let (state, changed) = match status.as_str() {
        "ok" => (outcome.state, true),
        "retry" => (JobState::Pending, true),
        "unchanged" => (state_at(rest, "finish")?, false),
        other => return Err(refusal("finish", "finish", id, attempt, other, rest)),
    };
    Ok(Finished { state, changed })
}

/// The arguments of `finish.lua` (see there) for ending `id`'s attempt with `outcome`.
fn finish_args(
    id: JobId,
    outcome: &Outcome,
    attempt: Option<u32>,
    log_ttl_secs: String,
) -> Vec<String> {
    let mut args = vec![
        id.to_string(),
        outcome.state.as_str().to_owned(),
        outcome.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        attempt.map(|a| a.to_string()).unwrap_or_default(),
    ];
    // The log TTL, the reason, the OOM flag and the retry cause, each with its default, go
    // only up to the last that is not its default: a job that exited of itself, under the
    // default TTL, sends none of them (each argument costs the server about as much as a
    // small command's own work).
    static DEFAULT_TTL: LazyLock<String> = LazyLock::new(|| DEFAULT_LOG_TTL.as_secs().to_string());
    let optional = [
        (log_ttl_secs.as_str(), DEFAULT_TTL.as_str()),
        (outcome.reason.as_deref().unwrap_or_default(), ""),
        (if outcome.oom_killed { "1" } else { "0" }, "0"),
        (outcome.cause.map(|c| c.as_str()).unwrap_or_default(), ""),
    ];
    let given = optional
        .iter()
        .rposition(|(value, default)| value != default)
        .map_or(0, |last| last + 1);
    args.extend(
        optional[..given]
            .iter()
            .map(|(value, _)| (*value).to_owned()),
    );
    args
}

/// Asks the executor of a job under way to stop it for job `by`.
pub(super) async fn preempt(
    store: &RedisJobStore,
    id: JobId,
    by: JobId,
) -> Result<Job, StoreError> {
    match abort(store, id, AbortCause::Preempted, preempted_by(by)).await? {
        AbortRequested::Signalled(job) => Ok(job),
        AbortRequested::AbortedAtOnce(job) => Err(corrupt(
            "request_abort",
            format!("a preemption aborted job {} at once", job.id),
        )),
    }
}

/// Aborts a pending job at once, or signals the executor of one under way.
pub(super) async fn request_abort(
    store: &RedisJobStore,
    id: JobId,
    cause: AbortCause,
) -> Result<AbortRequested, StoreError> {
    abort(store, id, cause, String::new()).await
}

/// `request_abort.lua` for `cause`, writing `reason` on a job it signals ('' for none).
async fn abort(
    store: &RedisJobStore,
    id: JobId,
    cause: AbortCause,
    reason: String,
) -> Result<AbortRequested, StoreError> {
    let outcome = cause.outcome();
    let args = vec![
        id.to_string(),
        abort_cause_str(cause).to_owned(),
        outcome.state.as_str().to_owned(),
        outcome.reason.unwrap_or_default(),
        store.log_ttl_secs(),
        reason,
    ];
    let script = &store.inner.scripts.request_abort;
    let reply = store.eval_write("request_abort", script, args).await?;
    let (status, rest) = status_reply(&reply, "request_abort")?;
    match status.as_str() {
        "aborted" => Ok(AbortRequested::AbortedAtOnce(job_at(
            rest,
            "request_abort",
        )?)),
        "signalled" => Ok(AbortRequested::Signalled(job_at(rest, "request_abort")?)),
        other => {
            let action = match cause {
                AbortCause::Preempted => "preempt a job that is not under way",
                _ => "abort",
            };
            Err(refusal("request_abort", action, id, None, other, rest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwr_core::RetryCause;

    /// What follows the four arguments always sent, under the default log TTL.
    fn optional(outcome: Outcome) -> Vec<String> {
        let ttl = DEFAULT_LOG_TTL.as_secs().to_string();
        let args = finish_args(JobId::new(), &outcome, Some(2), ttl.clone());
        assert_eq!(&args[1..4], [outcome.state.as_str(), "0", "2"]);
        let rest = &args[4..];
        if !rest.is_empty() {
            assert_eq!(rest[0], ttl, "the TTL first when anything follows");
        }
        rest.iter().skip(1).cloned().collect()
    }

    #[test]
    fn an_end_sends_its_reason_oom_flag_and_cause_up_to_the_last_not_left_at_its_default() {
        let exited = Outcome::exited(0, false);
        assert_eq!(
            finish_args(
                JobId::new(),
                &exited,
                Some(2),
                DEFAULT_LOG_TTL.as_secs().to_string()
            )
            .len(),
            4
        );
        // Another TTL than the default is sent, and nothing after it.
        let short = finish_args(JobId::new(), &exited, Some(2), "60".to_owned());
        assert_eq!(&short[4..], ["60"]);
        assert!(optional(exited).is_empty());
        let none = Outcome::failed("").with_exit_code(Some(0));
        assert!(optional(none.clone()).is_empty());
        // A reason alone; a reason that reads as a default elsewhere is still sent.
        let said = Outcome::failed("why").with_exit_code(Some(0));
        assert_eq!(optional(said), ["why"]);
        let zero = Outcome::failed("0").with_exit_code(Some(0));
        assert_eq!(optional(zero), ["0"]);
        // The OOM flag sends the reason before it, left empty.
        let oom = Outcome {
            oom_killed: true,
            ..none.clone()
        };
        assert_eq!(optional(oom), ["", "1"]);
        // A cause sends all three.
        assert_eq!(
            optional(none.because(RetryCause::StartFailed)),
            ["", "0", RetryCause::StartFailed.as_str()]
        );
    }
}
