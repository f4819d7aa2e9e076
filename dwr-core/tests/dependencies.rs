//! Dependencies (issue 15, part 1) as properties over the in-memory store and the
//! scheduler: over random dependency graphs, types and outcomes, submitted in random
//! rounds, a job never starts before its dependencies are met, and every job ends as an
//! oracle that reads the graph in order says: it ran with its own outcome when its
//! dependencies were met, or it failed once, never having run, when they could not be.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use dwr_core::placement::FirstFit;
use dwr_core::{
    Dependency, ExecutorId, ExecutorRegistration, InMemoryJobStore, Job, JobId, JobSpec, JobState,
    JobStore, Outcome, Scheduler, SchedulerConfig,
};
use proptest::prelude::*;

/// One job of the graph: the earlier jobs it depends on (indexes), how, and whether it
/// succeeds when it runs.
#[derive(Clone, Debug)]
struct Node {
    deps: Vec<usize>,
    kind: Dependency,
    succeeds: bool,
}

fn graph() -> impl Strategy<Value = Vec<Node>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
            prop::sample::select(Dependency::ALL.to_vec()),
            prop::bool::weighted(0.7),
        ),
        1..30,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (picks, kind, succeeds))| {
                let mut deps: Vec<usize> = if i == 0 {
                    Vec::new()
                } else {
                    picks.iter().map(|p| p.index(i)).collect()
                };
                deps.sort_unstable();
                deps.dedup();
                Node {
                    deps,
                    kind,
                    succeeds,
                }
            })
            .collect()
    })
}

/// What the graph says of each job: `Some(succeeded)` when it runs, `None` when it never
/// can.
fn oracle(nodes: &[Node]) -> Vec<Option<bool>> {
    let mut ends: Vec<Option<bool>> = Vec::new();
    for node in nodes {
        let ok: Vec<bool> = node.deps.iter().map(|&d| ends[d] == Some(true)).collect();
        let runs = match node.kind {
            Dependency::AfterOk => ok.iter().all(|&o| o),
            Dependency::AfterAny => true,
            Dependency::AfterNotOk => node.deps.is_empty() || ok.iter().any(|&o| !o),
        };
        ends.push(runs.then_some(node.succeeds));
    }
    ends
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn dependents_start_only_when_met_and_fail_once_when_never(
        nodes in graph(),
        rounds in 1usize..5,
    ) {
        let expected = oracle(&nodes);
        let ended = common::runtime().block_on(async {
            let store = Arc::new(InMemoryJobStore::new());
            let scheduler =
                Scheduler::new(store.clone(), Arc::new(FirstFit), SchedulerConfig::default());
            let exec = ExecutorId::new("e1");
            let reg = ExecutorRegistration::new(exec.clone(), "10.0.0.1", 1 << 20, 1 << 20, vec![]);
            store.register_executor(&reg).await.unwrap();
            let mut ids: Vec<JobId> = Vec::new();
            let per_round = nodes.len().div_ceil(rounds);
            let index_of = |ids: &[JobId], id: JobId| ids.iter().position(|&x| x == id).unwrap();
            let mut submitted = 0;
            for _ in 0..200 {
                // Submit the next round of jobs, then let the cluster work.
                for node in nodes.iter().skip(submitted).take(per_round) {
                    let spec = JobSpec {
                        depends_on: node.deps.iter().map(|&d| ids[d]).collect(),
                        dependency: node.kind,
                        ..JobSpec::new("img", vec!["true".into()], 1, 1)
                    };
                    ids.push(scheduler.submit(spec).await.unwrap().id);
                }
                submitted = ids.len();
                let report = scheduler.run_pass().await.unwrap();
                let states: HashMap<JobId, JobState> =
                    common::jobs_in(&store, None).await.iter().map(|j| (j.id, j.state)).collect();
                for placed in &report.assignments {
                    let i = index_of(&ids, placed.job);
                    let node = &nodes[i];
                    let dep_states: Vec<JobState> = node.deps.iter().map(|&d| states[&ids[d]]).collect();
                    assert!(dep_states.iter().all(|s| s.is_terminal()), "job {i} started before {dep_states:?} ended");
                    let ok: Vec<bool> = dep_states.iter().map(|&s| s == JobState::Succeeded).collect();
                    let met = match node.kind {
                        Dependency::AfterOk => ok.iter().all(|&o| o),
                        Dependency::AfterAny => true,
                        Dependency::AfterNotOk => node.deps.is_empty() || ok.iter().any(|&o| !o),
                    };
                    assert!(met, "job {i} ({}) started with dependencies {dep_states:?}", node.kind);
                    store.mark_running(placed.job, &exec, 1).await.unwrap();
                    let outcome = Outcome::exited(if node.succeeds { 0 } else { 1 }, false);
                    store.finish(placed.job, &outcome, Some(1)).await.unwrap();
                }
                if submitted == nodes.len() && report.assignments.is_empty() {
                    break;
                }
            }
            let jobs = common::jobs_in(&store, None).await;
            let by_id: HashMap<JobId, Job> = jobs.into_iter().map(|j| (j.id, j)).collect();
            ids.iter().map(|id| by_id[id].clone()).collect::<Vec<_>>()
        });
        prop_assert_eq!(ended.len(), nodes.len());
        for (i, (job, want)) in ended.iter().zip(&expected).enumerate() {
            match want {
                Some(true) => prop_assert_eq!(job.state, JobState::Succeeded, "job {}", i),
                Some(false) => {
                    prop_assert_eq!(job.state, JobState::Failed, "job {}", i);
                    prop_assert_eq!(job.attempt, 1, "job {} ran once", i);
                }
                None => {
                    prop_assert_eq!(job.state, JobState::Failed, "job {} can never run", i);
                    prop_assert_eq!(job.attempt, 0, "job {} never ran", i);
                    let reason = job.reason.clone().unwrap_or_default();
                    prop_assert!(reason.contains("can no longer be met"), "job {}: {}", i, reason);
                }
            }
        }
    }
}
