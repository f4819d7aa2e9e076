//! `dwr simulate`: many executors, a growing queue, and the cost of a scheduling pass.
//!
//! Executors are registered straight into the in-memory store (no agents: they would only
//! add heartbeats), then jobs are queued in steps; after each step one scheduling pass is
//! timed, and the process's memory is read. The first steps fill the cluster; later jobs
//! stay pending, so later passes show what a long queue costs.

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use dwr_core::placement::FirstFit;
use dwr_core::queues::{QueueConfig, Queues, Quota};
use dwr_core::{
    ExecutorId, ExecutorRegistration, InMemoryJobStore, Job, JobId, JobSpec, JobStore, Scheduler,
    SchedulerConfig, Timestamp, DEFAULT_QUEUE,
};
use serde::Serialize;

use super::stats::rss_mib;
use super::BenchError;

/// Flags of `dwr simulate`.
#[derive(Args, Clone, Debug)]
pub struct SimulateArgs {
    /// Executors to register (4 cores, 16 GiB each).
    #[arg(long, default_value_t = 10_000)]
    pub executors: usize,
    /// Jobs to queue in all (1 core, 1 GiB each).
    #[arg(long, default_value_t = 1_000_000)]
    pub jobs: usize,
    /// Number of steps the jobs are queued in; one pass is timed after each.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Pending jobs considered per pass (the scheduler's `max_jobs_per_pass`).
    #[arg(long, default_value_t = 10_000)]
    pub max_jobs_per_pass: usize,
    /// Give the jobs priorities spread over 0..=100 (the n-th job `37 n mod 101`) instead
    /// of the default for all.
    #[arg(long)]
    pub priorities: bool,
    /// Spread the jobs round-robin over this many queues, `q1` to `qN`, of weights 1 to N;
    /// the last has a CPU quota of half the cluster.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub queues: u32,
}

/// The figures after one step.
#[derive(Clone, Debug, Serialize)]
pub struct SimulationStep {
    /// Jobs queued so far.
    pub queued: usize,
    /// Jobs pending after the pass.
    pub pending: u64,
    /// Jobs assigned so far.
    pub assigned: u64,
    /// Seconds the pass took.
    pub pass_seconds: f64,
    /// Jobs placed by the pass.
    pub placed: usize,
    /// Resident memory after the pass, MiB.
    pub rss_mib: f64,
}

/// Runs the simulation, printing one line per step and a JSON array at the end.
pub async fn run_simulation(args: SimulateArgs) -> Result<Vec<SimulationStep>, BenchError> {
    let store = Arc::new(InMemoryJobStore::new());
    for n in 0..args.executors {
        let reg = ExecutorRegistration::new(
            ExecutorId::new(format!("sim-{n:06}")),
            "127.0.0.1",
            4_000,
            16 * 1024,
            Vec::new(),
        );
        store
            .register_executor(&reg)
            .await
            .map_err(BenchError::Store)?;
    }
    let names: Vec<String> = if args.queues > 1 {
        (1..=args.queues).map(|n| format!("q{n}")).collect()
    } else {
        vec![DEFAULT_QUEUE.to_owned()]
    };
    let defs = names.iter().zip(1..).map(|(name, weight)| QueueConfig {
        weight,
        quota: Quota {
            cpu_millis: (weight == args.queues && args.queues > 1)
                .then_some(args.executors as u64 * 4_000 / 2),
            ..Quota::NONE
        },
        ..QueueConfig::unlimited(name.clone())
    });
    let config = SchedulerConfig {
        max_jobs_per_pass: args.max_jobs_per_pass,
        queues: Queues::new(defs).map_err(|e| BenchError::Config(e.to_string()))?,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(store.clone(), Arc::new(FirstFit), config);
    let spec = JobSpec::new("sim", vec!["true".into()], 1_000, 1_024);
    let per_step = args.jobs.div_ceil(args.steps.max(1));
    let mut steps = Vec::new();
    let mut queued = 0;
    println!(
        "dwr simulate: {} executors, {} jobs in {} steps, {} jobs per pass{}{}",
        args.executors,
        args.jobs,
        args.steps,
        args.max_jobs_per_pass,
        if args.priorities {
            ", priorities 0-100"
        } else {
            ""
        },
        if args.queues > 1 {
            format!(", {} queues", args.queues)
        } else {
            String::new()
        }
    );
    while queued < args.jobs {
        let batch = per_step.min(args.jobs - queued);
        let now = Timestamp::now();
        for n in queued..queued + batch {
            let mut spec = spec.clone();
            if args.priorities {
                spec.priority = (n * 37 % 101) as u8;
            }
            spec.queue.clone_from(&names[n % names.len()]);
            store
                .submit(Job::new(JobId::new(), spec, now))
                .await
                .map_err(BenchError::Store)?;
        }
        queued += batch;
        let started = Instant::now();
        let report = scheduler.run_pass().await.map_err(BenchError::Store)?;
        let pass_seconds = started.elapsed().as_secs_f64();
        let counts = store.counts().await.map_err(BenchError::Store)?;
        let step = SimulationStep {
            queued,
            pending: counts
                .get(&dwr_core::JobState::Pending)
                .copied()
                .unwrap_or(0),
            assigned: counts
                .get(&dwr_core::JobState::Assigned)
                .copied()
                .unwrap_or(0),
            pass_seconds,
            placed: report.assignments.len(),
            rss_mib: rss_mib().0,
        };
        println!(
            "  queued {:>9}  pending {:>9}  assigned {:>7}  pass {:>8.3} s  placed {:>6}  rss {:>7.1} MiB",
            step.queued, step.pending, step.assigned, step.pass_seconds, step.placed, step.rss_mib
        );
        steps.push(step);
    }
    match serde_json::to_string(&steps) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("error: cannot print the steps as JSON: {e}"),
    }
    Ok(steps)
}
