//! Conformance checks of `commit_assignment`: what it records, and every rejection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{
    assert_rejected, assert_stamped, assert_unchanged, assign, assignment, executor, gpu_spec, job,
    outlive_short_lease, race, register, register_short_lease, spec, store_now, submit,
};
use crate::error::{Rejection, StoreError};
use crate::ids::{ExecutorId, JobId};
use crate::job::JobState;
use crate::resources::{Dimension, Resources};
use crate::spec::JobSpec;
use crate::store::{Assignment, ExecutorEvent, Expiry, JobQuery, JobStore};

/// A commit records executor, IP, GPUs and time on the job, allocates on the executor, and
/// queues `Assigned` for it, carrying the job exactly as stored by the commit: with a
/// snapshot of the pending job in the assignment (as the scheduler sends it) and without.
pub async fn commit_assignment_records_and_allocates(store: Arc<dyn JobStore>) {
    records_and_allocates(&store, "e1", false).await;
    records_and_allocates(&store, "e2", true).await;
}

async fn records_and_allocates(store: &Arc<dyn JobStore>, name: &str, with_snapshot: bool) {
    let exec = register(store, name, 4000, 8192, &["GPU-a0", "GPU-a1"]).await;
    let submitted_after = store_now(store).await;
    let id = submit(store, gpu_spec(1500, 2048, 1)).await;
    let mut proposal = assignment(id, &exec, &["GPU-a1"]);
    if with_snapshot {
        let pending = store.pending_jobs(10).await.expect("pending");
        assert_eq!(pending.len(), 1);
        proposal.snapshot = Some(Arc::new(pending[0].clone()));
    }
    let committed_after = store_now(store).await;
    let committed = store.commit_assignment(&proposal).await.expect("commit");
    assert_eq!(committed.state, JobState::Assigned);
    assert_eq!(committed.attempt, 1, "the first commit is attempt 1");
    assert_eq!(committed.executor.as_ref(), Some(&exec));
    assert_eq!(
        committed.executor_ip.as_deref(),
        Some(format!("ip-of-{name}").as_str())
    );
    assert_eq!(committed.gpu_ids, vec!["GPU-a1".to_owned()]);
    assert_stamped(store, "assigned_at", committed.assigned_at, committed_after).await;
    assert_eq!(Some(committed.updated_at), committed.assigned_at);
    assert_stamped(
        store,
        "created_at",
        Some(committed.created_at),
        submitted_after,
    )
    .await;
    assert!(committed.created_at <= committed_after.plus(super::CLOCK_READ_SLACK));
    let stored = job(store, id).await;
    assert_eq!(stored, committed, "the stored job is the returned one");

    let e = executor(store, &exec).await;
    assert_eq!(e.allocated, Resources::new(1500, 2048, 1));
    assert_eq!(e.gpu_holders, BTreeMap::from([("GPU-a1".to_owned(), id)]));
    assert_eq!(e.jobs, [id].into());
    assert_eq!(e.free(), Resources::new(2500, 6144, 1));
    let event = store
        .next_event(&exec, Duration::ZERO)
        .await
        .expect("next_event");
    let Some(ExecutorEvent::Assigned(carried)) = event else {
        panic!("expected an assigned event, got {event:?}");
    };
    assert_eq!(carried.id, id);
    assert_eq!(carried.state, JobState::Assigned);
    assert_eq!(carried.executor.as_ref(), Some(&exec));
    assert_eq!(carried.gpu_ids, vec!["GPU-a1".to_owned()]);
    assert_eq!(
        *carried, stored,
        "the event carries the job as stored right after the commit"
    );
    assert!(store.pending_jobs(10).await.expect("pending").is_empty());
    let assigned = store
        .jobs(&JobQuery {
            state: Some(JobState::Assigned),
            ..JobQuery::default()
        })
        .await
        .expect("jobs");
    assert_eq!(assigned.first(), Some(&committed), "newest assigned job");
}

/// Asserts that a commit of `id` to the registered `exec` naming `gpus` is rejected with
/// one of the `accepted` reasons (see [`assert_rejected`]), and changes nothing.
async fn assert_refused(
    store: &Arc<dyn JobStore>,
    id: JobId,
    exec: &ExecutorId,
    gpus: &[&str],
    what: &str,
    accepted: &[Rejection],
) {
    let before = (job(store, id).await, executor(store, exec).await);
    let r = store.commit_assignment(&assignment(id, exec, gpus)).await;
    assert_rejected(r, what, |r| accepted.contains(r));
    assert_unchanged(store, what, &before.0, Some(&before.1)).await;
}

