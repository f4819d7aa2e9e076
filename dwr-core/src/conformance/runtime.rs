//! The [`ContainerRuntime`] conformance suite: the contract of the trait's docs, checked the
//! same way on every runtime, so that the fake is proven to behave like Docker where the
//! agent relies on it.
//!
//! A runtime runs real commands (Docker) or reads directives (the fake), so a check asks
//! for a *behaviour* ("print these lines", "exit with 3", "run until stopped") and the
//! runtime's [`Behaviours`] say which command gives it. Each check is a
//! `pub async fn(&RuntimeUnderTest)`; [`run_all_runtime_checks`] runs them all, and each
//! check cleans up the containers it made, also its failures aside.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::error::RuntimeError;
use crate::ids::{ExecutorId, JobId};
use crate::runtime::{ContainerId, ContainerRuntime, ContainerSpec, LogSource};

/// The commands that give each behaviour on a runtime.
#[derive(Clone)]
pub struct Behaviours {
    /// Prints each line on stdout, in order, then exits 0.
    pub print: fn(&[&str]) -> Vec<String>,
    /// Exits with the code at once.
    pub exit_with: fn(i64) -> Vec<String>,
    /// Runs until stopped, and exits promptly on SIGTERM.
    pub until_stopped: fn() -> Vec<String>,
}

/// A runtime to check, with the image its containers use and how to ask for behaviours.
pub struct RuntimeUnderTest {
    /// The runtime.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// An image the runtime has.
    pub image: String,
    /// The commands of each behaviour.
    pub behaviours: Behaviours,
}

/// How long a container may take to do something prompt (start, exit, stop on SIGTERM):
/// a liveness bound, not a timing.
const PROMPT: Duration = Duration::from_secs(20);

impl RuntimeUnderTest {
    fn spec(&self, executor: &ExecutorId, command: Vec<String>) -> ContainerSpec {
        ContainerSpec {
            job: JobId::new(),
            attempt: 1,
            executor: executor.clone(),
            executor_ip: "127.0.0.1".to_owned(),
            image: self.image.clone(),
            command,
            env: BTreeMap::new(),
            cpu_millis: 500,
            memory_mib: 64,
            gpu_ids: Vec::new(),
            volumes: Vec::new(),
            read_only_rootfs: false,
        }
    }

    async fn cleanup(&self, ids: &[ContainerId]) {
        for id in ids {
            let _ = self.runtime.stop(id, Duration::from_millis(100)).await;
            let _ = self.runtime.remove(id).await;
        }
    }
}

fn fresh_executor() -> ExecutorId {
    ExecutorId::new(format!("conformance-{}", JobId::new()))
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PROMPT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PROMPT:?}"))
}

/// `create` makes a container that is listed as its executor's and not started; `start`
/// runs it once, and a second `start` is `StartFailed`, never a second run; after it exits
/// it is listed as started and not running; `remove` takes it off the list and is
/// idempotent.
pub async fn create_then_start_once(t: &RuntimeUnderTest) {
    let executor = fresh_executor();
    let spec = t.spec(&executor, (t.behaviours.exit_with)(0));
    let id = t.runtime.create(&spec).await.expect("create");
    let listed = t.runtime.list_owned(&executor).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].job, listed[0].started, listed[0].running),
        (spec.job, false, false),
        "a created container is its job's, not started"
    );
    t.runtime.start(&id, spec.job).await.expect("start");
    let again = t.runtime.start(&id, spec.job).await;
    assert!(
        matches!(again, Err(RuntimeError::StartFailed { job, .. }) if job == spec.job),
        "a second start must be refused: {again:?}"
    );
    let status = within("wait", t.runtime.wait(&id)).await.expect("wait");
    assert_eq!((status.code, status.oom_killed), (0, false));
    let listed = t.runtime.list_owned(&executor).await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|c| (c.id.clone(), c.started, c.running))
            .collect::<Vec<_>>(),
        [(id.clone(), true, false)]
    );
    t.runtime.remove(&id).await.expect("remove");
    t.runtime.remove(&id).await.expect("remove again");
    assert!(t
        .runtime
        .list_owned(&executor)
        .await
        .expect("list")
        .is_empty());
}

