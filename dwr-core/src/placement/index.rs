//! The free-capacity index of a [`ClusterView`](super::ClusterView): a segment tree over the
//! executors, in view order, holding per-subtree maxima of free CPU, memory and GPU count
//! and the models of the free GPUs (and, once spread needs it, a tree of the least load;
//! once a GPU job asks, a tree over the GPU machines alone, with its own tree of the least
//! load under spread).
//!
//! First fit asks it for the leftmost executor whose free room *could* take a job, so a
//! decision touches O(log n) nodes instead of every executor; spread asks for the least
//! loaded such executor, a branch and bound that skips every subtree whose least load cannot
//! beat the best found. The leaf is the only place where a fit is decided, by the full
//! verdict (liveness, region, datacenter, GPU model): the index only prunes, never decides,
//! so it can only make placement faster, never different.
//!
//! Plain per-dimension maxima prune badly on a busy cluster: executors full on CPU with memory
//! left sit next to executors full on memory with CPU left, and every subtree holding one of
//! each looks big enough for everything. So memory is kept as a staircase: for each of a
//! fixed ladder of CPU amounts ([`CPU_STEPS`]), the most free memory among the executors with
//! at least that much free CPU. A job asking for `c` millicores and `m` MiB looks at the step
//! just at or below `c`: exact when `c` is on the ladder (the round amounts jobs ask for),
//! and only executors with CPU between that step and `c` can still make a subtree pass in vain.

use std::sync::OnceLock;

use super::view::{model_matches, ExecutorView};
use crate::spec::JobSpec;

/// The ladder of CPU amounts (millicores) at which the staircase of free memory is kept:
/// round requests (100m, 250m, 1, 1.5, 2, 3, 4, … cores) are exact, others are rounded down
/// to the step below (at most a factor of 2 lower). The first step is 0: all live executors.
const CPU_STEPS: [u64; 26] = [
    0, 100, 125, 200, 250, 375, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 6_000, 8_000, 12_000,
    16_000, 24_000, 32_000, 48_000, 64_000, 96_000, 128_000, 256_000, 512_000, 1_024_000,
];

/// Free room of one executor (a leaf) or a summary of a subtree (a node): the most free CPU,
/// GPUs and memory (per CPU step) of any of its executors, and the models of their free
/// GPUs (so that a job asking for one model passes over the machines of the others). Dead
/// executors and the padding leaves hold [`Room::NONE`], which takes nothing, not even a job
/// asking for nothing.
///
/// A node is one cache line: amounts are kept in 16 and 32 bits, rounded so that a summary
/// can only say "maybe" where an executor has the room (CPU and GPUs saturate, memory is
/// rounded up to within 1/1024, models share bits past the sixteenth). The leaf's full
/// verdict decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Room {
    /// Most free CPU millicores (saturating at `u32::MAX`).
    cpu_millis: u32,
    /// Most free GPU devices, of any model (the model is checked at the leaf).
    gpus: u16,
    /// `memory_at[j]`: the most free memory (as [`memory_code`] + 1) among the live
    /// executors with at least `CPU_STEPS[j]` free millicores; 0 when there is none.
    memory_at: [u16; CPU_STEPS.len()],
    /// The models of the free GPUs: bit `i` for the view's model `i` ([`model_bit`]).
    gpu_models: u16,
}

impl Default for Room {
    fn default() -> Self {
        Self::NONE
    }
}

impl Room {
    /// No executor: covers nothing, loads nothing.
    pub(crate) const NONE: Self = Self {
        cpu_millis: 0,
        gpus: 0,
        memory_at: [0; CPU_STEPS.len()],
        gpu_models: 0,
    };

    /// The room an executor offers: its free resources when alive, nothing when dead.
    /// `models` names the bits of the GPU models; it should hold every model `exec` has
    /// (a model it lacks sets every bit).
    fn of(exec: &ExecutorView, models: &[String]) -> Self {
        if !exec.alive {
            return Self::NONE;
        }
        let cpu = exec.free.cpu_millis;
        let memory = memory_code(exec.free.memory_mib) + 1;
        let mut memory_at = [0; CPU_STEPS.len()];
        for (slot, step) in memory_at.iter_mut().zip(CPU_STEPS) {
            if cpu < step {
                break;
            }
            *slot = memory;
        }
        let mut room = Self {
            cpu_millis: saturate(cpu),
            gpus: u16::try_from(exec.free_gpus.len()).unwrap_or(u16::MAX),
            memory_at,
            ..Self::NONE
        };
        let mut last: Option<&str> = None;
        for gpu in &exec.free_gpus {
            // A machine's devices are mostly of one model: look each model up once.
            if last != Some(gpu.model.as_str()) {
                let position = models.iter().position(|m| *m == gpu.model);
                // Never None when `models` holds every model of `exec`; all bits if not.
                room.gpu_models |= position.map_or(u16::MAX, model_bit);
                last = Some(&gpu.model);
            }
        }
        room
    }

