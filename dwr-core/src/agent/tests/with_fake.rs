//! The agent over the in-memory store and the fake runtime.

use std::sync::Arc;
use std::time::Duration;

use super::support::{assign, config, faulty, until_state, within, Running};
use crate::agent::job::REATTACH_NOTE;
use crate::agent::{REASON_CONTAINER_LOST, REASON_EXECUTOR_SHUT_DOWN};
use crate::fake::FakeRuntime;
use crate::fake::{Fault, Op};
use crate::job::{AbortCause, JobState, REASON_EXECUTOR_LOST, REASON_TIMED_OUT};
use crate::memory::InMemoryJobStore;
use crate::runtime::ContainerRuntimeExt;
use crate::store::{Expiry, JobStore};
use crate::{ExecutorId, ExecutorRegistration};

/// Bound for liveness waits (generous: the tests share the machine with builds).
const LIVENESS: Duration = Duration::from_secs(5);
/// Bound for an assignment to run, far below the 60 s fallback poll of the tests.
const PICKUP: Duration = Duration::from_secs(2);

fn parts() -> (Arc<InMemoryJobStore>, Arc<FakeRuntime>) {
    (
        Arc::new(InMemoryJobStore::new()),
        Arc::new(FakeRuntime::new()),
    )
}

/// The lines of a job's log after the image pull's progress lines.
async fn output(store: &dyn JobStore, id: crate::JobId) -> Vec<String> {
    let lines = store.logs(id, 0).await.unwrap();
    lines
        .into_iter()
        .filter(|l| !l.starts_with("Pulling ") && !l.starts_with("Pulled "))
        .collect()
}