/// A job that is no longer pending is rejected with its state; nothing changes.
pub async fn commit_rejects_a_job_not_pending(store: Arc<dyn JobStore>) {
    let e1 = register(&store, "e1", 4000, 4096, &[]).await;
    let e2 = register(&store, "e2", 4000, 4096, &[]).await;
    let id = submit(&store, spec(1000, 1024)).await;
    assign(&store, id, &e1, &[]).await;
    let assigned = Rejection::JobNotPending {
        state: JobState::Assigned,
    };
    assert_refused(&store, id, &e2, &[], "assigned job", &[assigned]).await;

    let aborted = submit(&store, spec(1000, 1024)).await;
    store
        .request_abort(aborted, crate::job::AbortCause::User)
        .await
        .expect("abort");
    let not_pending = Rejection::JobNotPending {
        state: JobState::Aborted,
    };
    assert_refused(&store, aborted, &e2, &[], "aborted job", &[not_pending]).await;
}

/// An executor never registered, or expired, is `ExecutorGone`; nothing changes.
pub async fn commit_rejects_an_unknown_executor(store: Arc<dyn JobStore>) {
    let id = submit(&store, spec(1000, 1024)).await;
    let before = job(&store, id).await;
    let r = store
        .commit_assignment(&assignment(id, &ExecutorId::new("ghost"), &[]))
        .await;
    assert_rejected(r, "never registered", |r| *r == Rejection::ExecutorGone);
    assert_unchanged(&store, "never registered", &before, None).await;

    let gone = register(&store, "gone", 4000, 4096, &[]).await;
    store
        .expire_executor(&gone, Expiry::Now, "shut down")
        .await
        .expect("expire");
    let r = store.commit_assignment(&assignment(id, &gone, &[])).await;
    assert_rejected(r, "expired", |r| *r == Rejection::ExecutorGone);
    assert_unchanged(&store, "expired", &before, None).await;
    assert!(matches!(
        store.executor(&gone).await,
        Err(StoreError::ExecutorNotFound { .. })
    ));
}

/// An executor whose last heartbeat is older than its own lease (by the store's clock) is
/// `ExecutorNotAlive`; nothing changes.
pub async fn commit_rejects_a_dead_executor(store: Arc<dyn JobStore>) {
    let exec = register_short_lease(&store, "e1").await;
    let id = submit(&store, spec(1000, 1024)).await;
    outlive_short_lease().await;
    let not_alive = [Rejection::ExecutorNotAlive];
    assert_refused(&store, id, &exec, &[], "stale heartbeat", &not_alive).await;

    // A heartbeat brings it back.
    store
        .heartbeat(&exec, &Default::default())
        .await
        .expect("heartbeat");
    assign(&store, id, &exec, &[]).await;
}

/// No room on CPU, on memory (by capacity or because of other jobs) or on GPU count is
/// `NoRoom` naming the dimension; nothing changes. For the GPU dimension a store may report
/// instead the device that is not free (`GpuUnavailable`).
pub async fn commit_rejects_no_room_per_dimension(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 2000, 2048, &["GPU-a0"]).await;
    let refused_no_room = async |cases: [(JobSpec, Dimension, &str); 2]| {
        for (job_spec, dimension, what) in cases {
            let id = submit(&store, job_spec).await;
            let no_room = [Rejection::NoRoom { dimension }];
            assert_refused(&store, id, &exec, &[], what, &no_room).await;
        }
    };
    refused_no_room([
        (spec(2001, 100), Dimension::Cpu, "cpu over capacity"),
        (spec(100, 2049), Dimension::Memory, "memory over capacity"),
    ])
    .await;

    // Room taken by other jobs: 1500 of 2000 mCPU, 1024 of 2048 MiB, the one GPU.
    let holder = submit(&store, gpu_spec(1500, 1024, 1)).await;
    assign(&store, holder, &exec, &["GPU-a0"]).await;
    refused_no_room([
        (spec(501, 100), Dimension::Cpu, "cpu taken"),
        (spec(100, 1025), Dimension::Memory, "memory taken"),
    ])
    .await;
    let id = submit(&store, gpu_spec(100, 100, 1)).await;
    let taken = [
        Rejection::NoRoom {
            dimension: Dimension::Gpu,
        },
        Rejection::GpuUnavailable {
            uuid: "GPU-a0".into(),
        },
    ];
    assert_refused(&store, id, &exec, &["GPU-a0"], "gpu taken", &taken).await;

    // Exactly full is fine.
    let fits = submit(&store, spec(500, 1024)).await;
    assign(&store, fits, &exec, &[]).await;
    assert_eq!(
        executor(&store, &exec).await.allocated,
        Resources::new(2000, 2048, 1)
    );
}

