//! Preemption: which running jobs a pending job that fits nowhere may evict.
//!
//! Nomad's rule: only jobs at least [`PREEMPTION_GAP`] points of priority lower, all from
//! one executor, the lowest priority first (the most recently started first among equals:
//! the least work lost), and on the executor that needs the fewest evictions. A job already
//! asked to stop for a preemption counts as room soon free, so that the passes while it
//! stops evict nothing more; room a preemptor of this pass waits for is claimed, so that
//! the next preemptor does not count on it too.

use std::collections::HashMap;

use crate::ids::{ExecutorId, JobId};
use crate::placement::model_matches;
use crate::placement::{ClusterView, ExecutorView, Verdict};
use crate::resources::Resources;
use crate::spec::JobSpec;
use crate::time::Timestamp;

/// A job preempts only jobs at least this many points of priority lower (Nomad's rule): a
/// job never evicts one of equal or higher priority.
pub const PREEMPTION_GAP: u8 = 10;

/// A job under way, as preemption sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UnderWay {
    pub id: JobId,
    pub priority: u8,
    pub need: Resources,
    pub gpu_ids: Vec<String>,
    pub started_at: Option<Timestamp>,
    /// Already asked to stop for a preemption.
    pub stopping: bool,
}

/// The jobs under way on each executor, and the room preemptors of this pass claimed.
#[derive(Debug, Default)]
pub(super) struct Victims {
    pub on: HashMap<ExecutorId, Vec<UnderWay>>,
    claimed: HashMap<ExecutorId, Resources>,
}

/// What a preemption does for one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// The executor.
    pub executor: ExecutorId,
    /// The jobs to ask to stop now (none: enough are stopping already).
    pub evict: Vec<JobId>,
    /// The jobs already stopping there.
    pub stopping: usize,
}

impl Victims {
    /// The preemption that makes room for `spec` with the fewest evictions, if any.
    pub(super) fn plan(&self, spec: &JobSpec, view: &ClusterView) -> Option<Plan> {
        let need = spec.resources();
        let mut best: Option<(usize, u8, Plan)> = None;
        for exec in view.executors() {
            if !matches!(exec.verdict(spec), Verdict::Exhausted(_)) {
                continue;
            }
            let jobs = self.on.get(&exec.id).map(Vec::as_slice).unwrap_or_default();
            let claimed = self.claimed.get(&exec.id).copied().unwrap_or_default();
            let gpus = |job: &UnderWay| matching_gpus(exec, spec, &job.gpu_ids);
            let mut room = exec.free;
            let mut gpu_room = matching_free_gpus(exec, spec);
            let mut stopping = 0;
            for job in jobs.iter().filter(|j| j.stopping) {
                room = room.checked_add(&job.need).unwrap_or(room);
                gpu_room += gpus(job);
                stopping += 1;
            }
            room = room.saturating_sub(&claimed);
            gpu_room = gpu_room.saturating_sub(claimed.gpus);
            let mut candidates: Vec<&UnderWay> = jobs
                .iter()
                .filter(|j| {
                    !j.stopping && j.priority.saturating_add(PREEMPTION_GAP) <= spec.priority
                })
                .collect();
            // Lowest priority first; among equals the latest started (least work lost).
            candidates.sort_by_key(|j| (j.priority, std::cmp::Reverse(j.started_at)));
            let mut evict = Vec::new();
            let mut highest = 0;
            let fits = |room: &Resources, gpu_room: u32| {
                need.cpu_millis <= room.cpu_millis
                    && need.memory_mib <= room.memory_mib
                    && need.gpus <= gpu_room
            };
            let mut candidates = candidates.into_iter();
            while !fits(&room, gpu_room) {
                let Some(job) = candidates.next() else { break };
                room = room.checked_add(&job.need).unwrap_or(room);
                gpu_room += gpus(job);
                highest = highest.max(job.priority);
                evict.push(job.id);
            }
            if !fits(&room, gpu_room) {
                continue;
            }
            let better = best
                .as_ref()
                .is_none_or(|(n, top, _)| (evict.len(), highest) < (*n, *top));
            if better {
                let plan = Plan {
                    executor: exec.id.clone(),
                    evict,
                    stopping,
                };
                best = Some((plan.evict.len(), highest, plan));
            }
        }
        best.map(|(_, _, plan)| plan)
    }

    /// Records `plan` as done for a job needing `need`: its evictions are stopping, and the
    /// room is claimed for the rest of the pass.
    pub(super) fn carried_out(&mut self, plan: &Plan, need: &Resources) {
        for job in self.on.entry(plan.executor.clone()).or_default() {
            if plan.evict.contains(&job.id) {
                job.stopping = true;
            }
        }
        let claimed = self.claimed.entry(plan.executor.clone()).or_default();
        *claimed = claimed.checked_add(need).unwrap_or(*claimed);
    }
}

