//! Why a job did not fit: counts of executors per constraint and per exhausted dimension.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::view::{ClusterView, Verdict};
use crate::resources::Dimension;
use crate::spec::JobSpec;

/// Executors set aside by a constraint before room was even looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filtered {
    /// Heartbeat expired.
    pub dead: usize,
    /// Not in an eligible region.
    pub region: usize,
    /// Not in an eligible datacenter.
    pub datacenter: usize,
    /// No GPU of the wanted model (or no GPU at all).
    pub gpu_model: usize,
}

/// Executors counted per dimension that was short.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exhausted {
    /// Short on CPU.
    pub cpu: usize,
    /// Short on memory.
    pub memory: usize,
    /// Short on GPUs.
    pub gpu: usize,
}

impl Exhausted {
    fn count(&mut self, dim: Dimension) {
        match dim {
            Dimension::Cpu => self.cpu += 1,
            Dimension::Memory => self.memory += 1,
            Dimension::Gpu => self.gpu += 1,
        }
    }

    /// The sum over the dimensions.
    pub fn total(&self) -> usize {
        self.cpu + self.memory + self.gpu
    }
}

/// Why no executor took a job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// Executors in the view.
    pub executors: usize,
    /// Set aside by constraints.
    pub filtered: Filtered,
    /// Whose total capacity is too small: they never fit the job.
    pub too_small: Exhausted,
    /// Big enough, but with no room left now.
    pub exhausted: Exhausted,
    /// True when at least one executor is alive and none of the live ones could ever run
    /// the job, even empty: it is infeasible, not waiting for room.
    pub infeasible: bool,
    /// True when the job asks for GPUs and no live executor has any GPU.
    pub no_gpus_anywhere: bool,
}

impl Explanation {
    /// Explains why `spec` fits nowhere in `cluster` (counts every executor).
    pub fn of(spec: &JobSpec, cluster: &ClusterView) -> Self {
        let mut why = Explanation {
            executors: cluster.len(),
            ..Self::default()
        };
        let mut could_ever_fit = 0;
        let mut live = 0;
        let mut live_with_gpus = 0;
        for exec in cluster.executors() {
            if exec.alive {
                live += 1;
                if !exec.gpus.is_empty() {
                    live_with_gpus += 1;
                }
            }
            match exec.verdict(spec) {
                Verdict::Fits => could_ever_fit += 1,
                Verdict::Dead => why.filtered.dead += 1,
                Verdict::Region => why.filtered.region += 1,
                Verdict::Datacenter => why.filtered.datacenter += 1,
                Verdict::GpuModel => why.filtered.gpu_model += 1,
                Verdict::TooSmall(dim) => why.too_small.count(dim),
                Verdict::Exhausted(dim) => {
                    could_ever_fit += 1;
                    why.exhausted.count(dim);
                }
            }
        }
        why.infeasible = live > 0 && could_ever_fit == 0;
        why.no_gpus_anywhere = spec.gpu.count > 0 && live > 0 && live_with_gpus == 0;
        why
    }

    /// What kept the job from being placed, for metrics.
    pub fn failure(&self) -> PlacementFailure {
        let f = &self.filtered;
        if self.executors == f.dead {
            PlacementFailure::NoExecutors
        } else if self.infeasible {
            PlacementFailure::Infeasible
        } else if self.exhausted.total() == 0 {
            PlacementFailure::Constraints
        } else if self.exhausted.gpu >= self.exhausted.cpu.max(self.exhausted.memory) {
            PlacementFailure::Gpu
        } else if self.exhausted.memory >= self.exhausted.cpu {
            PlacementFailure::Memory
        } else {
            PlacementFailure::Cpu
        }
    }
}

/// Why a placement failed, as counted in `dwr_placement_failures_total{reason}` and
/// `GET /stats`: the main reason of an [`Explanation`], or a commit the store refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlacementFailure {
    /// Live executors had too little free CPU (the most common shortage).
    Cpu,
    /// Too little free memory.
    Memory,
    /// Too few free GPUs.
    Gpu,
    /// No live executor met the job's regions, datacenters or GPU model.
    Constraints,
    /// No live executor at all.
    NoExecutors,
    /// No live executor could ever run it, even empty.
    Infeasible,
    /// The store refused the commit: the scheduler's view was stale.
    Rejected,
}

impl PlacementFailure {
    /// Every reason, in the order metrics list them.
    pub const ALL: [PlacementFailure; 7] = [
        PlacementFailure::Cpu,
        PlacementFailure::Memory,
        PlacementFailure::Gpu,
        PlacementFailure::Constraints,
        PlacementFailure::NoExecutors,
        PlacementFailure::Infeasible,
        PlacementFailure::Rejected,
    ];

    /// The reason's name in metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PlacementFailure::Cpu => "cpu",
            PlacementFailure::Memory => "memory",
            PlacementFailure::Gpu => "gpu",
            PlacementFailure::Constraints => "constraints",
            PlacementFailure::NoExecutors => "no_executors",
            PlacementFailure::Infeasible => "infeasible",
            PlacementFailure::Rejected => "rejected",
        }
    }
}

impl fmt::Display for PlacementFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self.executors - self.filtered.dead;
        if self.executors == 0 {
            return f.write_str("waiting for an executor: none registered");
        }
        if live == 0 {
            return write!(
                f,
                "waiting for an executor: all {} registered executors are lost (no heartbeat)",
                self.executors
            );
        }
        if self.no_gpus_anywhere {
            return write!(
                f,
                "infeasible: no executor has GPUs ({live} live executors)"
            );
        }
        f.write_str(if self.infeasible {
            "infeasible: no live executor can ever run this job"
        } else {
            "waiting for room"
        })?;
        write!(f, " ({} executors", self.executors)?;
        let mut parts = Vec::new();
        let fl = &self.filtered;
        for (n, what) in [
            (fl.dead, "lost"),
            (fl.region, "not in an eligible region"),
            (fl.datacenter, "not in an eligible datacenter"),
            (fl.gpu_model, "without a GPU of the wanted model"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        for (ex, what) in [(&self.too_small, "too small"), (&self.exhausted, "full")] {
            for (n, dim) in [(ex.cpu, "cpu"), (ex.memory, "memory"), (ex.gpu, "gpu")] {
                if n > 0 {
                    parts.push(format!("{n} {what} on {dim}"));
                }
            }
        }
        for part in parts {
            write!(f, "; {part}")?;
        }
        f.write_str(")")
    }
}