/// A GPU held by another job, not on the executor, or named twice is `GpuUnavailable`
/// naming it; nothing changes.
pub async fn commit_rejects_unavailable_gpus(store: Arc<dyn JobStore>) {
    let e1 = register(&store, "e1", 8000, 8192, &["GPU-a0", "GPU-a1", "GPU-a2"]).await;
    register(&store, "e2", 8000, 8192, &["GPU-b0"]).await;
    let holder = submit(&store, gpu_spec(100, 100, 1)).await;
    assign(&store, holder, &e1, &["GPU-a0"]).await;

    let cases: [(&[&str], &str, &str); 4] = [
        (&["GPU-a0", "GPU-a1"], "GPU-a0", "held by another job"),
        (&["GPU-a1", "GPU-zz"], "GPU-zz", "not on any executor"),
        (&["GPU-b0", "GPU-a1"], "GPU-b0", "on another executor"),
        (&["GPU-a1", "GPU-a1"], "GPU-a1", "named twice"),
    ];
    for (gpus, bad, what) in cases {
        let id = submit(&store, gpu_spec(100, 100, 2)).await;
        let unavailable = Rejection::GpuUnavailable {
            uuid: (*bad).to_owned(),
        };
        assert_refused(&store, id, &e1, gpus, what, &[unavailable]).await;
    }
    let id = submit(&store, gpu_spec(100, 100, 2)).await;
    assign(&store, id, &e1, &["GPU-a2", "GPU-a1"]).await;
    let e = executor(&store, &e1).await;
    assert_eq!(e.gpu_holders.len(), 3);
    assert_eq!(e.gpu_holders["GPU-a1"], id);
    assert_eq!(e.gpu_holders["GPU-a0"], holder);
}

/// Naming more or fewer GPUs than the job asks for is `GpuCountMismatch`; nothing changes.
pub async fn commit_rejects_a_gpu_count_mismatch(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 8000, 8192, &["GPU-a0", "GPU-a1"]).await;
    let cases: [(u32, &[&str], &str); 3] = [
        (2, &["GPU-a0"], "too few"),
        (1, &["GPU-a0", "GPU-a1"], "too many"),
        (0, &["GPU-a0"], "none wanted"),
    ];
    for (wanted, gpus, what) in cases {
        let job_spec = if wanted == 0 {
            spec(100, 100)
        } else {
            gpu_spec(100, 100, wanted)
        };
        let id = submit(&store, job_spec).await;
        let mismatch = Rejection::GpuCountMismatch {
            given: gpus.len(),
            wanted,
        };
        assert_refused(&store, id, &exec, gpus, what, &[mismatch]).await;
    }
}