    /// This room in the tree of GPU holders: nothing without a free GPU.
    fn of_gpu_holder(self) -> Self {
        if self.gpus == 0 {
            Self::NONE
        } else {
            self
        }
    }

    fn merge(&self, other: &Self) -> Self {
        let mut memory_at = self.memory_at;
        for (mine, theirs) in memory_at.iter_mut().zip(&other.memory_at) {
            *mine = (*mine).max(*theirs);
        }
        Self {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            gpus: self.gpus.max(other.gpus),
            memory_at,
            gpu_models: self.gpu_models | other.gpu_models,
        }
    }

    /// `self != other`, as one pass of XORs the compiler vectorizes (the derived `==` on
    /// the array calls `memcmp`, a tenth of a decision's time at 10,000 executors).
    #[inline]
    fn differs_from(&self, other: &Self) -> bool {
        let mut diff = (self.cpu_millis ^ other.cpu_millis)
            | u32::from(self.gpus ^ other.gpus)
            | u32::from(self.gpu_models ^ other.gpu_models);
        for (mine, theirs) in self.memory_at.iter().zip(&other.memory_at) {
            diff |= u32::from(mine ^ theirs);
        }
        diff != 0
    }

    /// True when this room (or some executor of the subtree, as far as the summary tells)
    /// has at least what `want` asks on every dimension.
    #[inline]
    fn covers(&self, want: &Want) -> bool {
        self.memory_at[want.step] > want.memory
            && self.cpu_millis >= want.cpu_millis
            && self.gpus >= want.gpus
            && (want.gpus == 0 || self.gpu_models & want.gpu_models != 0)
    }
}

/// `min(n, u32::MAX)`: comparing saturated amounts never says "less" where the real ones
/// are not.
fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The bit of the view's GPU model at `position` in its list: one each for the first
/// fifteen, the last shared by the rest.
fn model_bit(position: usize) -> u16 {
    1 << position.min(15)
}

/// A monotonic 16-bit code of an amount of MiB, rounded up: the amount itself below 2,048,
/// above that an exponent and 11 significant bits (within 1/1,024). For `a <= b`,
/// `memory_code(a) <= memory_code(b)`, so a summary of rounded-up codes never hides room.
fn memory_code(mib: u64) -> u16 {
    let bits = u64::BITS - mib.leading_zeros();
    if bits <= 11 {
        // Lossless: below 2,048.
        return mib as u16;
    }
    let exponent = u64::from(bits - 11);
    // In 1,024..=2,048; 2,048 codes the same amount as the next exponent's 1,024.
    let mantissa = mib.div_ceil(1 << exponent);
    // Lossless: at most 53 × 1,024 + 2,048 = 56,320.
    (exponent * 1024 + mantissa) as u16
}

/// The bits of the largest `f32` at or below `load` (non-negative).
fn load_bits_down(load: f64) -> u32 {
    let mut f = load as f32;
    if f64::from(f) > load {
        f = f.next_down();
    }
    f.max(0.0).to_bits()
}

/// What a job needs, in the index's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Want {
    cpu_millis: u32,
    gpus: u16,
    /// The highest step of [`CPU_STEPS`] at or below the CPU asked for.
    step: usize,
    /// The code of the memory asked for: a room covers it when its stored code (one more
    /// than the code of its memory) is greater.
    memory: u16,
    /// The bits of the view's models that the job's GPU model matches (read only when GPUs
    /// are asked for; none when it names no model, which nothing matches).
    gpu_models: u16,
}

impl Want {
    /// What `spec` needs, the GPU models in the terms of `index`.
    pub(crate) fn of(spec: &JobSpec, index: &FreeIndex) -> Self {
        // CPU_STEPS[0] is 0, so at least one step is at or below any request.
        let step = CPU_STEPS.partition_point(|&s| s <= spec.cpu_millis) - 1;
        let gpus = u16::try_from(spec.gpu.count).unwrap_or(u16::MAX);
        let mut gpu_models = 0;
        if let (Some(rule), 1..) = (&spec.gpu.model, gpus) {
            for (position, model) in index.models.iter().enumerate() {
                if model_matches(rule, model) {
                    gpu_models |= model_bit(position);
                }
            }
        }
        Self {
            cpu_millis: saturate(spec.cpu_millis),
            gpus,
            step,
            memory: memory_code(spec.memory_mib),
            gpu_models,
        }
    }
}

