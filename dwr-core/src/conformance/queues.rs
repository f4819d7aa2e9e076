//! Conformance checks of queues: each queue's own order and positions, what each queue
//! holds and how many wait, and the quota a commit keeps.

use std::sync::Arc;
use std::time::Duration;

use super::{assert_rejected, assign, assign_with, job, register, spec, submit};
use crate::error::Rejection;
use crate::ids::JobId;
use crate::job::{AbortCause, Outcome};
use crate::queues::{QueueUsage, Quota, DEFAULT_QUEUE};
use crate::resources::{Dimension, Resources};
use crate::retry::{RetryCause, RetryPolicy};
use crate::spec::JobSpec;
use crate::store::{Assignment, JobStore};

fn in_queue(queue: &str, priority: u8, cpu_millis: u64) -> JobSpec {
    JobSpec {
        queue: queue.to_owned(),
        priority,
        ..spec(cpu_millis, 64)
    }
}

/// `spec` retried once, at once, when its container exits non-zero.
fn retried_once(spec: JobSpec) -> JobSpec {
    JobSpec {
        retry: RetryPolicy {
            max_retries: 1,
            backoff: Duration::ZERO,
            retry_on: [RetryCause::ExitNonzero].into_iter().collect(),
        },
        ..spec
    }
}

async fn usage(store: &Arc<dyn JobStore>, queue: &str) -> QueueUsage {
    store
        .queue_usage()
        .await
        .expect("queue_usage")
        .get(queue)
        .copied()
        .unwrap_or_default()
}

/// Each queue keeps its own order (priority with aging, then arrival): a pass reads up to
/// `limit` of each, queue by queue, and a job's position counts only the jobs ahead of it in
/// its queue. `queue_usage` counts each queue's pending jobs.
pub async fn each_queue_keeps_its_own_order(store: Arc<dyn JobStore>) {
    let a1 = submit(&store, in_queue("alpha", 50, 100)).await;
    let d1 = submit(&store, in_queue(DEFAULT_QUEUE, 50, 100)).await;
    let a2 = submit(&store, in_queue("alpha", 90, 100)).await;
    let d2 = submit(&store, in_queue(DEFAULT_QUEUE, 10, 100)).await;
    let a3 = submit(&store, in_queue("alpha", 50, 100)).await;

    let queued = store.pending_for_placement(10).await.expect("queue");
    let read: Vec<(String, JobId)> = queued
        .iter()
        .map(|q| (q.job.spec.queue.clone(), q.job.id))
        .collect();
    let alpha: Vec<JobId> = read
        .iter()
        .filter(|(q, _)| q == "alpha")
        .map(|(_, id)| *id)
        .collect();
    let default: Vec<JobId> = read
        .iter()
        .filter(|(q, _)| q == DEFAULT_QUEUE)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(alpha, [a2, a1, a3], "alpha by priority, then arrival");
    assert_eq!(default, [d1, d2], "default by priority");
    assert_eq!(read.len(), 5);
    for queue in ["alpha", DEFAULT_QUEUE] {
        let keys: Vec<i64> = queued
            .iter()
            .filter(|q| q.job.spec.queue == queue)
            .map(|q| q.key)
            .collect();
        assert!(keys.is_sorted(), "{queue}: keys in order: {keys:?}");
    }
    // The limit is per queue.
    let first = store.pending_for_placement(1).await.expect("queue");
    let mut heads: Vec<JobId> = first.iter().map(|q| q.job.id).collect();
    heads.sort();
    let mut want = vec![a2, d1];
    want.sort();
    assert_eq!(heads, want, "the head of each queue");

    for (id, place) in [(a2, 0), (a1, 1), (a3, 2), (d1, 0), (d2, 1)] {
        assert_eq!(
            store.queue_position(id).await.expect("position"),
            Some(place),
            "{id}"
        );
    }
    assert_eq!(usage(&store, "alpha").await.pending, 3);
    assert_eq!(usage(&store, DEFAULT_QUEUE).await.pending, 2);

    store
        .request_abort(a2, AbortCause::User)
        .await
        .expect("abort");
    assert_eq!(store.queue_position(a1).await.expect("position"), Some(0));
    assert_eq!(store.queue_position(d2).await.expect("position"), Some(1));
    assert_eq!(usage(&store, "alpha").await.pending, 2);
}

