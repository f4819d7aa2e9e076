//! Scheduler tests over the in-memory store: placement, wake-ups, timeouts, lost executors.

mod common;

use std::sync::Arc;
use std::time::Duration;

use dwr_core::placement::FirstFit;
use dwr_core::{
    AbortCause, ExecutorEvent, ExecutorId, ExecutorRegistration, GpuDevice, GpuModel, HostUsage,
    InMemoryJobStore, JobId, JobSpec, JobState, JobStore, ManualClock, Outcome, Scheduler,
    SchedulerConfig, StoreError, SubmitError, Timestamp,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TTL: Duration = Duration::from_secs(90);

fn spec(cpu: u64, mem: u64) -> JobSpec {
    JobSpec::new("img", vec!["true".into()], cpu, mem)
}

/// Submits `spec` through `s` and returns the job's id.
async fn submit(s: &Scheduler, spec: JobSpec) -> JobId {
    s.submit(spec).await.unwrap().id
}

fn scheduler(store: &Arc<InMemoryJobStore>, config: SchedulerConfig) -> Scheduler {
    Scheduler::new(store.clone(), Arc::new(FirstFit), config)
}

/// A store on a manual clock, and the clock.
fn clocked_store() -> (Arc<ManualClock>, Arc<InMemoryJobStore>) {
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    let store = Arc::new(InMemoryJobStore::new().with_clock(clock.clone()));
    (clock, store)
}

/// A scheduler whose tick is an hour: it acts soon only when woken.
fn hour_tick_scheduler(store: &Arc<InMemoryJobStore>) -> Scheduler {
    let tick = Duration::from_secs(3600);
    scheduler(
        store,
        SchedulerConfig {
            tick,
            ..Default::default()
        },
    )
}

/// A scheduler's run loop on a task of its own, until [`RunLoop::stop`].
struct RunLoop {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), StoreError>>,
}

impl RunLoop {
    fn start(s: &Scheduler) -> RunLoop {
        let (stop, stopped) = oneshot::channel::<()>();
        let (s, shutdown) = (s.clone(), async { stopped.await.unwrap_or(()) });
        let task = tokio::spawn(async move { s.run(shutdown).await });
        RunLoop { stop, task }
    }

    /// Stops the loop and asserts that it ended without an error.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Asserts that the next event of `exec`, waited for up to `wait`, assigns it job `id`.
async fn assert_assigned_next(
    store: &InMemoryJobStore,
    exec: &ExecutorId,
    id: JobId,
    wait: Duration,
) {
    let event = store.next_event(exec, wait).await.unwrap();
    assert!(
        matches!(&event, Some(ExecutorEvent::Assigned(job)) if job.id == id),
        "{event:?}"
    );
}

async fn executor(store: &InMemoryJobStore, id: &str, cpu: u64, mem: u64, gpus: &[&str]) {
    let devices = gpus
        .iter()
        .enumerate()
        .map(|(i, model)| GpuDevice {
            index: i as u32,
            uuid: format!("GPU-{id}-{i}"),
            model: (*model).into(),
            memory_mib: 1024,
        })
        .collect();
    let reg = ExecutorRegistration::new(
        ExecutorId::new(id),
        format!("10.0.0.{}", id.len()),
        cpu,
        mem,
        devices,
    );
    store.register_executor(&reg).await.unwrap();
}

#[tokio::test]
async fn an_invalid_spec_is_refused_and_nothing_is_stored() {
    let store = Arc::new(InMemoryJobStore::new());
    let s = scheduler(&store, SchedulerConfig::default());
    let err = s.submit(spec(0, 100)).await.unwrap_err();
    assert!(
        matches!(err, SubmitError::Invalid(ref e) if e.field() == dwr_core::SpecField::CpuCores),
        "{err}"
    );
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.values().sum::<u64>(), 0);
}

