//! Redis killed (SIGKILL) and restarted on the same port in the middle of a run, with AOF
//! on (`appendfsync always`): operations during the outage fail with the typed
//! `StoreError::Unavailable`, the stores reconnect by themselves, the run completes, and no
//! job is lost or half-transitioned.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RedisServer;
use dwr_core::{
    Assignment, ExecutorEvent, ExecutorId, ExecutorRegistration, Job, JobId, JobSpec, JobState,
    JobStore, Outcome, StoreError, Timestamp,
};
use dwr_redis::RedisJobStore;

const JOBS: usize = 300;
const RUN_BOUND: Duration = Duration::from_secs(180);

fn is_unavailable<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Unavailable { .. }))
}

/// Retries `op` while the store is unavailable.
async fn retry<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    loop {
        match op().await {
            Err(StoreError::Unavailable { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other,
        }
    }
}

/// Runs one job: mark running (a retry after a lost reply finds it running already),
/// wait a little, finish (idempotent, retried).
async fn run_job(store: Arc<RedisJobStore>, job: JobId, executor: ExecutorId) {
    match retry(|| store.mark_running(job, &executor, 1)).await {
        Ok(_)
        | Err(StoreError::InvalidTransition {
            state: JobState::Running,
            ..
        }) => {}
        Err(e) => panic!("mark running {job}: {e}"),
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let success = Outcome::exited(0, false);
    retry(|| store.finish(job, &success, None))
        .await
        .unwrap_or_else(|e| panic!("finish {job}: {e}"));
}

/// A fake agent: pops events; after an outage reconciles with the jobs the store says it
/// holds (an event popped just as the server died may never have reached it).
async fn agent(store: Arc<RedisJobStore>, id: ExecutorId) {
    let started = Mutex::new(HashSet::new());
    let start = |job: JobId| {
        if started.lock().unwrap().insert(job) {
            tokio::spawn(run_job(store.clone(), job, id.clone()));
        }
    };
    let mut reconcile = false;
    loop {
        if reconcile {
            match store.executor(&id).await {
                Ok(executor) => {
                    for job in executor.jobs {
                        start(job);
                    }
                    reconcile = false;
                }
                Err(StoreError::Unavailable { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => panic!("executor {id}: {e}"),
            }
        }
        match store.next_event(&id, Duration::from_millis(500)).await {
            Ok(Some(ExecutorEvent::Assigned(job))) => start(job.id),
            Ok(Some(ExecutorEvent::Abort(job, _))) => panic!("unexpected abort of {job}"),
            Ok(None) => {}
            Err(StoreError::Unavailable { .. }) => {
                reconcile = true;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("next_event of {id}: {e}"),
        }
    }
}

/// First fit over a fresh view; every store error of the outage is retried.
async fn scheduler(store: Arc<RedisJobStore>) {
    loop {
        let (pending, mut view) = match tokio::try_join!(store.pending_jobs(200), store.executors())
        {
            Ok(both) => both,
            Err(StoreError::Unavailable { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => panic!("scheduler read: {e}"),
        };
        for job in pending {
            let need = job.spec.resources();
            let Some(e) = view.iter_mut().find(|e| need.fits_in(&e.free())) else {
                continue;
            };
            let assignment = Assignment::new(job.id, e.id().clone(), Vec::new());
            match store.commit_assignment(&assignment).await {
                Ok(_) => e.allocated = e.allocated.checked_add(&need).unwrap(),
                Err(StoreError::Rejected { .. }) | Err(StoreError::Unavailable { .. }) => break,
                Err(err) => panic!("commit: {err}"),
            }
        }
        let _ = store.wait_for_work(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_mid_run_loses_no_job() {
    let Some(mut server) = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]) else {
        return;
    };
    let mut config = server.config();
    config.connect_timeout = Duration::from_secs(1);
    config.response_timeout = Duration::from_secs(2);
    config.reconnect_retries = 2;
    config.reconnect_max_delay = Duration::from_millis(200);
    let connect = || async { Arc::new(RedisJobStore::connect(config.clone()).await.unwrap()) };
    let (admin, sched, agents) = (connect().await, connect().await, connect().await);

    let executors: Vec<ExecutorId> = (0..4).map(|i| ExecutorId::new(format!("x{i}"))).collect();
    for id in &executors {
        let r = ExecutorRegistration::new(id.clone(), "127.0.0.1", 8_000, 16_384, Vec::new());
        admin.register_executor(&r).await.unwrap();
    }
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        let spec = JobSpec::new("dwr-test/busybox:latest", vec!["true".into()], 1_000, 512);
        let job = Job::new(JobId::new(), spec, Timestamp::now());
        ids.push(job.id);
        admin.submit(job).await.unwrap();
    }
    let mut tasks = vec![tokio::spawn(scheduler(sched))];
    for id in &executors {
        tasks.push(tokio::spawn(agent(agents.clone(), id.clone())));
    }

    let deadline = tokio::time::Instant::now() + RUN_BOUND;
    let done = || async {
        admin
            .counts()
            .await
            .map(|c| c[&JobState::Succeeded] as usize)
    };
    while done().await.unwrap() < JOBS / 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress before the kill"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    server.kill9();
    let during = admin.job(ids[0]).await;
    assert!(
        is_unavailable(&during),
        "job() during the outage: {during:?}"
    );
    let extra = Job::new(
        JobId::new(),
        JobSpec::new("x", vec![], 1, 1),
        Timestamp::now(),
    );
    let during = admin.submit(extra).await;
    assert!(
        is_unavailable(&during),
        "submit() during the outage: {during:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart();

    loop {
        match done().await {
            Ok(n) if n == JOBS => break,
            Ok(_) | Err(StoreError::Unavailable { .. }) => {}
            Err(e) => panic!("counts: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not complete"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for task in &tasks {
        task.abort();
    }

    let counts = admin.counts().await.unwrap();
    assert_eq!(counts.values().sum::<u64>(), JOBS as u64, "{counts:?}");
    for id in &ids {
        let job = admin.job(*id).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded, "job {id}");
    }
    assert_eq!(
        admin.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
    for e in admin.executors().await.unwrap() {
        assert!(
            e.allocated.is_zero() && e.jobs.is_empty(),
            "{} not empty",
            e.id()
        );
    }
}