/// A max segment tree over [`Room`]s.
///
/// Stored as an implicit binary tree: node 1 is the root, node `k` has children `2k` and
/// `2k + 1`, and the leaves are `width..2 * width` (`width` a power of two, at least the
/// number of leaves used; padding leaves hold nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tree {
    /// Number of leaves used.
    len: usize,
    /// Number of leaf slots: a power of two, at least `len` (and at least 1 once built).
    width: usize,
    /// The tree; empty when no leaf is used.
    nodes: Vec<Room>,
}

impl Tree {
    /// The tree over `rooms` (`len` of them), in O(len).
    fn build(len: usize, rooms: impl Iterator<Item = Room>) -> Self {
        if len == 0 {
            return Self::default();
        }
        let width = len.next_power_of_two();
        let mut nodes = vec![Room::default(); 2 * width];
        for (slot, room) in nodes[width..].iter_mut().zip(rooms) {
            *slot = room;
        }
        for k in (1..width).rev() {
            nodes[k] = nodes[2 * k].merge(&nodes[2 * k + 1]);
        }
        Self { len, width, nodes }
    }

    /// Sets leaf `index` to `room` and refreshes the summaries above it, in O(log n). Stops
    /// climbing as soon as a node's summary does not change.
    fn update(&mut self, index: usize, room: Room) {
        if index >= self.len {
            return;
        }
        let mut node = self.width + index;
        self.nodes[node] = room;
        while node > 1 {
            node /= 2;
            let merged = self.nodes[2 * node].merge(&self.nodes[2 * node + 1]);
            if !merged.differs_from(&self.nodes[node]) {
                break;
            }
            self.nodes[node] = merged;
        }
    }

    /// The leftmost leaf at or after `from` whose room covers `want` on every dimension.
    ///
    /// A depth-first search, left to right, that skips every subtree whose maxima do not
    /// cover `want`. The maxima are per dimension, so a subtree may pass (its CPU from one
    /// executor, its memory from another) and still hold no candidate: the search then backs
    /// out of it and goes on to its right. O(log n) when such dead ends are few.
    fn first_from(&self, from: usize, want: &Want) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        // Start at the largest subtree whose first leaf is `from` (the root for 0, where
        // most searches start): climbing from the leaf would check every level twice.
        let mut node = self.width + from;
        while node.is_multiple_of(2) && node > 1 {
            node /= 2;
        }
        loop {
            // Move right until a subtree that may hold a candidate.
            while !self.nodes[node].covers(want) {
                node = next_to_the_right(node)?;
            }
            // Descend to its leftmost covering leaf, or to a dead end.
            while node < self.width {
                let left = 2 * node;
                if self.nodes[left].covers(want) {
                    node = left;
                } else if self.nodes[left + 1].covers(want) {
                    node = left + 1;
                } else {
                    break;
                }
            }
            if node >= self.width {
                // A covering leaf; padding leaves hold nothing and never cover.
                return Some(node - self.width);
            }
            node = next_to_the_right(node)?;
        }
    }

    /// Checks that every node holds the maxima of its children and the leaves hold `rooms`
    /// (for tests).
    #[cfg(test)]
    fn is_consistent_with(&self, rooms: &[Room]) -> bool {
        if rooms.is_empty() {
            return self.nodes.is_empty() && self.len == 0;
        }
        self.len == rooms.len()
            && self.nodes[self.width..]
                .iter()
                .enumerate()
                .all(|(i, room)| *room == rooms.get(i).copied().unwrap_or_default())
            && (1..self.width)
                .all(|k| self.nodes[k] == self.nodes[2 * k].merge(&self.nodes[2 * k + 1]))
    }
}

/// The subtree just to the right of `node`'s: up past every subtree whose right edge `node`
/// is on, then to the right sibling. `None` past the root's right edge.
#[inline]
fn next_to_the_right(mut node: usize) -> Option<usize> {
    while node % 2 == 1 {
        node /= 2;
    }
    // Node 1 (the root) is odd, so climbing past it gives 0: nothing is to the right.
    (node != 0).then_some(node + 1)
}

