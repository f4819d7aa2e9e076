//! The JobStore conformance suite and in-memory-specific tests, run against
//! [`InMemoryJobStore`].

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use dwr_core::conformance::race;
use dwr_core::memory::DEFAULT_LOG_CAP;
use dwr_core::{
    Assignment, ExecutorRegistration, GpuDevice, GpuModel, InMemoryJobStore, Job, JobId, JobSpec,
    JobState, JobStore, Outcome, Rejection, Resources, StoreError, Timestamp,
};

async fn make_store() -> Arc<dyn JobStore> {
    Arc::new(InMemoryJobStore::new())
}

dwr_core::job_store_conformance!(make_store);

/// The one-call form runs too (and keeps `run_all` compiling against the list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_passes() {
    dwr_core::conformance::run_all(make_store).await;
}

fn now() -> Timestamp {
    Timestamp(1_700_000_000_000)
}

fn lines(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("line {i}")).collect()
}

/// The smallest valid spec.
fn tiny() -> JobSpec {
    JobSpec::new("i", vec!["c".into()], 1, 1)
}

async fn submit(store: &InMemoryJobStore, spec: JobSpec) -> JobId {
    let id = JobId::new();
    store.submit(Job::new(id, spec, now())).await.unwrap();
    id
}

#[tokio::test]
async fn the_log_cap_drops_the_oldest_lines_and_keeps_offsets_absolute() {
    let store = InMemoryJobStore::with_log_cap(5);
    assert_eq!(store.log_cap(), 5);
    assert_eq!(InMemoryJobStore::new().log_cap(), DEFAULT_LOG_CAP);
    let id = submit(&store, tiny()).await;
    store.append_logs(id, None, &lines(0..3)).await.unwrap();
    store.append_logs(id, None, &lines(3..8)).await.unwrap();
    assert_eq!(
        store.logs(id, 0).await.unwrap(),
        lines(3..8),
        "oldest dropped"
    );
    assert_eq!(store.logs(id, 3).await.unwrap(), lines(3..8));
    assert_eq!(
        store.logs(id, 6).await.unwrap(),
        lines(6..8),
        "absolute offsets"
    );
    assert!(store.logs(id, 8).await.unwrap().is_empty());
    // One append larger than the cap keeps its last lines.
    store.append_logs(id, None, &lines(8..20)).await.unwrap();
    assert_eq!(store.logs(id, 0).await.unwrap(), lines(15..20));
    assert_eq!(store.logs(id, 17).await.unwrap(), lines(17..20));
    // A follower past the kept lines still waits for new ones.
    let woke = store
        .wait_logs(id, 20, Duration::from_millis(10))
        .await
        .unwrap();
    assert!(woke.is_empty());
    assert_eq!(
        store.wait_logs(id, 19, Duration::ZERO).await.unwrap(),
        lines(19..20)
    );

    let none = InMemoryJobStore::with_log_cap(0);
    let id = submit(&none, tiny()).await;
    none.append_logs(id, None, &lines(0..3)).await.unwrap();
    assert!(none.logs(id, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn only_pending_jobs_can_be_submitted() {
    let store = InMemoryJobStore::new();
    let mut job = Job::new(JobId::new(), tiny(), now());
    job.state = JobState::Running;
    match store.submit(job.clone()).await {
        Err(StoreError::InvalidTransition { id, state, .. }) => {
            assert_eq!((id, state), (job.id, JobState::Running))
        }
        other => panic!("expected InvalidTransition, got {other:?}"),
    }
    assert!(matches!(
        store.job(job.id).await,
        Err(StoreError::JobNotFound { .. })
    ));
}

#[tokio::test]
async fn debug_shows_sizes_without_blocking() {
    let store = InMemoryJobStore::new();
    submit(&store, tiny()).await;
    let text = format!("{store:?}");
    assert!(text.contains("jobs: 1"), "{text}");
}

/// 8 tasks race to assign 200 jobs (some with GPUs) on 3 executors, each task trying every
/// executor and every free GPU it sees, while jobs finish and free room. The store must
/// never over-allocate, never hand a GPU to two jobs, never assign a job twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_schedulers_never_over_allocate_or_double_assign() {
    let store = Arc::new(InMemoryJobStore::new());
    let gpu = |e: usize, i: u32| GpuDevice {
        index: i,
        uuid: format!("GPU-{e}-{i}"),
        model: "NVIDIA A100".into(),
        memory_mib: 81_920,
    };
    let mut execs = Vec::new();
    for e in 0..3 {
        let gpus = (0..e as u32).map(|i| gpu(e, i)).collect();
        let reg = ExecutorRegistration::new(
            format!("e{e}").as_str().into(),
            format!("10.0.0.{e}"),
            4000 + 2000 * e as u64,
            8192,
            gpus,
        );
        store.register_executor(&reg).await.unwrap();
        execs.push(reg);
    }
    let mut ids = Vec::new();
    for i in 0..200u64 {
        let mut spec = JobSpec::new(
            "i",
            vec!["c".into()],
            250 + (i % 7) * 250,
            512 + (i % 5) * 512,
        );
        if i % 10 == 0 {
            spec = spec.with_gpus(1 + (i % 20 == 0) as u32, GpuModel::Any);
        }
        ids.push(submit(&store, spec).await);
    }
    let ids = Arc::new(ids);
    let execs = Arc::new(execs);

    let won = race(8, |t| {
        let (store, ids, execs) = (store.clone(), ids.clone(), execs.clone());
        async move {
            let mut won = Vec::new();
            for round in 0..3 {
                for k in 0..ids.len() {
                    let id = ids[(k * 7 + t * 25 + round) % ids.len()];
                    let wanted = store.job(id).await.unwrap().spec.gpu.count as usize;
                    for reg in execs.iter() {
                        let free: Vec<String> = store
                            .executor(&reg.id)
                            .await
                            .unwrap()
                            .free_gpus()
                            .into_iter()
                            .map(|g| g.uuid)
                            .take(wanted)
                            .collect();
                        if free.len() < wanted {
                            continue;
                        }
                        let a = Assignment::new(id, reg.id.clone(), free);
                        match store.commit_assignment(&a).await {
                            Ok(job) => {
                                won.push(id);
                                // Some jobs finish at once, making room for others.
                                if (k + t) % 3 == 0 {
                                    let f = store
                                        .finish(job.id, &Outcome::failed("x"), None)
                                        .await
                                        .unwrap();
                                    assert!(f.changed);
                                }
                            }
                            Err(StoreError::Rejected { reason, .. }) => {
                                assert!(
                                    !matches!(reason, Rejection::GpuCountMismatch { .. }),
                                    "{reason}"
                                );
                            }
                            Err(other) => panic!("unexpected {other}"),
                        }
                    }
                }
            }
            won
        }
    })
    .await;
    // Any two jobs fit on any executor (CPU 2 × 1750 ≤ 4000, memory 2 × 2560 ≤ 8192), and
    // 200 jobs are more than the first executor holds, so each executor takes at least
    // two whatever the interleaving (the count itself varies with it: 19 to 30 seen).
    assert!(
        won.len() >= 6,
        "the race placed too few jobs: {}",
        won.len()
    );

    let mut held_gpus = HashSet::new();
    for reg in execs.iter() {
        let ex = store.executor(&reg.id).await.unwrap();
        common::assert_not_over_allocated(&ex);
        let mut sum = Resources::ZERO;
        for id in &ex.jobs {
            let job = store.job(*id).await.unwrap();
            assert!(job.state.holds_resources());
            assert_eq!(job.executor.as_ref(), Some(&reg.id));
            sum = sum.checked_add(&job.spec.resources()).unwrap();
            for g in &job.gpu_ids {
                assert!(held_gpus.insert(g.clone()), "GPU {g} held twice");
                assert_eq!(ex.gpu_holders.get(g), Some(id));
            }
        }
        assert_eq!(ex.allocated, sum, "{}: books balance", reg.id);
        assert_eq!(ex.gpu_holders.len() as u32, ex.allocated.gpus);
    }

    // Finish everything: the cluster goes back to idle with nothing held.
    for id in ids.iter() {
        store
            .finish(*id, &Outcome::failed("done"), None)
            .await
            .unwrap();
    }
    for reg in execs.iter() {
        let ex = store.executor(&reg.id).await.unwrap();
        assert_eq!(ex.allocated, Resources::ZERO);
        assert!(ex.gpu_holders.is_empty() && ex.jobs.is_empty());
    }
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.values().sum::<u64>(), 200);
    assert_eq!(counts[&JobState::Failed], 200);
}

/// A consumer blocked in `next_event` while a producer queues 300 events gets every one,
/// in order, none twice: no wake-up is lost in the window between check and wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn next_event_loses_no_wake_up_under_a_stream_of_events() {
    let store = Arc::new(InMemoryJobStore::new());
    let reg = ExecutorRegistration::new("e1".into(), "10.0.0.1", 1_000_000, 1_000_000, vec![]);
    store.register_executor(&reg).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(submit(&store, tiny()).await);
    }
    let producer = {
        let store = store.clone();
        let ids = ids.clone();
        let exec = reg.id.clone();
        tokio::spawn(async move {
            for (i, id) in ids.into_iter().enumerate() {
                let a = Assignment::new(id, exec.clone(), vec![]);
                store.commit_assignment(&a).await.unwrap();
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let event = tokio::time::timeout(
            Duration::from_secs(10),
            store.next_event(&reg.id, Duration::from_secs(60)),
        )
        .await
        .expect("next_event missed a wake-up")
        .unwrap();
        match event {
            Some(dwr_core::ExecutorEvent::Assigned(job)) => got.push(job.id),
            other => panic!("unexpected {other:?}"),
        }
    }
    producer.await.unwrap();
    assert_eq!(got, ids, "every event once, in order");
    assert_eq!(
        store.next_event(&reg.id, Duration::ZERO).await.unwrap(),
        None
    );
}

/// Ping-pong between a writer and a follower in `wait_logs`: the writer appends the next
/// line only once the follower has read the previous one, so each append is the only thing
/// that can wake the follower and a lost wake-up hangs (and fails) the test. The follower
/// reads every line once, in order, then returns when the job ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_follower_sees_every_line_once() {
    const LINES: usize = 500;
    let store = Arc::new(InMemoryJobStore::new());
    let id = submit(&store, tiny()).await;
    let (seen_tx, mut seen_rx) = tokio::sync::watch::channel(0usize);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..LINES {
                store.append_logs(id, None, &lines(n..n + 1)).await.unwrap();
                seen_rx.wait_for(|seen| *seen > n).await.unwrap();
            }
            store
                .finish(id, &Outcome::failed("end"), None)
                .await
                .unwrap();
        })
    };
    let mut seen = Vec::new();
    loop {
        let batch = tokio::time::timeout(
            Duration::from_secs(10),
            store.wait_logs(id, seen.len(), Duration::from_secs(60)),
        )
        .await
        .expect("wait_logs missed a wake-up")
        .unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(batch);
        seen_tx.send_replace(seen.len());
    }
    writer.await.unwrap();
    assert_eq!(seen, lines(0..LINES));
    assert!(store.job(id).await.unwrap().state.is_terminal());
}
