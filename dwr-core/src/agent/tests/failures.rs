//! The agent's reaction to runtime failures and store errors, with a mocked runtime.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use super::support::{assign, config, faulty, until_state, Running};
use crate::error::RuntimeError;
use crate::fake::{Fault, FaultyStore, Op};
use crate::job::{Job, JobState};
use crate::runtime::{ContainerId, ExitStatus, LogLine, LogSource};
use crate::store::JobStore;

/// The mock of every `ContainerRuntime` method (`automock` on the trait).
type MockRuntime = crate::runtime::MockContainerRuntime;

const LIMIT: Duration = Duration::from_secs(5);

fn container() -> ContainerId {
    ContainerId("c-1".into())
}

/// A runtime with no containers at start-up and an image present.
fn runtime() -> MockRuntime {
    let mut runtime = MockRuntime::new();
    runtime.expect_list_owned().returning(|_| Ok(vec![]));
    runtime.expect_ensure_image().returning(|_, _| Ok(()));
    runtime
}

/// Expects a start that succeeds, output `lines`, an exit with `status`, and one removal.
fn runs_and_exits(runtime: &mut MockRuntime, lines: &'static [&'static str], status: ExitStatus) {
    runtime
        .expect_create()
        .times(1)
        .returning(|_| Ok(container()));
    runtime.expect_start().times(1).returning(|_, _| Ok(()));
    runtime.expect_logs().returning(move |_| {
        stream::iter(lines.iter().map(|text| {
            Ok(LogLine {
                source: LogSource::Stdout,
                text: (*text).to_owned(),
            })
        }))
        .boxed()
    });
    runtime.expect_wait().returning(move |_| Ok(status));
    runtime
        .expect_remove()
        .withf(|id| *id == container())
        .times(1)
        .returning(|_| Ok(()));
}

/// Runs one job through an agent over `runtime` and returns it in state `state`.
async fn run_one(
    store: Arc<FaultyStore>,
    runtime: MockRuntime,
    state: JobState,
) -> (Job, Vec<String>) {
    let agent = Running::start(store.clone(), Arc::new(runtime), config("e1")).await;
    let job = assign(&*store, &agent.id, &["work"], &[]).await;
    let done = until_state(&*store, job, state, LIMIT).await;
    agent.stop().await.unwrap();
    let log = store.logs(job, 0).await.unwrap();
    // Dropping the agent's runtime checks the `times` expectations.
    (done, log)
}

fn boom() -> crate::BoxError {
    "boom".into()
}

#[tokio::test]
async fn a_failed_pull_fails_the_job_without_starting_anything() {
    let mut runtime = MockRuntime::new();
    runtime.expect_list_owned().returning(|_| Ok(vec![]));
    runtime
        .expect_ensure_image()
        .times(1)
        .returning(|image, _| {
            Err(RuntimeError::ImageUnavailable {
                image: image.to_owned(),
                reason: "no registry".into(),
            })
        });
    runtime.expect_create().times(0);
    runtime.expect_start().times(0);
    runtime.expect_remove().times(0);
    let (job, _) = run_one(faulty(), runtime, JobState::Failed).await;
    assert_eq!(
        job.reason.as_deref(),
        Some("image dwr-test/busybox:latest unavailable: no registry")
    );
    assert_eq!(job.exit_code, None);
}

#[tokio::test]
async fn a_failed_create_or_start_fails_the_job_with_its_cause() {
    for (error, expected) in [
        (
            RuntimeError::CreateFailed {
                job: crate::JobId::new(),
                source: boom(),
            },
            "creating the container of job",
        ),
        (
            RuntimeError::StartFailed {
                job: crate::JobId::new(),
                source: boom(),
            },
            "starting the container of job",
        ),
        (
            RuntimeError::Unreachable {
                endpoint: "unix:///var/run/docker.sock".into(),
                source: boom(),
            },
            "container engine unreachable at unix:///var/run/docker.sock: boom",
        ),
    ] {
        let mut runtime = runtime();
        let error = std::sync::Mutex::new(Some(error));
        runtime
            .expect_create()
            .times(1)
            .returning(|_| Ok(container()));
        runtime
            .expect_start()
            .times(1)
            .returning(move |_, _| Err(error.lock().unwrap().take().expect("start called once")));
        // A container that did not start is removed, never left behind.
        runtime.expect_remove().times(1).returning(|_| Ok(()));
        let (job, _) = run_one(faulty(), runtime, JobState::Failed).await;
        let reason = job.reason.unwrap();
        assert!(reason.contains(expected), "{reason}");
        assert!(reason.ends_with("boom"), "the cause is kept: {reason}");
    }
}

