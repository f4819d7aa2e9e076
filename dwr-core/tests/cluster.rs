//! A whole cluster in one process: the scheduler and three executor agents over the
//! in-memory store and the fake runtime run 1,000 jobs of mixed sizes (some with GPUs,
//! some failing, some OOM-killed, some aborted) to their terminal states, while a monitor
//! checks that no executor is ever over-allocated and no GPU is ever held twice.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dwr_core::placement::FirstFit;
use dwr_core::{
    AgentConfig, ExecutorAgent, ExecutorId, FakeGpuProbe, FakeHostProbe, FakeRuntime, GpuModel,
    InMemoryJobStore, JobId, JobSpec, JobState, JobStore, Scheduler, SchedulerConfig,
};
use tokio::sync::watch;

const JOBS: usize = 1_000;

/// The spec of job `i` and the state it must end in (None: aborted or succeeded, by race).
fn job(i: usize) -> (JobSpec, Option<JobState>) {
    let cpu = [250, 500, 1000, 2000][i % 4];
    let mem = [128, 512, 1024, 3000][(i / 4) % 4];
    let run = format!("run={}ms", i % 7);
    let (cmd, expect): (Vec<&str>, _) = match i % 20 {
        0 => (vec!["fake", &run, "exit=3"], Some(JobState::Failed)),
        1 => (vec!["fake", &run, "oom"], Some(JobState::Failed)),
        2 => (vec!["fake", "hang"], Some(JobState::Aborted)),
        _ => (vec!["fake", &run, "lines=3"], Some(JobState::Succeeded)),
    };
    let mut spec = JobSpec::new("img", cmd.into_iter().map(String::from).collect(), cpu, mem);
    if i % 10 == 5 {
        spec = spec.with_gpus(1 + u32::from(i.is_multiple_of(3)), GpuModel::Any);
    }
    (spec, expect)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_reach_their_terminal_states_without_breaking_invariants() {
    let store = Arc::new(InMemoryJobStore::new());
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(FirstFit),
        SchedulerConfig::default(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let runtime = Arc::new(FakeRuntime::new());
    let mut agents = Vec::new();
    for (n, gpus) in [
        (0, &["NVIDIA H200", "NVIDIA H200"][..]),
        (1, &[]),
        (2, &["NVIDIA A10"]),
    ] {
        let id = format!("exec-{n}");
        let mut config = AgentConfig::new(ExecutorId::new(&*id), format!("10.0.0.{n}"));
        config.poll_interval = Duration::from_secs(1);
        config.heartbeat_interval = Duration::from_secs(1);
        config.stop_grace = Duration::from_millis(50);
        let agent = ExecutorAgent::new(
            store.clone(),
            runtime.clone(),
            Arc::new(FakeGpuProbe::for_host(&id, gpus)),
            Arc::new(FakeHostProbe::new(4000, 8192)),
            config,
        );
        agents.push(tokio::spawn(agent.run(stopped(stop_rx.clone()))));
    }
    let sched = {
        let s = scheduler.clone();
        let rx = stop_rx.clone();
        tokio::spawn(async move { s.run(stopped(rx)).await })
    };

    // Watch the allocations while the run goes on.
    let monitor = {
        let store = store.clone();
        let rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut checks = 0u64;
            while !*rx.borrow() {
                for e in store.executors().await.unwrap() {
                    common::assert_not_over_allocated(&e);
                    assert_eq!(
                        e.allocated.gpus as usize,
                        e.gpu_holders.len(),
                        "GPU count and holders differ"
                    );
                }
                checks += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            checks
        })
    };

    let mut expected: HashMap<JobId, (JobSpec, Option<JobState>)> = HashMap::new();
    for i in 0..JOBS {
        let (spec, expect) = job(i);
        let id = scheduler.submit(spec.clone()).await.unwrap().id;
        expected.insert(id, (spec, expect));
    }
    // Hanging jobs are aborted once they run (or at once while pending).
    let hanging: Vec<JobId> = expected
        .iter()
        .filter(|(_, (_, e))| *e == Some(JobState::Aborted))
        .map(|(id, _)| *id)
        .collect();
    for id in &hanging {
        scheduler.abort(*id).await.unwrap();
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let counts = store.counts().await.unwrap();
        let live: u64 = counts
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        if live == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs still live: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut executors_seen: HashMap<ExecutorId, usize> = HashMap::new();
    for (id, (spec, expect)) in &expected {
        let job = store.job(*id).await.unwrap();
        assert_eq!(
            Some(job.state),
            *expect,
            "job {id} ({:?}): {:?}",
            spec.command,
            job.reason
        );
        if let Some(exec) = &job.executor {
            *executors_seen.entry(exec.clone()).or_default() += 1;
        }
        match job.state {
            JobState::Succeeded => {
                assert_eq!(job.exit_code, Some(0));
                assert_eq!(job.gpu_ids.len(), spec.gpu.count as usize);
                // Pull progress may come first; the job's own output ends the log.
                let logs = store.logs(*id, 0).await.unwrap();
                let own = ["line 1", "line 2", "line 3"].map(String::from);
                assert!(logs.ends_with(&own), "{logs:?}");
            }
            JobState::Failed if spec.command.contains(&"oom".to_string()) => {
                assert!(job.oom_killed, "job {id} was OOM-killed");
            }
            JobState::Failed => assert_eq!(job.exit_code, Some(3)),
            _ => {}
        }
    }
    assert_eq!(
        executors_seen.len(),
        3,
        "work spread over all executors: {executors_seen:?}"
    );

    stop_tx.send(true).unwrap();
    let checks = monitor.await.unwrap();
    assert!(checks > 0);
    sched.await.unwrap().unwrap();
    for agent in agents {
        agent.await.unwrap().unwrap();
    }
    for e in store.executors().await.unwrap() {
        assert!(
            e.allocated.is_zero() && e.gpu_holders.is_empty() && e.jobs.is_empty(),
            "{} not idle",
            e.id()
        );
    }
    assert_eq!(runtime.running_count(), 0, "no container left running");
    assert_eq!(runtime.container_count(), 0, "every container removed");
}
