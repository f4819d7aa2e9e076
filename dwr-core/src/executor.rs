//! Executors: what they register, what they hold, and what is free on them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::{ExecutorId, JobId};
use crate::resources::Resources;
use crate::time::Timestamp;

/// One GPU device as the host's probe reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GpuDevice {
    /// The driver's index of the device.
    pub index: u32,
    /// The device UUID (`GPU-…`); what assignments name.
    pub uuid: String,
    /// Model name, e.g. `NVIDIA H200`.
    pub model: String,
    /// Device memory in MiB.
    pub memory_mib: u64,
}

/// Host usage observed by an executor, sent with each heartbeat. Informational only:
/// placement uses allocations, never observed usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostUsage {
    /// CPU busy, percent of all cores (0..=100).
    pub cpu_percent: f32,
    /// Memory in use, MiB.
    pub memory_used_mib: u64,
}

/// What an executor announces when it joins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRegistration {
    /// Its id (defaults to its IP).
    pub id: ExecutorId,
    /// The IP jobs report as `executor_ip`.
    pub ip: String,
    /// CPU millicores and memory MiB it offers (the GPU part is the device count).
    pub capacity: Resources,
    /// Its GPU devices.
    pub gpus: Vec<GpuDevice>,
    /// Its region, if any.
    pub region: Option<String>,
    /// Its datacenter, if any.
    pub datacenter: Option<String>,
}

impl ExecutorRegistration {
    /// A registration whose GPU count is taken from `gpus`.
    pub fn new(
        id: ExecutorId,
        ip: impl Into<String>,
        cpu_millis: u64,
        memory_mib: u64,
        gpus: Vec<GpuDevice>,
    ) -> Self {
        let capacity = Resources::new(cpu_millis, memory_mib, gpus.len() as u32);
        Self {
            id,
            ip: ip.into(),
            capacity,
            gpus,
            region: None,
            datacenter: None,
        }
    }
}

/// An executor as the store keeps it: registration, allocations, liveness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Executor {
    /// What it registered.
    pub registration: ExecutorRegistration,
    /// Resources held by its assigned and running jobs.
    pub allocated: Resources,
    /// GPU UUID → the job holding it.
    pub gpu_holders: BTreeMap<String, JobId>,
    /// Jobs assigned to it or running on it, in id order (a set: a finish removes its job
    /// in O(log n) however many jobs the executor holds).
    pub jobs: BTreeSet<JobId>,
    /// Time of its registration.
    pub registered_at: Timestamp,
    /// Time of its last heartbeat.
    pub last_heartbeat: Timestamp,
    /// Usage it last reported.
    pub usage: HostUsage,
}

impl Executor {
    /// A freshly registered executor with nothing allocated.
    pub fn new(registration: ExecutorRegistration, now: Timestamp) -> Self {
        Self {
            registration,
            allocated: Resources::ZERO,
            gpu_holders: BTreeMap::new(),
            jobs: BTreeSet::new(),
            registered_at: now,
            last_heartbeat: now,
            usage: HostUsage::default(),
        }
    }

    /// Its id.
    pub fn id(&self) -> &ExecutorId {
        &self.registration.id
    }

    /// Total capacity.
    pub fn capacity(&self) -> Resources {
        self.registration.capacity
    }

    /// Capacity minus allocations.
    pub fn free(&self) -> Resources {
        self.registration.capacity.saturating_sub(&self.allocated)
    }

    /// GPU devices not held by any job, in index order.
    pub fn free_gpus(&self) -> Vec<GpuDevice> {
        self.registration
            .gpus
            .iter()
            .filter(|g| !self.gpu_holders.contains_key(&g.uuid))
            .cloned()
            .collect()
    }

    /// True when its last heartbeat is within `ttl` of `now`.
    pub fn is_alive(&self, now: Timestamp, ttl: std::time::Duration) -> bool {
        now.since(self.last_heartbeat) <= ttl
    }
}