#[tokio::test]
async fn a_pass_places_jobs_first_fit_and_explains_the_rest() {
    let store = Arc::new(InMemoryJobStore::new());
    executor(&store, "a", 2000, 2048, &[]).await;
    executor(&store, "b", 2000, 2048, &[]).await;
    let s = scheduler(&store, SchedulerConfig::default());
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(submit(&s, spec(1000, 512)).await);
    }
    let report = s.run_pass().await.unwrap();
    let placed: Vec<_> = report
        .assignments
        .iter()
        .map(|p| p.executor.as_str())
        .collect();
    assert_eq!(placed, ["a", "a", "b", "b"], "first fit fills a before b");
    assert_eq!(report.pending, 1);
    let why = s
        .pending_reason(ids[4])
        .expect("the fifth job is explained");
    let why = why.explanation().expect("no room");
    assert!(!why.infeasible);
    assert_eq!(why.exhausted.cpu, 2);
    assert_eq!(store.job(ids[4]).await.unwrap().state, JobState::Pending);
    let a = store.executor(&ExecutorId::new("a")).await.unwrap();
    assert_eq!(a.allocated.cpu_millis, 2000);
    assert_eq!(s.metrics().placements, 4);

    // Finishing one frees room; the next pass places the waiting job.
    store
        .mark_running(ids[0], &ExecutorId::new("a"), 1)
        .await
        .unwrap();
    store
        .finish(ids[0], &Outcome::exited(0, false), None)
        .await
        .unwrap();
    let report = s.run_pass().await.unwrap();
    assert_eq!(report.assignments.len(), 1);
    assert_eq!(report.assignments[0].job, ids[4]);
    assert!(s.pending_reason(ids[4]).is_none());
}

#[tokio::test]
async fn a_small_job_is_not_blocked_by_a_big_one_ahead_of_it() {
    let store = Arc::new(InMemoryJobStore::new());
    executor(&store, "a", 2000, 2048, &[]).await;
    let s = scheduler(
        &store,
        SchedulerConfig {
            infeasible_grace: None,
            ..Default::default()
        },
    );
    let big = submit(&s, spec(4000, 512)).await;
    let small = submit(&s, spec(500, 512)).await;
    let report = s.run_pass().await.unwrap();
    assert_eq!(report.assignments.len(), 1);
    assert_eq!(report.assignments[0].job, small);
    assert!(
        s.pending_reason(big)
            .unwrap()
            .explanation()
            .unwrap()
            .infeasible,
        "too big for any executor"
    );
}

#[tokio::test]
async fn gpu_devices_are_assigned_by_uuid_and_model() {
    let store = Arc::new(InMemoryJobStore::new());
    executor(&store, "a", 8000, 8192, &["NVIDIA A10"]).await;
    executor(&store, "b", 8000, 8192, &["NVIDIA H200", "NVIDIA H200"]).await;
    let s = scheduler(&store, SchedulerConfig::default());
    let h200 = submit(&s, spec(100, 100).with_gpus(1, GpuModel::parse("H200"))).await;
    let any = submit(&s, spec(100, 100).with_gpus(1, GpuModel::Any)).await;
    s.run_pass().await.unwrap();
    assert_eq!(store.job(h200).await.unwrap().gpu_ids, ["GPU-b-0"]);
    assert_eq!(store.job(any).await.unwrap().gpu_ids, ["GPU-a-0"]);
}

#[tokio::test]
async fn an_infeasible_gpu_job_fails_fast_saying_no_executor_has_gpus() {
    let store = Arc::new(InMemoryJobStore::new());
    executor(&store, "a", 8000, 8192, &[]).await;
    let s = scheduler(&store, SchedulerConfig::default());
    let id = submit(&s, spec(100, 100).with_gpus(1, GpuModel::Any)).await;
    let report = s.run_pass().await.unwrap();
    assert_eq!(report.failed, [id]);
    let job = store.job(id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.reason.unwrap().contains("no executor has GPUs"));
}

