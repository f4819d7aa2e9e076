//! [`SysinfoHostProbe`]: the host's CPU cores, memory and current usage, through sysinfo.

use std::sync::Mutex;

use dwr_core::{HostProbe, HostUsage};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

const MIB: u64 = 1024 * 1024;

/// CPU and memory of this host. Capacity is read once; usage is sampled on each call, CPU
/// as the busy share since the previous call (or since the probe was built).
#[derive(Debug)]
pub struct SysinfoHostProbe {
    cpu_millis: u64,
    memory_mib: u64,
    /// `None` where sysinfo cannot read this platform (never on Linux): capacity then comes
    /// from the standard library's CPU count, and usage reads as zero.
    system: Option<Mutex<System>>,
}

impl Default for SysinfoHostProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl SysinfoHostProbe {
    /// Reads the host's capacity and takes the first CPU sample.
    pub fn new() -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        match system {
            Ok(system) => {
                let cores = system.cpus().len().max(1) as u64;
                Self {
                    cpu_millis: cores * 1000,
                    memory_mib: system.total_memory() / MIB,
                    system: Some(Mutex::new(system)),
                }
            }
            Err(e) => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
                tracing::error!(error = %e, "sysinfo cannot read this host: reporting {cores} cores, no memory and no usage");
                Self {
                    cpu_millis: cores * 1000,
                    memory_mib: 0,
                    system: None,
                }
            }
        }
    }
}

impl HostProbe for SysinfoHostProbe {
    fn cpu_millis(&self) -> u64 {
        self.cpu_millis
    }

    fn memory_mib(&self) -> u64 {
        self.memory_mib
    }

    fn usage(&self) -> HostUsage {
        let Some(system) = &self.system else {
            return HostUsage::default();
        };
        // A poisoned lock only means another sampler panicked mid-refresh; the data is fine.
        let mut system = system.lock().unwrap_or_else(|p| p.into_inner());
        system.refresh_cpu_usage();
        system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        HostUsage {
            cpu_percent: system.global_cpu_usage().clamp(0.0, 100.0),
            memory_used_mib: system.used_memory() / MIB,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_capacity_and_plausible_usage() {
        let probe = SysinfoHostProbe::new();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        assert!(probe.cpu_millis() >= 1000);
        assert_eq!(probe.cpu_millis() % 1000, 0);
        assert!(
            probe.cpu_millis() >= cores * 1000,
            "{} < {cores} cores",
            probe.cpu_millis()
        );
        assert!(probe.memory_mib() > 0);
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let usage = probe.usage();
        assert!((0.0..=100.0).contains(&usage.cpu_percent), "{usage:?}");
        assert!(usage.memory_used_mib > 0 && usage.memory_used_mib <= probe.memory_mib());
    }
}
