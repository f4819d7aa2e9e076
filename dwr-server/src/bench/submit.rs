//! `dwr bench --arrays N`: how fast jobs are stored, one by one and as arrays of N tasks,
//! in one run on one store. Nothing runs them: no executor is started, so what is measured
//! is the submission alone (validation, the store's write, the wake-up).

use std::sync::Arc;
use std::time::Instant;

use dwr_core::placement::FirstFit;
use dwr_core::{InMemoryJobStore, JobId, JobStore, Scheduler, SchedulerConfig};
use dwr_redis::{RedisConfig, RedisJobStore};
use serde::Serialize;

use super::load::{job_spec, BenchArgs, StoreKind};
use super::BenchError;

/// The figures of a submit run; printed as the last line, as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct SubmitReport {
    /// Store used.
    pub store: StoreKind,
    /// Jobs stored each way.
    pub jobs: usize,
    /// Tasks per array.
    pub array_size: usize,
    /// Submits in flight at once, one by one.
    pub concurrency: usize,
    /// Jobs stored per second, one `POST /jobs` worth each.
    pub one_by_one_jobs_per_second: f64,
    /// Tasks stored per second, as arrays.
    pub array_jobs_per_second: f64,
    /// The second over the first.
    pub ratio: f64,
}

/// Stores `args.jobs` jobs one by one (`args.concurrency` at once), then as many tasks in
/// arrays of `array_size`, each timed; prints and returns the figures.
pub async fn run_submit_bench(
    args: &BenchArgs,
    array_size: usize,
) -> Result<SubmitReport, BenchError> {
    let store: Arc<dyn JobStore> = match args.store {
        StoreKind::Memory => Arc::new(InMemoryJobStore::new()),
        StoreKind::Redis => {
            let config = RedisConfig {
                url: Some(args.redis_url.clone()),
                key_prefix: format!("bench-{}:", &JobId::new().to_string()[..8]),
                ..RedisConfig::default()
            };
            Arc::new(
                RedisJobStore::connect(config)
                    .await
                    .map_err(BenchError::Redis)?,
            )
        }
    };
    let scheduler = Scheduler::new(store, Arc::new(FirstFit), SchedulerConfig::default());
    let spec = job_spec(args);
    let array_size = array_size.clamp(1, dwr_core::arrays::MAX_ARRAY_TASKS as usize);
    let concurrency = args.concurrency.max(1);
    println!(
        "dwr bench --arrays {array_size}: {} jobs on {:?}, one by one ({concurrency} at once), then in arrays",
        args.jobs, args.store
    );

    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (scheduler, spec) = (scheduler.clone(), spec.clone());
        let share = args.jobs / concurrency + usize::from(worker < args.jobs % concurrency);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                scheduler.submit(spec.clone()).await?;
            }
            Ok::<_, dwr_core::SubmitError>(())
        }));
    }
    for task in tasks {
        task.await
            .map_err(|e| BenchError::Stalled(format!("a submit task failed: {e}")))?
            .map_err(|e| BenchError::Stalled(format!("submit: {e}")))?;
    }
    let one_by_one = args.jobs as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut left = args.jobs;
    while left > 0 {
        let count = left.min(array_size);
        scheduler
            .submit_array(spec.clone(), count as u32, None, None)
            .await
            .map_err(|e| BenchError::Stalled(format!("submit of an array: {e}")))?;
        left -= count;
    }
    let arrays = args.jobs as f64 / started.elapsed().as_secs_f64();

    let report = SubmitReport {
        store: args.store,
        jobs: args.jobs,
        array_size,
        concurrency,
        one_by_one_jobs_per_second: one_by_one.round(),
        array_jobs_per_second: arrays.round(),
        ratio: (arrays / one_by_one * 100.0).round() / 100.0,
    };
    println!(
        "  one by one: {:.0} jobs/s; arrays of {array_size}: {:.0} jobs/s ({:.2}x)",
        one_by_one, arrays, report.ratio
    );
    match serde_json::to_string(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("error: cannot print the report as JSON: {e}"),
    }
    Ok(report)
}
