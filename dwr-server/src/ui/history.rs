//! [`History`]: what the overview draws over the last hour: placements per second (this
//! scheduler's) and the CPU and memory allocated across live executors, sampled every
//! [`SAMPLE_EVERY`] by a task the first dashboard page shown starts.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dwr_core::Scheduler;

/// Time between two samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept: one hour.
pub const SAMPLES_KEPT: usize = 360;

/// One sample.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Placements per second since the previous sample.
    pub placements_per_second: f64,
    /// Allocated CPU over the live executors' CPU, 0..=1.
    pub cpu: f64,
    /// Allocated memory over the live executors' memory, 0..=1.
    pub memory: f64,
}

/// The samples of the last hour, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    started: tokio::sync::OnceCell<()>,
}

impl History {
    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Adds a sample, dropping the oldest past [`SAMPLES_KEPT`].
    pub fn push(&self, sample: Sample) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == SAMPLES_KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Starts sampling `scheduler` (once per process).
    pub async fn start(self: &std::sync::Arc<Self>, scheduler: Scheduler) {
        let history = std::sync::Arc::downgrade(self);
        self.started
            .get_or_init(|| async move {
                tokio::spawn(sample_forever(history, scheduler));
            })
            .await;
    }
}

async fn sample_forever(history: std::sync::Weak<History>, scheduler: Scheduler) {
    let mut last = (Instant::now(), scheduler.metrics().placements);
    loop {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let Some(history) = history.upgrade() else {
            return;
        };
        let placements = scheduler.metrics().placements;
        let elapsed = last.0.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
        let rate = placements.saturating_sub(last.1) as f64 / elapsed;
        last = (Instant::now(), placements);
        let (cpu, memory) = match utilization(&scheduler).await {
            Some(u) => u,
            None => continue,
        };
        history.push(Sample {
            placements_per_second: rate,
            cpu,
            memory,
        });
    }
}

/// Allocated over total CPU and memory of the live executors.
pub async fn utilization(scheduler: &Scheduler) -> Option<(f64, f64)> {
    let store = scheduler.store();
    let now = store.now().await.ok()?;
    let executors = store.executors().await.ok()?;
    let (mut cpu, mut cpu_total, mut mem, mut mem_total) = (0u64, 0u64, 0u64, 0u64);
    for executor in executors.iter().filter(|e| e.is_alive(now)) {
        let cap = executor.capacity();
        cpu_total += cap.cpu_millis;
        mem_total += cap.memory_mib;
        cpu += executor.allocated.cpu_millis;
        mem += executor.allocated.memory_mib;
    }
    let ratio = |a: u64, t: u64| if t == 0 { 0.0 } else { a as f64 / t as f64 };
    Some((ratio(cpu, cpu_total), ratio(mem, mem_total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_hour_oldest_first() {
        let history = History::default();
        for i in 0..SAMPLES_KEPT + 5 {
            history.push(Sample {
                placements_per_second: i as f64,
                ..Sample::default()
            });
        }
        let samples = history.samples();
        assert_eq!(samples.len(), SAMPLES_KEPT);
        assert_eq!(samples[0].placements_per_second, 5.0);
        assert_eq!(
            samples.last().unwrap().placements_per_second,
            (SAMPLES_KEPT + 4) as f64
        );
    }
}
