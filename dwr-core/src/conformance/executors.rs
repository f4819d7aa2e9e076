//! Conformance checks of executors: events, heartbeats, registration, expiry, and the
//! schedulers' wake-ups.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::{
    assert_stamped, assign, assignment, executor, gpu_spec, job, outlive_short_lease, register,
    register_short_lease, registration, spec, store_now, submit, LONG_WAIT, SHORT_HEARTBEAT,
    WAKE_BOUND,
};
use crate::error::StoreError;
use crate::executor::{Executor, HostUsage};
use crate::ids::ExecutorId;
use crate::job::{AbortCause, JobState, Outcome};
use crate::resources::Resources;
use crate::store::{ExecutorEvent, Expiry, JobStore};

/// Events queue per executor in order and are delivered once; one executor never sees
/// another's.
pub async fn events_are_delivered_once(store: Arc<dyn JobStore>) {
    let e1 = register(&store, "e1", 4000, 4096, &[]).await;
    let e2 = register(&store, "e2", 4000, 4096, &[]).await;
    let a = submit(&store, spec(100, 100)).await;
    let b = submit(&store, spec(100, 100)).await;
    let c = submit(&store, spec(100, 100)).await;
    for (id, e) in [(a, &e1), (b, &e1), (c, &e2)] {
        store
            .commit_assignment(&assignment(id, e, &[]))
            .await
            .expect("commit");
    }
    store
        .request_abort(a, AbortCause::User)
        .await
        .expect("abort");
    let next = |e: &ExecutorId| {
        let store = store.clone();
        let e = e.clone();
        async move {
            store
                .next_event(&e, Duration::ZERO)
                .await
                .expect("next_event")
        }
    };
    let event = next(&e1).await;
    assert!(
        matches!(&event, Some(ExecutorEvent::Assigned(job)) if job.id == a),
        "{event:?}"
    );
    let event = next(&e1).await;
    assert!(
        matches!(&event, Some(ExecutorEvent::Assigned(job)) if job.id == b),
        "{event:?}"
    );
    assert_eq!(
        next(&e1).await,
        Some(ExecutorEvent::Abort(a, AbortCause::User))
    );
    assert_eq!(next(&e1).await, None, "delivered once");
    let event = next(&e2).await;
    assert!(
        matches!(&event, Some(ExecutorEvent::Assigned(job)) if job.id == c),
        "{event:?}"
    );
    assert_eq!(next(&e2).await, None);
    assert_eq!(next(&ExecutorId::new("ghost")).await, None);
}

/// `next_event` blocked in one task returns the event another task queues, long before
/// its wait is over.
pub async fn next_event_wakes_on_commit_from_another_task(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    for round in 0..3 {
        let id = submit(&store, spec(100, 100)).await;
        let committer = {
            let store = store.clone();
            let exec = exec.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                store.commit_assignment(&assignment(id, &exec, &[])).await
            })
        };
        let event = tokio::time::timeout(WAKE_BOUND, store.next_event(&exec, LONG_WAIT))
            .await
            .expect("next_event did not wake on a queued event")
            .expect("next_event");
        assert!(
            matches!(&event, Some(ExecutorEvent::Assigned(job)) if job.id == id),
            "round {round}: {event:?}"
        );
        committer.await.expect("task").expect("commit");
    }
    // A short wait with nothing queued returns None.
    let none = store
        .next_event(&exec, Duration::from_millis(20))
        .await
        .expect("next_event");
    assert_eq!(none, None);
}

/// A heartbeat refreshes liveness and usage and never touches allocations.
pub async fn heartbeat_keeps_allocations(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &["GPU-a0"]).await;
    let id = submit(&store, gpu_spec(1000, 1024, 1)).await;
    assign(&store, id, &exec, &["GPU-a0"]).await;
    let before = executor(&store, &exec).await;
    let usage = HostUsage {
        cpu_percent: 42.5,
        memory_used_mib: 3000,
    };
    let heartbeat_after = store_now(&store).await;
    store.heartbeat(&exec, &usage).await.expect("heartbeat");
    let after = executor(&store, &exec).await;
    assert_stamped(
        &store,
        "last_heartbeat",
        Some(after.last_heartbeat),
        heartbeat_after,
    )
    .await;
    assert_eq!(after.usage, usage);
    assert_eq!(after.allocated, before.allocated);
    assert_eq!(after.gpu_holders, before.gpu_holders);
    assert_eq!(after.jobs, before.jobs);
    assert_eq!(after.registration, before.registration);
    // A heartbeat renews the lease: alive after the lease of the registration ran out. The
    // agent heartbeats every interval until then, and the commit follows the last one at
    // once, so a slow host only eats into the lease's three intervals, not one.
    let other = submit(&store, spec(100, 100)).await;
    let short = register_short_lease(&store, "e2").await;
    for _ in 0..=crate::executor::LEASE_INTERVALS {
        tokio::time::sleep(SHORT_HEARTBEAT).await;
        store.heartbeat(&short, &usage).await.expect("heartbeat");
    }
    assign(&store, other, &short, &[]).await;
}

