//! Test support: the fault-injecting store the tests share, and an agent harness.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::agent::{AgentConfig, AgentError, ExecutorAgent};
use crate::fake::{FakeGpuProbe, FakeHostProbe, FaultyStore};
use crate::ids::{ExecutorId, JobId};
use crate::job::{Job, JobState};
use crate::memory::InMemoryJobStore;
use crate::runtime::ContainerRuntime;
use crate::spec::JobSpec;
use crate::store::{Assignment, JobStore};
use crate::time::Timestamp;

/// The in-memory store behind a [`FaultyStore`], for tests that inject failures.
pub fn faulty() -> Arc<FaultyStore> {
    Arc::new(FaultyStore::new(Arc::new(InMemoryJobStore::new())))
}

/// A test configuration: no fallback poll to speak of (60 s), short grace and flushes.
pub fn config(id: &str) -> AgentConfig {
    let mut config = AgentConfig::new(ExecutorId::new(id), "10.0.0.7");
    config.poll_interval = Duration::from_secs(60);
    config.heartbeat_interval = Duration::from_secs(60);
    config.stop_grace = Duration::from_millis(200);
    config.log_flush_interval = Duration::from_millis(20);
    config.store_retry_for = Duration::from_secs(5);
    config
}

/// A running agent and the switch that shuts it down.
pub struct Running {
    pub id: ExecutorId,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl Running {
    /// Starts an agent (8 cores, 16 GiB, two fake H200s) and waits until it registered.
    pub async fn start(
        store: Arc<dyn JobStore>,
        runtime: Arc<dyn ContainerRuntime>,
        config: AgentConfig,
    ) -> Running {
        let id = config.id.clone();
        let agent = ExecutorAgent::new(
            store.clone(),
            runtime,
            Arc::new(FakeGpuProbe::for_host(
                id.as_str(),
                &["NVIDIA H200", "NVIDIA H200"],
            )),
            Arc::new(FakeHostProbe::new(8_000, 16_384)),
            config,
        );
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(agent.run(async {
            let _ = signal.await;
        }));
        within(Duration::from_secs(5), "registration", || {
            let store = store.clone();
            let id = id.clone();
            async move { store.executor(&id).await.ok() }
        })
        .await;
        Running {
            id,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// Shuts the agent down and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), AgentError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("agent shut down within 10 s")
            .expect("agent task did not panic")
    }
}

/// Polls `probe` every 10 ms until it gives a value; panics naming `what` after `limit`.
pub async fn within<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Submits a job running `command` and assigns it to `executor` with `gpu_ids`.
pub async fn assign(
    store: &dyn JobStore,
    executor: &ExecutorId,
    command: &[&str],
    gpu_ids: &[&str],
) -> JobId {
    let mut spec = JobSpec::new(
        "dwr-test/busybox:latest",
        command.iter().map(|w| (*w).to_owned()).collect(),
        1_500,
        256,
    );
    if !gpu_ids.is_empty() {
        spec = spec.with_gpus(gpu_ids.len() as u32, crate::spec::GpuModel::Any);
    }
    spec.env.insert("MODE".into(), "test".into());
    let job = Job::new(JobId::new(), spec, Timestamp::now());
    let id = job.id;
    store.submit(job).await.expect("submit");
    let assignment = Assignment::new(
        id,
        executor.clone(),
        gpu_ids.iter().map(|g| (*g).to_owned()).collect(),
    );
    store
        .commit_assignment(&assignment)
        .await
        .expect("commit assignment");
    id
}

/// Waits until the job is in `state` (or terminal), and asserts it is in `state`.
pub async fn until_state(store: &dyn JobStore, id: JobId, state: JobState, limit: Duration) -> Job {
    let job = within(limit, &format!("job reaching {state}"), || async {
        store
            .job(id)
            .await
            .ok()
            .filter(|job| job.state == state || job.state.is_terminal())
    })
    .await;
    assert_eq!(job.state, state, "{job:#?}");
    job
}
