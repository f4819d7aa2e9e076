//! Conformance checks of `mark_running`, `finish` and `request_abort`: legal transitions
//! only, and resources released exactly once.

use std::sync::Arc;
use std::time::Duration;

use super::{assign, executor, gpu_spec, job, register, spec, submit};
use crate::error::StoreError;
use crate::ids::{ExecutorId, JobId};
use crate::job::{AbortCause, JobState, Outcome, REASON_ABORTED, REASON_TIMED_OUT};
use crate::resources::Resources;
use crate::store::{AbortRequested, ExecutorEvent, Expiry, JobStore};

fn expect_invalid<T: std::fmt::Debug>(r: Result<T, StoreError>, id: JobId, state: JobState) {
    match r {
        Err(StoreError::InvalidTransition {
            id: got, state: s, ..
        }) => {
            assert_eq!(
                (got, s),
                (id, state),
                "InvalidTransition names the job and state"
            )
        }
        other => panic!("expected InvalidTransition from {state}, got {other:?}"),
    }
}

fn expect_terminal<T: std::fmt::Debug>(r: Result<T, StoreError>, id: JobId, state: JobState) {
    match r {
        Err(StoreError::AlreadyTerminal { id: got, state: s }) => {
            assert_eq!(
                (got, s),
                (id, state),
                "AlreadyTerminal names the job and state"
            )
        }
        other => panic!("expected AlreadyTerminal ({state}), got {other:?}"),
    }
}

/// Assigned → running only, and only by the executor the job is assigned to.
pub async fn mark_running_only_by_its_executor(store: Arc<dyn JobStore>) {
    let e1 = register(&store, "e1", 4000, 4096, &[]).await;
    let e2 = register(&store, "e2", 4000, 4096, &[]).await;
    let id = submit(&store, spec(1000, 1024)).await;

    expect_invalid(store.mark_running(id, &e1, 1).await, id, JobState::Pending);
    assign(&store, id, &e1, &[]).await;
    let before = job(&store, id).await;
    expect_invalid(store.mark_running(id, &e2, 1).await, id, JobState::Assigned);
    expect_invalid(
        store.mark_running(id, &ExecutorId::new("ghost"), 1).await,
        id,
        JobState::Assigned,
    );
    assert_eq!(
        job(&store, id).await,
        before,
        "a refused mark_running changed the job"
    );

    store.mark_running(id, &e1, 1).await.expect("mark_running");
    let running = job(&store, id).await;
    assert_eq!(running.state, JobState::Running);
    assert!(running.assigned_at.is_some() && running.started_at >= running.assigned_at);
    assert_eq!(
        Some(running.updated_at),
        running.started_at,
        "last changed as it started"
    );
    assert_eq!(running.executor.as_ref(), Some(&e1));
    assert_eq!(
        executor(&store, &e1).await.allocated,
        Resources::new(1000, 1024, 0),
        "running keeps the allocation"
    );
    expect_invalid(store.mark_running(id, &e1, 1).await, id, JobState::Running);

    store
        .finish(id, &Outcome::exited(0, false), None)
        .await
        .expect("finish");
    expect_terminal(
        store.mark_running(id, &e1, 1).await,
        id,
        JobState::Succeeded,
    );
}

/// `finish` moves pending, assigned and running jobs to legal terminal states only;
/// pending → succeeded and non-terminal outcomes are refused without change.
pub async fn finish_follows_the_lifecycle(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let pending = submit(&store, spec(100, 100)).await;
    let before = job(&store, pending).await;
    expect_invalid(
        store
            .finish(pending, &Outcome::exited(0, false), None)
            .await,
        pending,
        JobState::Pending,
    );
    let mut not_terminal = Outcome::failed("x");
    not_terminal.state = JobState::Running;
    expect_invalid(
        store.finish(pending, &not_terminal, None).await,
        pending,
        JobState::Pending,
    );
    assert_eq!(
        job(&store, pending).await,
        before,
        "a refused finish changed the job"
    );

    let timed_out = Outcome::failed("no executor has room: 0 of 1 fit");
    let done = store
        .finish(pending, &timed_out, None)
        .await
        .expect("finish");
    assert!(done.changed);
    assert_eq!(done.state, JobState::Failed);
    let failed = job(&store, pending).await;
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.reason, timed_out.reason);
    assert!(failed.finished_at.is_some_and(|t| t >= failed.created_at));
    assert_eq!(
        Some(failed.updated_at),
        failed.finished_at,
        "last changed at its end"
    );

    let assigned = submit(&store, spec(100, 100)).await;
    assign(&store, assigned, &exec, &[]).await;
    // assigned → running is a legal move, but not one a finish may make.
    expect_invalid(
        store.finish(assigned, &not_terminal, None).await,
        assigned,
        JobState::Assigned,
    );
    let pull_failed = Outcome::failed("image unavailable");
    let done = store
        .finish(assigned, &pull_failed, None)
        .await
        .expect("finish");
    assert!(done.changed);
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(job(&store, assigned).await.state, JobState::Failed);
    assert_eq!(executor(&store, &exec).await.allocated, Resources::ZERO);

    let running = submit(&store, spec(100, 100)).await;
    assign(&store, running, &exec, &[]).await;
    store.mark_running(running, &exec, 1).await.expect("run");
    let oom = Outcome::exited(137, true);
    let done = store.finish(running, &oom, None).await.expect("finish");
    assert_eq!((done.state, done.changed), (JobState::Failed, true));
    let ended = job(&store, running).await;
    assert_eq!(
        (ended.state, ended.exit_code, ended.oom_killed),
        (JobState::Failed, Some(137), true)
    );
    assert_eq!(
        Some(ended.updated_at),
        ended.finished_at,
        "last changed at its end"
    );
}

