//! Two schedulers racing over one Redis: 2,000 jobs of mixed sizes (some with GPUs) on 20
//! executors whose fake agents pop their events and finish each job after a short delay.
//!
//! Checked while it runs (every 50 ms) and at the end: no executor over-allocated, no GPU
//! held twice, the store's own Lua-side invariant check clean; at the end: every job
//! assigned exactly once (Assigned events counted per job), every job succeeded, every
//! executor empty again, and no `KEYS`/`SCAN` was ever sent.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RedisServer;
use dwr_core::{
    Assignment, Executor, ExecutorEvent, ExecutorId, ExecutorRegistration, FirstFit, GpuDevice,
    GpuModel, Job, JobId, JobSpec, JobState, JobStore, Outcome, Rejection, Scheduler,
    SchedulerConfig, StoreError, Timestamp,
};
use dwr_redis::RedisJobStore;

const JOBS: usize = 2_000;
const EXECUTORS: usize = 20;
/// Liveness bound on the whole run (it takes seconds).
const RUN_BOUND: Duration = Duration::from_secs(240);

type Counts = Arc<Mutex<HashMap<JobId, u32>>>;

fn registrations() -> Vec<ExecutorRegistration> {
    (0..EXECUTORS)
        .map(|i| {
            let gpus = if i % 4 == 0 {
                (0..4)
                    .map(|g| GpuDevice {
                        index: g,
                        uuid: format!("GPU-{i:02}-{g}"),
                        model: "NVIDIA H200".into(),
                        memory_mib: 143_771,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let cpu = 4_000 + 2_000 * (i as u64 % 3);
            let mem = 8_192 * (1 + i as u64 % 2);
            ExecutorRegistration::new(
                ExecutorId::new(format!("exec-{i:02}")),
                format!("10.0.0.{i}"),
                cpu,
                mem,
                gpus,
            )
        })
        .collect()
}

/// Mixed sizes from a fixed pseudo-random sequence; one job in eight wants 1 or 2 GPUs.
fn specs() -> Vec<JobSpec> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..JOBS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let cpu = 250 * (1 + x % 12);
            let mem = 256 * (1 + (x >> 8) % 24);
            let spec = JobSpec::new("dwr-test/busybox:latest", vec!["true".into()], cpu, mem);
            if (x >> 20) & 7 == 0 {
                spec.with_gpus(1 + ((x >> 24) % 2) as u32, GpuModel::Any)
            } else {
                spec
            }
        })
        .collect()
}

/// One fake executor agent: pops its events, runs each job for a few ms, finishes it.
async fn agent(store: Arc<RedisJobStore>, id: ExecutorId, counts: Counts, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match store.next_event(&id, Duration::from_millis(200)).await {
            Ok(Some(ExecutorEvent::Assigned(job))) => {
                let job = job.id;
                *counts.lock().unwrap().entry(job).or_default() += 1;
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move {
                    store.mark_running(job, &id, 1).await.expect("mark running");
                    store
                        .append_logs(job, None, &[format!("job {job} on {id}")])
                        .await
                        .expect("logs");
                    let ms = 1 + job.as_uuid().as_bytes()[0] as u64 % 5;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let done = store
                        .finish(job, &Outcome::exited(0, false), None)
                        .await
                        .expect("finish");
                    assert!(done.changed, "job {job} finished twice");
                });
            }
            Ok(Some(ExecutorEvent::Abort(job, _))) => panic!("unexpected abort of {job}"),
            Ok(None) => {}
            Err(e) => panic!("next_event of {id}: {e}"),
        }
    }
}

/// A scheduler written directly against the store: first fit over a fresh `executors()`
/// read, refreshed after a rejection for room. `reverse` walks the pending jobs newest
/// first, so the two racers commit *different* jobs onto the same executors from stale
/// views (racing on the same job would only ever be refused as not pending).
async fn racer(store: Arc<RedisJobStore>, reverse: bool) -> (u64, u64) {
    let (mut committed, mut rejected) = (0u64, 0u64);
    loop {
        let pending = store.pending_jobs(500).await.expect("pending");
        if pending.is_empty() {
            let counts = store.counts().await.expect("counts");
            if counts[&JobState::Succeeded] as usize == JOBS {
                return (committed, rejected);
            }
            let _ = store.wait_for_work(Duration::from_millis(50)).await;
            continue;
        }
        let mut view = store.executors().await.expect("executors");
        let mut progressed = false;
        let pending: Vec<Job> = if reverse {
            pending.into_iter().rev().collect()
        } else {
            pending
        };
        for job in pending {
            let need = job.spec.resources();
            let Some(pos) = view
                .iter()
                .position(|e| need.fits_in(&e.free()) && e.free_gpus().len() >= need.gpus as usize)
            else {
                continue;
            };
            let gpu_ids: Vec<String> = view[pos]
                .free_gpus()
                .into_iter()
                .take(need.gpus as usize)
                .map(|g| g.uuid)
                .collect();
            let assignment = Assignment::new(job.id, view[pos].id().clone(), gpu_ids.clone());
            match store.commit_assignment(&assignment).await {
                Ok(_) => {
                    committed += 1;
                    progressed = true;
                    let e = &mut view[pos];
                    e.allocated = e.allocated.checked_add(&need).expect("sum");
                    for g in gpu_ids {
                        e.gpu_holders.insert(g, job.id);
                    }
                }
                Err(StoreError::Rejected {
                    reason: Rejection::JobNotPending { .. },
                    ..
                }) => rejected += 1,
                Err(StoreError::Rejected { .. }) => {
                    rejected += 1;
                    view = store.executors().await.expect("executors");
                }
                Err(e) => panic!("commit: {e}"),
            }
        }
        if !progressed {
            let _ = store.wait_for_work(Duration::from_millis(50)).await;
        }
    }
}

