//! Placement: a pure choice of executor for a job, or an explanation of why none fits.
//!
//! The scheduler builds a [`ClusterView`] once per pass from the store's executors, asks a
//! [`Placement`] for each pending job, and [`reserves`](ClusterView::reserve) what it chose
//! so later jobs of the same pass see the room already taken. Nothing here reads a clock or
//! does I/O.
//!
//! The view keeps an index of its executors' free room (a segment tree, see `index.rs`), so
//! [`FirstFit`] finds the first executor with room in O(log n) rather than scanning them all
//! ([`LinearFirstFit`] is that scan, kept as the reference), and [`Spread`] the least loaded
//! one ([`LinearSpread`] the reference). An [`Explanation`] still counts
//! every executor, but only when nothing fits.

mod explain;
mod first_fit;
mod index;
mod spread;
mod view;

pub use explain::{Exhausted, Explanation, Filtered, PlacementFailure};
pub use first_fit::{FirstFit, LinearFirstFit};
pub use spread::{LinearSpread, Spread};
pub(crate) use view::{model_matches, Verdict};
pub use view::{ClusterView, ExecutorView};

use std::fmt::Debug;

use crate::spec::JobSpec;

/// The executor chosen for a job and the GPU devices on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// Index of the executor in [`ClusterView::executors`].
    pub executor: usize,
    /// UUIDs of the chosen GPU devices (as many as the job asks for).
    pub gpu_ids: Vec<String>,
}

/// A placement strategy: a pure function of the job and the view.
///
/// # Contract
/// Returns only executors that are alive, satisfy the job's region, datacenter and GPU
/// model constraints, and have free CPU, memory and matching free GPU devices for it. The
/// same inputs always give the same answer.
pub trait Placement: Debug + Send + Sync + 'static {
    /// The strategy's name (for logs and metrics).
    fn name(&self) -> &'static str;

    /// Chooses an executor for `spec`, or explains why none fits.
    fn place(&self, spec: &JobSpec, cluster: &ClusterView) -> Result<Choice, Explanation>;
}

#[cfg(test)]
mod tests;