/// What a queue's jobs hold follows their assignments and every way they end: a finish,
/// an abort, an expired executor, and a retry (which also puts the job back among the
/// queue's pending ones). A queue with nothing pending and nothing held is not listed.
pub async fn queue_usage_follows_assignments_and_ends(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 8000, 8192, &[]).await;
    let a = submit(&store, in_queue("alpha", 50, 1000)).await;
    let b = submit(&store, in_queue("alpha", 50, 2000)).await;
    let retried = submit(&store, retried_once(in_queue("beta", 50, 500))).await;
    assign(&store, a, &exec, &[]).await;
    assign(&store, b, &exec, &[]).await;
    assign(&store, retried, &exec, &[]).await;
    let alpha = usage(&store, "alpha").await;
    assert_eq!(alpha.held, Resources::new(3000, 128, 0));
    assert_eq!(alpha.pending, 0);
    assert_eq!(usage(&store, "beta").await.held, Resources::new(500, 64, 0));

    for id in [a, retried] {
        store.mark_running(id, &exec, 1).await.expect("running");
    }
    store
        .finish(a, &Outcome::exited(0, false), Some(1))
        .await
        .expect("finish");
    assert_eq!(
        usage(&store, "alpha").await.held,
        Resources::new(2000, 64, 0)
    );
    store.mark_running(b, &exec, 1).await.expect("running");
    store
        .request_abort(b, AbortCause::User)
        .await
        .expect("abort");
    assert_eq!(
        usage(&store, "alpha").await.held,
        Resources::new(2000, 64, 0),
        "an abort requested holds until the executor stops the job"
    );
    store
        .finish(b, &Outcome::aborted("stopped"), Some(1))
        .await
        .expect("finish");
    let all = store.queue_usage().await.expect("usage");
    assert!(
        !all.contains_key("alpha"),
        "nothing held or pending: {all:?}"
    );

    // A retry gives back what the attempt held and waits in its queue again.
    store
        .finish(retried, &Outcome::exited(1, false), Some(1))
        .await
        .expect("finish");
    assert_eq!(job(&store, retried).await.attempt, 1);
    let beta = usage(&store, "beta").await;
    assert_eq!((beta.held, beta.pending), (Resources::ZERO, 1));
    assert_eq!(
        store.queue_position(retried).await.expect("position"),
        Some(0)
    );
}

/// A commit that would take the job's queue past the assignment's quota is refused with
/// `QuotaReached` naming the queue and the dimension, and changes nothing; within the
/// quota, and with no quota, it commits. The quota counts only the job's own queue.
pub async fn commits_keep_the_queue_quota(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 16_000, 16_384, &["g0", "g1", "g2"]).await;
    let gpus = |n| Quota {
        gpus: Some(n),
        ..Quota::NONE
    };
    let first = submit(&store, super::gpu_spec(1000, 64, 2).with_queue("research")).await;
    let second = submit(&store, super::gpu_spec(1000, 64, 1).with_queue("research")).await;
    let other = submit(&store, super::gpu_spec(1000, 64, 1).with_queue("other")).await;
    assign_with(&store, first, &exec, &["g0", "g1"], gpus(2)).await;

    let before = job(&store, second).await;
    let mut refused = Assignment::new(second, exec.clone(), vec!["g2".into()]);
    refused.quota = gpus(2);
    let r = store.commit_assignment(&refused).await;
    assert_rejected(r, "past the GPU quota", |r| {
        *r == Rejection::QuotaReached {
            queue: "research".into(),
            dimension: Dimension::Gpu,
        }
    });
    assert_eq!(
        job(&store, second).await,
        before,
        "a refused commit changes nothing"
    );
    assert_eq!(usage(&store, "research").await.held.gpus, 2);

    // Another queue's quota of 2 is its own.
    assign_with(&store, other, &exec, &["g2"], gpus(2)).await;
    store.mark_running(other, &exec, 1).await.expect("running");
    store
        .finish(other, &Outcome::exited(0, false), Some(1))
        .await
        .expect("finish");
    // A CPU quota, exactly reached, commits.
    let cpu = Quota {
        cpu_millis: Some(2000),
        ..Quota::NONE
    };
    assign_with(&store, second, &exec, &["g2"], cpu).await;
    assert_eq!(
        usage(&store, "research").await.held,
        Resources::new(2000, 128, 3)
    );
}

