//! Queues as `GET /queues` shows them: weight, quota, what their jobs hold, their share.

use dwr_core::queues::{dominant_share, QueueConfig, QueueUsage};
use dwr_core::{units, Resources};
use serde::{Deserialize, Serialize};

/// Amounts in the API's units; on a quota, `null` is no limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueAmounts {
    /// CPU cores.
    pub cpu_cores: Option<f64>,
    /// Memory, GB.
    pub memory_gb: Option<f64>,
    /// GPU devices.
    pub gpus: Option<u32>,
}

impl QueueAmounts {
    fn held(held: &Resources) -> Self {
        Self {
            cpu_cores: Some(units::cores(held.cpu_millis)),
            memory_gb: Some(units::round_to(units::gb(held.memory_mib), 3)),
            gpus: Some(held.gpus),
        }
    }
}

/// A queue as `GET /queues` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueView {
    /// Its name.
    pub name: String,
    /// Its weight in the fair share.
    pub weight: u32,
    /// False for a queue jobs still name after it left the queues file (weight 1, no
    /// quota).
    pub defined: bool,
    /// What its jobs may hold at once (`null`: no limit).
    pub quota: QueueAmounts,
    /// What its assigned and running jobs hold.
    pub used: QueueAmounts,
    /// Its dominant share: the largest fraction it holds of any resource of the live
    /// executors (0 to 1).
    pub share: f64,
    /// Its pending jobs.
    pub pending: u64,
    /// Whether its pending jobs may preempt running jobs of lower priority.
    #[serde(default)]
    pub preemption: bool,
}

impl QueueView {
    /// The view of a queue with `settings` whose jobs hold and wait as `usage`, in a cluster
    /// of capacity `total`, under a scheduler whose preemption setting is `preemption`.
    pub fn new(
        settings: &QueueConfig,
        defined: bool,
        usage: &QueueUsage,
        total: &Resources,
        preemption: bool,
    ) -> Self {
        let quota = &settings.quota;
        Self {
            name: settings.name.clone(),
            weight: settings.weight,
            defined,
            quota: QueueAmounts {
                cpu_cores: quota.cpu_millis.map(units::cores),
                memory_gb: quota.memory_mib.map(|m| units::round_to(units::gb(m), 3)),
                gpus: quota.gpus,
            },
            used: QueueAmounts::held(&usage.held),
            share: units::round_to(dominant_share(&usage.held, total), 4),
            pending: usage.pending,
            preemption: settings.preemption.unwrap_or(preemption),
        }
    }
}

/// `GET /queues`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuesResponse {
    /// The defined queues, then any other that jobs name, by name.
    pub queues: Vec<QueueView>,
}
