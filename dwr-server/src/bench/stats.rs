//! Small statistics for the load tool: percentiles and the process's memory.

/// The `p`-th percentile (0..=100) of `sorted` by nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p90 and p99 of `values` (sorted in place).
pub fn p50_p90_p99(values: &mut [f64]) -> [f64; 3] {
    values.sort_by(f64::total_cmp);
    [50.0, 90.0, 99.0].map(|p| percentile(values, p))
}

/// The median of `values` (sorted in place) by nearest rank; 0 when empty.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(values, 50.0)
}

/// This process's resident memory now and at its peak, in MiB (from /proc; zero elsewhere).
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(p50_p90_p99(&mut v), [50.0, 90.0, 99.0]);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn reads_memory_on_linux() {
        let (now, peak) = rss_mib();
        if cfg!(target_os = "linux") {
            assert!(now > 0.0 && peak >= now, "{now} {peak}");
        }
    }
}
