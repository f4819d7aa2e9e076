//! Counters the scheduler keeps about itself, for `/metrics`.

use std::collections::BTreeMap;

use crate::placement::PlacementFailure;

/// A snapshot of the scheduler's counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulerMetrics {
    /// Passes run.
    pub passes: u64,
    /// Jobs placed (assignments committed).
    pub placements: u64,
    /// Placement failures by reason (see [`PlacementFailure`]): `cpu`, `memory`, `gpu`, `constraints`,
    /// `no_executors`, `infeasible`, `rejected` (a commit the store refused).
    pub placement_failures: BTreeMap<PlacementFailure, u64>,
    /// Duration of the last pass in seconds.
    pub last_pass_seconds: f64,
    /// Sum of all pass durations in seconds (with `passes`, a Prometheus summary).
    pub pass_seconds_total: f64,
    /// Live executors seen by the last pass.
    pub executors_alive: u64,
    /// Finished jobs deleted by the retention.
    pub retention_deleted: u64,
}

impl SchedulerMetrics {
    pub(crate) fn count_failure(&mut self, reason: PlacementFailure) {
        *self.placement_failures.entry(reason).or_default() += 1;
    }
}