/// A second `finish` changes nothing (`changed: false`, first outcome kept), and the
/// executor's books show the job's resources and GPUs released exactly once.
pub async fn finish_releases_once(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 8192, &["GPU-a0", "GPU-a1"]).await;
    let id = submit(&store, gpu_spec(1000, 1024, 1)).await;
    let other = submit(&store, gpu_spec(500, 512, 1)).await;
    assign(&store, id, &exec, &["GPU-a0"]).await;
    assign(&store, other, &exec, &["GPU-a1"]).await;
    store.mark_running(id, &exec, 1).await.expect("run");

    let first = store
        .finish(id, &Outcome::exited(0, false), None)
        .await
        .expect("finish");
    assert!(first.changed);
    assert_eq!(first.state, JobState::Succeeded);
    let ended = job(&store, id).await;
    assert_eq!(ended.state, JobState::Succeeded);
    assert_eq!(ended.exit_code, Some(0));
    assert!(ended.finished_at.is_some_and(|t| t >= ended.created_at));
    let e = executor(&store, &exec).await;
    assert_eq!(
        e.allocated,
        Resources::new(500, 512, 1),
        "only the other job is held"
    );
    assert_eq!(e.jobs, [other].into());
    assert!(!e.gpu_holders.contains_key("GPU-a0"));
    assert_eq!(e.gpu_holders.get("GPU-a1"), Some(&other));

    for outcome in [Outcome::exited(1, false), Outcome::failed("again")] {
        let again = store
            .finish(id, &outcome, None)
            .await
            .expect("finish twice");
        assert!(!again.changed, "second finish reported a change");
        assert_eq!(again.state, JobState::Succeeded, "the first outcome stands");
        assert_eq!(
            job(&store, id).await,
            ended,
            "second finish changed the job"
        );
    }
    assert_eq!(
        executor(&store, &exec).await,
        e,
        "second finish released again"
    );

    store
        .finish(other, &Outcome::failed("x"), None)
        .await
        .expect("finish");
    let e = executor(&store, &exec).await;
    assert_eq!(e.allocated, Resources::ZERO, "all back to zero");
    assert!(e.gpu_holders.is_empty() && e.jobs.is_empty());
}

/// After an executor expired (its jobs failed and released), a late `finish` from the
/// agent changes nothing.
pub async fn finish_after_expire_changes_nothing(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &["GPU-a0"]).await;
    let id = submit(&store, gpu_spec(1000, 1024, 1)).await;
    assign(&store, id, &exec, &["GPU-a0"]).await;
    store.mark_running(id, &exec, 1).await.expect("run");
    let failed = store
        .expire_executor(&exec, Expiry::Now, "executor lost")
        .await
        .expect("expire");
    assert_eq!(failed, vec![id]);
    // The agent's report names its attempt, which is the current one: idempotent.
    let late = store
        .finish(id, &Outcome::exited(0, false), Some(1))
        .await
        .expect("finish");
    assert!(!late.changed);
    assert_eq!(late.state, JobState::Failed);
    let ended = job(&store, id).await;
    assert_eq!(ended.state, JobState::Failed);
    assert_eq!(ended.reason.as_deref(), Some("executor lost"));
    assert!(ended.finished_at.is_some_and(|t| t >= ended.created_at));

    let back = store
        .register_executor(&super::registration("e1", 4000, 4096, &["GPU-a0"]))
        .await
        .expect("register");
    assert_eq!(
        back.allocated,
        Resources::ZERO,
        "nothing held after coming back"
    );
    assert!(back.gpu_holders.is_empty() && back.jobs.is_empty());
}

