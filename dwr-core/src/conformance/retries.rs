//! Conformance checks of fencing by attempt and of retries: stale writes refused with
//! nothing changed, failed attempts sent back to pending by their policy, attempts recorded.

use std::sync::Arc;
use std::time::Duration;

use super::{assign, executor, job, register, spec, store_now, submit, CLOCK_READ_SLACK};
use crate::error::StoreError;
use crate::ids::JobId;
use crate::job::{AbortCause, JobState, Outcome};
use crate::resources::Resources;
use crate::retry::{RetryCause, RetryPolicy};
use crate::spec::JobSpec;
use crate::store::{Expiry, JobStore};

fn expect_stale<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str, current: u32) {
    match r {
        Err(StoreError::StaleAttempt { current: c, .. }) => {
            assert_eq!(c, current, "{what}: StaleAttempt names the current attempt")
        }
        other => panic!("{what}: expected StaleAttempt, got {other:?}"),
    }
}

fn retrying(max_retries: u32, backoff: Duration, retry_on: &[RetryCause]) -> JobSpec {
    let mut s = spec(1000, 1024);
    s.retry = RetryPolicy {
        max_retries,
        backoff,
        retry_on: retry_on.iter().copied().collect(),
    };
    s
}

async fn submit_spec(store: &Arc<dyn JobStore>, s: JobSpec) -> JobId {
    let id = JobId::new();
    store
        .submit(crate::job::Job::new(
            id,
            s,
            crate::time::Timestamp::default(),
        ))
        .await
        .expect("submit");
    id
}

/// Writes naming another attempt than the current one are refused and change nothing;
/// after the job ended, its attempt's `finish` is idempotent and its logs are refused.
pub async fn writes_from_a_stale_attempt_are_refused(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let id = submit(&store, spec(1000, 1024)).await;
    assert_eq!(job(&store, id).await.attempt, 0);
    let assigned = assign(&store, id, &exec, &[]).await;
    assert_eq!(assigned.attempt, 1);
    let before = job(&store, id).await;

    expect_stale(store.mark_running(id, &exec, 2).await, "mark_running", 1);
    expect_stale(
        store.append_logs(id, Some(7), &["x".into()]).await,
        "append_logs",
        1,
    );
    expect_stale(
        store.finish(id, &Outcome::exited(0, false), Some(0)).await,
        "finish",
        1,
    );
    assert_eq!(
        job(&store, id).await,
        before,
        "refused writes changed the job"
    );
    assert!(store.logs(id, 0).await.expect("logs").is_empty());

    store.mark_running(id, &exec, 1).await.expect("run");
    store
        .append_logs(id, Some(1), &["mine".into()])
        .await
        .expect("logs of the current attempt");
    store
        .expire_executor(&exec, Expiry::Now, "executor lost")
        .await
        .expect("expire");
    // The attempt is over: its late output is refused, its late report changes nothing.
    expect_stale(
        store.append_logs(id, Some(1), &["late".into()]).await,
        "append_logs after the end",
        1,
    );
    let late = store
        .finish(id, &Outcome::exited(0, false), Some(1))
        .await
        .expect("finish");
    assert!(!late.changed);
    let ended = job(&store, id).await;
    assert_eq!(ended.state, JobState::Failed);
    assert_eq!(
        store.logs(id, 0).await.expect("logs"),
        vec!["mine".to_owned()]
    );
    assert_eq!(ended.attempts.len(), 1, "the attempt is recorded");
    assert_eq!(ended.attempts[0].attempt, 1);
}