/// The free-capacity index of a view's executors: a [`Tree`] over all of them, in view
/// order, and, built by the first GPU job that asks, a second one over the machines with
/// GPUs alone.
///
/// Why the second: on a busy cluster first fit fills GPU machines with CPU jobs too, and
/// their GPUs stay free with little CPU or memory beside them. In the tree of all executors,
/// every subtree holding such a machine and any executor with CPU left looks big enough for
/// a GPU job, so its search backs out of dead end after dead end (a thousand nodes a
/// decision at 100,000 executors). In the tree of GPU holders, where a machine without a
/// free GPU holds nothing, the staircase of memory per CPU step is among GPU holders only.
/// Spread meets the same dead ends in its search for the least loaded (a GPU decision took
/// 93 µs at 100,000 executors, 5 µs in the GPU machines' tree), so it searches that tree
/// too, with the least loads of its own subtrees.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FreeIndex {
    /// Every executor, in view order.
    all: Tree,
    /// The GPU models of the executors, each once, in the order first met: the positions
    /// are the bits of [`Room::gpu_models`].
    models: Vec<String>,
    /// The least load of each subtree of `all`, for spread.
    loads: Loads,
    /// The tree of the machines with GPUs, for GPU jobs.
    gpu: GpuTree,
    /// The least load of each subtree of the GPU machines' tree, for GPU jobs under spread.
    gpu_loads: Loads,
}

/// The executors with GPUs (any, free or not) in view order, and the [`Tree`] over them
/// where only those with a free GPU hold room; built on first use. A cache of the
/// executors: clones keep it, equality ignores it.
#[derive(Clone, Debug, Default)]
struct GpuTree(OnceLock<(Vec<usize>, Tree)>);

impl PartialEq for GpuTree {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for GpuTree {}

/// Per node, a lower bound of the load ([`ExecutorView::load`]) of every live executor of
/// the subtree, as the bits of an `f32` rounded down (for non-negative floats the bits order
/// as the values do); infinite for none. A cache of the executors' loads, built by the first
/// spread decision (first fit never reads it, nor pays for keeping it): clones keep it,
/// equality ignores it.
#[derive(Clone, Debug, Default)]
struct Loads(OnceLock<Vec<u32>>);

impl PartialEq for Loads {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Loads {}

/// The load bits of an executor for [`Loads`].
fn load_bits(exec: &ExecutorView) -> u32 {
    if exec.alive {
        load_bits_down(exec.load())
    } else {
        f32::INFINITY.to_bits()
    }
}

/// Adds to `models` those of `exec`'s GPUs it lacks.
fn learn_models(models: &mut Vec<String>, exec: &ExecutorView) {
    for gpu in &exec.gpus {
        if !models.contains(&gpu.model) {
            models.push(gpu.model.clone());
        }
    }
}

/// The tree of least loads ([`Loads`]) over `executors`, `width` leaves (a power of two
/// at least their number; the rest infinite).
fn least_loads<'a>(width: usize, executors: impl Iterator<Item = &'a ExecutorView>) -> Vec<u32> {
    let mut loads = vec![f32::INFINITY.to_bits(); 2 * width];
    for (slot, exec) in loads[width..].iter_mut().zip(executors) {
        *slot = load_bits(exec);
    }
    for k in (1..width).rev() {
        loads[k] = loads[2 * k].min(loads[2 * k + 1]);
    }
    loads
}

/// Sets leaf node `node` of a tree of least loads to `bits` and refreshes the nodes above
/// it, stopping where a node does not change.
fn set_load(loads: &mut [u32], mut node: usize, bits: u32) {
    loads[node] = bits;
    while node > 1 {
        node /= 2;
        let least = loads[2 * node].min(loads[2 * node + 1]);
        if loads[node] == least {
            break;
        }
        loads[node] = least;
    }
}

/// The leaf of `tree` with the least `(load, leaf)` among those whose room covers `want`
/// and that `load_if_fits` accepts; `loads` is the tree of least loads over its leaves. A
/// depth-first search, the child of lesser least load first, that skips a subtree not
/// covering `want` or whose least load and first leaf cannot beat the best found.
fn least_loaded_in(
    tree: &Tree,
    loads: &[u32],
    want: &Want,
    mut load_if_fits: impl FnMut(usize) -> Option<f64>,
) -> Option<usize> {
    if tree.len == 0 {
        return None;
    }
    let mut best: Option<(f64, usize)> = None;
    // (node, index of its first leaf, number of leaves under it)
    let mut stack = vec![(1usize, 0usize, tree.width)];
    while let Some((node, first, span)) = stack.pop() {
        let room = &tree.nodes[node];
        if !room.covers(want) || first >= tree.len {
            continue;
        }
        if let Some((load, index)) = best {
            // Every leaf below has a load of at least this bound and an index of at least
            // `first`: none of them can come before the best.
            let bound = f64::from(f32::from_bits(loads[node]));
            if bound > load || (bound == load && first > index) {
                continue;
            }
        }
        if span == 1 {
            if let Some(load) = load_if_fits(first) {
                if best.is_none_or(|(b, i)| (load, first) < (b, i)) {
                    best = Some((load, first));
                }
            }
            continue;
        }
        let half = span / 2;
        let (left, right) = (2 * node, 2 * node + 1);
        let left_first = loads[left] <= loads[right];
        // The child to visit first goes on the stack last.
        if left_first {
            stack.push((right, first + half, half));
            stack.push((left, first, half));
        } else {
            stack.push((left, first, half));
            stack.push((right, first + half, half));
        }
    }
    best.map(|(_, index)| index)
}

impl FreeIndex {
    /// Builds the index of `executors` in O(n).
    pub(crate) fn build(executors: &[ExecutorView]) -> Self {
        let mut models = Vec::new();
        for exec in executors {
            learn_models(&mut models, exec);
        }
        let rooms = executors.iter().map(|exec| Room::of(exec, &models));
        Self {
            all: Tree::build(executors.len(), rooms),
            models,
            loads: Loads::default(),
            gpu: GpuTree::default(),
            gpu_loads: Loads::default(),
        }
    }

