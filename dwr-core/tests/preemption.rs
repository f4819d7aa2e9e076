//! Preemption (issue 14, part 2) over the in-memory store, with the executors played
//! through the store (a preempted job is stopped by reporting its attempt's end): a job of
//! higher priority that fits nowhere evicts jobs at least 10 points lower from one
//! executor, the evicted go back to pending and run later; nothing of equal or higher
//! priority is ever evicted, and no job is lost.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use dwr_core::placement::FirstFit;
use dwr_core::queues::{QueueConfig, Queues};
use dwr_core::{
    AbortCause, ExecutorId, ExecutorRegistration, InMemoryJobStore, JobId, JobSpec, JobState,
    JobStore, Outcome, Scheduler, SchedulerConfig,
};
use proptest::prelude::*;

/// A scheduler with the queues `batch` (no preemption) and `urgent` (preemption on) over
/// executors of these CPU capacities (millicores).
async fn cluster(executors: &[u64]) -> (Arc<InMemoryJobStore>, Scheduler) {
    let store = Arc::new(InMemoryJobStore::new());
    let queues = Queues::new([
        QueueConfig::unlimited("batch"),
        QueueConfig {
            preemption: Some(true),
            ..QueueConfig::unlimited("urgent")
        },
    ])
    .unwrap();
    let config = SchedulerConfig {
        queues,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(store.clone(), Arc::new(FirstFit), config);
    for (i, &cpu) in executors.iter().enumerate() {
        let reg = ExecutorRegistration::new(
            ExecutorId::new(format!("e{i}")),
            "10.0.0.1",
            cpu,
            1 << 20,
            vec![],
        );
        store.register_executor(&reg).await.unwrap();
    }
    (store, scheduler)
}

fn job(queue: &str, priority: u8, cpu_millis: u64) -> JobSpec {
    JobSpec {
        priority,
        ..JobSpec::new("img", vec!["true".into()], cpu_millis, 64).with_queue(queue)
    }
}

/// Plays the executors: assigned jobs start; jobs asked to stop for a preemption stop.
async fn executors_act(store: &InMemoryJobStore) {
    for job in common::jobs_in(store, None).await {
        let (Some(exec), attempt) = (job.executor.clone(), job.attempt) else {
            continue;
        };
        if job.abort_requested == Some(AbortCause::Preempted) && job.state.holds_resources() {
            let stopped = AbortCause::Preempted.outcome().with_exit_code(Some(143));
            store.finish(job.id, &stopped, Some(attempt)).await.unwrap();
        } else if job.state == JobState::Assigned {
            store.mark_running(job.id, &exec, attempt).await.unwrap();
        }
    }
}

async fn state(store: &InMemoryJobStore, id: JobId) -> JobState {
    store.job(id).await.unwrap().state
}

#[tokio::test]
async fn a_high_priority_job_evicts_the_lowest_and_they_run_later() {
    let (store, scheduler) = cluster(&[4000]).await;
    let mut low = Vec::new();
    for priority in [20, 10, 10, 30] {
        low.push(
            scheduler
                .submit(job("batch", priority, 1000))
                .await
                .unwrap()
                .id,
        );
        scheduler.run_pass().await.unwrap();
        executors_act(&store).await;
    }
    let urgent = scheduler.submit(job("urgent", 60, 2000)).await.unwrap().id;
    let report = scheduler.run_pass().await.unwrap();
    // The two of priority 10, the later started first; not the 20 nor the 30.
    let mut evicted = report.preempted.clone();
    evicted.sort();
    let mut tens = vec![low[1], low[2]];
    tens.sort();
    assert_eq!(evicted, tens);
    let why = scheduler.pending_reason(urgent).unwrap().to_string();
    assert_eq!(why, "preempting 2 jobs of lower priority on executor e0");
    // While they stop, a pass evicts nothing more and says what it waits for.
    let report = scheduler.run_pass().await.unwrap();
    assert!(report.preempted.is_empty());
    let why = scheduler.pending_reason(urgent).unwrap().to_string();
    assert_eq!(why, "waiting for 2 preempted jobs to stop on executor e0");

    executors_act(&store).await;
    for id in &tens {
        let back = store.job(*id).await.unwrap();
        assert_eq!(
            back.state,
            JobState::Pending,
            "back in the queue, not failed"
        );
        assert_eq!(back.reason, Some(format!("preempted by {urgent}")));
    }
    scheduler.run_pass().await.unwrap();
    assert_eq!(state(&store, urgent).await, JobState::Assigned);
    assert_eq!(
        state(&store, low[0]).await,
        JobState::Running,
        "priority 20 kept"
    );
    assert_eq!(
        state(&store, low[3]).await,
        JobState::Running,
        "priority 30 kept"
    );

    // Once the urgent job is done, the evicted run again and succeed.
    executors_act(&store).await;
    store
        .finish(urgent, &Outcome::exited(0, false), Some(1))
        .await
        .unwrap();
    scheduler.run_pass().await.unwrap();
    executors_act(&store).await;
    for id in &tens {
        let job = store.job(*id).await.unwrap();
        assert_eq!(
            (job.state, job.attempt, job.preemptions),
            (JobState::Running, 2, 1)
        );
        store
            .finish(*id, &Outcome::exited(0, false), Some(2))
            .await
            .unwrap();
        assert_eq!(state(&store, *id).await, JobState::Succeeded);
    }
}

#[tokio::test]
async fn without_preemption_the_queue_waits() {
    let (store, scheduler) = cluster(&[2000]).await;
    let low = scheduler.submit(job("batch", 0, 2000)).await.unwrap().id;
    scheduler.run_pass().await.unwrap();
    executors_act(&store).await;
    // `batch` does not preempt, whatever the priority.
    let high = scheduler.submit(job("batch", 100, 1000)).await.unwrap().id;
    let report = scheduler.run_pass().await.unwrap();
    assert!(report.preempted.is_empty());
    assert_eq!(state(&store, low).await, JobState::Running);
    let why = scheduler.pending_reason(high).unwrap().to_string();
    assert!(why.starts_with("waiting for room"), "{why}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random jobs of random priorities and sizes in both queues over random executors, in
    /// rounds of submit, pass, executors acting and random finishes: a job evicted was at
    /// least 10 points below the job that evicted it, no job fails or goes missing, and once
    /// the submissions stop every job ends up succeeded.
    #[test]
    fn preemption_never_evicts_equal_or_higher_and_never_loses_a_job(
        rounds in proptest::collection::vec(
            proptest::collection::vec((any::<bool>(), 0u8..=100, 1u64..=4), 0..6), 1..8),
        executors in proptest::collection::vec(2u64..=8, 1..4),
        finish_mask in any::<u64>(),
    ) {
        common::runtime().block_on(async {
            let capacities: Vec<u64> = executors.iter().map(|c| c * 1000).collect();
            let biggest = *capacities.iter().max().unwrap();
            let (store, scheduler) = cluster(&capacities).await;
            let mut priority_of: HashMap<JobId, u8> = HashMap::new();
            let mut evictions = 0;
            let mut step = 0u32;
            let mut finish = |store: Arc<InMemoryJobStore>| {
                step += 1;
                let bit = finish_mask >> (step % 64) & 1 == 1;
                async move {
                    for job in common::jobs_in(&store, None).await {
                        if bit && job.state == JobState::Running && job.abort_requested.is_none() {
                            store.finish(job.id, &Outcome::exited(0, false), Some(job.attempt)).await.unwrap();
                        }
                    }
                }
            };
            for round in &rounds {
                for &(urgent, priority, cores) in round {
                    let queue = if urgent { "urgent" } else { "batch" };
                    let cpu = (cores * 1000).min(biggest);
                    let id = scheduler.submit(job(queue, priority, cpu)).await.unwrap().id;
                    priority_of.insert(id, priority);
                }
                let report = scheduler.run_pass().await.unwrap();
                for victim in &report.preempted {
                    let by = store.job(*victim).await.unwrap().reason.unwrap();
                    let by: JobId = by.strip_prefix("preempted by ").unwrap().parse().unwrap();
                    let (pv, pb) = (priority_of[victim], priority_of[&by]);
                    assert!(pv + 10 <= pb, "job of priority {pv} evicted for one of {pb}");
                    evictions += 1;
                }
                executors_act(&store).await;
                finish(store.clone()).await;
                for e in store.executors().await.unwrap() {
                    common::assert_not_over_allocated(&e);
                }
            }
            // Drain: passes, executors and finishes until every job is done.
            for _ in 0..200 {
                scheduler.run_pass().await.unwrap();
                executors_act(&store).await;
                for job in common::jobs_in(&store, None).await {
                    if job.state == JobState::Running && job.abort_requested.is_none() {
                        store.finish(job.id, &Outcome::exited(0, false), Some(job.attempt)).await.unwrap();
                    }
                }
                if common::jobs_in(&store, None).await.iter().all(|j| j.state == JobState::Succeeded) {
                    break;
                }
            }
            let jobs = common::jobs_in(&store, None).await;
            assert_eq!(jobs.len(), priority_of.len(), "no job lost");
            for job in &jobs {
                assert_eq!(job.state, JobState::Succeeded, "{} ({:?})", job.id, job.reason);
                assert_eq!(job.attempt, job.preemptions + 1, "{}: every extra attempt is a preemption", job.id);
            }
            let _ = evictions;
        });
    }
}
