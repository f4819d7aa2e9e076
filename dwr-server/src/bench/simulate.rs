//! `dwr simulate`: many executors, a growing queue, and the cost of a scheduling pass.
//!
//! Executors are registered straight into the store (no agents: they would only add
//! heartbeats), then jobs are queued in steps; after each step one scheduling pass is
//! timed, and the process's memory is read. The first steps fill the cluster; later jobs
//! stay pending, so later passes show what a long queue costs.
//!
//! Over Redis (`--store redis`) it first measures what the executors' heartbeats cost the
//! server: simulated agents in this process send real heartbeats (the agent's own call, the
//! real script) as fast as Redis takes them for `--heartbeat-seconds`, and the server's CPU
//! per heartbeat, times the executors, over the interval, is the share of one core that
//! heartbeats take at that interval. It also times the read of every executor a pass makes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use dwr_core::placement::FirstFit;
use dwr_core::queues::{QueueConfig, Queues, Quota};
use dwr_core::{
    ExecutorId, ExecutorRegistration, HostUsage, InMemoryJobStore, Job, JobId, JobSpec, JobStore,
    Scheduler, SchedulerConfig, Timestamp, DEFAULT_QUEUE,
};
use dwr_redis::RedisJobStore;
use futures::{stream, StreamExt, TryStreamExt};
use serde::Serialize;

use super::stats::{median, rss_mib};
use super::{BenchError, StoreKind};

/// Requests in flight at once while registering executors, queueing jobs and sending
/// heartbeats (the simulated agents).
const CONCURRENCY: usize = 64;

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
    /// Store to simulate over.
    #[arg(long, value_enum, default_value = "memory")]
    pub store: StoreKind,
    /// Redis URL for `--store redis` (a fresh key prefix is used and deleted afterwards).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// With `--store redis`: seconds of heartbeats sent before the passes, to measure
    /// their cost (0: none).
    #[arg(long, default_value_t = 5.0)]
    pub heartbeat_seconds: f64,
    /// With `--store redis`: the heartbeat interval the cost is reported at, seconds
    /// (the agents' default).
    #[arg(long, default_value_t = 30)]
    pub heartbeat_interval: u64,
}

/// What a simulation measured.
#[derive(Clone, Debug, Serialize)]
pub struct SimulationReport {
    /// Store used.
    pub store: StoreKind,
    /// Executors registered.
    pub executors: usize,
    /// The figures after each step.
    pub steps: Vec<SimulationStep>,
    /// With `--store redis` and heartbeats: what they cost the server.
    pub heartbeats: Option<HeartbeatCost>,
    /// The median time of five reads of every executor as a pass reads them
    /// ([`JobStore::executors_for_placement`]) after the last step, ms.
    pub executors_read_ms: f64,
    /// The same for the whole read, job sets and usage included ([`JobStore::executors`],
    /// what `GET /executors` reads), ms.
    pub executors_whole_read_ms: f64,
    /// The median time of five passes after the steps, each after a second's worth of the
    /// executors' heartbeats at `--heartbeat-interval` (`executors / interval` of them), ms:
    /// what a pass costs a cluster at rest, where only heartbeats change executors.
    pub pass_at_rest_ms: f64,
}

