//! Start only after ownership, self-fencing and re-registration: the agent over the fake
//! runtime and the in-memory store behind a [`FaultyStore`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::support::{assign, config, faulty, until_state, within, Running};
use crate::agent::REASON_CONTAINER_LOST;
use crate::fake::{FakeRuntime, FaultyStore, Op};
use crate::ids::JobId;
use crate::job::JobState;
use crate::store::{Expiry, JobStore};

/// Bound for liveness waits (generous: the tests share the machine with builds).
const LIVENESS: Duration = Duration::from_secs(5);

fn parts() -> (Arc<FaultyStore>, Arc<FakeRuntime>) {
    (faulty(), Arc::new(FakeRuntime::new()))
}

/// An agent with a 300 ms lease (heartbeats every 100 ms) running a job that hangs until
/// SIGTERM; returns once the job is running.
async fn running_a_hanging_job() -> (Arc<FaultyStore>, Arc<FakeRuntime>, Running, JobId) {
    let (store, runtime) = parts();
    let mut cfg = config("e1");
    cfg.heartbeat_interval = Duration::from_millis(100);
    let agent = Running::start(store.clone(), runtime.clone(), cfg).await;
    let job = assign(&*store, &agent.id, &["fake", "hang", "term"], &[]).await;
    until_state(&*store, job, JobState::Running, LIVENESS).await;
    (store, runtime, agent, job)
}

/// An assignment whose event is held back is run by the fallback check; when the held-back
/// event arrives after the job ended, the agent creates a container for it but the store
/// does not confirm the attempt, so it is removed unstarted: the runtime saw one start.
#[tokio::test]
async fn a_late_assignment_event_after_the_fallback_check_ran_the_job_starts_nothing() {
    let (store, runtime) = parts();
    store.set_hold_assignments(true);
    let mut cfg = config("e1");
    cfg.poll_interval = Duration::from_millis(100);
    let agent = Running::start(store.clone(), runtime.clone(), cfg).await;
    let job = assign(&*store, &agent.id, &["echo", "once"], &[]).await;

    // Only the fallback check can have run it: its event is held back.
    until_state(&*store, job, JobState::Succeeded, LIVENESS).await;
    assert_eq!(store.held_count(), 1, "the assignment event was held back");
    assert_eq!(runtime.starts_of(job), 1);
    let marks = store.calls(Op::MarkRunning);

    store.set_hold_assignments(false);
    store.release_held();
    within(LIVENESS, "the late event handled", || async {
        (store.held_count() == 0 && store.calls(Op::MarkRunning) > marks).then_some(())
    })
    .await;
    within(LIVENESS, "its container removed", || async {
        (runtime.container_count() == 0).then_some(())
    })
    .await;
    assert_eq!(runtime.starts_of(job), 1, "the late event started nothing");
    let ended = store.job(job).await.unwrap();
    assert_eq!((ended.state, ended.attempt), (JobState::Succeeded, 1));
    agent.stop().await.unwrap();
}

/// An executor that cannot renew its lease stops its containers by itself within the
/// lease and records nothing for them; once the store is back, the jobs it stopped are
/// recorded as lost by its fallback check.
#[tokio::test]
async fn an_executor_that_cannot_renew_its_lease_stops_its_containers_and_records_nothing() {
    let (store, runtime, agent, job) = running_a_hanging_job().await;
    assert_eq!(runtime.running_count(), 1);

    store.set_down(Op::Heartbeat, true);
    let cut = std::time::Instant::now();
    within(
        LIVENESS,
        "the container stopped by the executor itself",
        || async { (runtime.running_count() == 0).then_some(()) },
    )
    .await;
    // Lease 300 ms, then a stop with a 200 ms grace: well within the lease + 1 s.
    assert!(
        cut.elapsed() < Duration::from_millis(300) + Duration::from_secs(1),
        "stopped after {:?}",
        cut.elapsed()
    );
    let job_now = store.job(job).await.unwrap();
    assert_eq!(job_now.state, JobState::Running, "nothing was recorded");
    assert_eq!(runtime.container_count(), 0, "removed too");

    store.set_down(Op::Heartbeat, false);
    let lost = until_state(&*store, job, JobState::Failed, LIVENESS).await;
    assert_eq!(lost.reason.as_deref(), Some(REASON_CONTAINER_LOST));
    assert_eq!(runtime.starts_of(job), 1);
    agent.stop().await.unwrap();
}

/// When the store expired the executor, its containers are stopped before it registers
/// again: by the time its capacity is offered, none of its old jobs runs.
#[tokio::test]
async fn an_expired_executor_stops_its_containers_before_it_registers_again() {
    let (store, runtime, agent, job) = running_a_hanging_job().await;

    let running_at_register = Arc::new(AtomicUsize::new(usize::MAX));
    let seen = running_at_register.clone();
    let rt = runtime.clone();
    store.before_next(Op::RegisterExecutor, move || {
        seen.store(rt.running_count(), Ordering::SeqCst);
        Box::pin(async {})
    });
    let failed = store
        .expire_executor(&agent.id, Expiry::Now, "executor lost")
        .await
        .unwrap();
    assert_eq!(failed, vec![job]);
    within(LIVENESS, "registered again", || async {
        store.executor(&agent.id).await.ok()
    })
    .await;
    assert_eq!(
        running_at_register.load(Ordering::SeqCst),
        0,
        "a container still ran when the executor offered its capacity again"
    );
    assert_eq!(runtime.container_count(), 0);
    agent.stop().await.unwrap();
}
