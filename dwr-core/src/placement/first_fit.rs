//! First fit: the first executor, in id order, that can take the job.

use super::view::{ClusterView, Verdict};
use super::{Choice, Explanation, Placement};
use crate::spec::JobSpec;

/// Places a job on the first executor (ordered by id) with room for it: deterministic, and
/// packs jobs onto few executors, leaving others free for big jobs.
#[derive(Clone, Copy, Debug, Default)]
pub struct FirstFit;

impl Placement for FirstFit {
    fn name(&self) -> &'static str {
        "first-fit"
    }

    fn place(&self, spec: &JobSpec, cluster: &ClusterView) -> Result<Choice, Explanation> {
        cluster
            .executors()
            .iter()
            .enumerate()
            .filter(|(_, exec)| exec.verdict(spec) == Verdict::Fits)
            .find_map(|(index, exec)| {
                exec.pick_gpus(spec.gpu.model.as_ref(), spec.gpu.count)
                    .map(|gpu_ids| Choice {
                        executor: index,
                        gpu_ids,
                    })
            })
            .ok_or_else(|| Explanation::of(spec, cluster))
    }
}
