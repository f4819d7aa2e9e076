//! Executors as `GET /executors` shows them, and the totals over the cluster.

use dwr_core::{units, Executor, Timestamp};
use serde::{Deserialize, Serialize};

/// One GPU device of an executor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuView {
    /// The driver's index.
    pub index: u32,
    /// The device UUID.
    pub uuid: String,
    /// Model name.
    pub model: String,
    /// Device memory, MiB.
    pub memory_mb: u64,
    /// The job holding it, if any.
    #[serde(default)]
    pub job_id: Option<String>,
}

/// An executor as `GET /executors` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutorView {
    /// Its id (`EXECUTOR_ID`, defaults to its IP).
    pub id: String,
    /// Its IP.
    pub ip: String,
    /// CPU cores it offers.
    pub total_cpu_cores: f64,
    /// CPU cores not allocated to jobs.
    pub available_cpu_cores: f64,
    /// Memory it offers, GB.
    pub total_memory_gb: f64,
    /// Memory not allocated to jobs, GB.
    pub available_memory_gb: f64,
    /// Distinct GPU models it has.
    pub gpu_types: Vec<String>,
    /// GPU devices it has.
    pub total_gpus: u32,
    /// GPU devices not held by jobs.
    pub available_gpus: u32,
    /// Its GPU devices.
    #[serde(default)]
    pub gpus: Vec<GpuView>,
    /// Its region.
    #[serde(default)]
    pub region: Option<String>,
    /// Its datacenter.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// Time of its last heartbeat.
    pub last_heartbeat: String,
    /// Whether its last heartbeat is within the liveness TTL.
    pub alive: bool,
    /// Allocated CPU, percent of its capacity.
    pub cpu_utilization: f64,
    /// Allocated memory, percent of its capacity.
    pub memory_utilization: f64,
    /// Observed host CPU use, percent (from its heartbeat).
    #[serde(default)]
    pub observed_cpu_percent: f64,
    /// Observed host memory use, GB (from its heartbeat).
    #[serde(default)]
    pub observed_memory_used_gb: f64,
    /// Jobs assigned to it or running on it.
    pub running_jobs: usize,
    /// Their ids.
    #[serde(default)]
    pub job_ids: Vec<String>,
}

impl ExecutorView {
    /// The view of `executor`, alive while its own lease holds at `now` (the store's clock).
    pub fn from_executor(executor: &Executor, now: Timestamp) -> Self {
        let reg = &executor.registration;
        let cap = executor.capacity();
        let free = executor.free();
        let mut gpu_types: Vec<String> = reg.gpus.iter().map(|g| g.model.clone()).collect();
        gpu_types.sort();
        gpu_types.dedup();
        let gpus = reg
            .gpus
            .iter()
            .map(|g| GpuView {
                index: g.index,
                uuid: g.uuid.clone(),
                model: g.model.clone(),
                memory_mb: g.memory_mib,
                job_id: executor.gpu_holders.get(&g.uuid).map(ToString::to_string),
            })
            .collect();
        Self {
            id: reg.id.to_string(),
            ip: reg.ip.clone(),
            total_cpu_cores: units::cores(cap.cpu_millis),
            available_cpu_cores: units::cores(free.cpu_millis),
            total_memory_gb: units::gb(cap.memory_mib),
            available_memory_gb: units::gb(free.memory_mib),
            gpu_types,
            total_gpus: reg.gpus.len() as u32,
            available_gpus: executor.free_gpus().len() as u32,
            gpus,
            region: reg.region.clone(),
            datacenter: reg.datacenter.clone(),
            last_heartbeat: executor.last_heartbeat.to_rfc3339(),
            alive: executor.is_alive(now),
            cpu_utilization: units::percent(
                executor.allocated.cpu_millis as f64,
                cap.cpu_millis as f64,
                1,
            ),
            memory_utilization: units::percent(
                executor.allocated.memory_mib as f64,
                cap.memory_mib as f64,
                1,
            ),
            observed_cpu_percent: units::round_to(f64::from(executor.usage.cpu_percent), 1),
            observed_memory_used_gb: units::gb(executor.usage.memory_used_mib),
            running_jobs: executor.jobs.len(),
            job_ids: executor.jobs.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Totals over the cluster's executors (live ones only for capacity figures).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterStats {
    /// Registered executors.
    pub total_executors: usize,
    /// Executors whose heartbeat is within the TTL.
    pub alive_executors: usize,
    /// CPU cores of the live executors.
    pub total_cpu_cores: f64,
    /// Unallocated CPU cores of the live executors.
    pub available_cpu_cores: f64,
    /// Memory of the live executors, GB.
    pub total_memory_gb: f64,
    /// Unallocated memory of the live executors, GB.
    pub available_memory_gb: f64,
    /// GPU devices of the live executors.
    pub total_gpus: u32,
    /// Unheld GPU devices of the live executors.
    pub available_gpus: u32,
    /// Allocated CPU, percent of live capacity.
    pub cpu_utilization: f64,
    /// Allocated memory, percent of live capacity.
    pub memory_utilization: f64,
    /// Jobs assigned to or running on any executor.
    pub running_jobs: usize,
    /// Allocated CPU, percent of live capacity, 2 decimals (the original system's name).
    #[serde(default)]
    pub cluster_cpu_utilization: f64,
    /// Allocated memory, percent of live capacity, 2 decimals (the original system's name).
    #[serde(default)]
    pub cluster_memory_utilization: f64,
}

impl ClusterStats {
    /// Totals over `executors`.
    pub fn from_executors(views: &[ExecutorView]) -> Self {
        let mut s = ClusterStats {
            total_executors: views.len(),
            ..Self::default()
        };
        for v in views {
            s.running_jobs += v.running_jobs;
            if !v.alive {
                continue;
            }
            s.alive_executors += 1;
            s.total_cpu_cores += v.total_cpu_cores;
            s.available_cpu_cores += v.available_cpu_cores;
            s.total_memory_gb += v.total_memory_gb;
            s.available_memory_gb += v.available_memory_gb;
            s.total_gpus += v.total_gpus;
            s.available_gpus += v.available_gpus;
        }
        // Allocated percent of live capacity, rounded to `decimals`.
        let used = |total: f64, free: f64, decimals| units::percent(total - free, total, decimals);
        let (cpu, mem) = (
            (s.total_cpu_cores, s.available_cpu_cores),
            (s.total_memory_gb, s.available_memory_gb),
        );
        s.cpu_utilization = used(cpu.0, cpu.1, 1);
        s.memory_utilization = used(mem.0, mem.1, 1);
        // The original system's fields: two decimals.
        s.cluster_cpu_utilization = used(cpu.0, cpu.1, 2);
        s.cluster_memory_utilization = used(mem.0, mem.1, 2);
        s
    }
}

/// The answer of `GET /executors`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutorsResponse {
    /// Every registered executor, ordered by id.
    pub executors: Vec<ExecutorView>,
    /// Totals.
    pub cluster_stats: ClusterStats,
}
