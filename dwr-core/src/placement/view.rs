//! The view of the cluster that placement works on: each executor's free room, once per pass.

use super::index::{FreeIndex, Want};
use crate::executor::{Executor, GpuDevice};
use crate::ids::ExecutorId;
use crate::resources::{Dimension, Resources};
use crate::spec::{GpuModel, JobSpec};
use crate::time::Timestamp;

/// One executor as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorView {
    /// Its id.
    pub id: ExecutorId,
    /// Its IP.
    pub ip: String,
    /// Total capacity.
    pub capacity: Resources,
    /// Capacity minus allocations (and minus what this pass reserved).
    pub free: Resources,
    /// Every GPU device it has.
    pub gpus: Vec<GpuDevice>,
    /// The devices not held by any job, in index order.
    pub free_gpus: Vec<GpuDevice>,
    /// Its region.
    pub region: Option<String>,
    /// Its datacenter.
    pub datacenter: Option<String>,
    /// Whether its heartbeat is within the TTL.
    pub alive: bool,
}

/// Why an executor cannot take a job, as [`ExecutorView::verdict`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It takes the job now.
    Fits,
    /// Its heartbeat expired.
    Dead,
    /// Not in an eligible region.
    Region,
    /// Not in an eligible datacenter.
    Datacenter,
    /// No GPU of the wanted model.
    GpuModel,
    /// Its total capacity is too small on this dimension: it never fits.
    TooSmall(Dimension),
    /// It has no room left now on this dimension.
    Exhausted(Dimension),
}

impl ExecutorView {
    /// The view of a stored executor at `now` (the store's clock), alive while its own
    /// lease holds.
    pub fn from_executor(executor: &Executor, now: Timestamp) -> Self {
        let reg = &executor.registration;
        Self {
            id: reg.id.clone(),
            ip: reg.ip.clone(),
            capacity: reg.capacity,
            free: executor.free(),
            gpus: reg.gpus.clone(),
            free_gpus: executor.free_gpus(),
            region: reg.region.clone(),
            datacenter: reg.datacenter.clone(),
            alive: executor.is_alive(now),
        }
    }

    /// Fraction of its capacity allocated, the largest over CPU, memory and GPUs (0..=1).
    pub fn load(&self) -> f64 {
        fn frac(used: u64, total: u64) -> f64 {
            if total == 0 {
                0.0
            } else {
                used as f64 / total as f64
            }
        }
        let used = self.capacity.saturating_sub(&self.free);
        frac(used.cpu_millis, self.capacity.cpu_millis)
            .max(frac(used.memory_mib, self.capacity.memory_mib))
            .max(frac(u64::from(used.gpus), u64::from(self.capacity.gpus)))
    }

    /// The first `count` free devices that satisfy `model`, by index.
    pub fn pick_gpus(&self, model: Option<&GpuModel>, count: u32) -> Option<Vec<String>> {
        if count == 0 {
            return Some(Vec::new());
        }
        let mut matcher = Matcher::new(model?);
        let picked: Vec<String> = self
            .free_gpus
            .iter()
            .filter(|g| matcher.matches(&g.model))
            .take(count as usize)
            .map(|g| g.uuid.clone())
            .collect();
        (picked.len() == count as usize).then_some(picked)
    }

    /// Whether and why this executor can take `spec` now.
    pub(crate) fn verdict(&self, spec: &JobSpec) -> Verdict {
        if !self.alive {
            return Verdict::Dead;
        }
        if !eligible(&spec.eligible_regions, self.region.as_deref()) {
            return Verdict::Region;
        }
        if !eligible(&spec.eligible_datacenters, self.datacenter.as_deref()) {
            return Verdict::Datacenter;
        }
        let want = spec.resources();
        let (total_gpus, free_gpus) = match (&spec.gpu.model, want.gpus) {
            (_, 0) => (0, 0),
            (None, _) => return Verdict::GpuModel,
            (Some(model), _) => {
                let mut matcher = Matcher::new(model);
                let total = self
                    .gpus
                    .iter()
                    .filter(|g| matcher.matches(&g.model))
                    .count();
                if total == 0 {
                    return Verdict::GpuModel;
                }
                let free = self
                    .free_gpus
                    .iter()
                    .filter(|g| matcher.matches(&g.model))
                    .count();
                (total as u32, free as u32)
            }
        };
        let total = Resources {
            gpus: total_gpus,
            ..self.capacity
        };
        if let Some(dim) = want.first_short_dimension(&total) {
            return Verdict::TooSmall(dim);
        }
        let free = Resources {
            gpus: free_gpus,
            ..self.free
        };
        match want.first_short_dimension(&free) {
            Some(dim) => Verdict::Exhausted(dim),
            None => Verdict::Fits,
        }
    }
}