/// `logs`, asked for after the start (as the agent does), streams the stdout lines in order
/// from the container's start, those printed before the call included, and ends when the
/// container exits; `wait` then (or at once, when it exited already) gives the exit code.
pub async fn logs_stream_in_order_and_end_with_the_container(t: &RuntimeUnderTest) {
    let executor = fresh_executor();
    let spec = t.spec(
        &executor,
        (t.behaviours.print)(&["one", "two words", "three"]),
    );
    let id = t.runtime.create(&spec).await.expect("create");
    t.runtime.start(&id, spec.job).await.expect("start");
    let logs = t.runtime.logs(&id);
    let lines: Vec<_> = within("the log stream to end", logs.collect::<Vec<_>>()).await;
    let stdout: Vec<String> = lines
        .into_iter()
        .map(|l| l.expect("a log line"))
        .filter(|l| l.source == LogSource::Stdout)
        .map(|l| l.text)
        .collect();
    assert_eq!(stdout, ["one", "two words", "three"]);
    let status = within("wait", t.runtime.wait(&id)).await.expect("wait");
    assert_eq!(status.code, 0);
    let status = within("a second wait", t.runtime.wait(&id))
        .await
        .expect("wait");
    assert_eq!(
        status.code, 0,
        "wait after the exit answers at once, the same"
    );
    t.cleanup(&[id]).await;
}

/// A non-zero exit code is reported as it is, without an OOM kill.
pub async fn exit_codes_are_reported(t: &RuntimeUnderTest) {
    let executor = fresh_executor();
    let mut ids = Vec::new();
    for code in [1, 3, 42] {
        let spec = t.spec(&executor, (t.behaviours.exit_with)(code));
        let id = t.runtime.create(&spec).await.expect("create");
        ids.push(id.clone());
        t.runtime.start(&id, spec.job).await.expect("start");
        let status = within("wait", t.runtime.wait(&id)).await.expect("wait");
        assert_eq!((status.code, status.oom_killed), (code, false));
    }
    t.cleanup(&ids).await;
}

/// `stop` ends a running container that honours SIGTERM well within the grace, `wait` then
/// returns, and stopping it again (or stopping one that exited) is not an error.
pub async fn stop_ends_a_running_container(t: &RuntimeUnderTest) {
    let executor = fresh_executor();
    let spec = t.spec(&executor, (t.behaviours.until_stopped)());
    let id = t.runtime.create(&spec).await.expect("create");
    t.runtime.start(&id, spec.job).await.expect("start");
    let running = t.runtime.list_owned(&executor).await.expect("list");
    assert!(
        running.iter().any(|c| c.id == id && c.running),
        "{running:?}"
    );
    let grace = Duration::from_secs(10);
    let started = Instant::now();
    within("stop", t.runtime.stop(&id, grace))
        .await
        .expect("stop");
    let status = within("wait after stop", t.runtime.wait(&id))
        .await
        .expect("wait");
    assert!(
        started.elapsed() < grace,
        "a container that honours SIGTERM waited out the grace ({:?})",
        started.elapsed()
    );
    assert_ne!(status.code, 0, "a stopped container did not end by itself");
    t.runtime.stop(&id, grace).await.expect("stop again");
    t.cleanup(&[id]).await;
}

/// `list_owned` lists the containers of one executor only.
pub async fn containers_are_listed_per_executor(t: &RuntimeUnderTest) {
    let (a, b) = (fresh_executor(), fresh_executor());
    let spec_a = t.spec(&a, (t.behaviours.exit_with)(0));
    let spec_b = t.spec(&b, (t.behaviours.exit_with)(0));
    let id_a = t.runtime.create(&spec_a).await.expect("create");
    let id_b = t.runtime.create(&spec_b).await.expect("create");
    let of_a = t.runtime.list_owned(&a).await.expect("list");
    let of_b = t.runtime.list_owned(&b).await.expect("list");
    assert_eq!(
        of_a.iter()
            .map(|c| (c.id.clone(), c.job))
            .collect::<Vec<_>>(),
        [(id_a.clone(), spec_a.job)]
    );
    assert_eq!(
        of_b.iter()
            .map(|c| (c.id.clone(), c.job))
            .collect::<Vec<_>>(),
        [(id_b.clone(), spec_b.job)]
    );
    t.cleanup(&[id_a, id_b]).await;
}

/// Runs every check in turn on `t`.
pub async fn run_all_runtime_checks(t: &RuntimeUnderTest) {
    create_then_start_once(t).await;
    logs_stream_in_order_and_end_with_the_container(t).await;
    exit_codes_are_reported(t).await;
    stop_ends_a_running_container(t).await;
    containers_are_listed_per_executor(t).await;
}