#[tokio::test]
async fn a_job_that_waits_past_its_allocation_timeout_fails_with_the_reason() {
    let (clock, store) = clocked_store();
    executor(&store, "a", 1000, 1024, &[]).await;
    let s = scheduler(&store, SchedulerConfig::default());
    let filler = submit(&s, spec(1000, 100)).await;
    let waiting = submit(&s, spec(1000, 100)).await;
    s.run_pass().await.unwrap();
    assert_eq!(store.job(filler).await.unwrap().state, JobState::Assigned);
    // 301 s later, the executor still alive.
    clock.advance(Duration::from_secs(301));
    store
        .heartbeat(&ExecutorId::new("a"), &HostUsage::default())
        .await
        .unwrap();
    let report = s.run_pass_with(false).await.unwrap();
    assert_eq!(report.failed, [waiting]);
    let job = store.job(waiting).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    let reason = job.reason.unwrap();
    assert!(reason.starts_with("allocation timeout"), "{reason}");
    assert!(reason.contains("full on cpu"), "{reason}");
}

#[tokio::test]
async fn a_lost_executor_fails_its_jobs_and_frees_its_room() {
    let (clock, store) = clocked_store();
    executor(&store, "a", 1000, 1024, &[]).await;
    let s = scheduler(&store, SchedulerConfig::default());
    let id = submit(&s, spec(1000, 100)).await;
    s.run_pass().await.unwrap();
    clock.advance(TTL + Duration::from_secs(1));
    let report = s.run_pass_with(false).await.unwrap();
    assert_eq!(report.expired_executors, [ExecutorId::new("a")]);
    let job = store.job(id).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.reason.as_deref(),
        Some("executor lost: a sent no heartbeat for its 90 s lease")
    );
    assert!(store.executors().await.unwrap().is_empty());
    // A new executor then gets new work.
    executor(&store, "b", 1000, 1024, &[]).await;
    let next = submit(&s, spec(1000, 100)).await;
    s.run_pass().await.unwrap();
    assert_eq!(
        store.job(next).await.unwrap().executor,
        Some(ExecutorId::new("b"))
    );
}

#[tokio::test]
async fn a_job_past_its_max_runtime_is_asked_to_stop_as_timed_out() {
    let (clock, store) = clocked_store();
    executor(&store, "a", 1000, 1024, &[]).await;
    let s = scheduler(&store, SchedulerConfig::default());
    let mut sp = spec(100, 100);
    sp.max_runtime = Duration::from_secs(60);
    let id = submit(&s, sp).await;
    s.run_pass().await.unwrap();
    let exec = ExecutorId::new("a");
    store.mark_running(id, &exec, 1).await.unwrap();
    assert_assigned_next(&store, &exec, id, Duration::ZERO).await;
    clock.advance(Duration::from_secs(61));
    store.heartbeat(&exec, &HostUsage::default()).await.unwrap();
    let report = s.run_pass_with(true).await.unwrap();
    assert_eq!(report.timed_out, [id]);
    assert_eq!(
        store.next_event(&exec, Duration::ZERO).await.unwrap(),
        Some(ExecutorEvent::Abort(id, AbortCause::TimedOut))
    );
    // Asked once, not on every pass.
    assert!(s.run_pass_with(true).await.unwrap().timed_out.is_empty());
}

#[tokio::test]
async fn two_schedulers_racing_never_over_allocate() {
    let store = Arc::new(InMemoryJobStore::new());
    for i in 0..3 {
        executor(&store, &format!("e{i}"), 4000, 4096, &["G"]).await;
    }
    let (s1, s2) = (
        scheduler(&store, SchedulerConfig::default()),
        scheduler(&store, SchedulerConfig::default()),
    );
    let mut ids = Vec::new();
    for i in 0..60 {
        let sp = if i % 5 == 0 {
            spec(1000, 512).with_gpus(1, GpuModel::Any)
        } else {
            spec(500, 256)
        };
        ids.push(submit(&s1, sp).await);
    }
    let (r1, r2) = tokio::join!(s1.run_pass(), s2.run_pass());
    let placed = r1.unwrap().assignments.len() + r2.unwrap().assignments.len();
    let mut assigned = 0;
    for id in &ids {
        if store.job(*id).await.unwrap().state == JobState::Assigned {
            assigned += 1;
        }
    }
    assert_eq!(
        placed, assigned,
        "each committed assignment is one assigned job"
    );
    for e in store.executors().await.unwrap() {
        common::assert_not_over_allocated(&e);
    }
}

