//! Arrays (issue 15, part 2) as a property over the in-memory store and the scheduler:
//! whatever the arrays, their parallelism, the cluster and the order tasks end in, no
//! array ever has more tasks assigned or running than its parallelism, and every task runs
//! exactly once.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use dwr_core::placement::FirstFit;
use dwr_core::{
    ExecutorId, ExecutorRegistration, InMemoryJobStore, JobId, JobSpec, JobState, JobStore,
    Outcome, Scheduler, SchedulerConfig,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn an_array_never_exceeds_its_parallelism(
        arrays in proptest::collection::vec((1u32..40, proptest::option::of(1u32..6)), 1..4),
        cores in proptest::collection::vec(1u64..16, 1..4),
        end_mask in any::<u64>(),
    ) {
        common::runtime().block_on(async {
            let store = Arc::new(InMemoryJobStore::new());
            let scheduler =
                Scheduler::new(store.clone(), Arc::new(FirstFit), SchedulerConfig::default());
            for (i, &c) in cores.iter().enumerate() {
                let id = ExecutorId::new(format!("e{i}"));
                let reg = ExecutorRegistration::new(id, "10.0.0.1", c * 1000, 1 << 20, vec![]);
                store.register_executor(&reg).await.unwrap();
            }
            let spec = JobSpec::new("img", vec!["true".into()], 1000, 64);
            let mut limits: HashMap<JobId, Option<u32>> = HashMap::new();
            let mut total = 0;
            for &(count, parallelism) in &arrays {
                let submitted = scheduler.submit_array(spec.clone(), count, parallelism, None).await.unwrap();
                let info = match submitted {
                    dwr_core::ArraySubmission::Created(info) => info,
                    other => panic!("{other:?}"),
                };
                limits.insert(info.id, parallelism);
                total += count as usize;
            }
            let mut step = 0u32;
            for _ in 0..500 {
                scheduler.run_pass().await.unwrap();
                let jobs = common::jobs_in(&store, None).await;
                let mut under_way: HashMap<JobId, u32> = HashMap::new();
                for job in jobs.iter().filter(|j| j.state.holds_resources()) {
                    *under_way.entry(job.array.unwrap().array_job_id).or_default() += 1;
                }
                for (array, n) in &under_way {
                    if let Some(p) = limits[array] {
                        assert!(*n <= p, "array {array}: {n} tasks under way, parallelism {p}");
                    }
                    assert_eq!(store.array(*array).await.unwrap().active, *n, "the store's count");
                }
                if jobs.iter().all(|j| j.state.is_terminal()) {
                    break;
                }
                // Some of the tasks under way end, in an order the mask picks.
                for job in jobs.iter().filter(|j| j.state == JobState::Assigned) {
                    step += 1;
                    if end_mask >> (step % 64) & 1 == 1 || step.is_multiple_of(7) {
                        let exec = job.executor.clone().unwrap();
                        store.mark_running(job.id, &exec, job.attempt).await.unwrap();
                        store.finish(job.id, &Outcome::exited(0, false), Some(job.attempt)).await.unwrap();
                    }
                }
            }
            let jobs = common::jobs_in(&store, None).await;
            assert_eq!(jobs.len(), total);
            for job in &jobs {
                assert_eq!((job.state, job.attempt), (JobState::Succeeded, 1), "{}", job.id);
            }
            for array in limits.keys() {
                let info = store.array(*array).await.unwrap();
                assert_eq!((info.done, info.active, info.not_ok), (info.count, 0, 0));
            }
        });
    }
}