    /// The tree of least loads over `executors` (those indexed), built on first use.
    fn loads(&self, executors: &[ExecutorView]) -> &[u32] {
        self.loads
            .0
            .get_or_init(|| least_loads(self.all.width, executors.iter()))
    }

    /// The tree of least loads over the GPU machines among `executors`, built on first use.
    fn gpu_loads(&self, executors: &[ExecutorView]) -> &[u32] {
        let (members, tree) = self.gpu_tree(executors);
        self.gpu_loads
            .0
            .get_or_init(|| least_loads(tree.width, members.iter().map(|&i| &executors[i])))
    }

    /// The machines with GPUs among `executors` (those indexed) and their tree, built on
    /// first use.
    fn gpu_tree(&self, executors: &[ExecutorView]) -> &(Vec<usize>, Tree) {
        self.gpu.0.get_or_init(|| {
            let members: Vec<usize> = (0..self.all.len)
                .filter(|&i| !executors[i].gpus.is_empty())
                .collect();
            let rooms = members
                .iter()
                .map(|&i| Room::of(&executors[i], &self.models).of_gpu_holder());
            let tree = Tree::build(members.len(), rooms);
            (members, tree)
        })
    }

    /// Sets the room of executor `index` (now `exec`, with fewer or no free resources but
    /// the same devices: the models are those of the build) and refreshes the summaries
    /// above it, in O(log n).
    pub(crate) fn update(&mut self, index: usize, exec: &ExecutorView) {
        if index >= self.all.len {
            return;
        }
        let room = Room::of(exec, &self.models);
        self.all.update(index, room);
        // Only machines with GPUs are members (most are not: no search for them).
        if let Some((members, tree)) = self.gpu.0.get_mut().filter(|_| !exec.gpus.is_empty()) {
            if let Ok(member) = members.binary_search(&index) {
                tree.update(member, room.of_gpu_holder());
                if let Some(loads) = self.gpu_loads.0.get_mut() {
                    set_load(loads, tree.width + member, load_bits(exec));
                }
            }
        }
        if let Some(loads) = self.loads.0.get_mut() {
            set_load(loads, self.all.width + index, load_bits(exec));
        }
    }

    /// The leftmost executor at or after `from` whose free room covers `want` on every
    /// dimension (a candidate, still to be checked by the verdict); `executors` are those
    /// indexed. A GPU job searches the tree of GPU machines.
    pub(crate) fn first_from(
        &self,
        executors: &[ExecutorView],
        from: usize,
        want: &Want,
    ) -> Option<usize> {
        if want.gpus == 0 {
            return self.all.first_from(from, want);
        }
        let (members, tree) = self.gpu_tree(executors);
        let first_member = members.partition_point(|&i| i < from);
        tree.first_from(first_member, want)
            .map(|member| members[member])
    }