/// A preemption asks the executor of a job under way to stop it, with the reason
/// `preempted by <id>`; once the executor reports the stop, the job is pending again at
/// once (not failed, its place in its queue kept), its room and its queue's share given back,
/// the attempt recorded, and no retry used up. A pending job cannot be preempted, and a job
/// that succeeded before it stopped stays succeeded.
pub async fn a_preempted_job_goes_back_to_pending(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let by = JobId::new();
    // Above the default priority: a preempted job that went back to the default's place
    // would queue behind the job that came after it.
    let victim = submit(&store, retried_once(in_queue("batch", 90, 1000))).await;
    let pending = submit(&store, in_queue("batch", 90, 1000)).await;
    assert!(
        matches!(
            store.preempt(pending, by).await,
            Err(crate::StoreError::InvalidTransition { .. })
        ),
        "a pending job is not preempted"
    );
    assert_eq!(job(&store, pending).await.abort_requested, None);

    assign(&store, victim, &exec, &[]).await;
    store.mark_running(victim, &exec, 1).await.expect("running");
    let signalled = store.preempt(victim, by).await.expect("preempt");
    let reason = format!("preempted by {by}");
    assert_eq!(signalled.abort_requested, Some(AbortCause::Preempted));
    assert_eq!(signalled.reason.as_deref(), Some(reason.as_str()));
    match store
        .next_event(&exec, Duration::ZERO)
        .await
        .expect("event")
    {
        Some(crate::ExecutorEvent::Abort(id, AbortCause::Preempted)) => assert_eq!(id, victim),
        other => panic!("expected the preemption's abort event, got {other:?}"),
    }
    assert_eq!(
        usage(&store, "batch").await.held.cpu_millis,
        1000,
        "held until stopped"
    );

    let finished = store
        .finish(
            victim,
            &AbortCause::Preempted.outcome().with_exit_code(Some(143)),
            Some(1),
        )
        .await
        .expect("finish");
    assert_eq!(
        (finished.state, finished.changed),
        (crate::JobState::Pending, true)
    );
    let back = job(&store, victim).await;
    assert_eq!(back.reason.as_deref(), Some(reason.as_str()));
    assert_eq!(
        (back.preemptions, back.retry_at, back.abort_requested),
        (1, None, None)
    );
    assert_eq!((back.executor.as_ref(), back.started_at), (None, None));
    assert_eq!(back.attempts.len(), 1);
    let record = &back.attempts[0];
    assert_eq!(record.reason.as_deref(), Some(reason.as_str()));
    assert_eq!(
        (record.attempt, record.executor.as_ref(), record.exit_code),
        (1, Some(&exec), Some(143)),
        "{record:?}"
    );
    assert!(
        record.executor_ip.is_some() && record.started_at.is_some(),
        "the attempt records where and when it ran: {record:?}"
    );
    assert_eq!(
        store.queue_position(victim).await.expect("position"),
        Some(0),
        "it keeps its place, ahead of the job that came after it"
    );
    let e = store.executor(&exec).await.expect("executor");
    assert_eq!(e.allocated, Resources::ZERO);
    assert_eq!(usage(&store, "batch").await.held, Resources::ZERO);

    // Preempted again: both attempts are recorded.
    assign(&store, victim, &exec, &[]).await;
    store.mark_running(victim, &exec, 2).await.expect("running");
    store.preempt(victim, by).await.expect("preempt");
    store
        .finish(victim, &AbortCause::Preempted.outcome(), Some(2))
        .await
        .expect("finish");
    let back = job(&store, victim).await;
    assert_eq!(
        (back.state, back.preemptions),
        (crate::JobState::Pending, 2)
    );
    let numbers: Vec<u32> = back.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, [1, 2], "{:?}", back.attempts);

    // Its one retry is still there: attempt 3 fails with a covered cause and is retried.
    assign(&store, victim, &exec, &[]).await;
    store.mark_running(victim, &exec, 3).await.expect("running");
    let failed = Outcome::exited(1, false);
    let finished = store
        .finish(victim, &failed, Some(3))
        .await
        .expect("finish");
    assert_eq!(finished.state, crate::JobState::Pending, "retried");
    let back = job(&store, victim).await;
    assert!(back.retry_at.is_some());
    let numbers: Vec<u32> = back.attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, [1, 2, 3], "{:?}", back.attempts);

    // A job that succeeds before it stops stays succeeded.
    assign(&store, pending, &exec, &[]).await;
    store
        .mark_running(pending, &exec, 1)
        .await
        .expect("running");
    store.preempt(pending, by).await.expect("preempt");
    let finished = store
        .finish(pending, &Outcome::exited(0, false), Some(1))
        .await
        .expect("finish");
    assert_eq!(finished.state, crate::JobState::Succeeded);
    assert!(matches!(
        store.preempt(pending, by).await,
        Err(crate::StoreError::AlreadyTerminal { .. })
    ));
}
