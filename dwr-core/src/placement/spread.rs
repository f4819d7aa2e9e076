//! Spread: the least loaded executor that can take the job — found through the view's
//! free-capacity index ([`Spread`]) or by scanning every executor ([`LinearSpread`], the
//! reference the index is checked and benchmarked against).

use super::view::{ClusterView, Verdict};
use super::{Choice, Explanation, Placement};
use crate::spec::JobSpec;

/// Places a job on the executor with the lowest load (the largest allocated fraction over
/// CPU, memory and GPUs), ties broken by id: balances load as the original system did.
///
/// The view's index keeps each subtree's least load beside its free room, so a decision
/// visits the executors that could take the job in order of promise and stops at those
/// that cannot beat the best found (a GPU job searches the GPU machines alone). It chooses
/// exactly what [`LinearSpread`] chooses.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread;

impl Placement for Spread {
    fn name(&self) -> &'static str {
        "spread"
    }

    fn place(&self, spec: &JobSpec, cluster: &ClusterView) -> Result<Choice, Explanation> {
        let executors = cluster.executors();
        cluster
            .least_loaded(spec, |index| {
                let exec = &executors[index];
                (exec.verdict(spec) == Verdict::Fits).then(|| exec.load())
            })
            .and_then(|executor| {
                // A verdict of Fits counts enough free devices of the model: this picks.
                let exec = &executors[executor];
                let gpu_ids = exec.pick_gpus(spec.gpu.model.as_ref(), spec.gpu.count)?;
                Some(Choice { executor, gpu_ids })
            })
            .ok_or_else(|| Explanation::of(spec, cluster))
    }
}

/// Spread by a scan of every executor: O(n) per decision. The reference [`Spread`] must
/// agree with, kept for the property tests and the benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinearSpread;

impl Placement for LinearSpread {
    fn name(&self) -> &'static str {
        "spread-linear"
    }

    fn place(&self, spec: &JobSpec, cluster: &ClusterView) -> Result<Choice, Explanation> {
        let mut best: Option<(f64, Choice)> = None;
        for (index, exec) in cluster.executors().iter().enumerate() {
            if exec.verdict(spec) != Verdict::Fits {
                continue;
            }
            let load = exec.load();
            if best.as_ref().is_some_and(|(b, _)| *b <= load) {
                continue;
            }
            if let Some(gpu_ids) = exec.pick_gpus(spec.gpu.model.as_ref(), spec.gpu.count) {
                best = Some((
                    load,
                    Choice {
                        executor: index,
                        gpu_ids,
                    },
                ));
            }
        }
        best.map(|(_, choice)| choice)
            .ok_or_else(|| Explanation::of(spec, cluster))
    }
}