/// A failed attempt its policy covers sends the job back to pending, releasing what it
/// held and recording the attempt; the next commit is the next attempt; the old attempt's
/// writes are refused; the last allowed attempt ends the job.
pub async fn a_failed_attempt_is_retried_by_its_policy(store: Arc<dyn JobStore>) {
    let e1 = register(&store, "e1", 4000, 4096, &[]).await;
    let e2 = register(&store, "e2", 4000, 4096, &[]).await;
    let id = submit_spec(&store, retrying(1, Duration::ZERO, &RetryCause::ALL)).await;
    assign(&store, id, &e1, &[]).await;
    store.mark_running(id, &e1, 1).await.expect("run");
    let before = store_now(&store).await.minus(CLOCK_READ_SLACK);
    let done = store
        .finish(id, &Outcome::exited(3, false), Some(1))
        .await
        .expect("finish");
    assert_eq!((done.state, done.changed), (JobState::Pending, true));
    let retried = job(&store, id).await;
    assert_eq!(retried.state, JobState::Pending);
    assert_eq!(retried.attempt, 1);
    assert_eq!(retried.executor, None);
    assert!(retried.retry_at.is_some_and(|t| t >= before));
    assert_eq!(retried.attempts.len(), 1);
    let first = &retried.attempts[0];
    assert_eq!(
        (first.attempt, first.executor.as_ref(), first.exit_code),
        (1, Some(&e1), Some(3))
    );
    assert!(first.started_at.is_some() && first.ended_at >= before);
    assert_eq!(
        retried.updated_at, first.ended_at,
        "last changed as the attempt ended"
    );
    assert_eq!(executor(&store, &e1).await.allocated, Resources::ZERO);
    assert_eq!(
        store.pending_jobs(10).await.expect("pending")[0].id,
        id,
        "pending again"
    );
    // Attempt 1 is over: its duplicate report is refused, not taken as a new failure.
    expect_stale(
        store.finish(id, &Outcome::exited(3, false), Some(1)).await,
        "a duplicate report of the retried attempt",
        1,
    );

    let second = assign(&store, id, &e2, &[]).await;
    assert_eq!((second.attempt, second.retry_at), (2, None));
    expect_stale(store.mark_running(id, &e2, 1).await, "mark_running", 2);
    store.mark_running(id, &e2, 2).await.expect("run");
    expect_stale(
        store.finish(id, &Outcome::exited(0, false), Some(1)).await,
        "finish of attempt 1",
        2,
    );
    let done = store
        .finish(id, &Outcome::exited(4, false), Some(2))
        .await
        .expect("finish");
    assert_eq!(
        (done.state, done.changed),
        (JobState::Failed, true),
        "no retries left"
    );
    let ended = job(&store, id).await;
    assert_eq!(ended.attempts.len(), 2);
    assert_eq!(ended.attempts[1].executor.as_ref(), Some(&e2));
    assert_eq!(ended.retry_at, None);
    assert_eq!(executor(&store, &e2).await.allocated, Resources::ZERO);
}

/// The backoff sets `retry_at`; causes the policy does not name, an abort requested, and
/// an executor's expiry each behave as they should.
pub async fn retries_follow_backoff_causes_aborts_and_expiry(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 8000, 8192, &[]).await;

    let backoff = Duration::from_secs(10);
    let id = submit_spec(&store, retrying(3, backoff, &[RetryCause::Oom])).await;
    assign(&store, id, &exec, &[]).await;
    store.mark_running(id, &exec, 1).await.expect("run");
    let before = store_now(&store).await.minus(CLOCK_READ_SLACK);
    store
        .finish(id, &Outcome::exited(137, true), Some(1))
        .await
        .expect("finish");
    let after = store_now(&store).await.plus(CLOCK_READ_SLACK);
    let at = job(&store, id).await.retry_at.expect("retry_at");
    assert!(
        at >= before.plus(backoff) && at <= after.plus(backoff),
        "retry at {at:?}, not 10 s after the failure"
    );

    let not_named = submit_spec(&store, retrying(3, Duration::ZERO, &[RetryCause::Oom])).await;
    assign(&store, not_named, &exec, &[]).await;
    store.mark_running(not_named, &exec, 1).await.expect("run");
    let done = store
        .finish(not_named, &Outcome::exited(1, false), Some(1))
        .await
        .expect("finish");
    assert_eq!(done.state, JobState::Failed, "exit_nonzero is not retried");

    let aborted = submit_spec(&store, retrying(3, Duration::ZERO, &RetryCause::ALL)).await;
    assign(&store, aborted, &exec, &[]).await;
    store.mark_running(aborted, &exec, 1).await.expect("run");
    store
        .request_abort(aborted, AbortCause::User)
        .await
        .expect("abort");
    let done = store
        .finish(aborted, &Outcome::exited(1, false), Some(1))
        .await
        .expect("finish");
    assert_eq!(done.state, JobState::Failed, "an abort stops the retries");

    let lost = submit_spec(
        &store,
        retrying(1, Duration::ZERO, &[RetryCause::ExecutorLost]),
    )
    .await;
    assign(&store, lost, &exec, &[]).await;
    let taken = store
        .expire_executor(&exec, Expiry::Now, "executor lost")
        .await
        .expect("expire");
    assert!(taken.contains(&lost));
    let requeued = job(&store, lost).await;
    assert_eq!(requeued.state, JobState::Pending, "lost executor: retried");
    assert_eq!(
        requeued.attempts[0].reason.as_deref(),
        Some("executor lost")
    );
    assert_eq!(requeued.attempts[0].started_at, None, "it never started");
    // What the lost attempt left (its reason) does not outlive the attempt that succeeds.
    let second = register(&store, "e2", 8000, 8192, &[]).await;
    assign(&store, lost, &second, &[]).await;
    store.mark_running(lost, &second, 2).await.expect("run");
    store
        .finish(lost, &Outcome::exited(0, false), Some(2))
        .await
        .expect("finish");
    let succeeded = job(&store, lost).await;
    assert_eq!(
        (
            succeeded.state,
            succeeded.exit_code,
            succeeded.reason.as_deref()
        ),
        (JobState::Succeeded, Some(0), None),
        "the second attempt's end is the job's"
    );
    assert_eq!(
        succeeded.attempts[0].reason.as_deref(),
        Some("executor lost")
    );
    // A pending retry is aborted at once, and waits for no retry time any more.
    store
        .request_abort(id, AbortCause::User)
        .await
        .expect("abort");
    let aborted = job(&store, id).await;
    assert_eq!((aborted.state, aborted.retry_at), (JobState::Aborted, None));
}