/// What the executors' heartbeats cost Redis.
#[derive(Clone, Debug, Serialize)]
pub struct HeartbeatCost {
    /// Heartbeats sent.
    pub sent: u64,
    /// Heartbeats per second the simulated agents reached.
    pub per_second: f64,
    /// The server's main-thread CPU per heartbeat, µs.
    pub redis_cpu_us: f64,
    /// The interval the share is reported at, seconds.
    pub interval_seconds: u64,
    /// The share of one Redis core the executors' heartbeats take at that interval,
    /// percent (`redis_cpu_us × executors / interval`).
    pub core_percent_at_interval: f64,
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

/// Runs the simulation, printing one line per step and its report as JSON at the end.
pub async fn run_simulation(args: SimulateArgs) -> Result<SimulationReport, BenchError> {
    let (store, redis): (Arc<dyn JobStore>, Option<RedisJobStore>) = match args.store {
        StoreKind::Memory => (Arc::new(InMemoryJobStore::new()), None),
        StoreKind::Redis => {
            let redis = RedisJobStore::connect(super::fresh_redis_config(&args.redis_url, "sim"))
                .await
                .map_err(BenchError::Redis)?;
            (Arc::new(redis.clone()), Some(redis))
        }
    };
    let result = simulate(&args, store, redis.as_ref()).await;
    // Leave nothing behind in a shared Redis, whatever happened.
    if let Some(redis) = &redis {
        redis.delete_all_keys().await.map_err(BenchError::Store)?;
    }
    let report = result?;
    match serde_json::to_string(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("error: cannot print the report as JSON: {e}"),
    }
    Ok(report)
}

async fn simulate(
    args: &SimulateArgs,
    store: Arc<dyn JobStore>,
    redis: Option<&RedisJobStore>,
) -> Result<SimulationReport, BenchError> {
    let ids: Vec<ExecutorId> = (0..args.executors)
        .map(|n| ExecutorId::new(format!("sim-{n:06}")))
        .collect();
    stream::iter(&ids)
        .map(|id| {
            let reg =
                ExecutorRegistration::new(id.clone(), "127.0.0.1", 4_000, 16 * 1024, Vec::new());
            let store = store.clone();
            async move { store.register_executor(&reg).await.map(drop) }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<()>()
        .await
        .map_err(BenchError::Store)?;
    let heartbeats = match redis {
        Some(redis) if args.heartbeat_seconds > 0.0 => {
            Some(heartbeat_cost(redis, &ids, args).await?)
        }
        _ => None,
    };
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
        "dwr simulate: {} executors, {} jobs in {} steps, {} jobs per pass{}{}, {} store",
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
        },
        match args.store {
            StoreKind::Memory => "in-memory",
            StoreKind::Redis => "Redis",
        }
    );
    if let Some(cost) = &heartbeats {
        println!(
            "  heartbeats: {} at {:.0}/s, {:.1} µs of Redis CPU each: {:.2}% of a core for {} executors every {} s",
            cost.sent,
            cost.per_second,
            cost.redis_cpu_us,
            cost.core_percent_at_interval,
            args.executors,
            cost.interval_seconds
        );
    }
    while queued < args.jobs {
        let batch = per_step.min(args.jobs - queued);
        let now = Timestamp::now();
        stream::iter(queued..queued + batch)
            .map(|n| {
                let mut spec = spec.clone();
                if args.priorities {
                    spec.priority = (n * 37 % 101) as u8;
                }
                spec.queue.clone_from(&names[n % names.len()]);
                let store = store.clone();
                async move {
                    store
                        .submit(Job::new(JobId::new(), spec, now))
                        .await
                        .map(drop)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await
            .map_err(BenchError::Store)?;
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
    let pass_at_rest_ms = pass_at_rest_ms(&scheduler, store.as_ref(), &ids, args).await?;
    println!(
        "  a pass at rest (after a second's heartbeats at the {} s interval): {pass_at_rest_ms:.1} ms (median of 5)",
        args.heartbeat_interval
    );
    // Read with the cluster full, as a pass over a busy cluster reads it.
    let (executors_read_ms, executors_whole_read_ms) = executors_read_ms(store.as_ref()).await?;
    println!(
        "  reading every executor: {executors_read_ms:.1} ms as a pass reads them, {executors_whole_read_ms:.1} ms with job sets and usage (medians of 5)"
    );
    Ok(SimulationReport {
        store: args.store,
        executors: args.executors,
        steps,
        heartbeats,
        executors_read_ms,
        executors_whole_read_ms,
        pass_at_rest_ms,
    })
}

/// Heartbeats from simulated agents, `CONCURRENCY` at a time, round-robin over the
/// executors, for `--heartbeat-seconds`, and the server's CPU they took.
async fn heartbeat_cost(
    redis: &RedisJobStore,
    ids: &[ExecutorId],
    args: &SimulateArgs,
) -> Result<HeartbeatCost, BenchError> {
    // What an agent reports: a usage of realistic size.
    let usage = HostUsage {
        cpu_percent: 37.5,
        memory_used_mib: 12_345,
    };
    let ids = Arc::new(ids.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let cpu_before = redis
        .server_cpu_seconds()
        .await
        .map_err(BenchError::Store)?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.heartbeat_seconds);
    let agents: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (redis, ids, next) = (redis.clone(), ids.clone(), next.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    redis.heartbeat(&ids[n % ids.len()], &usage).await?;
                }
                Ok::<_, dwr_core::StoreError>(())
            })
        })
        .collect();
    for agent in agents {
        agent
            .await
            .map_err(|e| BenchError::Stalled(format!("a simulated agent failed: {e}")))?
            .map_err(BenchError::Store)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = redis
        .server_cpu_seconds()
        .await
        .map_err(BenchError::Store)?;
    // Every agent counted one call past the deadline's last check: `next` counts calls
    // started, and each started call completed.
    let sent = next.load(Ordering::Relaxed);
    let redis_cpu_us = (cpu_after - cpu_before) * 1e6 / sent.max(1) as f64;
    Ok(HeartbeatCost {
        sent,
        per_second: sent as f64 / seconds,
        redis_cpu_us,
        interval_seconds: args.heartbeat_interval,
        core_percent_at_interval: redis_cpu_us * ids.len() as f64
            / args.heartbeat_interval.max(1) as f64
            / 1e4,
    })
}

/// The median time of five passes, each after a second's worth of heartbeats.
async fn pass_at_rest_ms(
    scheduler: &Scheduler,
    store: &dyn JobStore,
    ids: &[ExecutorId],
    args: &SimulateArgs,
) -> Result<f64, BenchError> {
    let per_second = ids.len().div_ceil(args.heartbeat_interval.max(1) as usize);
    let usage = HostUsage::default();
    let mut beats = ids.iter().cycle();
    let mut samples = Vec::new();
    for _ in 0..5 {
        stream::iter(beats.by_ref().take(per_second))
            .map(|id| store.heartbeat(id, &usage))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await
            .map_err(BenchError::Store)?;
        let started = Instant::now();
        scheduler.run_pass().await.map_err(BenchError::Store)?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut samples))
}

/// The medians of five reads of every executor as a pass reads them, and of five whole
/// reads, alternating, ms.
async fn executors_read_ms(store: &dyn JobStore) -> Result<(f64, f64), BenchError> {
    let (mut lean, mut whole) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let started = Instant::now();
        store
            .executors_for_placement()
            .await
            .map_err(BenchError::Store)?;
        lean.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        store.executors().await.map_err(BenchError::Store)?;
        whole.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(&mut lean), median(&mut whole)))
}
