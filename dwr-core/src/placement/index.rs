//! The free-capacity index of a [`ClusterView`](super::ClusterView): a segment tree over the
//! executors, in view order, holding per-subtree maxima of free CPU, memory and GPU count.
//!
//! First fit asks it for the leftmost executor whose free room *could* take a job, so a
//! decision touches O(log n) nodes instead of every executor. The leaf is the only place where
//! a fit is decided, by the full verdict (liveness, region, datacenter, GPU model): the index
//! only prunes, never decides, so it can only make first fit faster, never different.
//!
//! Plain per-dimension maxima prune badly on a busy cluster: executors full on CPU with memory
//! left sit next to executors full on memory with CPU left, and every subtree holding one of
//! each looks big enough for everything. So memory is kept as a staircase: for each of a
//! fixed ladder of CPU amounts ([`CPU_STEPS`]), the most free memory among the executors with
//! at least that much free CPU. A job asking for `c` millicores and `m` MiB looks at the step
//! just at or below `c`: exact when `c` is on the ladder (the round amounts jobs ask for),
//! and only executors with CPU between that step and `c` can still make a subtree pass in vain.

use super::view::ExecutorView;
use crate::spec::JobSpec;

/// The ladder of CPU amounts (millicores) at which the staircase of free memory is kept:
/// round requests (100m, 250m, 1, 1.5, 2, 3, 4, … cores) are exact, others are rounded down
/// to the step below (at most a factor of 2 lower). The first step is 0: all live executors.
const CPU_STEPS: [u64; 26] = [
    0, 100, 125, 200, 250, 375, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 6_000, 8_000, 12_000,
    16_000, 24_000, 32_000, 48_000, 64_000, 96_000, 128_000, 256_000, 512_000, 1_024_000,
];

/// Memory is kept as `min(MiB, MEMORY_CAP) + 1` in a `u32`, 0 meaning "no executor": exact
/// up to 4 PiB per executor, and rounded down beyond, where it prunes nothing (a saturated
/// value passes every request).
const MEMORY_CAP: u64 = u32::MAX as u64 - 1;

/// Free room of one executor (a leaf) or the per-dimension maxima of a subtree (a node).
/// Dead executors and the padding leaves hold `Room::default()`, which takes nothing, not
/// even a job asking for nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Room {
    /// Most free CPU millicores.
    cpu_millis: u64,
    /// Most free GPU devices, of any model (the model is checked at the leaf).
    gpus: u32,
    /// `memory_at[j]`: the most free memory (encoded as above) among the live executors with
    /// at least `CPU_STEPS[j]` free millicores; 0 when there is none.
    memory_at: [u32; CPU_STEPS.len()],
}

impl Room {
    /// The room an executor offers: its free resources when alive, nothing when dead.
    pub(crate) fn of(exec: &ExecutorView) -> Self {
        if !exec.alive {
            return Self::default();
        }
        let cpu = exec.free.cpu_millis;
        let memory = encode_memory(exec.free.memory_mib);
        let mut memory_at = [0; CPU_STEPS.len()];
        for (slot, step) in memory_at.iter_mut().zip(CPU_STEPS) {
            if cpu < step {
                break;
            }
            *slot = memory;
        }
        Self {
            cpu_millis: cpu,
            gpus: u32::try_from(exec.free_gpus.len()).unwrap_or(u32::MAX),
            memory_at,
        }
    }

    fn max(&self, other: &Self) -> Self {
        let mut memory_at = self.memory_at;
        for (mine, theirs) in memory_at.iter_mut().zip(&other.memory_at) {
            *mine = (*mine).max(*theirs);
        }
        Self {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            gpus: self.gpus.max(other.gpus),
            memory_at,
        }
    }

    /// True when this room (or some executor of the subtree, as far as the summary tells)
    /// has at least what `want` asks on every dimension.
    #[inline]
    fn covers(&self, want: &Want) -> bool {
        self.memory_at[want.step] > want.memory
            && self.cpu_millis >= want.cpu_millis
            && self.gpus >= want.gpus
    }
}

/// `min(mib, MEMORY_CAP) + 1`: never 0, which means "no executor".
fn encode_memory(mib: u64) -> u32 {
    // Lossless: the value is at most MEMORY_CAP + 1 = u32::MAX.
    (mib.min(MEMORY_CAP) + 1) as u32
}

