//! Executors: what they register, what they hold, and what is free on them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

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

/// The heartbeat interval an executor registers when it names none (the original system's
/// `HEARTBEAT_INTERVAL` default).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// How many heartbeat intervals an executor's lease lasts: it is lost after missing
/// `LEASE_INTERVALS - 1` heartbeats in a row.
pub const LEASE_INTERVALS: u32 = 3;

/// The shortest heartbeat interval a registration may name: a lease of a few hundred
/// milliseconds is what the tests use; anything shorter would be lost to scheduling jitter.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);

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
    /// How often it heartbeats. Its lease, by which the store judges it alive, is
    /// [`LEASE_INTERVALS`] times this, whatever any scheduler was started with.
    #[serde(default = "default_heartbeat_interval", with = "millis")]
    pub heartbeat_interval: Duration,
}

fn default_heartbeat_interval() -> Duration {
    DEFAULT_HEARTBEAT_INTERVAL
}

/// A `Duration` as whole milliseconds on the wire.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
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
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
        }
    }

    /// The same registration heartbeating every `interval` (at least
    /// [`MIN_HEARTBEAT_INTERVAL`]).
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval.max(MIN_HEARTBEAT_INTERVAL);
        self
    }

    /// Its lease: [`LEASE_INTERVALS`] heartbeat intervals. An executor whose last heartbeat
    /// is older than this is lost.
    pub fn lease_ttl(&self) -> Duration {
        self.heartbeat_interval.max(MIN_HEARTBEAT_INTERVAL) * LEASE_INTERVALS
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
    /// Time of its last heartbeat, by the store's clock.
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

    /// Its lease, from its registration: [`LEASE_INTERVALS`] of its heartbeat intervals.
    pub fn lease_ttl(&self) -> Duration {
        self.registration.lease_ttl()
    }

    /// The instant its lease runs out unless it heartbeats again: its last heartbeat plus
    /// its lease.
    pub fn lease_deadline(&self) -> Timestamp {
        self.last_heartbeat.plus(self.lease_ttl())
    }

    /// True while its lease holds at `now` (by the store's clock): its last heartbeat is
    /// within its own lease of `now`. Exactly at the deadline it is still alive.
    pub fn is_alive(&self, now: Timestamp) -> bool {
        now <= self.lease_deadline()
    }
}
