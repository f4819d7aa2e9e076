//! Turning one engine stats sample into a [`ContainerUsage`], as `docker stats` computes it.

use bollard::models::{ContainerCpuStats, ContainerStatsResponse};
use dwr_core::ContainerUsage;

/// The usage in `stats`: CPU % of one core from the delta to the previous sample, memory
/// without reclaimable page cache.
pub fn usage_of(stats: &ContainerStatsResponse) -> ContainerUsage {
    let none = ContainerCpuStats::default();
    let cpu = stats.cpu_stats.as_ref().unwrap_or(&none);
    let pre = stats.precpu_stats.as_ref().unwrap_or(&none);
    let total = |s: &ContainerCpuStats| s.cpu_usage.as_ref().and_then(|u| u.total_usage);
    let online = cpu
        .online_cpus
        .map(u64::from)
        .filter(|&n| n > 0)
        .or_else(|| {
            cpu.cpu_usage
                .as_ref()
                .and_then(|u| u.percpu_usage.as_ref())
                .map(|v| v.len() as u64)
        })
        .unwrap_or(1);
    let cpu_percent = cpu_percent(
        total(cpu).unwrap_or(0),
        total(pre).unwrap_or(0),
        cpu.system_cpu_usage.unwrap_or(0),
        pre.system_cpu_usage.unwrap_or(0),
        online,
    );
    let memory = stats.memory_stats.as_ref();
    // memory.stat as the engine passes it on: cgroup v1 names the reclaimable cache
    // `total_inactive_file`, cgroup v2 `inactive_file`.
    let cache = memory.and_then(|m| m.stats.as_ref()).and_then(|s| {
        s.get("total_inactive_file")
            .or_else(|| s.get("inactive_file"))
            .copied()
    });
    let usage = memory.and_then(|m| m.usage).unwrap_or(0);
    ContainerUsage {
        cpu_percent,
        memory_bytes: memory_bytes(usage, cache),
    }
}

/// CPU use in percent of one core: the container's share of the host's CPU time between the
/// two samples, times the number of CPUs. Zero when there is no earlier sample.
pub fn cpu_percent(total: u64, pre_total: u64, system: u64, pre_system: u64, cpus: u64) -> f64 {
    let cpu_delta = total.saturating_sub(pre_total);
    let system_delta = system.saturating_sub(pre_system);
    if pre_system == 0 || system_delta == 0 {
        return 0.0;
    }
    cpu_delta as f64 / system_delta as f64 * cpus as f64 * 100.0
}

/// Memory in use without the inactive page cache (the kernel can drop it), as `docker stats`
/// reports; plain usage when the engine gives no breakdown.
pub fn memory_bytes(usage: u64, inactive_file: Option<u64>) -> u64 {
    match inactive_file {
        Some(cache) if cache < usage => usage - cache,
        _ => usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_is_share_times_cpus() {
        // Half of all host CPU time on a 4-CPU host: two cores busy.
        assert_eq!(cpu_percent(1_500, 1_000, 2_000, 1_000, 4), 200.0);
        assert_eq!(cpu_percent(1_000, 1_000, 2_000, 1_000, 4), 0.0);
    }

    #[test]
    fn cpu_percent_without_previous_sample_is_zero() {
        assert_eq!(cpu_percent(1_500, 0, 2_000, 0, 4), 0.0);
        assert_eq!(cpu_percent(1_500, 1_000, 1_000, 1_000, 4), 0.0);
    }

    #[test]
    fn memory_excludes_inactive_cache() {
        assert_eq!(memory_bytes(1_000, Some(300)), 700);
        assert_eq!(memory_bytes(1_000, None), 1_000);
        assert_eq!(memory_bytes(1_000, Some(2_000)), 1_000);
    }
}
