//! A pass commits its placements together: when the store refuses some of them (another
//! scheduler took the room after the pass read the cluster), the others still land, the
//! refused executor is left out for the rest of the pass, and its jobs stay pending with a
//! reason and are placed by the next pass.

mod common;

use std::sync::Arc;

use dwr_core::fake::{FaultyStore, Op};
use dwr_core::placement::FirstFit;
use dwr_core::{
    Assignment, ExecutorId, ExecutorRegistration, InMemoryJobStore, Job, JobId, JobSpec, JobState,
    JobStore, Scheduler, SchedulerConfig, Timestamp,
};

fn spec(cpu: u64) -> JobSpec {
    JobSpec::new("img", vec!["true".into()], cpu, 64)
}

/// The in-memory store behind a [`FaultyStore`] holding these executors of `cpu`
/// millicores, and a first-fit scheduler over it. With `thief`, just before the first batch
/// of commits another "scheduler" fills the named executor with that job.
async fn cluster(
    thief: Option<(Job, ExecutorId)>,
    executors: &[&ExecutorId],
    cpu: u64,
) -> (Arc<FaultyStore>, Scheduler) {
    let inner: Arc<dyn JobStore> = Arc::new(InMemoryJobStore::new());
    let store = Arc::new(FaultyStore::new(inner.clone()));
    if let Some((job, executor)) = thief {
        store.before_next(Op::CommitAssignments, move || {
            Box::pin(async move {
                let id = job.id;
                inner.submit(job).await.unwrap();
                let steal = Assignment::new(id, executor, Vec::new());
                inner.commit_assignment(&steal).await.unwrap();
            })
        });
    }
    for id in executors {
        let reg = ExecutorRegistration::new((*id).clone(), "10.0.0.1", cpu, cpu, Vec::new());
        store.register_executor(&reg).await.unwrap();
    }
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(FirstFit),
        SchedulerConfig::default(),
    );
    (store, scheduler)
}

#[tokio::test]
async fn refused_commits_leave_the_rest_of_the_batch_placed() {
    let a = ExecutorId::new("a");
    let b = ExecutorId::new("b");
    let thief = Job::new(JobId::new(), spec(4_000), Timestamp::now());
    let (store, scheduler) = cluster(Some((thief, a.clone())), &[&a, &b], 4_000).await;
    // Six jobs of 1 CPU: first fit puts four on `a` and two on `b`.
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(scheduler.submit(spec(1_000)).await.unwrap().id);
    }

    let report = scheduler.run_pass().await.unwrap();
    assert_eq!(store.commit_batches(), vec![6], "one batch of six commits");
    assert_eq!(report.rejected, 4, "{report:?}");
    let placed: Vec<(JobId, ExecutorId)> = report
        .assignments
        .iter()
        .map(|p| (p.job, p.executor.clone()))
        .collect();
    assert_eq!(placed, vec![(ids[4], b.clone()), (ids[5], b.clone())]);
    assert_eq!(report.pending, 4);
    for id in &ids[..4] {
        assert_eq!(store.job(*id).await.unwrap().state, JobState::Pending);
        let why = scheduler.pending_reason(*id).expect("a reason");
        assert!(!why.to_string().is_empty());
    }

    // The next pass sees the fresh cluster: `a` is full, `b` has room for two more.
    let report = scheduler.run_pass().await.unwrap();
    assert_eq!(report.rejected, 0);
    let placed: Vec<JobId> = report.assignments.iter().map(|p| p.job).collect();
    assert_eq!(placed, vec![ids[0], ids[1]]);
    assert!(report.assignments.iter().all(|p| p.executor == b));
    for e in store.executors().await.unwrap() {
        common::assert_not_over_allocated(&e);
    }
}

#[tokio::test]
async fn a_long_queue_is_committed_in_bounded_batches() {
    let (store, scheduler) = cluster(None, &[&ExecutorId::new("big")], 1_000_000).await;
    let n = dwr_core::scheduler::COMMIT_BATCH * 2 + 7;
    for _ in 0..n {
        scheduler.submit(spec(10)).await.unwrap();
    }
    let report = scheduler.run_pass().await.unwrap();
    assert_eq!(report.assignments.len(), n);
    let batch = dwr_core::scheduler::COMMIT_BATCH;
    assert_eq!(store.commit_batches(), vec![batch, batch, 7]);
}
