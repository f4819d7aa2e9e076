//! Queues (issue 14, part 3), as properties over the in-memory store: quotas are never
//! exceeded, whatever the jobs and the churn; a higher-priority job that fits is never left
//! behind a lower one of its queue; two queues of weights 1 and 3 saturating a cluster end
//! with dominant shares 1:3.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use dwr_core::placement::FirstFit;
use dwr_core::queues::{dominant_share, QueueConfig, Queues, Quota};
use dwr_core::{
    ExecutorId, ExecutorRegistration, InMemoryJobStore, JobId, JobSpec, JobState, JobStore,
    Outcome, Resources, Scheduler, SchedulerConfig,
};
use proptest::prelude::*;

/// A scheduler over a fresh store with `queues` and executors of these (cores, GiB, GPUs).
async fn cluster(
    queues: Queues,
    executors: &[(u64, u64, u32)],
) -> (Arc<InMemoryJobStore>, Scheduler) {
    let store = Arc::new(InMemoryJobStore::new());
    let config = SchedulerConfig {
        queues,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(store.clone(), Arc::new(FirstFit), config);
    for (i, &(cores, gib, gpus)) in executors.iter().enumerate() {
        let devices = (0..gpus)
            .map(|g| dwr_core::GpuDevice {
                index: g,
                uuid: format!("GPU-{i}-{g}"),
                model: "H200".into(),
                memory_mib: 1 << 17,
            })
            .collect();
        let id = ExecutorId::new(format!("e{i}"));
        let reg = ExecutorRegistration::new(id, "10.0.0.1", cores * 1000, gib * 1024, devices);
        store.register_executor(&reg).await.unwrap();
    }
    (store, scheduler)
}

fn job(queue: &str, priority: u8, cpu_millis: u64, memory_mib: u64, gpus: u32) -> JobSpec {
    let mut spec =
        JobSpec::new("img", vec!["true".into()], cpu_millis, memory_mib).with_queue(queue);
    spec.priority = priority;
    if gpus > 0 {
        spec = spec.with_gpus(gpus, dwr_core::GpuModel::Any);
    }
    spec
}

/// Ends the assigned jobs picked by `pick` (each is marked running, then succeeds).
async fn finish_some(store: &InMemoryJobStore, mut pick: impl FnMut(usize) -> bool) {
    for (i, job) in common::jobs_in(store, Some(JobState::Assigned))
        .await
        .iter()
        .enumerate()
    {
        if pick(i) {
            let exec = job.executor.clone().unwrap();
            store
                .mark_running(job.id, &exec, job.attempt)
                .await
                .unwrap();
            store
                .finish(job.id, &Outcome::exited(0, false), Some(job.attempt))
                .await
                .unwrap();
        }
    }
}

/// What the jobs of each queue hold, counted from the jobs themselves.
async fn held_by_queue(store: &InMemoryJobStore) -> BTreeMap<String, Resources> {
    let mut held: BTreeMap<String, Resources> = BTreeMap::new();
    for state in [JobState::Assigned, JobState::Running] {
        for job in common::jobs_in(store, Some(state)).await {
            let sum = held.entry(job.spec.queue.clone()).or_default();
            *sum = sum.checked_add(&job.spec.resources()).unwrap();
        }
    }
    held
}

fn quota_strategy() -> impl Strategy<Value = Quota> {
    (
        proptest::option::of(1u64..=12),
        proptest::option::of(1u64..=24),
        proptest::option::of(0u32..=4),
    )
        .prop_map(|(cores, gib, gpus)| Quota {
            cpu_millis: cores.map(|c| c * 1000),
            memory_mib: gib.map(|g| g * 1024),
            gpus,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Three queues with random quotas, random jobs of random sizes and priorities, passes
    /// with random finishes between them: after every pass, what each queue's jobs hold is
    /// within its quota (counted from the jobs, and as the store reports it), and a job
    /// held back by its quota says so.
    #[test]
    fn quotas_are_never_exceeded(
        quotas in proptest::collection::vec(quota_strategy(), 3),
        jobs in proptest::collection::vec((0usize..3, 0u8..=100, 1u64..=4, 1u64..=6, 0u32..=2), 1..60),
        executors in proptest::collection::vec((2u64..=16, 4u64..=32, 0u32..=4), 1..5),
        finish_mask in any::<u64>(),
    ) {
        let names = ["a", "b", "c"];
        let queues = Queues::new(names.iter().zip(&quotas).map(|(name, quota)| QueueConfig {
            quota: *quota,
            ..QueueConfig::unlimited(*name)
        }))
        .unwrap();
        common::runtime().block_on(async {
            let (store, scheduler) = cluster(queues.clone(), &executors).await;
            let mut ids: Vec<JobId> = Vec::new();
            for &(q, priority, cores, gib, gpus) in &jobs {
                let spec = job(names[q], priority, cores * 1000, gib * 1024, gpus);
                ids.push(scheduler.submit(spec).await.unwrap().id);
            }
            for round in 0..4 {
                scheduler.run_pass().await.unwrap();
                let held = held_by_queue(&store).await;
                let reported = store.queue_usage().await.unwrap();
                for name in names {
                    let quota = queues.get(name).unwrap().quota;
                    let counted = held.get(name).copied().unwrap_or_default();
                    assert_eq!(
                        counted,
                        reported.get(name).map(|u| u.held).unwrap_or_default(),
                        "round {round}: the store's count of {name}"
                    );
                    assert_eq!(quota.exceeded_by(&counted), None, "round {round}: {name} {counted:?} over {quota:?}");
                }
                for id in &ids {
                    if let Some(reason) = scheduler.pending_reason(*id) {
                        let job = store.job(*id).await.unwrap();
                        let quota = queues.get(&job.spec.queue).unwrap().quota;
                        let held = held.get(&job.spec.queue).copied().unwrap_or_default();
                        let over = quota.exceeded_by(&held.checked_add(&job.spec.resources()).unwrap());
                        if reason.to_string().contains("quota") {
                            assert!(over.is_some(), "{id}: {reason} but it fits the quota");
                        }
                    }
                }
                finish_some(&store, |i| finish_mask >> ((i + round * 16) % 64) & 1 == 1).await;
            }
            for e in store.executors().await.unwrap() {
                common::assert_not_over_allocated(&e);
            }
        });
    }

    /// Two queues of one-core jobs of mixed priorities: after a pass, a pending job of a
    /// queue never has a higher priority than a placed job of the same queue that arrived
    /// later (all jobs are one size, so any room fits any of them).
    #[test]
    fn a_higher_priority_is_never_left_behind_in_its_queue(
        jobs in proptest::collection::vec((0usize..2, 0u8..=100), 1..50),
        cores in 1u64..40,
    ) {
        common::runtime().block_on(async {
            let queues = Queues::new(["a", "b"].map(QueueConfig::unlimited)).unwrap();
            let (store, scheduler) = cluster(queues, &[(cores, 64, 0)]).await;
            let mut ids = Vec::new();
            for &(q, priority) in &jobs {
                let spec = job(["a", "b"][q], priority, 1000, 64, 0);
                ids.push(scheduler.submit(spec).await.unwrap().id);
            }
            scheduler.run_pass().await.unwrap();
            let mut placed = Vec::new();
            for id in &ids {
                placed.push(store.job(*id).await.unwrap().state == JobState::Assigned);
            }
            for (i, &(qi, pi)) in jobs.iter().enumerate() {
                for (j, &(qj, pj)) in jobs.iter().enumerate() {
                    if qi == qj && !placed[i] && placed[j] {
                        assert!(pi <= pj, "job {i} (priority {pi}) pending behind job {j} (priority {pj}) of its queue");
                    }
                }
            }
        });
    }

    /// Two queues of weights 1 and 3 keep a cluster saturated (each has more one-core jobs
    /// waiting than the cluster holds, submitted interleaved): after rounds of passes with
    /// random finishes between them, their dominant shares stand 1:3 within 5%.
    #[test]
    fn weighted_shares_converge_to_the_weights(
        executors in 10usize..=20,
        cores in 16u64..=32,
        seed in any::<u64>(),
        rounds in 5usize..=15,
    ) {
        let queues = Queues::new([
            QueueConfig { weight: 1, ..QueueConfig::unlimited("light") },
            QueueConfig { weight: 3, ..QueueConfig::unlimited("heavy") },
        ])
        .unwrap();
        let slots = executors as u64 * cores;
        let (light, heavy) = common::runtime().block_on(async {
            let specs = vec![(cores, 4 * cores, 0); executors];
            let (store, scheduler) = cluster(queues, &specs).await;
            let total = Resources::new(slots * 1000, 4 * slots * 1024, 0);
            let mut rng = seed;
            let mut next = move || {
                // xorshift: a fixed, seeded sequence of finishes.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let top_up = |store: Arc<InMemoryJobStore>, scheduler: Scheduler| async move {
                let usage = store.queue_usage().await.unwrap();
                for queue in ["light", "heavy"] {
                    let pending = usage.get(queue).map_or(0, |u| u.pending);
                    for _ in pending..slots + 10 {
                        scheduler.submit(job(queue, 50, 1000, 1024, 0)).await.unwrap();
                    }
                }
            };
            for _ in 0..rounds {
                top_up(store.clone(), scheduler.clone()).await;
                scheduler.run_pass().await.unwrap();
                finish_some(&store, |_| next() % 3 == 0).await;
            }
            top_up(store.clone(), scheduler.clone()).await;
            scheduler.run_pass().await.unwrap();
            let held = held_by_queue(&store).await;
            let share = |q: &str| dominant_share(&held.get(q).copied().unwrap_or_default(), &total);
            (share("light"), share("heavy"))
        });
        prop_assert!(light > 0.0, "light got nothing");
        let ratio = heavy / light;
        prop_assert!((ratio - 3.0).abs() <= 0.15, "shares {light:.4} : {heavy:.4} = 1 : {ratio:.3}");
        prop_assert!(light + heavy > 0.999, "the cluster is saturated: {light} + {heavy}");
    }
}