#[tokio::test]
async fn the_loop_places_a_submitted_job_without_waiting_for_the_tick() {
    let store = Arc::new(InMemoryJobStore::new());
    executor(&store, "a", 1000, 1024, &[]).await;
    let s = hour_tick_scheduler(&store);
    let running = RunLoop::start(&s);
    // Let the first pass run and the loop go to sleep on its hour-long tick.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = submit(&s, spec(100, 100)).await;
    let a = ExecutorId::new("a");
    assert_assigned_next(&store, &a, id, Duration::from_secs(10)).await;
    running.stop().await;
}

/// The run loop expires a lost executor when its own lease runs out (three of the
/// heartbeat intervals it registered), not at the scheduler's tick nor by a TTL of the
/// scheduler's; an executor with a longer lease is kept meanwhile.
#[tokio::test]
async fn the_loop_expires_a_lost_executor_at_its_own_lease() {
    let store = Arc::new(InMemoryJobStore::new());
    let short =
        ExecutorRegistration::new(ExecutorId::new("a-short"), "10.0.0.1", 1000, 1024, vec![])
            .with_heartbeat_interval(Duration::from_millis(100));
    let long = ExecutorRegistration::new(ExecutorId::new("b-long"), "10.0.0.2", 1000, 1024, vec![]);
    store.register_executor(&short).await.unwrap();
    // Its lease runs from here.
    let started = std::time::Instant::now();
    store.register_executor(&long).await.unwrap();
    let s = hour_tick_scheduler(&store);
    let on_short = submit(&s, spec(1000, 100)).await;
    let on_long = submit(&s, spec(1000, 100)).await;
    s.run_pass().await.unwrap();
    let job = store.job(on_short).await.unwrap();
    assert_eq!(job.executor, Some(ExecutorId::new("a-short")), "first fit");
    let running = RunLoop::start(&s);
    // No heartbeat from "a-short": its lease (300 ms) runs out; the loop must notice within
    // a second of that though its tick is an hour.
    loop {
        let job = store.job(on_short).await.unwrap();
        if job.state == JobState::Failed {
            assert_eq!(
                job.reason.as_deref(),
                Some("executor lost: a-short sent no heartbeat for its 0.3 s lease")
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(300) + Duration::from_secs(1),
            "the lost executor's job is still {} after its lease + 1 s",
            job.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "expired before its lease ran out"
    );
    assert_eq!(
        store.job(on_long).await.unwrap().state,
        JobState::Assigned,
        "an executor with a 90 s lease is kept"
    );
    assert!(store.executor(&ExecutorId::new("b-long")).await.is_ok());
    running.stop().await;
}

/// A failed attempt with retries left goes back to pending and is placed again when its
/// backoff has passed: the run loop wakes for it then, not at its hour-long tick.
#[tokio::test]
async fn the_loop_places_a_retried_job_when_its_backoff_has_passed() {
    let store = Arc::new(InMemoryJobStore::new());
    executor(&store, "a", 1000, 1024, &[]).await;
    let s = hour_tick_scheduler(&store);
    let mut sp = spec(1000, 100);
    sp.retry.max_retries = 2;
    sp.retry.backoff = Duration::from_millis(800);
    let id = submit(&s, sp).await;
    s.run_pass().await.unwrap();
    let exec = ExecutorId::new("a");
    store.mark_running(id, &exec, 1).await.unwrap();
    let running = RunLoop::start(&s);
    let failed_at = std::time::Instant::now();
    let done = store
        .finish(id, &Outcome::exited(2, false), Some(1))
        .await
        .unwrap();
    assert_eq!(done.state, JobState::Pending);
    let job = store.job(id).await.unwrap();
    let reason = job.retry_reason(store.now().await.unwrap()).unwrap();
    assert!(
        reason.starts_with("retry 1/2 in 1 s after: exited with code 2"),
        "{reason}"
    );
    loop {
        let job = store.job(id).await.unwrap();
        if job.attempt == 2 {
            assert_eq!(job.state, JobState::Assigned);
            break;
        }
        assert!(
            failed_at.elapsed() < Duration::from_secs(3),
            "not placed again 3 s after a backoff of 0.8 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        failed_at.elapsed() >= Duration::from_millis(750),
        "placed again before its backoff passed"
    );
    running.stop().await;
}

#[tokio::test]
async fn pending_jobs_behind_the_considered_ones_still_time_out() {
    let (clock, store) = clocked_store();
    executor(&store, "a", 1000, 1024, &[]).await;
    let s = scheduler(
        &store,
        SchedulerConfig {
            max_jobs_per_pass: 3,
            ..SchedulerConfig::default()
        },
    );
    let filler = submit(&s, spec(1000, 100)).await;
    s.run_pass().await.unwrap();
    assert_eq!(store.job(filler).await.unwrap().state, JobState::Assigned);
    let mut waiting = Vec::new();
    for _ in 0..2500 {
        waiting.push(submit(&s, spec(1000, 100)).await);
    }
    clock.advance(Duration::from_secs(301));
    store
        .heartbeat(&ExecutorId::new("a"), &HostUsage::default())
        .await
        .unwrap();
    // The considered three fail in the pass; those behind them, a page per housekeeping
    // pass (1,000), until none is left: a queue longer than a pass reads is no excuse.
    let mut passes = 0;
    while store.counts().await.unwrap()[&JobState::Pending] > 0 {
        s.run_pass().await.unwrap();
        passes += 1;
        assert!(
            passes <= 4,
            "pending jobs behind the first page never time out"
        );
    }
    for id in [waiting[0], waiting[2499]] {
        let job = store.job(id).await.unwrap();
        assert_eq!(job.state, JobState::Failed);
        assert!(
            job.reason
                .as_deref()
                .unwrap()
                .starts_with("allocation timeout"),
            "{:?}",
            job.reason
        );
    }
}

#[tokio::test]
async fn retention_deletes_finished_jobs_by_age_and_by_count() {
    let (clock, store) = clocked_store();
    let s = scheduler(
        &store,
        SchedulerConfig {
            retention: dwr_core::Retention {
                max_age: Some(Duration::from_secs(3600)),
                max_jobs: Some(2),
                every: Duration::from_secs(60),
            },
            ..SchedulerConfig::default()
        },
    );
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = submit(&s, spec(1000, 100)).await;
        store.finish(id, &Outcome::failed("x"), None).await.unwrap();
        ids.push(id);
        clock.advance(Duration::from_secs(1));
    }
    let live = submit(&s, spec(1000, 100)).await;
    // Beyond the two that finished last.
    assert_eq!(s.apply_retention().await.unwrap(), 3);
    assert!(store.job(ids[2]).await.is_err());
    assert!(store.job(ids[3]).await.is_ok());
    // An hour later, by age.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(s.apply_retention().await.unwrap(), 2);
    assert_eq!(store.job(live).await.unwrap().state, JobState::Pending);
    assert_eq!(s.apply_retention().await.unwrap(), 0);
}

#[tokio::test]
async fn the_run_loop_applies_retention_in_the_background() {
    let store = Arc::new(InMemoryJobStore::new());
    let s = scheduler(
        &store,
        SchedulerConfig {
            retention: dwr_core::Retention {
                max_age: None,
                max_jobs: Some(0),
                every: Duration::from_millis(50),
            },
            ..SchedulerConfig::default()
        },
    );
    let id = submit(&s, spec(1000, 100)).await;
    store.finish(id, &Outcome::failed("x"), None).await.unwrap();
    let running = RunLoop::start(&s);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.job(id).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop().await;
}
