//! `dwr bench`: scheduler + agents in one process, jobs pushed through, figures printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use dwr_core::placement::FirstFit;
use dwr_core::{
    AgentConfig, ContainerRuntime, ContainerRuntimeExt, ContainerSpec, ExecutorAgent, ExecutorId,
    Expiry, FakeGpuProbe, FakeHostProbe, FakeRuntime, InMemoryJobStore, Job, JobId, JobQuery,
    JobSpec, JobState, JobStore, Retention, Scheduler, SchedulerConfig, SubmitError, Timestamp,
};
use dwr_docker::{DockerConfig, DockerRuntime};
use dwr_redis::{BaselineClients, CommandStats, RedisJobStore};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::stats::{p50_p90_p99, rss_mib};
use super::BenchError;

/// Which store the load runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The in-memory store of this process.
    Memory,
    /// Redis at `--redis-url`.
    Redis,
}

/// Which container runtime the executors use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// The fake runtime: jobs finish at once or after `--job-ms`.
    Fake,
    /// Docker, running `--image`.
    Docker,
}

/// Flags of `dwr bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Store to run over.
    #[arg(long, value_enum, default_value = "memory")]
    pub store: StoreKind,
    /// Redis URL for `--store redis` (a fresh key prefix is used and deleted afterwards).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// With `--store redis`, replicas every change of state waits for (`WAIT`), as
    /// `DWR_REDIS_WAIT_REPLICAS` does; the Redis at `--redis-url` needs that many replicas.
    #[arg(long, default_value_t = 0)]
    pub wait_replicas: u32,
    /// Container runtime of the executors.
    #[arg(long, value_enum, default_value = "fake")]
    pub runtime: RuntimeKind,
    /// Image of the jobs with `--runtime docker`.
    #[arg(long, default_value = "dwr-test/busybox:latest")]
    pub image: String,
    /// Executor agents to run.
    #[arg(long, default_value_t = 8)]
    pub executors: usize,
    /// Jobs to submit.
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Jobs in flight at once: submitted and not yet terminal (a closed loop; a new job is
    /// submitted as one ends).
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// With the fake runtime, how long each job runs (0: it exits at once).
    #[arg(long, default_value_t = 0)]
    pub job_ms: u64,
    /// Delete finished jobs older than this many seconds in the background (the
    /// scheduler's retention; default: the scheduler's own, 7 days): a long run with a
    /// short retention shows whether memory and Redis stay flat.
    #[arg(long)]
    pub retention_secs: Option<f64>,
    /// Measure submission instead: store `--jobs` jobs one by one (`--concurrency` at
    /// once), then as arrays of this many tasks, and compare the rates (nothing runs them).
    #[arg(long, value_name = "TASKS")]
    pub arrays: Option<usize>,
    /// A shell command run at the end of each phase of the run, with the phase's name as
    /// `$1`: `setup` (executors registered), `baseline`, `unpipelined_baseline`, `jobs` (the
    /// measured window). Under Callgrind, `callgrind_control -d "$1"` counts the server's
    /// instructions in each (BENCHMARKS.md).
    #[arg(long, value_name = "COMMAND")]
    pub after_phase: Option<String>,
}