/// An abort of a running job, then the agent's finish with the abort outcome: aborted once,
/// released once; a later abort is `AlreadyTerminal`.
pub async fn abort_then_finish_releases_once(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let id = submit(&store, spec(1000, 1024)).await;
    let other = submit(&store, spec(300, 300)).await;
    assign(&store, id, &exec, &[]).await;
    assign(&store, other, &exec, &[]).await;
    store.mark_running(id, &exec, 1).await.expect("run");

    let requested = store
        .request_abort(id, AbortCause::User)
        .await
        .expect("abort");
    assert!(matches!(requested, AbortRequested::Signalled(_)));
    assert_eq!(
        executor(&store, &exec).await.allocated,
        Resources::new(1300, 1324, 0),
        "a requested abort holds on until the executor stops the job"
    );
    let done = store
        .finish(
            id,
            &AbortCause::User.outcome().with_exit_code(Some(137)),
            None,
        )
        .await
        .expect("finish");
    assert!(done.changed);
    assert_eq!(done.state, JobState::Aborted);
    let ended = job(&store, id).await;
    assert_eq!(ended.state, JobState::Aborted);
    assert_eq!(ended.reason.as_deref(), Some(REASON_ABORTED));
    assert_eq!(ended.abort_requested, None, "the request is carried out");
    let again = store
        .finish(id, &AbortCause::User.outcome(), None)
        .await
        .expect("finish");
    assert!(!again.changed);
    assert_eq!(
        executor(&store, &exec).await.allocated,
        Resources::new(300, 300, 0),
        "released exactly once"
    );
    expect_terminal(
        store.request_abort(id, AbortCause::User).await,
        id,
        JobState::Aborted,
    );
}

/// `request_abort`: pending → aborted at once; assigned and running → flagged and signalled
/// to the executor; terminal → `AlreadyTerminal`.
pub async fn request_abort_by_state(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;

    let pending = submit(&store, spec(100, 100)).await;
    match store
        .request_abort(pending, AbortCause::User)
        .await
        .expect("abort")
    {
        AbortRequested::AbortedAtOnce(j) => {
            assert_eq!(j.state, JobState::Aborted);
            assert_eq!(j.reason.as_deref(), Some(REASON_ABORTED));
            assert!(j.finished_at.is_some_and(|t| t >= j.created_at));
            assert_eq!(job(&store, pending).await, j);
        }
        other => panic!("pending: expected AbortedAtOnce, got {other:?}"),
    }
    assert_eq!(
        store
            .next_event(&exec, Duration::ZERO)
            .await
            .expect("event"),
        None,
        "no executor is told about a pending job"
    );
    expect_terminal(
        store.request_abort(pending, AbortCause::User).await,
        pending,
        JobState::Aborted,
    );

    let assigned = submit(&store, spec(100, 100)).await;
    assign(&store, assigned, &exec, &[]).await;
    let running = submit(&store, spec(100, 100)).await;
    assign(&store, running, &exec, &[]).await;
    store.mark_running(running, &exec, 1).await.expect("run");

    for (id, state, cause) in [
        (assigned, JobState::Assigned, AbortCause::User),
        (running, JobState::Running, AbortCause::TimedOut),
    ] {
        match store.request_abort(id, cause).await.expect("abort") {
            AbortRequested::Signalled(j) => {
                assert_eq!(j.state, state, "the executor stops it; the state waits");
                assert_eq!(j.abort_requested, Some(cause));
                assert_eq!(job(&store, id).await, j);
            }
            other => panic!("{state}: expected Signalled, got {other:?}"),
        }
        assert_eq!(
            store
                .next_event(&exec, Duration::ZERO)
                .await
                .expect("event"),
            Some(ExecutorEvent::Abort(id, cause))
        );
    }
    let done = store
        .finish(running, &AbortCause::TimedOut.outcome(), None)
        .await
        .expect("finish");
    assert_eq!(done.state, JobState::Failed);
    let ended = job(&store, running).await;
    assert_eq!(
        (ended.state, ended.reason.as_deref()),
        (JobState::Failed, Some(REASON_TIMED_OUT))
    );
    expect_terminal(
        store.request_abort(running, AbortCause::User).await,
        running,
        JobState::Failed,
    );
}