#[tokio::test]
async fn a_non_zero_exit_fails_the_job_with_its_code_and_output() {
    let mut runtime = runtime();
    runs_and_exits(
        &mut runtime,
        &["working", "bad input"],
        ExitStatus {
            code: 3,
            oom_killed: false,
        },
    );
    let (job, log) = run_one(faulty(), runtime, JobState::Failed).await;
    assert_eq!(job.exit_code, Some(3));
    assert_eq!(job.reason.as_deref(), Some("exited with code 3"));
    assert!(!job.oom_killed);
    assert_eq!(log, ["working", "bad input"]);
}

#[tokio::test]
async fn an_oom_kill_is_recorded() {
    let mut runtime = runtime();
    runs_and_exits(
        &mut runtime,
        &[],
        ExitStatus {
            code: 137,
            oom_killed: true,
        },
    );
    let (job, _) = run_one(faulty(), runtime, JobState::Failed).await;
    assert!(job.oom_killed);
    assert_eq!(job.exit_code, Some(137));
    assert_eq!(job.reason.as_deref(), Some("out of memory (OOM killed)"));
}

#[tokio::test]
async fn losing_the_engine_mid_run_fails_the_job_and_still_removes_the_container() {
    let mut runtime = runtime();
    runtime
        .expect_create()
        .times(1)
        .returning(|_| Ok(container()));
    runtime.expect_start().times(1).returning(|_, _| Ok(()));
    runtime
        .expect_logs()
        .returning(|_| stream::pending().boxed());
    runtime.expect_wait().times(1).returning(|_| {
        Err(RuntimeError::Unreachable {
            endpoint: "unix:///var/run/docker.sock".into(),
            source: boom(),
        })
    });
    runtime.expect_stop().times(1).returning(|_, _| Ok(()));
    runtime.expect_remove().times(1).returning(|_| Ok(()));
    let (job, _) = run_one(faulty(), runtime, JobState::Failed).await;
    let reason = job.reason.unwrap();
    assert!(
        reason.starts_with("container engine unreachable"),
        "{reason}"
    );
}

#[tokio::test]
async fn store_errors_mid_job_are_retried_until_the_job_ends() {
    let store = faulty();
    store.fail_next(Op::AppendLogs, Fault::Unavailable, 3);
    store.fail_next(Op::Finish, Fault::Unavailable, 3);
    let mut runtime = runtime();
    runs_and_exits(
        &mut runtime,
        &["one", "two"],
        ExitStatus {
            code: 0,
            oom_killed: false,
        },
    );
    let (job, log) = run_one(store.clone(), runtime, JobState::Succeeded).await;
    assert_eq!(job.exit_code, Some(0));
    assert_eq!(log, ["one", "two"], "the batch was retried, not lost");
    assert_eq!(store.faults_left(Op::AppendLogs), 0);
    assert_eq!(store.faults_left(Op::Finish), 0);
    assert_eq!(store.calls(Op::Finish), 4);
}

#[tokio::test]
async fn an_engine_unreachable_at_start_up_stops_the_agent() {
    let mut runtime = MockRuntime::new();
    runtime.expect_list_owned().returning(|_| {
        Err(RuntimeError::Unreachable {
            endpoint: "unix:///var/run/docker.sock".into(),
            source: boom(),
        })
    });
    let store: Arc<dyn JobStore> = faulty();
    let agent = crate::ExecutorAgent::new(
        store,
        Arc::new(runtime),
        Arc::new(crate::FakeGpuProbe::none()),
        Arc::new(crate::FakeHostProbe::new(1000, 1024)),
        config("e1"),
    );
    let result = tokio::time::timeout(LIMIT, agent.run(std::future::pending())).await;
    let error = result.expect("the agent gives up at once").unwrap_err();
    assert!(
        matches!(error, crate::AgentError::ListContainersFailed { .. }),
        "{error:?}"
    );
}
