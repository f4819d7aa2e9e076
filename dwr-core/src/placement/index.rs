//! The free-capacity index of a [`ClusterView`](super::ClusterView): a segment tree over the
//! executors, in view order, holding per-subtree maxima of free CPU, memory and GPU count.
//!
//! First fit asks it for the leftmost executor whose free room *could* take a job, so a
//! decision touches O(log n) nodes instead of every executor. The maxima are taken per
//! dimension independently, so a subtree that passes may still hold no single executor that
//! fits: the leaf is the only place where a fit is decided, by the full verdict (liveness,
//! region, datacenter, GPU model). The index only prunes, never decides.

use super::view::ExecutorView;
use crate::spec::JobSpec;

/// Free room of one executor (a leaf) or the per-dimension maxima of a subtree (a node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Room {
    /// Free CPU millicores.
    cpu_millis: u64,
    /// Free memory MiB.
    memory_mib: u64,
    /// Free GPU devices, of any model (the model is checked at the leaf).
    gpus: u32,
    /// Whether the executor is alive (for a node: whether any below is). Dead executors and
    /// the padding leaves hold `Room::default()`, which takes nothing, not even an empty job.
    live: bool,
}

impl Room {
    /// The room an executor offers: its free resources when alive, nothing when dead.
    pub(crate) fn of(exec: &ExecutorView) -> Self {
        if !exec.alive {
            return Self::default();
        }
        Self {
            cpu_millis: exec.free.cpu_millis,
            memory_mib: exec.free.memory_mib,
            gpus: u32::try_from(exec.free_gpus.len()).unwrap_or(u32::MAX),
            live: true,
        }
    }

    /// What `spec` needs, as a room to compare against.
    pub(crate) fn wanted_by(spec: &JobSpec) -> Self {
        Self {
            cpu_millis: spec.cpu_millis,
            memory_mib: spec.memory_mib,
            gpus: spec.gpu.count,
            live: true,
        }
    }

    fn max(self, other: Self) -> Self {
        Self {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_mib: self.memory_mib.max(other.memory_mib),
            gpus: self.gpus.max(other.gpus),
            live: self.live || other.live,
        }
    }

    /// True when this room (or the subtree's maxima) is at least `want` on every dimension.
    #[inline]
    fn covers(&self, want: &Self) -> bool {
        self.live
            && self.cpu_millis >= want.cpu_millis
            && self.memory_mib >= want.memory_mib
            && self.gpus >= want.gpus
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
            nodes[k] = nodes[2 * k].max(nodes[2 * k + 1]);
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
            let merged = self.nodes[2 * node].max(self.nodes[2 * node + 1]);
            if self.nodes[node] == merged {
                break;
            }
            self.nodes[node] = merged;
        }
    }

    /// The leftmost executor at or after `from` whose free room covers `want` on every
    /// dimension (a candidate, still to be checked by the verdict), in O(log n).
    pub(crate) fn first_from(&self, from: usize, want: &Room) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        let mut node = self.width + from;
        // Climb: while this subtree cannot hold a candidate, move to the next subtree to its
        // right, going up past every subtree whose right edge we have reached.
        while !self.nodes[node].covers(want) {
            while node % 2 == 1 {
                node /= 2;
            }
            if node == 0 {
                // Went past the root: nothing to the right.
                return None;
            }
            node += 1;
        }
        // Descend to the leftmost covering leaf; one exists because a node's maxima are
        // those of its children.
        while node < self.width {
            node *= 2;
            if !self.nodes[node].covers(want) {
                node += 1;
            }
        }
        let index = node - self.width;
        // Padding leaves hold nothing and never cover, so the index is that of an executor.
        (index < self.len).then_some(index)
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
                .all(|k| self.nodes[k] == self.nodes[2 * k].max(self.nodes[2 * k + 1]))
    }
}
