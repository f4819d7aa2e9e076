//! Conformance checks of dependencies: a job waits, out of every queue, until its
//! dependencies are met; one whose dependencies can never be met fails at once, and its own
//! dependents hear of it in turn.

use std::sync::Arc;

use super::{assert_rejected, job, register, run_and_end, spec, submit};
use crate::deps::{Dependency, Verdict};
use crate::error::{Rejection, StoreError};
use crate::ids::JobId;
use crate::job::{AbortCause, Job, JobState, Outcome};
use crate::spec::JobSpec;
use crate::store::{Assignment, JobStore};

fn after(kind: Dependency, deps: &[JobId]) -> JobSpec {
    JobSpec {
        depends_on: deps.to_vec(),
        dependency: kind,
        ..spec(100, 64)
    }
}

fn reason_of(verdict: Verdict) -> Option<String> {
    match verdict {
        Verdict::Never(reason) => Some(reason),
        _ => None,
    }
}

/// The reason of a job of `kind` whose dependency `dep` failed.
fn never(kind: Dependency, dep: JobId) -> Option<String> {
    reason_of(kind.on_end(1, 0, dep, false))
}

async fn queued(store: &Arc<dyn JobStore>) -> Vec<JobId> {
    let queued = store.pending_for_placement(100).await.expect("queue");
    queued.into_iter().map(|q| q.job.id).collect()
}

/// A job with dependencies is pending but in no queue, cannot be committed and has no
/// place, until every dependency succeeded; then it joins its queue, its allocation
/// timeout running from then. A dependency that does not exist is refused and stores
/// nothing.
pub async fn a_job_waits_for_its_dependencies(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let a = submit(&store, spec(100, 64)).await;
    let b = submit(&store, spec(100, 64)).await;
    let c = submit(&store, after(Dependency::AfterOk, &[a, b])).await;

    let waiting = job(&store, c).await;
    assert_eq!(waiting.state, JobState::Pending);
    assert_eq!((waiting.deps_left, waiting.ready_at), (2, None));
    assert!(!queued(&store).await.contains(&c), "in no queue");
    assert_eq!(store.queue_position(c).await.expect("position"), None);
    let r = store
        .commit_assignment(&Assignment::new(c, exec.clone(), Vec::new()))
        .await;
    assert_rejected(r, "a job waiting on its dependencies", |r| {
        *r == Rejection::DependenciesNotMet
    });

    let before = store.counts().await.expect("counts");
    let unknown = JobId::new();
    let refused = store
        .submit(Job::new(
            JobId::new(),
            after(Dependency::AfterOk, &[a, unknown]),
            crate::Timestamp::default(),
        ))
        .await;
    assert!(
        matches!(refused, Err(StoreError::UnknownDependency { id }) if id == unknown),
        "{refused:?}"
    );
    assert_eq!(
        store.counts().await.expect("counts"),
        before,
        "nothing stored"
    );

    run_and_end(&store, a, &exec, Outcome::exited(0, false)).await;
    assert_eq!(job(&store, c).await.deps_left, 1);
    assert!(!queued(&store).await.contains(&c));
    run_and_end(&store, b, &exec, Outcome::exited(0, false)).await;
    let ready = job(&store, c).await;
    assert_eq!(ready.deps_left, 0);
    assert!(ready.ready_at.is_some_and(|t| t >= ready.created_at));
    assert_eq!(
        Some(ready.updated_at),
        ready.ready_at,
        "last changed when ready"
    );
    assert_eq!(
        queued(&store).await,
        [c],
        "queued once its dependencies succeeded"
    );
    assert_eq!(store.queue_position(c).await.expect("position"), Some(0));
    run_and_end(&store, c, &exec, Outcome::exited(0, false)).await;
    assert_eq!(job(&store, c).await.state, JobState::Succeeded);

    // Depending on jobs that ended already: met at once, or failed at once.
    let now_ready = submit(&store, after(Dependency::AfterOk, &[a, b])).await;
    assert_eq!(job(&store, now_ready).await.deps_left, 0);
    assert!(queued(&store).await.contains(&now_ready));
    let failed = submit(&store, after(Dependency::AfterNotOk, &[a, b])).await;
    let failed = job(&store, failed).await;
    assert_eq!(failed.state, JobState::Failed);
    let ended_last = Dependency::AfterNotOk.on_end(1, 0, b, true);
    assert_eq!(failed.reason, reason_of(ended_last));
}

/// A dependency that fails ends every job that needed it to succeed, through the whole
/// chain, each once and naming what it waited for; jobs that wait for any end, or for a
/// failure, are met instead. An aborted waiting job stays aborted.
pub async fn a_failed_dependency_fails_its_dependents_in_turn(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let a = submit(&store, spec(100, 64)).await;
    let b = submit(&store, after(Dependency::AfterOk, &[a])).await;
    let c = submit(&store, after(Dependency::AfterOk, &[b])).await;
    let d = submit(&store, after(Dependency::AfterAny, &[b])).await;
    let e = submit(&store, after(Dependency::AfterNotOk, &[a])).await;
    let aborted = submit(&store, after(Dependency::AfterOk, &[a])).await;
    store
        .request_abort(aborted, AbortCause::User)
        .await
        .expect("abort a waiting job");

    run_and_end(&store, a, &exec, Outcome::exited(3, false)).await;
    let (b, c) = (job(&store, b).await, job(&store, c).await);
    assert_eq!((b.state, c.state), (JobState::Failed, JobState::Failed));
    // The reasons are Dependency::on_end's, word for word, in every store.
    assert_eq!(b.reason, never(Dependency::AfterOk, a), "{b:?}");
    assert_eq!(c.reason, never(Dependency::AfterOk, b.id), "{c:?}");
    assert_eq!((b.attempt, c.attempt), (0, 0), "never ran");
    for (id, what) in [(d, "afterany"), (e, "afternotok")] {
        let j = job(&store, id).await;
        assert_eq!((j.state, j.deps_left), (JobState::Pending, 0), "{what}");
        assert!(queued(&store).await.contains(&id), "{what} is queued");
    }
    assert_eq!(job(&store, aborted).await.state, JobState::Aborted);
    let counts = store.counts().await.expect("counts");
    assert_eq!(
        counts[&JobState::Failed],
        3,
        "a, b and c, each once: {counts:?}"
    );
}