/// Registering again (an agent restart) updates the registration and liveness and keeps
/// allocations, GPU holders and jobs.
pub async fn reregister_keeps_allocations(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &["GPU-a0", "GPU-a1"]).await;
    let id = submit(&store, gpu_spec(1000, 1024, 1)).await;
    assign(&store, id, &exec, &["GPU-a1"]).await;
    let mut again = registration("e1", 8000, 4096, &["GPU-a0", "GPU-a1"]);
    again.ip = "10.1.2.3".into();
    again.region = Some("eu-west".into());
    let registered_after = store_now(&store).await;
    let back = store.register_executor(&again).await.expect("register");
    assert_eq!(back.registration, again);
    assert_stamped(
        &store,
        "last_heartbeat",
        Some(back.last_heartbeat),
        registered_after,
    )
    .await;
    assert_eq!(back.allocated, Resources::new(1000, 1024, 1));
    assert_eq!(
        back.gpu_holders,
        BTreeMap::from([("GPU-a1".to_owned(), id)])
    );
    assert_eq!(back.jobs, [id].into());
    assert_eq!(executor(&store, &exec).await, back);
    assert_eq!(store.executors().await.expect("executors").len(), 1);
    // What a pass reads is the same but for the job set and the usage, which it may skip.
    let usage = HostUsage {
        cpu_percent: 12.5,
        memory_used_mib: 321,
    };
    store.heartbeat(&exec, &usage).await.expect("heartbeat");
    let whole = executor(&store, &exec).await;
    let [lean] = &store
        .executors_for_placement()
        .await
        .expect("executors_for_placement")[..]
    else {
        panic!("one executor")
    };
    assert!(lean.jobs.is_empty() || lean.jobs == whole.jobs);
    assert!(lean.usage == HostUsage::default() || lean.usage == usage);
    let same = Executor {
        jobs: whole.jobs.clone(),
        usage: whole.usage,
        ..lean.clone()
    };
    assert_eq!(same, whole);

    store
        .finish(id, &Outcome::failed("x"), None)
        .await
        .expect("finish");
    let e = executor(&store, &exec).await;
    assert_eq!(e.allocated, Resources::ZERO);
    assert!(e.gpu_holders.is_empty() && e.jobs.is_empty());
}

/// `executors` lists every registered executor ordered by id.
pub async fn executors_are_listed_by_id(store: Arc<dyn JobStore>) {
    assert!(store.executors().await.expect("executors").is_empty());
    for id in ["c", "a", "b"] {
        register(&store, id, 1000, 1000, &[]).await;
    }
    let listed: Vec<String> = store
        .executors()
        .await
        .expect("executors")
        .iter()
        .map(|e| e.id().as_str().to_owned())
        .collect();
    assert_eq!(listed, ["a", "b", "c"]);
}

