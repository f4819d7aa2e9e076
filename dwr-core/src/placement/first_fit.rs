//! First fit: the first executor, in id order, that can take the job — found through the
//! view's free-capacity index ([`FirstFit`]) or by scanning every executor
//! ([`LinearFirstFit`], the reference the index is checked and benchmarked against).

use super::view::{ClusterView, ExecutorView, Verdict};
use super::{Choice, Explanation, Placement};
use crate::spec::JobSpec;

/// Places a job on the first executor (ordered by id) with room for it: deterministic, and
/// packs jobs onto few executors, leaving others free for big jobs.
///
/// The view's index skips every subtree of executors without the free CPU, memory, GPU
/// count or GPU model the job needs (a GPU job searches the GPU machines alone), so a
/// decision touches O(log n) nodes plus one per executor that has the room but is filtered
/// out by region or datacenter. It chooses exactly what [`LinearFirstFit`] chooses.
#[derive(Clone, Copy, Debug, Default)]
pub struct FirstFit;

impl Placement for FirstFit {
    fn name(&self) -> &'static str {
        "first-fit"
    }

    fn place(&self, spec: &JobSpec, cluster: &ClusterView) -> Result<Choice, Explanation> {
        let executors = cluster.executors();
        cluster
            .candidates(spec, 0)
            .find_map(|index| choose(index, &executors[index], spec))
            .ok_or_else(|| Explanation::of(spec, cluster))
    }
}

/// First fit by a scan of every executor in id order: O(n) per decision. The reference
/// [`FirstFit`] must agree with, kept for the property tests and the benchmarks.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinearFirstFit;

impl Placement for LinearFirstFit {
    fn name(&self) -> &'static str {
        "first-fit-linear"
    }

    fn place(&self, spec: &JobSpec, cluster: &ClusterView) -> Result<Choice, Explanation> {
        cluster
            .executors()
            .iter()
            .enumerate()
            .find_map(|(index, exec)| choose(index, exec, spec))
            .ok_or_else(|| Explanation::of(spec, cluster))
    }
}

/// The choice of executor `index` for `spec`, when it takes the job now.
fn choose(index: usize, exec: &ExecutorView, spec: &JobSpec) -> Option<Choice> {
    if exec.verdict(spec) != Verdict::Fits {
        return None;
    }
    exec.pick_gpus(spec.gpu.model.as_ref(), spec.gpu.count)
        .map(|gpu_ids| Choice {
            executor: index,
            gpu_ids,
        })
}
