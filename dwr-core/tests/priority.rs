//! Priorities (issue 14, part 1), as properties over the in-memory store: a scheduling pass
//! places pending jobs in queue order, so a job of higher priority that fits is never left
//! behind one of lower priority, and no job is skipped while there is room for it.

mod common;

use std::sync::Arc;

use dwr_core::placement::FirstFit;
use dwr_core::{
    ExecutorId, ExecutorRegistration, InMemoryJobStore, JobId, JobSpec, JobState, JobStore,
    Scheduler, SchedulerConfig,
};
use proptest::prelude::*;

/// Submits jobs of (priority, cpu millis) in this order and registers executors of these
/// CPU capacities, then runs one pass; returns the store and the ids in submission order.
async fn one_pass(jobs: &[(u8, u64)], executors: &[u64]) -> (Arc<InMemoryJobStore>, Vec<JobId>) {
    let store = Arc::new(InMemoryJobStore::new());
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(FirstFit),
        SchedulerConfig::default(),
    );
    let mut ids = Vec::new();
    for &(priority, cpu) in jobs {
        let spec = JobSpec {
            priority,
            ..JobSpec::new("img", vec!["true".into()], cpu, 64)
        };
        ids.push(scheduler.submit(spec).await.unwrap().id);
    }
    for (i, &cpu) in executors.iter().enumerate() {
        let id = ExecutorId::new(format!("e{i}"));
        let reg = ExecutorRegistration::new(id, "10.0.0.1", cpu, 1 << 20, vec![]);
        store.register_executor(&reg).await.unwrap();
    }
    scheduler.run_pass().await.unwrap();
    (store, ids)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Jobs of one size on a cluster with room for `room` of them: the `room` placed are
    /// the first by priority, then arrival, whatever order they came in.
    #[test]
    fn the_highest_priorities_get_the_room(
        priorities in proptest::collection::vec(0u8..=100, 1..40),
        room in 0usize..40,
    ) {
        let jobs: Vec<(u8, u64)> = priorities.iter().map(|&p| (p, 1000)).collect();
        let placed: Vec<bool> = common::runtime().block_on(async {
            let (store, ids) = one_pass(&jobs, &[room as u64 * 1000]).await;
            let mut placed = Vec::new();
            for id in ids {
                placed.push(store.job(id).await.unwrap().state == JobState::Assigned);
            }
            placed
        });
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(priorities[i]));
        for (rank, &i) in order.iter().enumerate() {
            prop_assert_eq!(placed[i], rank < room, "job {} of priority {}", i, priorities[i]);
        }
    }

    /// Jobs of mixed sizes on several executors: a job still pending after the pass fits on
    /// no executor. A pass in queue order skips a job only when no executor has room for
    /// it, and room only shrinks during the pass, so a job left pending has none at the
    /// end either; and no executor is over-allocated.
    #[test]
    fn no_job_is_left_behind_while_there_is_room(
        jobs in proptest::collection::vec((0u8..=100, 1u64..=4), 1..30),
        executors in proptest::collection::vec(1u64..=6, 1..4),
    ) {
        let jobs: Vec<(u8, u64)> = jobs.into_iter().map(|(p, c)| (p, c * 1000)).collect();
        let executors: Vec<u64> = executors.into_iter().map(|c| c * 1000).collect();
        common::runtime().block_on(async {
            let (store, ids) = one_pass(&jobs, &executors).await;
            let executors = store.executors().await.unwrap();
            for e in &executors {
                common::assert_not_over_allocated(e);
            }
            let most_free = executors.iter().map(|e| e.free().cpu_millis).max().unwrap();
            for (id, &(priority, cpu)) in ids.iter().zip(&jobs) {
                if store.job(*id).await.unwrap().state == JobState::Pending {
                    assert!(cpu > most_free, "job {id} (priority {priority}, {cpu}m) pending with {most_free}m free");
                }
            }
        });
    }
}