/// Expiring a stale executor fails its assigned and running jobs with the reason, frees
/// everything, removes it, and leaves its finished jobs alone.
pub async fn expire_executor_fails_its_jobs(store: Arc<dyn JobStore>) {
    let exec = register_short_lease(&store, "e1").await;
    let done = submit(&store, spec(100, 100)).await;
    assign(&store, done, &exec, &[]).await;
    store.mark_running(done, &exec, 1).await.expect("run");
    store
        .finish(done, &Outcome::exited(0, false), None)
        .await
        .expect("finish");
    let assigned = submit(&store, gpu_spec(1000, 1000, 1)).await;
    let running = submit(&store, gpu_spec(1000, 1000, 1)).await;
    assign(&store, assigned, &exec, &["GPU-a0"]).await;
    assign(&store, running, &exec, &["GPU-a1"]).await;
    store.mark_running(running, &exec, 1).await.expect("run");
    store
        .heartbeat(&exec, &HostUsage::default())
        .await
        .expect("heartbeat");

    let none = store
        .expire_executor(&exec, Expiry::IfLeaseExpired, "executor lost")
        .await
        .expect("expire");
    assert!(none.is_empty(), "an executor within its lease is kept");
    outlive_short_lease().await;
    let expired_after = store_now(&store).await;
    let failed: HashSet<_> = store
        .expire_executor(&exec, Expiry::IfLeaseExpired, "executor lost")
        .await
        .expect("expire")
        .into_iter()
        .collect();
    assert_eq!(failed, HashSet::from([assigned, running]));
    for id in [assigned, running] {
        let j = job(&store, id).await;
        assert_eq!(j.state, JobState::Failed);
        assert_eq!(j.reason.as_deref(), Some("executor lost"));
        assert_stamped(&store, "finished_at", j.finished_at, expired_after).await;
        assert_eq!(j.attempt, 1);
    }
    assert_eq!(job(&store, done).await.state, JobState::Succeeded);
    assert!(matches!(
        store.executor(&exec).await,
        Err(StoreError::ExecutorNotFound { .. })
    ));
    assert!(matches!(
        store.heartbeat(&exec, &HostUsage::default()).await,
        Err(StoreError::ExecutorNotFound { .. })
    ));
    let again = store
        .expire_executor(&exec, Expiry::Now, "executor lost")
        .await
        .expect("expire");
    assert!(again.is_empty(), "expiring twice fails nothing");
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts[&JobState::Failed], 2);
    assert_eq!(counts[&JobState::Assigned] + counts[&JobState::Running], 0);

    let back = register(&store, "e1", 8000, 8192, &["GPU-a0", "GPU-a1"]).await;
    let e = executor(&store, &back).await;
    assert_eq!(e.allocated, Resources::ZERO, "everything was freed");
    assert!(e.gpu_holders.is_empty() && e.jobs.is_empty());
}

/// Expiry ignores an executor that heartbeated after the cut and an unknown one; `None`
/// (a clean shutdown) removes a fresh executor.
pub async fn expire_executor_ignores_fresh_and_unknown(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let id = submit(&store, spec(1000, 1000)).await;
    assign(&store, id, &exec, &[]).await;
    let before = executor(&store, &exec).await;
    let failed = store
        .expire_executor(&exec, Expiry::IfLeaseExpired, "executor lost")
        .await
        .expect("expire");
    assert!(failed.is_empty());
    assert_eq!(
        executor(&store, &exec).await,
        before,
        "a fresh executor is kept"
    );
    assert_eq!(job(&store, id).await.state, JobState::Assigned);

    let unknown = store
        .expire_executor(&ExecutorId::new("ghost"), Expiry::Now, "executor lost")
        .await
        .expect("expire unknown");
    assert!(unknown.is_empty());

    let failed = store
        .expire_executor(&exec, Expiry::Now, "executor shut down")
        .await
        .expect("expire");
    assert_eq!(failed, vec![id]);
    assert_eq!(
        job(&store, id).await.reason.as_deref(),
        Some("executor shut down")
    );
    assert!(store.executors().await.expect("executors").is_empty());
}

/// `wait_for_work` returns soon after a submit, a finish while a job waits in a queue, an
/// abort of a pending job or a registration — whether that happens while it waits or
/// between two calls.
pub async fn wait_for_work_wakes_on_changes(store: Arc<dyn JobStore>) {
    // Whatever happened before may have left a wake-up: take it.
    store.wait_for_work(Duration::ZERO).await.expect("wait");
    let bounded = |what: &'static str| {
        let store = store.clone();
        async move {
            tokio::time::timeout(WAKE_BOUND, store.wait_for_work(LONG_WAIT))
                .await
                .unwrap_or_else(|_| panic!("wait_for_work did not wake on {what}"))
                .expect("wait_for_work");
        }
    };

    // While it waits.
    let submitter = {
        let store = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            submit(&store, spec(100, 100)).await
        })
    };
    bounded("a submit while waiting").await;
    let first = submitter.await.expect("task");

    // Between calls (each time after taking any wake-up left over).
    store.wait_for_work(Duration::ZERO).await.expect("wait");
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    bounded("a registration before the call").await;
    assign(&store, first, &exec, &[]).await;
    // A job waiting for room: the end of another gives room back that it may use.
    submit(&store, spec(100, 100)).await;
    store.wait_for_work(Duration::ZERO).await.expect("wait");
    store
        .finish(first, &Outcome::failed("x"), None)
        .await
        .expect("finish");
    bounded("a finish while a job waits, before the call").await;
    store.wait_for_work(Duration::ZERO).await.expect("wait");
    let pending = submit(&store, spec(100, 100)).await;
    bounded("a submit before the call").await;
    store.wait_for_work(Duration::ZERO).await.expect("wait");
    store
        .request_abort(pending, AbortCause::User)
        .await
        .expect("abort");
    bounded("an abort of a pending job before the call").await;
}