/// The job with id `id` as a scheduling pass reads the queue now, if it is queued.
async fn as_a_pass_reads_it(store: &Arc<dyn JobStore>, id: JobId) -> Option<crate::job::Job> {
    store
        .pending_for_placement(100)
        .await
        .expect("pending for placement")
        .into_iter()
        .find(|q| q.job.id == id)
        .map(|q| q.job)
}

/// A scheduling pass reads a job that went back to its queue (a retry, a preemption) as it
/// is now, not as an earlier pass read it before it left: a store may keep what its passes
/// read of the queued jobs, which must not outlive the job's stay in its queue.
pub async fn a_pass_reads_a_requeued_job_as_it_is_now(store: Arc<dyn JobStore>) {
    let e1 = register(&store, "e1", 4000, 4096, &[]).await;
    let id = submit_spec(
        &store,
        retrying(1, Duration::from_secs(3_600), &RetryCause::ALL),
    )
    .await;
    // What a pass reads of a job changes as the job goes round (the spec, which it may
    // read as its placement view, does not).
    let round = |job: &crate::job::Job| {
        (
            job.attempt,
            job.retry_at,
            job.preemptions,
            job.reason.clone(),
            job.updated_at,
        )
    };
    let first = as_a_pass_reads_it(&store, id).await.expect("queued");
    assert_eq!((first.attempt, first.retry_at), (0, None));
    // Read again with nothing changed: the same.
    assert_eq!(as_a_pass_reads_it(&store, id).await, Some(first));

    assign(&store, id, &e1, &[]).await;
    store.mark_running(id, &e1, 1).await.expect("run");
    let done = store
        .finish(id, &Outcome::exited(3, false), Some(1))
        .await
        .expect("finish");
    assert_eq!(done.state, JobState::Pending, "retried");
    let retried = as_a_pass_reads_it(&store, id).await.expect("queued again");
    assert_eq!(retried.attempt, 1);
    assert!(retried.retry_at.is_some(), "waits for its backoff");
    assert_eq!(round(&retried), round(&job(&store, id).await), "as stored");

    // Preempted (its backoff cut short by committing it anyway): back again, changed again.
    assign(&store, id, &e1, &[]).await;
    store.mark_running(id, &e1, 2).await.expect("run");
    store.preempt(id, JobId::new()).await.expect("preempt");
    store
        .finish(
            id,
            &AbortCause::Preempted.outcome().with_exit_code(Some(143)),
            Some(2),
        )
        .await
        .expect("finish");
    let preempted = as_a_pass_reads_it(&store, id).await.expect("queued again");
    assert_eq!((preempted.attempt, preempted.preemptions), (2, 1));
    assert_eq!(
        round(&preempted),
        round(&job(&store, id).await),
        "as stored"
    );
}
