//! Spread: the least loaded executor that can take the job.

use super::view::{ClusterView, Verdict};
use super::{Choice, Explanation, Placement};
use crate::spec::JobSpec;

/// Places a job on the executor with the lowest load (the largest allocated fraction over
/// CPU, memory and GPUs), ties broken by id: balances load as the original system did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread;

impl Placement for Spread {
    fn name(&self) -> &'static str {
        "spread"
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