/// [`GpuModel::matches`] without its two allocations when both names are ASCII (every model
/// name a driver reports is): this runs per device per candidate on the placement hot path.
/// Non-ASCII names take the exact Unicode path, so the answer is always that of `matches`.
pub(crate) fn model_matches(rule: &GpuModel, model: &str) -> bool {
    match rule {
        GpuModel::Any => true,
        GpuModel::Named(want) if want.is_ascii() && model.is_ascii() => {
            let (hay, needle) = (model.as_bytes(), want.as_bytes());
            needle.is_empty()
                || hay
                    .windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(needle))
        }
        GpuModel::Named(_) => rule.matches(model),
    }
}

/// [`model_matches`] over a machine's devices, which are mostly of one model: the answer
/// for the last model name asked about is kept, so a run of devices of one model costs one
/// match and a comparison of names each.
struct Matcher<'a> {
    rule: &'a GpuModel,
    last: Option<(&'a str, bool)>,
}

impl<'a> Matcher<'a> {
    fn new(rule: &'a GpuModel) -> Self {
        Self { rule, last: None }
    }

    fn matches(&mut self, model: &'a str) -> bool {
        match self.last {
            Some((last, answer)) if last == model => answer,
            _ => {
                let answer = model_matches(self.rule, model);
                self.last = Some((model, answer));
                answer
            }
        }
    }
}

fn eligible(allowed: &[String], mine: Option<&str>) -> bool {
    allowed.is_empty() || mine.is_some_and(|m| allowed.iter().any(|a| a == m))
}

/// The executors of one scheduling pass, in a deterministic order (by id), with an index of
/// their free room kept in step by [`reserve`](Self::reserve) and
/// [`set_aside`](Self::set_aside).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    executors: Vec<ExecutorView>,
    /// Per-subtree maxima of free room over `executors`; changes only with them.
    index: FreeIndex,
}

impl ClusterView {
    /// A view of these executors, sorted by id (O(n log n), once per pass).
    pub fn new(mut executors: Vec<ExecutorView>) -> Self {
        executors.sort_by(|a, b| a.id.cmp(&b.id));
        let index = FreeIndex::build(&executors);
        Self { executors, index }
    }

    /// The view of stored executors at `now`.
    pub fn from_executors(executors: &[Executor], now: Timestamp) -> Self {
        Self::new(
            executors
                .iter()
                .map(|e| ExecutorView::from_executor(e, now))
                .collect(),
        )
    }

    /// The executors, by id.
    pub fn executors(&self) -> &[ExecutorView] {
        &self.executors
    }

    /// The number of executors.
    pub fn len(&self) -> usize {
        self.executors.len()
    }

    /// True when there are no executors.
    pub fn is_empty(&self) -> bool {
        self.executors.is_empty()
    }

    /// How many are alive.
    pub fn alive(&self) -> usize {
        self.executors.iter().filter(|e| e.alive).count()
    }

    /// The indices of the executors, in view order, whose free CPU, memory and GPU count
    /// (of any model) could take `spec`, starting at `from`: a superset of those that fit
    /// (check each with the verdict), found through the index in O(log n) each. Dead
    /// executors are never candidates.
    pub fn candidates<'a>(
        &'a self,
        spec: &JobSpec,
        from: usize,
    ) -> impl Iterator<Item = usize> + 'a {
        let want = Want::of(spec, &self.index);
        let mut next = from;
        std::iter::from_fn(move || {
            let found = self.index.first_from(&self.executors, next, &want)?;
            next = found + 1;
            Some(found)
        })
    }

    /// The executor with the least `(load, index)` among the candidates for `spec` (as
    /// [`candidates`](Self::candidates) finds them) for which `load_if_fits` returns a load (it checks
    /// the verdict and returns [`ExecutorView::load`]), found through the index.
    pub(crate) fn least_loaded(
        &self,
        spec: &JobSpec,
        load_if_fits: impl FnMut(usize) -> Option<f64>,
    ) -> Option<usize> {
        self.index
            .least_loaded(&self.executors, &Want::of(spec, &self.index), load_if_fits)
    }

    /// Treats executor `index` as full for the rest of the pass (its data proved stale).
    pub fn set_aside(&mut self, index: usize) {
        if let Some(exec) = self.executors.get_mut(index) {
            exec.free = Resources::ZERO;
            exec.free_gpus.clear();
            self.index.update(index, exec);
        }
    }

    /// Takes `resources` and the devices `gpu_ids` off executor `index`'s free room, so later
    /// decisions of the pass see them taken. False (and nothing changed) when they are not free.
    pub fn reserve(&mut self, index: usize, resources: &Resources, gpu_ids: &[String]) -> bool {
        let Some(exec) = self.executors.get_mut(index) else {
            return false;
        };
        let Some(free) = exec.free.checked_sub(resources) else {
            return false;
        };
        if !gpu_ids
            .iter()
            .all(|id| exec.free_gpus.iter().any(|g| &g.uuid == id))
        {
            return false;
        }
        exec.free = free;
        exec.free_gpus.retain(|g| !gpu_ids.contains(&g.uuid));
        self.index.update(index, exec);
        true
    }

    /// Whether the index agrees with the executors (for tests).
    #[cfg(test)]
    pub(crate) fn index_is_consistent(&self) -> bool {
        self.index.is_consistent_with(&self.executors)
    }
}
