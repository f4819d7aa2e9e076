//! The scheduler and an executor agent used as a library, in one process, with the in-memory
//! store and the fake container runtime: no Docker, no Redis, no HTTP.
//!
//! ```text
//! cargo run --example embedded
//! ```
//!
//! A Rust service that hands container jobs to machines depends on `dwr` this way; swap
//! `InMemoryJobStore` for `dwr::redis::RedisJobStore` (as `examples/embedded_redis.rs` does)
//! and `FakeRuntime` for `dwr::docker::DockerRuntime` to run real containers on a fleet. The
//! flow lives in [`run_demo`] so `tests/examples.rs` runs it as a test.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dwr::{
    AgentConfig, ExecutorAgent, ExecutorId, FakeGpuProbe, FakeHostProbe, FakeRuntime, FirstFit,
    GpuModel, InMemoryJobStore, Job, JobSpec, JobStore, Scheduler, SchedulerConfig,
};

/// The image the demo jobs name (the fake runtime does not pull anything).
pub const IMAGE: &str = "dwr-test/busybox:latest";

/// A job as it ended, with its log.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The job in its terminal state.
    pub job: Job,
    /// Its log lines, oldest first.
    pub logs: Vec<String>,
}

/// The demo's jobs. The fake runtime reads a command starting with `fake` as directives
/// (`print=`, `run=`, `exit=`, `oom`, ...) and treats any other command like `echo`.
pub fn demo_jobs() -> Vec<JobSpec> {
    let words = |ws: &[&str]| ws.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    vec![
        // Half a core and 256 MiB, printing one line.
        JobSpec::new(IMAGE, words(&["echo", "hello from dwr"]), 500, 256),
        // Runs a little while and prints as it goes.
        JobSpec::new(
            IMAGE,
            words(&["fake", "print=step 1", "run=100ms", "print=step 2"]),
            1000,
            512,
        ),
        // Fails with exit code 3.
        JobSpec::new(
            IMAGE,
            words(&["fake", "print=giving up", "exit=3"]),
            250,
            128,
        ),
        // Gets OOM-killed.
        JobSpec::new(IMAGE, words(&["fake", "oom"]), 250, 64),
        // Wants one A100: the executor has one, the scheduler names its UUID.
        JobSpec::new(IMAGE, words(&["echo", "on a GPU"]), 500, 256)
            .with_gpus(1, GpuModel::Named("A100".into())),
        // Asks for more CPU than any executor has: fails at once as infeasible.
        JobSpec::new(IMAGE, words(&["echo", "never runs"]), 64_000, 256),
    ]
}

/// [`run_demo_on`] an in-memory store.
pub async fn run_demo(
    specs: Vec<JobSpec>,
    deadline: Duration,
) -> Result<Vec<Ended>, Box<dyn Error + Send + Sync>> {
    run_demo_on(Arc::new(InMemoryJobStore::new()), specs, deadline).await
}

/// Starts a scheduler and one executor agent (4 cores, 8 GiB, one fake A100) on `store`,
/// submits `specs`, waits until every job is terminal (at most `deadline`), shuts both down
/// cleanly and returns the jobs in submission order with their logs.
pub async fn run_demo_on(
    store: Arc<dyn JobStore>,
    specs: Vec<JobSpec>,
    deadline: Duration,
) -> Result<Vec<Ended>, Box<dyn Error + Send + Sync>> {
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(FirstFit),
        SchedulerConfig::default(),
    );
    let mut config = AgentConfig::new(ExecutorId::new("embedded-1"), "127.0.0.1");
    config.region = Some("local".into());
    let agent = ExecutorAgent::new(
        store.clone(),
        Arc::new(FakeRuntime::new()),
        Arc::new(FakeGpuProbe::with_models(&["NVIDIA A100-SXM4-80GB"])),
        Arc::new(FakeHostProbe::new(4_000, 8_192)),
        config,
    );

    // One shutdown signal for both services.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let scheduler_task = tokio::spawn({
        let scheduler = scheduler.clone();
        let shutdown = until_stopped(stopped.clone());
        async move { scheduler.run(shutdown).await }
    });
    let agent_task = tokio::spawn(agent.run(until_stopped(stopped)));

    let started = Instant::now();
    let result = async {
        // Submit once the executor is registered, so no job is judged against an empty cluster.
        while store.executors().await?.is_empty() {
            if started.elapsed() > deadline {
                return Err("the executor did not register".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut ids = Vec::new();
        for spec in specs {
            ids.push(scheduler.submit(spec).await?.id);
        }
        let mut ended = Vec::new();
        for id in ids {
            let job = loop {
                let job = store.job(id).await?;
                if job.state.is_terminal() {
                    break job;
                }
                if started.elapsed() > deadline {
                    return Err(
                        format!("job {id} is still {} after {deadline:?}", job.state).into(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            let logs = store.logs(id, 0).await?;
            ended.push(Ended { job, logs });
        }
        Ok::<_, Box<dyn Error + Send + Sync>>(ended)
    }
    .await;

    let _ = stop.send(true);
    scheduler_task.await??;
    agent_task.await??;
    result
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let ended = run_demo(demo_jobs(), Duration::from_secs(30)).await?;
    for Ended { job, logs } in &ended {
        println!(
            "{}  {:<9}  {}",
            job.id,
            job.state.to_string(),
            job.spec.command.join(" ")
        );
        if let Some(code) = job.exit_code {
            println!("    exit code: {code}");
        }
        if let Some(reason) = &job.reason {
            println!("    reason:    {reason}");
        }
        if !job.gpu_ids.is_empty() {
            println!("    gpus:      {}", job.gpu_ids.join(", "));
        }
        for line in logs {
            println!("    | {line}");
        }
    }
    Ok(())
}