/// The free devices of `exec` of the model `spec` wants.
fn matching_free_gpus(exec: &ExecutorView, spec: &JobSpec) -> u32 {
    match &spec.gpu.model {
        Some(model) if spec.gpu.count > 0 => exec
            .free_gpus
            .iter()
            .filter(|g| model_matches(model, &g.model))
            .count() as u32,
        _ => 0,
    }
}

/// How many of the devices `uuids` of `exec` are of the model `spec` wants.
fn matching_gpus(exec: &ExecutorView, spec: &JobSpec, uuids: &[String]) -> u32 {
    match &spec.gpu.model {
        Some(model) if spec.gpu.count > 0 => exec
            .gpus
            .iter()
            .filter(|g| uuids.contains(&g.uuid) && model_matches(model, &g.model))
            .count() as u32,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::{Executor, ExecutorRegistration};

    fn view(executors: &[(&str, u64, u64)]) -> ClusterView {
        let now = Timestamp(1_000);
        let all: Vec<Executor> = executors
            .iter()
            .map(|&(id, cpu, allocated)| {
                let reg = ExecutorRegistration::new(
                    ExecutorId::new(id),
                    "10.0.0.1",
                    cpu,
                    1 << 20,
                    vec![],
                );
                let mut e = Executor::new(reg, now);
                e.allocated = Resources::new(allocated, 0, 0);
                e
            })
            .collect();
        ClusterView::from_executors(&all, now)
    }

    fn under_way(priority: u8, cpu: u64, started: i64) -> UnderWay {
        UnderWay {
            id: JobId::new(),
            priority,
            need: Resources::new(cpu, 0, 0),
            gpu_ids: Vec::new(),
            started_at: Some(Timestamp(started)),
            stopping: false,
        }
    }

    fn wants(priority: u8, cpu: u64) -> JobSpec {
        JobSpec {
            priority,
            ..JobSpec::new("img", vec!["true".into()], cpu, 1)
        }
    }

    #[test]
    fn the_lowest_priorities_go_first_and_never_one_within_the_gap() {
        let cluster = view(&[("a", 4000, 4000)]);
        let (low, mid, near) = (
            under_way(10, 1000, 1),
            under_way(20, 2000, 2),
            under_way(45, 1000, 3),
        );
        let mut victims = Victims::default();
        victims.on.insert(
            ExecutorId::new("a"),
            vec![near.clone(), mid.clone(), low.clone()],
        );
        let plan = victims.plan(&wants(50, 3000), &cluster).unwrap();
        assert_eq!(plan.evict, [low.id, mid.id], "45 is within 10 points of 50");
        assert!(
            victims.plan(&wants(50, 4000), &cluster).is_none(),
            "45 cannot be evicted"
        );
        assert!(victims.plan(&wants(29, 1000), &cluster).unwrap().evict == [low.id]);
        assert!(
            victims.plan(&wants(19, 1000), &cluster).is_none(),
            "nothing 10 below 19"
        );
    }

    #[test]
    fn the_executor_needing_the_fewest_evictions_is_chosen() {
        let cluster = view(&[("a", 4000, 4000), ("b", 4000, 4000)]);
        let mut victims = Victims::default();
        let small: Vec<UnderWay> = (0..4).map(|i| under_way(0, 1000, i)).collect();
        let big = under_way(5, 4000, 0);
        victims.on.insert(ExecutorId::new("a"), small);
        victims.on.insert(ExecutorId::new("b"), vec![big.clone()]);
        let plan = victims.plan(&wants(50, 3000), &cluster).unwrap();
        assert_eq!(
            (plan.executor.as_str(), plan.evict.as_slice()),
            ("b", [big.id].as_slice())
        );
    }

    #[test]
    fn jobs_already_stopping_count_as_room_once() {
        let cluster = view(&[("a", 4000, 4000)]);
        let mut victims = Victims::default();
        let (first, second) = (under_way(0, 2000, 1), under_way(0, 2000, 2));
        victims
            .on
            .insert(ExecutorId::new("a"), vec![first.clone(), second.clone()]);
        let job = wants(50, 2000);
        let plan = victims.plan(&job, &cluster).unwrap();
        assert_eq!(plan.evict, [second.id], "the latest started");
        victims.carried_out(&plan, &job.resources());
        // A second job of the same kind does not count on the room the first claimed.
        let plan = victims.plan(&job, &cluster).unwrap();
        assert_eq!(
            (plan.evict.as_slice(), plan.stopping),
            ([first.id].as_slice(), 1)
        );
        victims.carried_out(&plan, &job.resources());
        assert!(victims.plan(&job, &cluster).is_none());
        // The next pass (nothing claimed): both are stopping, no eviction needed.
        victims.claimed.clear();
        let plan = victims.plan(&job, &cluster).unwrap();
        assert_eq!((plan.evict.len(), plan.stopping), (0, 2));
    }
}