#[tokio::test]
async fn an_assignment_runs_at_once_with_the_jobs_limits_gpus_and_env() {
    let (store, runtime) = parts();
    let agent = Running::start(store.clone(), runtime.clone(), config("e1")).await;
    let gpu = "GPU-fake-e1-1";
    let job = assign(&*store, &agent.id, &["echo", "hello"], &[gpu]).await;

    // The fallback poll is 60 s: only the wake-up can make this in time.
    let done = until_state(&*store, job, JobState::Succeeded, PICKUP).await;
    assert_eq!(done.exit_code, Some(0));
    let log = store.logs(job, 0).await.unwrap();
    assert_eq!(
        log,
        [
            "Pulling dwr-test/busybox:latest",
            "Pulled dwr-test/busybox:latest",
            "hello"
        ]
    );

    let specs = runtime.started_specs();
    assert_eq!(specs.len(), 1);
    let spec = &specs[0];
    assert_eq!(
        (spec.job, spec.executor.as_str(), spec.executor_ip.as_str()),
        (job, "e1", "10.0.0.7")
    );
    assert_eq!((spec.cpu_millis, spec.memory_mib), (1_500, 256));
    assert_eq!(spec.gpu_ids, [gpu]);
    assert_eq!(spec.env.get("MODE").map(String::as_str), Some("test"));
    within(LIVENESS, "container removal", || async {
        (runtime.removed_count() == 1).then_some(())
    })
    .await;
    assert_eq!(runtime.container_count(), 0);

    let executor = store.executor(&agent.id).await.unwrap();
    assert_eq!(executor.registration.capacity.cpu_millis, 8_000);
    assert_eq!(executor.registration.gpus.len(), 2);
    assert!(executor.allocated.is_zero(), "{executor:?}");
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn output_reaches_the_store_in_order_and_in_batches() {
    let store = faulty();
    let runtime = Arc::new(FakeRuntime::new());
    let mut cfg = config("e1");
    cfg.log_batch_max = 100;
    let agent = Running::start(store.clone(), runtime, cfg).await;
    let job = assign(&*store, &agent.id, &["fake", "lines=1000", "exit=2"], &[]).await;
    let done = until_state(&*store, job, JobState::Failed, LIVENESS).await;
    assert_eq!(done.exit_code, Some(2));
    assert_eq!(done.reason.as_deref(), Some("exited with code 2"));
    let expected: Vec<String> = (1..=1000).map(|i| format!("line {i}")).collect();
    assert_eq!(output(&*store, job).await, expected);
    let appends = store.calls(Op::AppendLogs);
    assert!(
        appends <= 12,
        "1000 lines in batches of 100 (+ pull progress) took {appends} appends"
    );
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_user_abort_stops_a_hanging_job() {
    let (store, runtime) = parts();
    let agent = Running::start(store.clone(), runtime.clone(), config("e1")).await;
    let job = assign(&*store, &agent.id, &["fake", "print=started", "hang"], &[]).await;
    until_state(&*store, job, JobState::Running, LIVENESS).await;
    assert_eq!(runtime.running_count(), 1);

    store.request_abort(job, AbortCause::User).await.unwrap();
    let done = until_state(&*store, job, JobState::Aborted, LIVENESS).await;
    assert_eq!(done.exit_code, Some(137), "killed after the grace period");
    assert_eq!(runtime.running_count(), 0);
    assert_eq!(runtime.removed_count(), 1);
    assert_eq!(output(&*store, job).await, ["started"]);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_max_runtime_abort_fails_the_job_as_timed_out() {
    let (store, runtime) = parts();
    let agent = Running::start(store.clone(), runtime.clone(), config("e1")).await;
    let job = assign(&*store, &agent.id, &["fake", "hang", "term"], &[]).await;
    until_state(&*store, job, JobState::Running, LIVENESS).await;
    store
        .request_abort(job, AbortCause::TimedOut)
        .await
        .unwrap();
    let done = until_state(&*store, job, JobState::Failed, LIVENESS).await;
    assert_eq!(done.reason.as_deref(), Some(REASON_TIMED_OUT));
    assert_eq!(done.exit_code, Some(143), "exited on SIGTERM");
    assert_eq!(runtime.removed_count(), 1);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn runtime_failures_fail_the_job_with_the_runtimes_reason() {
    let (store, _) = parts();
    let runtime = Arc::new(FakeRuntime::new().with_unavailable_image("gone:1"));
    let agent = Running::start(store.clone(), runtime.clone(), config("e1")).await;
    let start_fail = assign(&*store, &agent.id, &["fake", "start-fail"], &[]).await;
    let oom = assign(&*store, &agent.id, &["fake", "oom", "run=20ms"], &[]).await;

    let done = until_state(&*store, start_fail, JobState::Failed, LIVENESS).await;
    let reason = done.reason.unwrap();
    assert!(reason.contains("starting the container"), "{reason}");
    let done = until_state(&*store, oom, JobState::Failed, LIVENESS).await;
    assert!(done.oom_killed);
    assert_eq!(done.exit_code, Some(137));
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_agent_reattaches_to_its_running_container() {
    let (store, runtime) = parts();
    let first = Running::start(store.clone(), runtime.clone(), config("e1")).await;
    let job = assign(&*store, &first.id, &["fake", "print=before", "hang"], &[]).await;
    until_state(&*store, job, JobState::Running, LIVENESS).await;
    within(LIVENESS, "the output", || async {
        (output(&*store, job).await == ["before"]).then_some(())
    })
    .await;
    first.stop().await.unwrap();
    assert_eq!(
        runtime.running_count(),
        1,
        "shutdown leaves containers running"
    );
    assert_eq!(store.job(job).await.unwrap().state, JobState::Running);

    let second = Running::start(store.clone(), runtime.clone(), config("e1")).await;
    within(LIVENESS, "the re-attach note", || async {
        output(&*store, job)
            .await
            .contains(&REATTACH_NOTE.to_owned())
            .then_some(())
    })
    .await;
    assert_eq!(store.job(job).await.unwrap().state, JobState::Running);
    assert_eq!(runtime.started_specs().len(), 1, "not started twice");

    store.request_abort(job, AbortCause::User).await.unwrap();
    until_state(&*store, job, JobState::Aborted, LIVENESS).await;
    assert_eq!(runtime.running_count(), 0);
    assert_eq!(runtime.removed_count(), 1);
    assert_eq!(
        output(&*store, job).await,
        ["before", REATTACH_NOTE],
        "old lines are not duplicated"
    );
    second.stop().await.unwrap();
}

#[tokio::test]
async fn a_restart_records_exits_and_aborts_that_happened_while_down() {
    let (store, runtime) = parts();
    let first = Running::start(store.clone(), runtime.clone(), config("e1")).await;
    let exits = assign(&*store, &first.id, &["fake", "run=300ms", "exit=5"], &[]).await;
    let aborted = assign(&*store, &first.id, &["fake", "hang"], &[]).await;
    until_state(&*store, exits, JobState::Running, LIVENESS).await;
    until_state(&*store, aborted, JobState::Running, LIVENESS).await;
    first.stop().await.unwrap();

    // While the agent is down: one container exits, the other job is aborted.
    store
        .request_abort(aborted, AbortCause::User)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;

    let second = Running::start(store.clone(), runtime.clone(), config("e1")).await;
    let done = until_state(&*store, exits, JobState::Failed, LIVENESS).await;
    assert_eq!(done.exit_code, Some(5));
    until_state(&*store, aborted, JobState::Aborted, LIVENESS).await;
    within(LIVENESS, "both removals", || async {
        (runtime.container_count() == 0).then_some(())
    })
    .await;
    assert_eq!(runtime.removed_count(), 2);
    second.stop().await.unwrap();
}

#[tokio::test]
async fn reconcile_removes_strays_starts_waiting_jobs_and_fails_lost_ones() {
    let (store, runtime) = parts();
    let id = ExecutorId::new("e1");
    // A job assigned while no agent ran, and a job whose container vanished.
    store
        .register_executor(&ExecutorRegistration::new(
            id.clone(),
            "10.0.0.7",
            8_000,
            16_384,
            vec![],
        ))
        .await
        .unwrap();
    let waiting = assign(&*store, &id, &["echo", "waited"], &[]).await;
    let lost = assign(&*store, &id, &["fake", "hang"], &[]).await;
    store.mark_running(lost, &id, 1).await.unwrap();
    // A container of this executor whose job ended long ago.
    let stray = assign(&*store, &id, &["fake", "hang"], &[]).await;
    let stray_spec = crate::ContainerSpec {
        job: stray,
        attempt: 1,
        executor: id.clone(),
        executor_ip: "10.0.0.7".into(),
        image: "img".into(),
        command: vec!["fake".into(), "hang".into()],
        env: Default::default(),
        cpu_millis: 100,
        memory_mib: 10,
        gpu_ids: vec![],
        volumes: vec![],
        read_only_rootfs: false,
    };
    runtime.create_and_start(&stray_spec).await.unwrap();
    store
        .finish(stray, &crate::Outcome::failed("gone"), None)
        .await
        .unwrap();

    let agent = Running::start(store.clone(), runtime.clone(), config("e1")).await;
    until_state(&*store, waiting, JobState::Succeeded, LIVENESS).await;
    let done = until_state(&*store, lost, JobState::Failed, LIVENESS).await;
    assert_eq!(done.reason.as_deref(), Some(REASON_CONTAINER_LOST));
    within(LIVENESS, "the stray's removal", || async {
        (runtime.container_count() == 0).then_some(())
    })
    .await;
    // The queued `Assigned` event of the waiting job does not start it a second time.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = runtime.started_specs();
    assert_eq!(started.iter().filter(|s| s.job == waiting).count(), 1);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn the_heartbeat_registers_again_after_expiry_and_stray_containers_stop() {
    let (store, runtime) = parts();
    let mut cfg = config("e1");
    cfg.heartbeat_interval = Duration::from_millis(50);
    // The stray container stops on re-registration, not after the (60 s) fallback poll.
    let agent = Running::start(store.clone(), runtime.clone(), cfg).await;
    let job = assign(&*store, &agent.id, &["fake", "hang"], &[]).await;
    until_state(&*store, job, JobState::Running, LIVENESS).await;

    let failed = store
        .expire_executor(&agent.id, Expiry::Now, REASON_EXECUTOR_LOST)
        .await
        .unwrap();
    assert_eq!(failed, [job]);
    assert!(store.executor(&agent.id).await.is_err());

    within(LIVENESS, "registration again", || async {
        store.executor(&agent.id).await.ok()
    })
    .await;
    within(LIVENESS, "the stray container's stop", || async {
        (runtime.container_count() == 0).then_some(())
    })
    .await;
    let job = store.job(job).await.unwrap();
    assert_eq!(job.reason.as_deref(), Some(REASON_EXECUTOR_LOST));
    // The executor is usable again.
    let next = assign(&*store, &agent.id, &["true"], &[]).await;
    until_state(&*store, next, JobState::Succeeded, LIVENESS).await;
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn draining_on_shutdown_stops_jobs_and_deregisters() {
    let (store, runtime) = parts();
    let mut cfg = config("e1");
    cfg.drain_on_shutdown = true;
    let agent = Running::start(store.clone(), runtime.clone(), cfg).await;
    let id = agent.id.clone();
    let job = assign(&*store, &id, &["fake", "hang"], &[]).await;
    until_state(&*store, job, JobState::Running, LIVENESS).await;
    agent.stop().await.unwrap();
    let job = store.job(job).await.unwrap();
    assert_eq!(
        (job.state, job.reason.as_deref()),
        (JobState::Failed, Some(REASON_EXECUTOR_SHUT_DOWN))
    );
    assert_eq!(runtime.container_count(), 0);
    assert!(store.executor(&id).await.is_err(), "deregistered");
    // Nothing can be assigned to it any more.
    let assignment = crate::Assignment::new(crate::JobId::new(), id, vec![]);
    assert!(store.commit_assignment(&assignment).await.is_err());
}

#[tokio::test]
async fn an_outcome_survives_a_long_store_outage() {
    let store = faulty();
    let runtime = Arc::new(FakeRuntime::new());
    let mut cfg = config("e1");
    cfg.store_retry_for = Duration::from_millis(300);
    cfg.poll_interval = Duration::from_millis(100);
    let agent = Running::start(store.clone(), runtime.clone(), cfg).await;
    store.set_down(Op::Finish, true);
    let job = assign(&*store, &agent.id, &["fake", "exit=4"], &[]).await;
    // The container is removed although the outcome could not be recorded.
    within(LIVENESS, "the removal", || async {
        (runtime.removed_count() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.job(job).await.unwrap().state, JobState::Running);
    store.set_down(Op::Finish, false);
    let done = until_state(&*store, job, JobState::Failed, LIVENESS).await;
    assert_eq!(done.exit_code, Some(4));
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_lost_abort_event_is_honoured_at_the_fallback_check() {
    let store = faulty();
    store.set_lose_aborts(true);
    let runtime = Arc::new(FakeRuntime::new());
    let mut cfg = config("e1");
    cfg.poll_interval = Duration::from_millis(200);
    let agent = Running::start(store.clone(), runtime.clone(), cfg).await;
    let job = assign(&*store, &agent.id, &["fake", "hang", "term"], &[]).await;
    until_state(&*store, job, JobState::Running, LIVENESS).await;
    store.request_abort(job, AbortCause::User).await.unwrap();
    until_state(&*store, job, JobState::Aborted, LIVENESS).await;
    assert_eq!(runtime.container_count(), 0);
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn configured_capacity_and_location_override_the_probes() {
    let (store, runtime) = parts();
    let mut cfg = config("e1");
    cfg.cpu_millis = Some(2_000);
    cfg.memory_mib = Some(1_024);
    cfg.region = Some("eu".into());
    cfg.datacenter = Some("eu-1".into());
    let agent = Running::start(store.clone(), runtime, cfg).await;
    let registration = store.executor(&agent.id).await.unwrap().registration;
    assert_eq!(
        (
            registration.capacity.cpu_millis,
            registration.capacity.memory_mib,
            registration.capacity.gpus
        ),
        (2_000, 1_024, 2)
    );
    assert_eq!(registration.ip, "10.0.0.7");
    assert_eq!(
        (
            registration.region.as_deref(),
            registration.datacenter.as_deref()
        ),
        (Some("eu"), Some("eu-1"))
    );
    agent.stop().await.unwrap();
}

#[tokio::test]
async fn a_lost_reply_of_mark_running_does_not_lose_the_job() {
    let store = faulty();
    store.fail_next(Op::MarkRunning, Fault::LostReply, 1);
    let runtime = Arc::new(FakeRuntime::new());
    let agent = Running::start(store.clone(), runtime.clone(), config("e1")).await;
    let job = assign(
        &*store,
        &agent.id,
        &["fake", "run=100ms", "print=done"],
        &[],
    )
    .await;
    until_state(&*store, job, JobState::Succeeded, LIVENESS).await;
    assert_eq!(output(&*store, job).await, ["done"]);
    assert_eq!(store.faults_left(Op::MarkRunning), 0);
    agent.stop().await.unwrap();
}