/// What a job needs, in the index's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Want {
    cpu_millis: u64,
    gpus: u32,
    /// The highest step of [`CPU_STEPS`] at or below the CPU asked for.
    step: usize,
    /// The memory asked for, capped like stored memory: a room covers it when its encoded
    /// memory is greater.
    memory: u32,
}

impl Want {
    /// What `spec` needs.
    pub(crate) fn of(spec: &JobSpec) -> Self {
        // CPU_STEPS[0] is 0, so at least one step is at or below any request.
        let step = CPU_STEPS.partition_point(|&s| s <= spec.cpu_millis) - 1;
        Self {
            cpu_millis: spec.cpu_millis,
            gpus: spec.gpu.count,
            step,
            // Lossless: at most MEMORY_CAP < u32::MAX.
            memory: spec.memory_mib.min(MEMORY_CAP) as u32,
        }
    }
}

/// A max segment tree over the executors' [`Room`]s.
///
/// Stored as an implicit binary tree: node 1 is the root, node `k` has children `2k` and
/// `2k + 1`, and the leaves are `width..2 * width` (`width` a power of two, at least the
/// number of executors; padding leaves hold nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FreeIndex {
    /// Number of executors indexed.
    len: usize,
    /// Number of leaf slots: a power of two, at least `len` (and at least 1 once built).
    width: usize,
    /// The tree; empty for an empty view.
    nodes: Vec<Room>,
}

impl FreeIndex {
    /// Builds the index of `executors` in O(n).
    pub(crate) fn build(executors: &[ExecutorView]) -> Self {
        let len = executors.len();
        if len == 0 {
            return Self::default();
        }
        let width = len.next_power_of_two();
        let mut nodes = vec![Room::default(); 2 * width];
        for (slot, exec) in nodes[width..].iter_mut().zip(executors) {
            *slot = Room::of(exec);
        }
        for k in (1..width).rev() {
            nodes[k] = nodes[2 * k].max(&nodes[2 * k + 1]);
        }
        Self { len, width, nodes }
    }

    /// Sets the room of executor `index` and refreshes the maxima above it, in O(log n).
    /// Stops climbing as soon as a node's maxima do not change.
    pub(crate) fn update(&mut self, index: usize, room: Room) {
        if index >= self.len {
            return;
        }
        let mut node = self.width + index;
        self.nodes[node] = room;
        while node > 1 {
            node /= 2;
            let merged = self.nodes[2 * node].max(&self.nodes[2 * node + 1]);
            if self.nodes[node] == merged {
                break;
            }
            self.nodes[node] = merged;
        }
    }

    /// The leftmost executor at or after `from` whose free room covers `want` on every
    /// dimension (a candidate, still to be checked by the verdict).
    ///
    /// A depth-first search, left to right, that skips every subtree whose maxima do not
    /// cover `want`. The maxima are per dimension, so a subtree may pass (its CPU from one
    /// executor, its memory from another) and still hold no candidate: the search then backs
    /// out of it and goes on to its right. O(log n) when such dead ends are few.
    pub(crate) fn first_from(&self, from: usize, want: &Want) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        let mut node = self.width + from;
        loop {
            // Move right until a subtree that may hold a candidate.
            while !self.nodes[node].covers(want) {
                node = self.next_to_the_right(node)?;
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
            node = self.next_to_the_right(node)?;
        }
    }

    /// The subtree just to the right of `node`'s: up past every subtree whose right edge
    /// `node` is on, then to the right sibling. `None` past the root's right edge.
    #[inline]
    fn next_to_the_right(&self, mut node: usize) -> Option<usize> {
        while node % 2 == 1 {
            node /= 2;
        }
        // Node 1 (the root) is odd, so climbing past it gives 0: nothing is to the right.
        (node != 0).then_some(node + 1)
    }

    /// Checks that every node holds the maxima of its children and the leaves match
    /// `executors` (for tests).
    #[cfg(test)]
    pub(crate) fn is_consistent_with(&self, executors: &[ExecutorView]) -> bool {
        if executors.is_empty() {
            return self.nodes.is_empty() && self.len == 0;
        }
        self.len == executors.len()
            && self.nodes[self.width..]
                .iter()
                .enumerate()
                .all(|(i, room)| match executors.get(i) {
                    Some(exec) => *room == Room::of(exec),
                    None => *room == Room::default(),
                })
            && (1..self.width)
                .all(|k| self.nodes[k] == self.nodes[2 * k].max(&self.nodes[2 * k + 1]))
    }
}