/// The figures of one run; printed as the last line, as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Store used.
    pub store: StoreKind,
    /// Replicas every change of state waited for (`--wait-replicas`).
    pub wait_replicas: u32,
    /// Runtime used.
    pub runtime: RuntimeKind,
    /// Executors.
    pub executors: usize,
    /// Jobs submitted.
    pub jobs: usize,
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// Jobs that succeeded.
    pub succeeded: usize,
    /// Seconds from the first submit to the last job terminal.
    pub wall_seconds: f64,
    /// Jobs per second, submit→terminal over the whole run.
    pub jobs_per_second: f64,
    /// submit→assigned percentiles (p50, p90, p99) in ms: the scheduler's share.
    pub submit_to_assigned_ms: [f64; 3],
    /// submit→running percentiles (p50, p90, p99) in ms.
    pub submit_to_running_ms: [f64; 3],
    /// submit→terminal percentiles (p50, p90, p99) in ms.
    pub submit_to_terminal_ms: [f64; 3],
    /// Scheduling passes the scheduler ran.
    pub scheduler_passes: u64,
    /// Resident memory when the run started, MiB.
    pub rss_start_mib: f64,
    /// Peak resident memory of the process, MiB.
    pub rss_peak_mib: f64,
    /// Resident memory sampled every half second during the run, MiB.
    pub rss_samples_mib: Vec<f64>,
    /// With `--store redis`: Redis's `used_memory` (MiB) and key count, sampled every
    /// half second.
    pub redis_samples: Vec<(f64, u64)>,
    /// Redis commands run per job over the run, those inside the Lua scripts included
    /// (all clients: submit, scheduling, executor events, heartbeats, logs, this tool's
    /// progress polling), with `--store redis`.
    pub redis_commands_per_job: Option<f64>,
    /// Requests (round trips) the scheduler and the agents sent to Redis per job: script
    /// calls, reads, blocking pops, subscriptions (the tool's own polling goes through
    /// another connection and is not counted).
    pub redis_round_trips_per_job: Option<f64>,
    /// With `--store redis`: how the scripts were called, `fcall` (functions of the
    /// store's library, Redis 7 and later) or `evalsha`.
    pub redis_scripts: Option<&'static str>,
    /// With `--store redis`: calls per second of a fixed three-command Lua script on the
    /// same server at the same concurrency, measured before the run: the baseline.
    pub baseline_evals_per_second: Option<f64>,
    /// With `--store redis`: the server's main-thread CPU from the first submit to the last
    /// job terminal, µs per job (everything a job costs while it goes through the system;
    /// not this tool's final read of every job nor the purge after the run).
    pub redis_cpu_us_per_job: Option<f64>,
    /// With `--store redis`: the server's main-thread CPU of deleting the finished jobs
    /// after the run (what the retention pays for each job later), µs per job.
    pub redis_cpu_us_per_job_purge: Option<f64>,
    /// With `--store redis`: the server's main-thread CPU during the baseline, µs per call.
    pub redis_cpu_us_per_baseline_eval: Option<f64>,
    /// With `--store redis`: what a job costs Redis in baseline calls, by CPU
    /// (`redis_cpu_us_per_job / redis_cpu_us_per_baseline_eval`): the cost per job that
    /// neither the host's speed nor this tool's own share of the CPU moves.
    pub baseline_evals_per_job: Option<f64>,
    /// With `--store redis`: jobs/s over the baseline's calls/s, a figure that holds from
    /// host to host (a job costs 1 / this many baseline calls' worth of Redis).
    pub jobs_per_baseline_eval: Option<f64>,
    /// With `--store redis`: calls per second of the same script with each task on a
    /// connection of its own, one call in flight on each (as `redis-benchmark`'s clients
    /// call: issue 17 set its goal of five calls a job against such a rate), measured
    /// after the pipelined baseline.
    pub unpipelined_baseline_evals_per_second: Option<f64>,
    /// With `--store redis`: the server's main-thread CPU during the unpipelined baseline,
    /// µs per call (every call a read and a write of its own).
    pub redis_cpu_us_per_unpipelined_eval: Option<f64>,
    /// With `--store redis`: what a job costs Redis in unpipelined baseline calls, by CPU
    /// (`redis_cpu_us_per_job / redis_cpu_us_per_unpipelined_eval`).
    pub unpipelined_evals_per_job: Option<f64>,
    /// With `--store redis`: jobs/s over the unpipelined baseline's calls/s.
    pub jobs_per_unpipelined_eval: Option<f64>,
    /// With Docker: create+start straight through the Engine API, p50 ms (one such start
    /// alternates with each job).
    pub docker_baseline_start_p50_ms: Option<f64>,
    /// With Docker: the median over the rounds of (the job's submit→running − the direct
    /// create+start just before it), ms.
    pub docker_overhead_p50_ms: Option<f64>,
}