/// Tasks racing to commit one job to different executors: exactly one wins, and only the
/// winner holds anything.
pub async fn a_job_is_never_assigned_twice(store: Arc<dyn JobStore>) {
    let mut execs = Vec::new();
    for i in 0..4 {
        execs.push(register(&store, &format!("e{i}"), 8000, 8192, &[]).await);
    }
    for round in 0..5 {
        let id = submit(&store, spec(1000, 1000)).await;
        let tasks: Vec<_> = execs
            .iter()
            .map(|e| {
                let store = store.clone();
                let a = assignment(id, e, &[]);
                tokio::spawn(async move { store.commit_assignment(&a).await })
            })
            .collect();
        let mut winners = Vec::new();
        for (task, e) in tasks.into_iter().zip(&execs) {
            match task.await.expect("task") {
                Ok(j) => winners.push((j, e.clone())),
                Err(StoreError::Rejected {
                    reason: Rejection::JobNotPending { .. },
                    ..
                }) => {}
                Err(other) => panic!("round {round}: unexpected error {other}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one commit wins");
        let (won, winner) = &winners[0];
        assert_eq!(won.executor.as_ref(), Some(winner));
        for e in &execs {
            let holds = executor(&store, e).await.jobs.contains(&id);
            assert_eq!(holds, e == winner, "round {round}: {e} holds the job");
        }
    }
    let total: u64 = {
        let mut sum = 0;
        for e in &execs {
            sum += executor(&store, e).await.allocated.cpu_millis;
        }
        sum
    };
    assert_eq!(total, 5 * 1000, "five jobs allocated once each");
}

/// Tasks racing to place many jobs on few executors: no executor is ever over-allocated,
/// no GPU is held twice, no job is assigned twice, and the books balance.
pub async fn concurrent_commits_never_over_allocate(store: Arc<dyn JobStore>) {
    let execs = [
        register(&store, "e0", 3000, 3000, &["GPU-0a", "GPU-0b"]).await,
        register(&store, "e1", 2000, 4000, &["GPU-1a"]).await,
    ];
    let gpus: [&[&str]; 2] = [&["GPU-0a", "GPU-0b"], &["GPU-1a"]];
    let mut ids = Vec::new();
    for i in 0..24 {
        let job_spec = if i % 3 == 0 {
            gpu_spec(500, 500, 1)
        } else {
            spec(700, 900)
        };
        ids.push(submit(&store, job_spec).await);
    }
    let ids = Arc::new(ids);
    let won = race(4, |t| {
        let (store, ids, execs) = (store.clone(), ids.clone(), execs.clone());
        async move {
            let mut won = Vec::new();
            // Each task walks the jobs from a different start and tries every executor
            // and every GPU on it.
            for k in 0..ids.len() {
                let id = ids[(k + t * 5) % ids.len()];
                for (e, devices) in execs.iter().zip(gpus) {
                    let wants_gpu = store.job(id).await.expect("job").spec.gpu.count > 0;
                    let choices: Vec<&[&str]> = if wants_gpu {
                        devices.chunks(1).collect()
                    } else {
                        vec![&[]]
                    };
                    for g in choices {
                        match store.commit_assignment(&assignment(id, e, g)).await {
                            Ok(_) => won.push(id),
                            Err(StoreError::Rejected { .. }) => {}
                            Err(other) => panic!("unexpected error {other}"),
                        }
                    }
                }
            }
            won
        }
    })
    .await;

    let mut assigned_total = Resources::ZERO;
    for e in &execs {
        let ex = executor(&store, e).await;
        assert!(
            ex.allocated.fits_in(&ex.capacity()),
            "{e} over-allocated: {:?} of {:?}",
            ex.allocated,
            ex.capacity()
        );
        let mut expected = Resources::ZERO;
        for j in &ex.jobs {
            let jb = job(&store, *j).await;
            assert_eq!(jb.executor.as_ref(), Some(e));
            expected = expected.checked_add(&jb.spec.resources()).expect("sum");
            for g in &jb.gpu_ids {
                assert_eq!(ex.gpu_holders.get(g), Some(j), "holder of {g}");
            }
        }
        assert_eq!(
            ex.allocated, expected,
            "{e}: allocation equals its jobs' sum"
        );
        assert_eq!(ex.gpu_holders.len() as u32, ex.allocated.gpus);
        assigned_total = assigned_total.checked_add(&expected).expect("sum");
    }
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts[&JobState::Assigned], won.len() as u64);
    assert_eq!(counts[&JobState::Pending], (ids.len() - won.len()) as u64);
    assert!(!won.is_empty(), "something was placed");
    assert!(assigned_total.cpu_millis <= 5000);
}

/// `commit_assignments` is `commit_assignment` of each in turn: one result per assignment in
/// order, each checked against the effects of those before it (a second job for the same
/// room is refused, a job committed twice in one batch is refused the second time), a
/// refusal changing nothing, and the events queued in commit order.
pub async fn commit_assignments_apply_in_order(store: Arc<dyn JobStore>) {
    let small = register(&store, "small", 1000, 1024, &[]).await;
    let big = register(&store, "big", 8000, 8192, &["GPU-b0"]).await;
    let a = submit(&store, spec(800, 512)).await;
    let b = submit(&store, spec(800, 512)).await;
    let c = submit(&store, gpu_spec(500, 512, 1)).await;
    let batch = [
        assignment(a, &small, &[]),
        // No room left on `small` once `a` is there.
        assignment(b, &small, &[]),
        assignment(c, &big, &["GPU-b0"]),
        // Already assigned by the first element.
        assignment(a, &big, &[]),
        assignment(b, &big, &[]),
    ];
    let mut results = store.commit_assignments(&batch).await;
    assert_eq!(results.len(), batch.len(), "one result per assignment");
    let committed: Vec<Option<JobId>> = results
        .iter()
        .map(|r| r.as_ref().ok().map(|job| job.id))
        .collect();
    assert_eq!(committed, vec![Some(a), None, Some(c), None, Some(b)]);
    let twice = results.remove(3);
    let no_room = results.remove(1);
    assert_rejected(no_room, "no room after the first", |r| {
        matches!(
            r,
            Rejection::NoRoom {
                dimension: Dimension::Cpu
            }
        )
    });
    assert_rejected(twice, "committed twice", |r| {
        matches!(
            r,
            Rejection::JobNotPending {
                state: JobState::Assigned
            }
        )
    });
    for (id, exec) in [(a, &small), (b, &big), (c, &big)] {
        let stored = job(&store, id).await;
        assert_eq!(stored.state, JobState::Assigned);
        assert_eq!(stored.executor.as_ref(), Some(exec));
    }
    assert_eq!(
        executor(&store, &small).await.allocated,
        Resources::new(800, 512, 0)
    );
    assert_eq!(
        executor(&store, &big).await.allocated,
        Resources::new(1300, 1024, 1)
    );
    let mut order = Vec::new();
    while let Some(event) = store
        .next_event(&big, Duration::ZERO)
        .await
        .expect("next_event")
    {
        order.push(event.job_id());
    }
    assert_eq!(order, vec![c, b], "events in commit order");
    assert!(store.commit_assignments(&[]).await.is_empty());
}

/// `pending_for_placement` reads the oldest pending jobs with at least what placement
/// needs (a large spec may come as its placement view, without command, env and volumes),
/// and committing with such a view as the snapshot still hands the executor the whole job.
pub async fn pending_for_placement_reads_little_and_commits_whole(store: Arc<dyn JobStore>) {
    let exec = register(&store, "e1", 4000, 4096, &[]).await;
    let small = submit(&store, spec(100, 64)).await;
    let mut large_spec = spec(200, 128);
    large_spec.env = (0..64)
        .map(|i| (format!("VAR_{i}"), "v".repeat(1024)))
        .collect();
    large_spec.command = vec!["sh".into(), "-c".into(), "echo x".repeat(2000)];
    large_spec.eligible_regions = vec!["eu".into()];
    let large = submit(&store, large_spec.clone()).await;
    let running = submit(&store, spec(100, 64)).await;
    assign(&store, running, &exec, &[]).await;

    let views: Vec<crate::Job> = store
        .pending_for_placement(10)
        .await
        .expect("views")
        .into_iter()
        .map(|queued| queued.job)
        .collect();
    let full = store.pending_jobs(10).await.expect("pending");
    assert_eq!(
        views.iter().map(|j| j.id).collect::<Vec<_>>(),
        [small, large],
        "the oldest pending jobs, in order"
    );
    for (view, whole) in views.iter().zip(&full) {
        assert_eq!(view.spec.for_placement(), whole.spec.for_placement());
        assert!(view.spec == whole.spec || view.spec == whole.spec.for_placement());
        assert_eq!(
            (view.state, view.created_at, view.attempt, view.retry_at),
            (whole.state, whole.created_at, whole.attempt, whole.retry_at)
        );
    }
    assert!(
        views[1].spec.env.is_empty() && views[1].spec.command.is_empty(),
        "a 64 KiB environment is not read by a scheduling pass"
    );
    assert_eq!(
        store.pending_for_placement(1).await.expect("views").len(),
        1
    );
    assert!(store
        .pending_for_placement(0)
        .await
        .expect("views")
        .is_empty());

    let mut assignment = Assignment::new(large, exec.clone(), Vec::new());
    assignment.snapshot = Some(Arc::new(views[1].clone()));
    store.commit_assignment(&assignment).await.expect("commit");
    // The assignment of `running` came first.
    let mut delivered = None;
    while let Some(event) = store
        .next_event(&exec, Duration::ZERO)
        .await
        .expect("next_event")
    {
        if let ExecutorEvent::Assigned(job) = event {
            if job.id == large {
                delivered = Some(job);
            }
        }
    }
    let delivered = delivered.expect("the executor got the assignment");
    assert_eq!(
        delivered.spec, large_spec,
        "the executor gets the whole spec"
    );
    assert_eq!(delivered.state, JobState::Assigned);
    assert_eq!(delivered.attempt, 1);
    assert_eq!(job(&store, large).await.spec, large_spec);
}