/// Problems visible in one snapshot of the executors.
fn snapshot_violations(executors: &[Executor]) -> Vec<String> {
    let mut bad = Vec::new();
    let mut gpus = HashSet::new();
    let mut jobs = HashSet::new();
    for e in executors {
        if !e.allocated.fits_in(&e.capacity()) {
            bad.push(format!("{} over-allocated: {:?}", e.id(), e.allocated));
        }
        for uuid in e.gpu_holders.keys() {
            if !gpus.insert(uuid.clone()) {
                bad.push(format!("GPU {uuid} held twice"));
            }
        }
        for job in &e.jobs {
            if !jobs.insert(*job) {
                bad.push(format!("job {job} on two executors"));
            }
        }
    }
    bad
}

/// Sets up the cluster, runs `schedule` until every job is terminal, checks everything.
async fn race<F, Fut>(schedule: F)
where
    F: FnOnce(Arc<RedisJobStore>, Arc<RedisJobStore>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(server) = RedisServer::start() else {
        return;
    };
    let config = server.config();
    let connect = || async { Arc::new(RedisJobStore::connect(config.clone()).await.unwrap()) };
    let (admin, agents_store, a, b) = (
        connect().await,
        connect().await,
        connect().await,
        connect().await,
    );

    for r in registrations() {
        admin.register_executor(&r).await.unwrap();
    }
    let counts: Counts = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let agents: Vec<_> = registrations()
        .into_iter()
        .map(|r| {
            tokio::spawn(agent(
                agents_store.clone(),
                r.id,
                counts.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let mut ids = Vec::with_capacity(JOBS);
    for spec in specs() {
        let job = Job::new(JobId::new(), spec, Timestamp::now());
        ids.push(job.id);
        admin.submit(job).await.unwrap();
    }
    let schedulers = tokio::spawn(schedule(a, b));

    // Watch the invariants while the race runs.
    let mut violations = Vec::new();
    let deadline = tokio::time::Instant::now() + RUN_BOUND;
    loop {
        violations.extend(admin.check_invariants().await.unwrap());
        violations.extend(snapshot_violations(&admin.executors().await.unwrap()));
        let done = admin.counts().await.unwrap()[&JobState::Succeeded] as usize;
        if done == JOBS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {done} of {JOBS} jobs done"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    schedulers.await.expect("schedulers");
    stop.store(true, Ordering::Relaxed);
    for agent in agents {
        agent.await.expect("agent");
    }

    assert_eq!(violations, Vec::<String>::new());
    assert_eq!(
        admin.check_invariants().await.unwrap(),
        Vec::<String>::new()
    );
    let counts = counts.lock().unwrap().clone();
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "Assigned events for job {id}");
        let job = admin.job(*id).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded, "job {id}");
        assert_eq!(job.gpu_ids.len(), job.spec.gpu.count as usize);
    }
    assert_eq!(counts.len(), JOBS);
    for e in admin.executors().await.unwrap() {
        assert!(
            e.allocated.is_zero(),
            "{} still holds {:?}",
            e.id(),
            e.allocated
        );
        assert!(
            e.gpu_holders.is_empty() && e.jobs.is_empty(),
            "{} not empty",
            e.id()
        );
    }
    let calls = server.command_calls();
    assert!(
        !calls.contains_key("keys") && !calls.contains_key("scan"),
        "the keyspace was scanned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_store_level_racers_never_over_allocate() {
    race(|a, b| async move {
        let (ra, rb) = tokio::join!(tokio::spawn(racer(a, false)), tokio::spawn(racer(b, true)));
        let ((ca, xa), (cb, xb)) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ca + cb, JOBS as u64, "commits");
        eprintln!("racers: {ca} + {cb} commits, {xa} + {xb} rejections");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_real_schedulers_never_over_allocate() {
    race(|a, b| async move {
        let config = SchedulerConfig {
            tick: Duration::from_millis(500),
            ..SchedulerConfig::default()
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut handles = Vec::new();
        for store in [a.clone(), b] {
            let scheduler = Scheduler::new(store, Arc::new(FirstFit), config.clone());
            let mut stopped = stopped.clone();
            handles.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                scheduler.run(shutdown).await.expect("scheduler run");
            }));
        }
        while a.counts().await.expect("counts")[&JobState::Succeeded] as usize != JOBS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.send(true).expect("stop");
        for handle in handles {
            handle.await.expect("scheduler");
        }
    })
    .await;
}