/// Runs the load and prints the figures; the last line printed is the JSON report.
pub async fn run_bench(args: BenchArgs) -> Result<BenchReport, BenchError> {
    // `store` is what the scheduler and the agents use; `watch` is the tool's own view for
    // its progress polling and final reads: with Redis a second connection, so that the
    // requests counted on `store` are the system's alone.
    let (store, watch, redis): (Arc<dyn JobStore>, Arc<dyn JobStore>, Option<RedisJobStore>) =
        match args.store {
            StoreKind::Memory => {
                let store = Arc::new(InMemoryJobStore::new());
                (store.clone(), store, None)
            }
            StoreKind::Redis => {
                let config = dwr_redis::RedisConfig {
                    wait_replicas: args.wait_replicas,
                    ..super::fresh_redis_config(&args.redis_url, "bench")
                };
                let redis = RedisJobStore::connect(config.clone())
                    .await
                    .map_err(BenchError::Redis)?;
                let watch = RedisJobStore::connect(config)
                    .await
                    .map_err(BenchError::Redis)?;
                (Arc::new(redis.clone()), Arc::new(watch), Some(redis))
            }
        };
    // With the fake runtime, the tool counts the jobs that ended by its removals (see
    // `submit_closed_loop`).
    let fake = Arc::new(FakeRuntime::new().recording_specs(false));
    let runtime: Arc<dyn ContainerRuntime> = match args.runtime {
        RuntimeKind::Fake => fake.clone(),
        RuntimeKind::Docker => Arc::new(
            DockerRuntime::connect(DockerConfig::from_env().map_err(BenchError::DockerConfig)?)
                .await
                .map_err(BenchError::Docker)?,
        ),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut scheduler_config = SchedulerConfig::default();
    if let Some(secs) = args.retention_secs.filter(|s| s.is_finite() && *s > 0.0) {
        let age = Duration::from_secs_f64(secs);
        scheduler_config.retention = Retention {
            max_age: Some(age),
            max_jobs: None,
            every: (age / 2).clamp(Duration::from_millis(100), Duration::from_secs(60)),
        };
    }
    let scheduler = Scheduler::new(store.clone(), Arc::new(FirstFit), scheduler_config);
    let mut tasks = Vec::new();
    for n in 0..args.executors {
        let mut config = AgentConfig::new(bench_executor(n), "127.0.0.1");
        // Room for every job at once: the load measures the machinery, not queueing.
        config.cpu_millis = Some(1_000 * 1_000);
        config.memory_mib = Some(1024 * 1024);
        config.heartbeat_interval = Duration::from_secs(5);
        config.poll_interval = Duration::from_secs(1);
        config.stop_grace = Duration::from_secs(1);
        let agent = ExecutorAgent::new(
            store.clone(),
            runtime.clone(),
            Arc::new(FakeGpuProbe::none()),
            Arc::new(FakeHostProbe::new(1_000, 1_024)),
            config,
        );
        let rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = agent.run(stopped(rx)).await {
                tracing::error!(error = %e, "bench agent failed");
            }
        }));
    }
    {
        let s = scheduler.clone();
        let rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = s.run(stopped(rx)).await;
        }));
    }
    wait_for_executors(&*watch, args.executors).await?;
    after_phase(&args, "setup")?;

    // The baselines first, on the same server and at the same concurrency: pipelined over
    // the store's connection, then unpipelined (a connection per task).
    let (baseline_evals_per_second, redis_cpu_us_per_baseline_eval) =
        baseline(redis.as_ref(), args.concurrency, BaselineClients::Shared).await?;
    after_phase(&args, "baseline")?;
    let (unpipelined_baseline_evals_per_second, redis_cpu_us_per_unpipelined_eval) = baseline(
        redis.as_ref(),
        args.concurrency,
        BaselineClients::OwnConnection,
    )
    .await?;
    after_phase(&args, "unpipelined_baseline")?;
    let cpu_before = redis_cpu(redis.as_ref()).await?;
    let commands_before = redis_counters(redis.as_ref()).await?;
    let (rss_start_mib, _) = rss_mib();
    let spec = job_spec(&args);
    let started = Instant::now();
    let sampler = tokio::spawn({
        let rx = stop_rx.clone();
        let redis = redis.clone();
        async move {
            let (mut samples, mut redis_samples) = (Vec::new(), Vec::new());
            while !*rx.borrow() {
                samples.push(rss_mib().0);
                if let Some(r) = &redis {
                    if let Ok((used, keys)) = r.memory_and_keys().await {
                        redis_samples.push((used as f64 / (1024.0 * 1024.0), keys));
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (samples, redis_samples)
        }
    });
    // With Docker, jobs alternate one by one with direct starts (see `docker_paired`).
    let concurrency = match args.runtime {
        RuntimeKind::Fake => args.concurrency.max(1),
        RuntimeKind::Docker => 1,
    };
    // With Docker, the ids of the jobs in submission order, for pairing each with the
    // direct start before it; the fake runtime keeps only a count, so the tool's own memory
    // stays flat however many jobs it pushes through.
    let (submitted, paired_ids, baseline) = match args.runtime {
        RuntimeKind::Fake => (
            submit_closed_loop(&scheduler, &*watch, &fake, &spec, args.jobs, concurrency).await?,
            Vec::new(),
            None,
        ),
        RuntimeKind::Docker => {
            let (ids, direct) = docker_paired(
                &scheduler,
                &*watch,
                &*runtime,
                &spec,
                args.jobs,
                args.executors,
            )
            .await?;
            (ids.len(), ids, Some(direct))
        }
    };
    let wall = started.elapsed().as_secs_f64();
    let commands_after = redis_counters(redis.as_ref()).await?;
    let cpu_after = redis_cpu(redis.as_ref()).await?;
    after_phase(&args, "jobs")?;
    stop_tx.send_replace(true);
    let (rss_samples_mib, redis_samples) = sampler.await.unwrap_or_default();
    let (_, rss_peak_mib) = rss_mib();
    for task in tasks {
        let _ = task.await;
    }

    let jobs = terminal_jobs(&*watch, args.jobs).await?;
    let since_submit = |at: fn(&Job) -> Option<Timestamp>| -> Vec<f64> {
        jobs.iter()
            .filter_map(|j| ms_since_submit(j, at(j)))
            .collect()
    };
    let mut to_assigned = since_submit(|j| j.assigned_at);
    let mut to_running = since_submit(|j| j.started_at);
    let mut to_terminal = since_submit(|j| j.finished_at);
    let succeeded = jobs
        .iter()
        .filter(|j| j.state == JobState::Succeeded)
        .count();
    // Leave nothing behind in a shared Redis: jobs, logs and executors go.
    let cpu_before_purge = redis_cpu(redis.as_ref()).await?;
    store
        .purge_finished(Duration::ZERO)
        .await
        .map_err(BenchError::Store)?;
    let cpu_after_purge = redis_cpu(redis.as_ref()).await?;
    for exec in store.executors().await.map_err(BenchError::Store)? {
        store
            .expire_executor(exec.id(), Expiry::Now, "bench finished")
            .await
            .map_err(BenchError::Store)?;
    }
    let per_job = |before: Option<f64>, after: Option<f64>| {
        before
            .zip(after)
            .map(|(before, after)| (after - before) * 1e6 / submitted as f64)
    };
    let redis_cpu_us_per_job = per_job(cpu_before, cpu_after);
    let redis_delta =
        commands_before
            .zip(commands_after)
            .map(|((before, sent_before), (after, sent_after))| {
                (after.since(&before), sent_after - sent_before)
            });
    // With Docker: the p50 of the direct starts, and the p50 of the difference of each job's
    // submit→running from the direct start just before it.
    let docker = baseline.map(|mut direct| {
        let running: std::collections::HashMap<JobId, f64> = jobs
            .iter()
            .filter_map(|j| Some((j.id, ms_since_submit(j, j.started_at)?)))
            .collect();
        let mut paired: Vec<f64> = paired_ids
            .iter()
            .zip(&direct)
            .filter_map(|(id, d)| running.get(id).map(|r| r - d))
            .collect();
        (p50_p90_p99(&mut direct)[0], p50_p90_p99(&mut paired)[0])
    });
    let submit_to_running_ms = p50_p90_p99(&mut to_running);
    // A job's cost in a baseline's calls: by CPU (from the CPU per call), and by rate.
    let calls_per_job = |cpu_per_call: Option<f64>| {
        redis_cpu_us_per_job
            .zip(cpu_per_call)
            .map(|(job, call)| job / call)
    };
    let jobs_per_call =
        |calls_per_second: Option<f64>| calls_per_second.map(|base| submitted as f64 / wall / base);
    let report = BenchReport {
        store: args.store,
        wait_replicas: args.wait_replicas,
        runtime: args.runtime,
        executors: args.executors,
        jobs: submitted,
        concurrency,
        succeeded,
        wall_seconds: wall,
        jobs_per_second: submitted as f64 / wall,
        submit_to_assigned_ms: p50_p90_p99(&mut to_assigned),
        submit_to_running_ms,
        submit_to_terminal_ms: p50_p90_p99(&mut to_terminal),
        scheduler_passes: scheduler.metrics().passes,
        rss_start_mib,
        rss_peak_mib,
        rss_samples_mib,
        redis_samples,
        redis_commands_per_job: redis_delta
            .as_ref()
            .map(|(d, _)| d.total() as f64 / submitted as f64),
        redis_round_trips_per_job: redis_delta
            .as_ref()
            .map(|(_, sent)| *sent as f64 / submitted as f64),
        redis_scripts: redis.as_ref().map(|r| {
            if r.uses_functions() {
                "fcall"
            } else {
                "evalsha"
            }
        }),
        baseline_evals_per_second,
        redis_cpu_us_per_job,
        redis_cpu_us_per_job_purge: per_job(cpu_before_purge, cpu_after_purge),
        redis_cpu_us_per_baseline_eval,
        baseline_evals_per_job: calls_per_job(redis_cpu_us_per_baseline_eval),
        jobs_per_baseline_eval: jobs_per_call(baseline_evals_per_second),
        unpipelined_baseline_evals_per_second,
        redis_cpu_us_per_unpipelined_eval,
        unpipelined_evals_per_job: calls_per_job(redis_cpu_us_per_unpipelined_eval),
        jobs_per_unpipelined_eval: jobs_per_call(unpipelined_baseline_evals_per_second),
        docker_baseline_start_p50_ms: docker.map(|(direct, _)| direct),
        docker_overhead_p50_ms: docker.map(|(_, overhead)| overhead),
    };
    print_report(&report);
    Ok(report)
}

/// Milliseconds from the job's submit to `at`, when there is one.
fn ms_since_submit(job: &Job, at: Option<Timestamp>) -> Option<f64> {
    Some((at?.millis() - job.created_at.millis()) as f64)
}

/// The counters of `redis` (commands run inside it, requests this process sent), when the
/// run is over Redis.
/// How long `dwr bench` runs the Redis baseline before the load.
const BASELINE_FOR: Duration = Duration::from_secs(2);

/// With `--store redis`: the baseline's calls per second over `clients` (see
/// [`BaselineClients`]) for [`BASELINE_FOR`], and the server's main-thread CPU per call, µs.
async fn baseline(
    redis: Option<&RedisJobStore>,
    concurrency: usize,
    clients: BaselineClients,
) -> Result<(Option<f64>, Option<f64>), BenchError> {
    let Some(r) = redis else {
        return Ok((None, None));
    };
    let before = r.server_cpu_seconds().await.map_err(BenchError::Store)?;
    let rate = r
        .baseline_evals_per_second(concurrency, BASELINE_FOR, clients)
        .await
        .map_err(BenchError::Store)?;
    let after = r.server_cpu_seconds().await.map_err(BenchError::Store)?;
    Ok((
        Some(rate),
        Some((after - before) * 1e6 / (rate * BASELINE_FOR.as_secs_f64())),
    ))
}

/// The Redis server's main-thread CPU seconds, with `--store redis`.
async fn redis_cpu(redis: Option<&RedisJobStore>) -> Result<Option<f64>, BenchError> {
    match redis {
        Some(r) => Ok(Some(
            r.server_cpu_seconds().await.map_err(BenchError::Store)?,
        )),
        None => Ok(None),
    }
}

async fn redis_counters(
    redis: Option<&RedisJobStore>,
) -> Result<Option<(CommandStats, u64)>, BenchError> {
    let Some(r) = redis else {
        return Ok(None);
    };
    let stats = r.command_stats().await.map_err(BenchError::Store)?;
    Ok(Some((stats, r.requests_sent())))
}

pub(super) fn job_spec(args: &BenchArgs) -> JobSpec {
    let command = match args.runtime {
        RuntimeKind::Docker => vec!["true".to_owned()],
        RuntimeKind::Fake if args.job_ms == 0 => vec!["true".to_owned()],
        RuntimeKind::Fake => vec!["fake".to_owned(), format!("run={}ms", args.job_ms)],
    };
    let image = match args.runtime {
        RuntimeKind::Docker => args.image.clone(),
        RuntimeKind::Fake => "bench".to_owned(),
    };
    JobSpec::new(image, command, 100, 16)
}

/// With Docker: `jobs` rounds, each one container created and started straight through the
/// runtime (the Engine API's create+start, no scheduler, no store; its time is the
/// baseline sample) and then one job through dwr, each waited for until its container is
/// gone. Alternating the two keeps the engine's drift out of the comparison. Returns the
/// job ids and the baseline samples in ms.
async fn docker_paired(
    scheduler: &Scheduler,
    store: &dyn JobStore,
    runtime: &dyn ContainerRuntime,
    spec: &JobSpec,
    jobs: usize,
    executors: usize,
) -> Result<(Vec<JobId>, Vec<f64>), BenchError> {
    let (progress, _sink) = tokio::sync::mpsc::unbounded_channel();
    runtime
        .ensure_image(&spec.image, progress)
        .await
        .map_err(BenchError::Docker)?;
    let direct_executor = ExecutorId::new("bench-direct");
    let mut ids = Vec::with_capacity(jobs);
    let mut direct = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let container = ContainerSpec {
            job: JobId::new(),
            attempt: 1,
            executor: direct_executor.clone(),
            executor_ip: "127.0.0.1".into(),
            image: spec.image.clone(),
            command: spec.command.clone(),
            env: Default::default(),
            cpu_millis: spec.cpu_millis,
            memory_mib: spec.memory_mib,
            gpu_ids: Vec::new(),
            volumes: Vec::new(),
            read_only_rootfs: spec.read_only_rootfs,
        };
        let t = Instant::now();
        let id = runtime
            .create_and_start(&container)
            .await
            .map_err(BenchError::Docker)?;
        direct.push(t.elapsed().as_secs_f64() * 1e3);
        let _ = runtime.wait(&id).await;
        runtime.remove(&id).await.map_err(BenchError::Docker)?;

        let job = scheduler
            .submit(spec.clone())
            .await
            .map_err(|e| BenchError::Stalled(format!("submit failed: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done = store
                .job(job.id)
                .await
                .map_err(BenchError::Store)?
                .state
                .is_terminal();
            let mut leftover = 0;
            for n in 0..executors {
                let owned = runtime.list_owned(&bench_executor(n)).await;
                leftover += owned.map_err(BenchError::Docker)?.len();
            }
            if done && leftover == 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(BenchError::Stalled(format!(
                    "job {} did not end within 60 s",
                    job.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        ids.push(job.id);
    }
    Ok((ids, direct))
}

async fn wait_for_executors(store: &dyn JobStore, n: usize) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.executors().await.map_err(BenchError::Store)?.len() < n {
        if Instant::now() > deadline {
            return Err(BenchError::Stalled(format!(
                "{n} executors did not register within 30 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Submits `jobs` jobs keeping at most `in_flight` of them live (submitted and not yet
/// terminal): a closed loop, so latencies are those of the system, not of a queue the
/// tool built up itself. Returns when every job is terminal, with how many were submitted.
async fn submit_closed_loop(
    scheduler: &Scheduler,
    store: &dyn JobStore,
    runtime: &FakeRuntime,
    spec: &JobSpec,
    jobs: usize,
    in_flight: usize,
) -> Result<usize, BenchError> {
    let permits = Arc::new(Semaphore::new(in_flight));
    // A JoinSet drained as it goes: a finished task's output is freed at once, so the tool's
    // own memory does not grow with the number of jobs.
    let mut submissions = JoinSet::new();
    let mut submitted_ok = 0usize;
    let mut released = 0usize;
    let mut progress = (0usize, Instant::now());
    let mut issued = 0usize;
    loop {
        // Issue what the window allows.
        while issued < jobs {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            permit.forget();
            let s = scheduler.clone();
            let spec = spec.clone();
            submissions.spawn(async move { s.submit(spec).await.map(|job| job.id) });
            issued += 1;
        }
        while let Some(done) = submissions.try_join_next() {
            check_submission(done)?;
            submitted_ok += 1;
        }
        // Give back one permit per job that ended, counted by the containers removed: an
        // agent removes a job's container once the store recorded its end, so the count
        // never runs ahead of the store's. Counted in the process, not asked of the store:
        // the tool's own reads (one every millisecond) would count in the server's CPU per
        // job, which is the system's alone.
        let ended = usize::try_from(runtime.removed_count()).unwrap_or(usize::MAX);
        if ended > released {
            permits.add_permits(ended - released);
            released = ended;
        }
        if ended >= jobs && jobs_ended(scheduler, store).await? >= jobs {
            break;
        }
        if ended > progress.0 {
            progress = (ended, Instant::now());
        } else if progress.1.elapsed() > Duration::from_secs(60) {
            let counts = store.counts().await.map_err(BenchError::Store)?;
            return Err(BenchError::Stalled(format!(
                "no progress for 60 s: {counts:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while let Some(done) = submissions.join_next().await {
        check_submission(done)?;
        submitted_ok += 1;
    }
    Ok(submitted_ok)
}

/// Jobs the store holds in a terminal state, and those the retention deleted (read first:
/// a job deleted between the two reads is counted at the next read, never twice).
async fn jobs_ended(scheduler: &Scheduler, store: &dyn JobStore) -> Result<usize, BenchError> {
    let deleted = scheduler.metrics().retention_deleted as usize;
    let counts = store.counts().await.map_err(BenchError::Store)?;
    Ok(deleted
        + counts
            .iter()
            .filter(|(state, _)| state.is_terminal())
            .map(|(_, n)| *n as usize)
            .sum::<usize>())
}

/// Runs `--after-phase`, if given, for the phase `name`.
fn after_phase(args: &BenchArgs, name: &str) -> Result<(), BenchError> {
    let Some(command) = &args.after_phase else {
        return Ok(());
    };
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .arg("sh")
        .arg(name)
        .status()
        .map_err(|e| BenchError::Config(format!("--after-phase could not run: {e}")))?;
    if !status.success() {
        return Err(BenchError::Config(format!(
            "--after-phase failed after phase {name}: {status}"
        )));
    }
    Ok(())
}

/// Fails the run if a finished submission task failed.
fn check_submission(
    done: Result<Result<JobId, SubmitError>, tokio::task::JoinError>,
) -> Result<(), BenchError> {
    done.map_err(|e| BenchError::Stalled(format!("a submission task failed: {e}")))?
        .map(drop)
        .map_err(|e| BenchError::Stalled(format!("submit failed: {e}")))
}

async fn terminal_jobs(store: &dyn JobStore, jobs: usize) -> Result<Vec<Job>, BenchError> {
    let mut all = Vec::with_capacity(jobs);
    for state in JobState::ALL.into_iter().filter(|s| s.is_terminal()) {
        let mut offset = 0;
        loop {
            let query = JobQuery {
                state: Some(state),
                offset,
                limit: 1000,
            };
            let page = store.jobs(&query).await.map_err(BenchError::Store)?;
            offset += page.len();
            let last = page.len() < 1000;
            all.extend(page);
            if last {
                break;
            }
        }
    }
    Ok(all)
}

fn print_report(r: &BenchReport) {
    let [a50, a90, a99] = r.submit_to_assigned_ms;
    let [r50, r90, r99] = r.submit_to_running_ms;
    let [t50, t90, t99] = r.submit_to_terminal_ms;
    println!(
        "dwr bench: store={:?} runtime={:?} executors={} jobs={} concurrency={}",
        r.store, r.runtime, r.executors, r.jobs, r.concurrency
    );
    println!("  succeeded            {} of {}", r.succeeded, r.jobs);
    println!("  wall                 {:.3} s", r.wall_seconds);
    println!(
        "  throughput           {:.0} jobs/s (submit→terminal)",
        r.jobs_per_second
    );
    println!("  submit→assigned ms   p50 {a50:.1}  p90 {a90:.1}  p99 {a99:.1}");
    println!("  submit→running  ms   p50 {r50:.1}  p90 {r90:.1}  p99 {r99:.1}");
    println!("  submit→terminal ms   p50 {t50:.1}  p90 {t90:.1}  p99 {t99:.1}");
    println!("  scheduler passes     {}", r.scheduler_passes);
    println!(
        "  rss MiB              start {:.1}  peak {:.1}",
        r.rss_start_mib, r.rss_peak_mib
    );
    if let (Some(first), Some(last)) = (r.redis_samples.first(), r.redis_samples.last()) {
        let peak = r.redis_samples.iter().map(|s| s.0).fold(0.0, f64::max);
        println!(
            "  redis used MiB       first {:.1}  peak {peak:.1}  last {:.1}; keys first {} last {}",
            first.0, last.0, first.1, last.1
        );
    }
    if let (Some(base), Some(cpu), Some(ratio)) = (
        r.baseline_evals_per_second,
        r.redis_cpu_us_per_job,
        r.jobs_per_baseline_eval,
    ) {
        println!(
            "  redis baseline       {base:.0} three-command scripts/s; {cpu:.1} µs of Redis CPU per job; {ratio:.3} jobs per baseline script"
        );
    }
    if let Some(purge) = r.redis_cpu_us_per_job_purge {
        println!("  redis purge          {purge:.1} µs of Redis CPU per job deleted after the run");
    }
    if let (Some(call), Some(n)) = (r.redis_cpu_us_per_baseline_eval, r.baseline_evals_per_job) {
        println!(
            "  redis cpu            {call:.2} µs per baseline script: a job costs {n:.1} of them"
        );
    }
    if let (Some(base), Some(call), Some(n), Some(ratio)) = (
        r.unpipelined_baseline_evals_per_second,
        r.redis_cpu_us_per_unpipelined_eval,
        r.unpipelined_evals_per_job,
        r.jobs_per_unpipelined_eval,
    ) {
        println!(
            "  redis unpipelined    {base:.0} scripts/s, {call:.2} µs each: a job costs {n:.1} of them; {ratio:.3} jobs per such script"
        );
    }
    if let (Some(c), Some(t)) = (r.redis_commands_per_job, r.redis_round_trips_per_job) {
        println!("  redis per job        {t:.2} round trips, {c:.2} commands (inside scripts too)");
    }
    if let Some(scripts) = r.redis_scripts {
        println!("  redis scripts        called with {scripts}");
    }
    if let (Some(b), Some(o)) = (r.docker_baseline_start_p50_ms, r.docker_overhead_p50_ms) {
        println!("  docker create+start  p50 {b:.1} ms direct; submit→running minus direct, paired p50 {o:+.1} ms");
    }
    match serde_json::to_string(r) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("error: cannot print the report as JSON: {e}"),
    }
}

/// The id of the `n`-th executor agent of a run.
fn bench_executor(n: usize) -> ExecutorId {
    ExecutorId::new(format!("bench-{n}"))
}
