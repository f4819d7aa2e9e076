//! Test support: a store decorator that counts and injects failures, and an agent harness.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::agent::{AgentConfig, AgentError, ExecutorAgent};
use crate::error::StoreError;
use crate::executor::{Executor, ExecutorRegistration, HostUsage};
use crate::fake::{FakeGpuProbe, FakeHostProbe};
use crate::ids::{ExecutorId, JobId};
use crate::job::{AbortCause, Job, JobState, Outcome};
use crate::memory::InMemoryJobStore;
use crate::runtime::ContainerRuntime;
use crate::spec::JobSpec;
use crate::store::{
    AbortRequested, Assignment, ExecutorEvent, Expiry, Finished, JobQuery, JobStore,
};
use crate::time::Timestamp;

/// An [`InMemoryJobStore`] that counts `append_logs` calls, can fail `append_logs` and
/// `finish` with `Unavailable` (a given number of times, or while `finish_down` is set), and
/// can lose abort events (while `lose_aborts` is set) and the replies of applied
/// `mark_running` calls.
#[derive(Debug, Default)]
pub struct FlakyStore {
    pub inner: InMemoryJobStore,
    pub append_failures: AtomicU32,
    pub finish_failures: AtomicU32,
    pub finish_down: AtomicBool,
    pub appends: AtomicU32,
    pub finish_calls: AtomicU32,
    pub lose_aborts: AtomicBool,
    /// `mark_running` calls that apply but answer `Unavailable` (a lost reply).
    pub mark_running_lost_replies: AtomicU32,
}

fn unavailable(operation: &'static str) -> StoreError {
    StoreError::Unavailable {
        operation,
        source: "injected outage".into(),
    }
}

/// Takes one failure from `counter`; true when there was one.
fn take_failure(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl JobStore for FlakyStore {
    async fn now(&self) -> Result<Timestamp, StoreError> {
        self.inner.now().await
    }

    async fn submit(&self, job: Job) -> Result<Job, StoreError> {
        self.inner.submit(job).await
    }
    async fn job(&self, id: JobId) -> Result<Job, StoreError> {
        self.inner.job(id).await
    }
    async fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        self.inner.jobs(query).await
    }
    async fn pending_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.inner.pending_jobs(limit).await
    }
    async fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError> {
        self.inner.counts().await
    }
    async fn commit_assignment(&self, assignment: &Assignment) -> Result<Job, StoreError> {
        self.inner.commit_assignment(assignment).await
    }
    async fn mark_running(
        &self,
        id: JobId,
        executor: &ExecutorId,
        attempt: u32,
    ) -> Result<(), StoreError> {
        self.inner.mark_running(id, executor, attempt).await?;
        if take_failure(&self.mark_running_lost_replies) {
            return Err(unavailable("mark running"));
        }
        Ok(())
    }
    async fn finish(
        &self,
        id: JobId,
        outcome: &Outcome,
        attempt: Option<u32>,
    ) -> Result<Finished, StoreError> {
        self.finish_calls.fetch_add(1, Ordering::SeqCst);
        if self.finish_down.load(Ordering::SeqCst) || take_failure(&self.finish_failures) {
            return Err(unavailable("finish"));
        }
        self.inner.finish(id, outcome, attempt).await
    }
    async fn request_abort(
        &self,
        id: JobId,
        cause: AbortCause,
    ) -> Result<AbortRequested, StoreError> {
        self.inner.request_abort(id, cause).await
    }
    async fn register_executor(
        &self,
        registration: &ExecutorRegistration,
    ) -> Result<Executor, StoreError> {
        self.inner.register_executor(registration).await
    }
    async fn heartbeat(&self, id: &ExecutorId, usage: &HostUsage) -> Result<(), StoreError> {
        self.inner.heartbeat(id, usage).await
    }
    async fn executor(&self, id: &ExecutorId) -> Result<Executor, StoreError> {
        self.inner.executor(id).await
    }
    async fn executors(&self) -> Result<Vec<Executor>, StoreError> {
        self.inner.executors().await
    }
    async fn expire_executor(
        &self,
        id: &ExecutorId,
        when: Expiry,
        reason: &str,
    ) -> Result<Vec<JobId>, StoreError> {
        self.inner.expire_executor(id, when, reason).await
    }
    async fn next_event(
        &self,
        executor: &ExecutorId,
        wait: Duration,
    ) -> Result<Option<ExecutorEvent>, StoreError> {
        let event = self.inner.next_event(executor, wait).await?;
        if matches!(event, Some(ExecutorEvent::Abort(..)))
            && self.lose_aborts.load(Ordering::SeqCst)
        {
            return Ok(None);
        }
        Ok(event)
    }
    async fn wait_for_work(&self, wait: Duration) -> Result<(), StoreError> {
        self.inner.wait_for_work(wait).await
    }
    async fn append_logs(
        &self,
        id: JobId,
        attempt: Option<u32>,
        lines: &[String],
    ) -> Result<(), StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        if take_failure(&self.append_failures) {
            return Err(unavailable("append logs"));
        }
        self.inner.append_logs(id, attempt, lines).await
    }
    async fn logs(&self, id: JobId, from: usize) -> Result<Vec<String>, StoreError> {
        self.inner.logs(id, from).await
    }
    async fn wait_logs(
        &self,
        id: JobId,
        from: usize,
        wait: Duration,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.wait_logs(id, from, wait).await
    }
    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.inner.purge_finished(older_than).await
    }
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