    /// The executor with the least `(load, index)` among those whose free room covers
    /// `want` and that `load_if_fits` accepts (it returns the executor's exact load when it
    /// takes the job), found as a scan of every executor would find it. A GPU job searches
    /// the tree of GPU machines (in view order too, so ties go the same way).
    pub(crate) fn least_loaded(
        &self,
        executors: &[ExecutorView],
        want: &Want,
        mut load_if_fits: impl FnMut(usize) -> Option<f64>,
    ) -> Option<usize> {
        if want.gpus == 0 {
            let loads = self.loads(executors);
            return least_loaded_in(&self.all, loads, want, load_if_fits);
        }
        let loads = self.gpu_loads(executors);
        let (members, tree) = self.gpu_tree(executors);
        least_loaded_in(tree, loads, want, |member| load_if_fits(members[member]))
            .map(|member| members[member])
    }

    /// Checks that both trees hold the rooms of `executors` and the loads theirs (for
    /// tests).
    #[cfg(test)]
    pub(crate) fn is_consistent_with(&self, executors: &[ExecutorView]) -> bool {
        let all: Vec<Room> = executors
            .iter()
            .map(|e| Room::of(e, &self.models))
            .collect();
        self.all.is_consistent_with(&all)
            && self.gpu.0.get().is_none_or(|(members, tree)| {
                let mine: Vec<Room> = members.iter().map(|&i| all[i].of_gpu_holder()).collect();
                members
                    .iter()
                    .copied()
                    .eq((0..executors.len()).filter(|&i| !executors[i].gpus.is_empty()))
                    && tree.is_consistent_with(&mine)
            })
            && self
                .loads
                .0
                .get()
                .is_none_or(|loads| *loads == least_loads(self.all.width, executors.iter()))
            && self.gpu_loads.0.get().is_none_or(|loads| {
                self.gpu.0.get().is_some_and(|(members, tree)| {
                    *loads == least_loads(tree.width, members.iter().map(|&i| &executors[i]))
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes order as the amounts do (so a rounded summary never hides room), are exact
    /// below 2,048, and each stands for an amount within 1/1,024 above the one coded.
    #[test]
    fn memory_codes_are_monotonic_and_close() {
        let mut amounts: Vec<u64> = (0..5_000).collect();
        for shift in 11..64 {
            let p = 1u64 << shift;
            amounts.extend([p - 1, p, p + 1, p + p / 3, p.saturating_mul(2) - 1]);
        }
        amounts.extend([u64::MAX - 1, u64::MAX]);
        amounts.sort_unstable();
        for pair in amounts.windows(2) {
            assert!(memory_code(pair[0]) <= memory_code(pair[1]), "{pair:?}");
        }
        for mib in 0..2_048 {
            assert_eq!(u64::from(memory_code(mib)), mib);
        }
        for &mib in &amounts {
            let code = u128::from(memory_code(mib));
            if code >= 2_048 {
                let (exponent, mantissa) = (code / 1_024 - 1, code % 1_024 + 1_024);
                let (coded, mib) = (mantissa << exponent, u128::from(mib));
                assert!(coded >= mib && coded - mib <= mib / 1_024, "{mib}: {coded}");
            }
        }
        assert!(memory_code(u64::MAX) < u16::MAX);
    }

    #[test]
    fn load_bounds_are_at_or_below_the_load() {
        for load in [0.0, 1e-9, 0.1, 1.0 / 3.0, 0.5, 0.7, 0.999_999_999, 1.0] {
            let bound = f64::from(f32::from_bits(load_bits_down(load)));
            assert!(bound <= load && load - bound < 1e-6, "{load} {bound}");
        }
    }

    /// `differs_from` is `!=`: a change in any one field, the last step included, shows.
    #[test]
    fn rooms_differ_exactly_when_not_equal() {
        let base = Room {
            cpu_millis: 4_000,
            gpus: 2,
            memory_at: [7; CPU_STEPS.len()],
            gpu_models: 0b10,
        };
        assert!(!base.differs_from(&base));
        let mut changed = vec![
            Room {
                cpu_millis: 3_999,
                ..base
            },
            Room { gpus: 1, ..base },
            Room {
                gpu_models: 0b11,
                ..base
            },
            Room::NONE,
        ];
        for step in 0..CPU_STEPS.len() {
            let mut room = base;
            room.memory_at[step] = 8;
            changed.push(room);
        }
        for room in changed {
            assert_ne!(room, base);
            assert!(
                room.differs_from(&base) && base.differs_from(&room),
                "{room:?}"
            );
        }
    }

    #[test]
    fn a_node_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Room>(), 64);
    }
}
