//! The executor agent: registers an executor, keeps it alive, and runs the jobs the store
//! assigns to it through a [`ContainerRuntime`].
//!
//! # What it does
//!
//! * **Register** its capacity (from [`AgentConfig`] when overridden, else the
//!   [`HostProbe`]) and its GPUs (from the [`GpuProbe`]).
//! * **Heartbeat** every `heartbeat_interval` with the host's observed usage. Heartbeats
//!   never touch allocations. When the store answers `ExecutorNotFound` (the executor was
//!   expired, its jobs failed as "executor lost"), it registers again.
//! * **Reconcile** at start: see [`reconcile`](self#reconcile-after-a-restart).
//! * **Wait for events** with [`JobStore::next_event`], which wakes at once on an
//!   assignment or abort; `poll_interval` only bounds the wait. When a wait ends without an
//!   event the agent re-reads its jobs from the store (the *fallback check*): abort requests
//!   and assignments whose events were lost are still honoured, jobs the store no longer
//!   gives this executor have their containers stopped, and outcomes the store refused
//!   while it was down are recorded.
//! * **Run each job** in its own task: pull (progress lines go to the job's log), create
//!   and start the container with the job's limits and its assigned GPU UUIDs, mark it
//!   running, forward its output in batches (one `append_logs` per `log_batch_max` lines or
//!   `log_flush_interval`), wait for its exit, record `Outcome::exited(code, oom)`, remove
//!   the container. A runtime failure (image unavailable, create or start failed, engine
//!   unreachable) fails the job with [`RuntimeError::job_reason`](crate::RuntimeError::job_reason).
//! * **Abort**: an abort event signals the job's task at once; the task stops the
//!   container (SIGTERM, `stop_grace`, then SIGKILL), removes it and finishes the job with
//!   the cause's outcome (a user abort ends `aborted`, a max-runtime abort ends `failed`
//!   "timed out").
//! * **Store outages** mid-job: every store operation of a job is retried with backoff for
//!   `store_retry_for`; an outcome still unrecorded then is kept and retried at each
//!   fallback check. Containers are removed whatever the store says, so none is left running
//!   or orphaned.
//!
//! # Shutdown
//!
//! When the `shutdown` future resolves the agent stops taking work and stops heartbeating.
//! By default it then **leaves running containers running**: each job task sends its
//! buffered log lines and exits, and the jobs stay `running` in the store. An agent
//! restarted with the same id within the liveness TTL re-attaches to them; otherwise the
//! scheduler fails them as "executor lost" and a later restart removes their containers.
//! With [`AgentConfig::drain_on_shutdown`] it instead stops every container, fails its job
//! with "executor shut down", and removes the executor from the store.
//!
//! # Reconcile after a restart
//!
//! Before taking events the agent lists the containers labelled as its own:
//!
//! * a container whose job is assigned to or running on this executor is re-attached: the
//!   agent waits for its exit (at once if it exited while the agent was down) and records
//!   it, or stops it on abort. Output produced after the restart is not captured (runtimes
//!   stream from the container's start, which would duplicate every line); a note in the
//!   job's log says so;
//! * any other container (job terminal, unknown, or given to another executor) is stopped
//!   and removed.
//!
//! Then each job the store lists on this executor without a container is started when it is
//! `assigned`, or failed ("container lost") when it is `running`.

mod config;
mod job;
mod logs;
mod retry;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::StoreError;
use crate::executor::ExecutorRegistration;
use crate::ids::JobId;
use crate::job::{AbortCause, JobState, Outcome, REASON_EXECUTOR_LOST};
use crate::probe::{GpuProbe, HostProbe};
use crate::runtime::{ContainerId, ContainerRuntime};
use crate::store::{ExecutorEvent, JobStore};
use crate::time::Timestamp;

pub use config::{
    AgentConfig, AgentError, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_LOG_BATCH_MAX,
    DEFAULT_LOG_FLUSH_INTERVAL, DEFAULT_POLL_INTERVAL, DEFAULT_STOP_GRACE, DEFAULT_STORE_RETRY_FOR,
};
use job::Signal;

/// Reason recorded on jobs stopped by an agent draining on shutdown.
pub const REASON_EXECUTOR_SHUT_DOWN: &str = "executor shut down";
/// Reason recorded on a running job whose container is gone after an agent restart.
pub const REASON_CONTAINER_LOST: &str = "container lost while the executor was down";

/// How long the agent waits for job tasks to hand over when it shuts down without draining.
const DETACH_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed wait for events.
const EVENT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What the job tasks share: the store, the runtime, the configuration, and the outcomes
/// the store has not taken yet.
#[derive(Debug)]
struct Shared {
    store: Arc<dyn JobStore>,
    runtime: Arc<dyn ContainerRuntime>,
    config: AgentConfig,
    /// Outcomes the store refused for longer than the retry budget, recorded later.
    unrecorded: Mutex<HashMap<JobId, Outcome>>,
}

impl Shared {
    fn keep_unrecorded(&self, id: JobId, outcome: Outcome) {
        self.unrecorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, outcome);
    }

    fn is_unrecorded(&self, id: JobId) -> bool {
        self.unrecorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }
}

/// The executor agent. See the [module docs](self) for what it does.
#[derive(Debug)]
pub struct ExecutorAgent {
    store: Arc<dyn JobStore>,
    runtime: Arc<dyn ContainerRuntime>,
    gpus: Arc<dyn GpuProbe>,
    host: Arc<dyn HostProbe>,
    config: AgentConfig,
}

impl ExecutorAgent {
    /// An agent over these parts; nothing happens until [`run`](Self::run).
    pub fn new(
        store: Arc<dyn JobStore>,
        runtime: Arc<dyn ContainerRuntime>,
        gpus: Arc<dyn GpuProbe>,
        host: Arc<dyn HostProbe>,
        config: AgentConfig,
    ) -> Self {
        Self {
            store,
            runtime,
            gpus,
            host,
            config,
        }
    }

    /// What this executor registers.
    pub fn registration(&self) -> ExecutorRegistration {
        let cpu = self
            .config
            .cpu_millis
            .unwrap_or_else(|| self.host.cpu_millis());
        let memory = self
            .config
            .memory_mib
            .unwrap_or_else(|| self.host.memory_mib());
        let mut registration = ExecutorRegistration::new(
            self.config.id.clone(),
            self.config.ip.clone(),
            cpu,
            memory,
            self.gpus.gpus(),
        );
        registration.region = self.config.region.clone();
        registration.datacenter = self.config.datacenter.clone();
        registration
    }

    /// Registers, reconciles, then runs jobs until `shutdown` resolves; see the
    /// [module docs](self#shutdown) for what happens to running jobs then.
    ///
    /// Fails only when the executor cannot start: registration refused or the store
    /// unreachable for longer than `store_retry_for`, or the container engine unreachable
    /// at start-up.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), AgentError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let registration = self.registration();
        let shared = Arc::new(Shared {
            store: self.store,
            runtime: self.runtime,
            config: self.config,
            unrecorded: Mutex::new(HashMap::new()),
        });
        let id = shared.config.id.clone();
        tracing::info!(
            executor = %id,
            cpu_millis = registration.capacity.cpu_millis,
            memory_mib = registration.capacity.memory_mib,
            gpus = registration.gpus.len(),
            "registering executor"
        );
        let registered = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            registered = retry::with_backoff("register", shared.config.store_retry_for, || {
                shared.store.register_executor(&registration, Timestamp::now())
            }) => registered,
        };
        registered.map_err(|source| AgentError::RegistrationFailed {
            executor: id.clone(),
            source,
        })?;

        let heartbeat = tokio::spawn(heartbeat(
            shared.store.clone(),
            self.host,
            registration,
            shared.config.heartbeat_interval,
        ));
        let mut jobs = JobTasks::default();
        let reconciled = tokio::select! {
            biased;
            () = &mut shutdown => Ok(()),
            reconciled = reconcile(&shared, &mut jobs) => reconciled,
        };
        if let Err(error) = reconciled {
            heartbeat.abort();
            jobs.tasks.abort_all();
            return Err(error);
        }

        tracing::info!(executor = %id, "executor ready");
        loop {
            jobs.reap();
            let event = tokio::select! {
                biased;
                () = &mut shutdown => break,
                event = shared.store.next_event(&id, shared.config.poll_interval) => event,
            };
            match event {
                Ok(Some(ExecutorEvent::Assigned(job))) => {
                    tracing::debug!(executor = %id, %job, "assigned");
                    jobs.spawn_assigned(&shared, job);
                }
                Ok(Some(ExecutorEvent::Abort(job, cause))) => {
                    tracing::info!(executor = %id, %job, ?cause, "abort requested");
                    abort(&shared, &mut jobs, job, cause).await;
                }
                Ok(None) => fallback_check(&shared, &mut jobs).await,
                Err(error) => {
                    tracing::warn!(executor = %id, error = %error, "waiting for events failed");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(EVENT_ERROR_PAUSE) => {}
                    }
                }
            }
        }

        tracing::info!(executor = %id, running = jobs.signals.len(), drain = shared.config.drain_on_shutdown, "shutting down");
        heartbeat.abort();
        jobs.shut_down(&shared).await;
        if shared.config.drain_on_shutdown {
            let removed = shared
                .store
                .expire_executor(&id, None, REASON_EXECUTOR_SHUT_DOWN, Timestamp::now())
                .await;
            if let Err(error) = removed {
                tracing::warn!(executor = %id, error = %error, "could not deregister");
            }
        }
        Ok(())
    }
}

/// The job tasks of the agent, and the signal sender of each.
#[derive(Default)]
struct JobTasks {
    tasks: JoinSet<()>,
    signals: HashMap<JobId, watch::Sender<Option<Signal>>>,
}

impl JobTasks {
    /// Forgets tasks that ended.
    fn reap(&mut self) {
        while self.tasks.try_join_next().is_some() {}
        // A task's receiver lives as long as the task.
        self.signals.retain(|_, signal| !signal.is_closed());
    }

    fn has(&self, id: JobId) -> bool {
        self.signals.get(&id).is_some_and(|s| !s.is_closed())
    }

    /// Starts the task of an assigned job, unless it has one already.
    fn spawn_assigned(&mut self, shared: &Arc<Shared>, id: JobId) {
        if self.has(id) {
            tracing::debug!(job = %id, "already being handled");
            return;
        }
        let (signal, rx) = watch::channel(None);
        self.signals.insert(id, signal);
        self.tasks.spawn(job::run_assigned(shared.clone(), id, rx));
    }

    /// Starts the task that re-attaches to a job's container.
    fn spawn_reattach(&mut self, shared: &Arc<Shared>, id: JobId, container: ContainerId) {
        let (signal, rx) = watch::channel(None);
        self.signals.insert(id, signal);
        self.tasks
            .spawn(job::reattach(shared.clone(), id, container, rx));
    }

    /// Signals a job's task; false when it has none.
    fn signal(&self, id: JobId, signal: Signal) -> bool {
        match self.signals.get(&id) {
            Some(sender) if !sender.is_closed() => {
                sender.send_replace(Some(signal));
                true
            }
            _ => false,
        }
    }

    /// Hands over (or, draining, stops) every job and waits for the tasks to end.
    async fn shut_down(mut self, shared: &Shared) {
        let (signal, budget) = if shared.config.drain_on_shutdown {
            let stop = Signal::Stop(Outcome::failed(REASON_EXECUTOR_SHUT_DOWN));
            (
                stop,
                shared.config.stop_grace + DETACH_TIMEOUT + DETACH_TIMEOUT,
            )
        } else {
            (Signal::Detach, DETACH_TIMEOUT)
        };
        for sender in self.signals.values() {
            sender.send_replace(Some(signal.clone()));
        }
        let ended = tokio::time::timeout(budget, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if ended.is_err() {
            tracing::warn!(
                left = self.tasks.len(),
                "job tasks did not end in time; abandoning them"
            );
            self.tasks.abort_all();
        }
    }
}

/// Carries out an abort event.
async fn abort(shared: &Arc<Shared>, jobs: &mut JobTasks, id: JobId, cause: AbortCause) {
    if jobs.signal(id, Signal::Stop(cause.outcome())) {
        return;
    }
    // No task: the job never reached this agent's hands (or its task ended). If the store
    // still has it on this executor, end it here.
    let Some(job) = shared.load(id).await else {
        return;
    };
    if job.state.holds_resources() && job.executor.as_ref() == Some(&shared.config.id) {
        shared.record(id, cause.outcome()).await;
    }
}

/// The fallback check after a wait without events: re-reads this executor's jobs.
async fn fallback_check(shared: &Arc<Shared>, jobs: &mut JobTasks) {
    record_unrecorded(shared).await;
    let listed: HashSet<JobId> = match shared.store.executor(&shared.config.id).await {
        Ok(executor) => executor.jobs.into_iter().collect(),
        // Expired: the heartbeat registers it again; none of its jobs is ours any more.
        Err(StoreError::ExecutorNotFound { .. }) => HashSet::new(),
        Err(error) => {
            tracing::warn!(error = %error, "fallback check: could not read the executor");
            return;
        }
    };
    for &id in &listed {
        let job = match shared.store.job(id).await {
            Ok(job) => job,
            Err(error) => {
                tracing::debug!(job = %id, error = %error, "fallback check: could not read the job");
                continue;
            }
        };
        if let Some(cause) = job.abort_requested {
            tracing::info!(job = %id, ?cause, "fallback check: honouring an abort request");
            abort(shared, jobs, id, cause).await;
        } else if !jobs.has(id) && !shared.is_unrecorded(id) {
            match job.state {
                JobState::Assigned => {
                    tracing::info!(job = %id, "fallback check: starting an assigned job");
                    jobs.spawn_assigned(shared, id);
                }
                JobState::Running => {
                    tracing::warn!(job = %id, "fallback check: running job without a task");
                    shared
                        .record(id, Outcome::failed(REASON_CONTAINER_LOST))
                        .await;
                }
                _ => {}
            }
        }
    }
    // Tasks of jobs the store no longer gives this executor (it expired meanwhile, or the
    // job ended elsewhere): their containers must not keep running.
    let strays: Vec<JobId> = jobs
        .signals
        .keys()
        .filter(|id| !listed.contains(id))
        .copied()
        .collect();
    for id in strays {
        let ours = match shared.store.job(id).await {
            Ok(job) => !job.state.is_terminal() && job.executor.as_ref() == Some(&shared.config.id),
            Err(StoreError::JobNotFound { .. }) => false,
            Err(_) => continue,
        };
        if !ours {
            tracing::warn!(job = %id, "job no longer on this executor; stopping its container");
            jobs.signal(id, Signal::Stop(Outcome::failed(REASON_EXECUTOR_LOST)));
        }
    }
}

/// Retries the outcomes the store refused earlier.
async fn record_unrecorded(shared: &Shared) {
    let pending: Vec<(JobId, Outcome)> = shared
        .unrecorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for (id, outcome) in pending {
        match shared.store.finish(id, &outcome, Timestamp::now()).await {
            Ok(finished) => {
                tracing::info!(job = %id, state = %finished.job.state, "recorded an outcome kept while the store was down");
            }
            Err(error) if retry::is_transient(&error) => shared.keep_unrecorded(id, outcome),
            Err(error) => {
                tracing::warn!(job = %id, error = %error, "dropping an outcome the store refuses");
            }
        }
    }
}

/// Heartbeats forever; registers again when the store has expired the executor.
async fn heartbeat(
    store: Arc<dyn JobStore>,
    host: Arc<dyn HostProbe>,
    registration: ExecutorRegistration,
    interval: Duration,
) {
    let id = registration.id.clone();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.heartbeat(&id, &host.usage(), Timestamp::now()).await {
            Ok(()) => tracing::trace!(executor = %id, "heartbeat"),
            Err(StoreError::ExecutorNotFound { .. }) => {
                tracing::warn!(executor = %id, "executor was expired; registering again");
                if let Err(error) = store
                    .register_executor(&registration, Timestamp::now())
                    .await
                {
                    tracing::warn!(executor = %id, error = %error, "registering again failed");
                }
            }
            Err(error) => tracing::warn!(executor = %id, error = %error, "heartbeat failed"),
        }
    }
}

/// Reconciles the containers labelled as this executor's with the store; see the
/// [module docs](self#reconcile-after-a-restart).
async fn reconcile(shared: &Arc<Shared>, jobs: &mut JobTasks) -> Result<(), AgentError> {
    let id = &shared.config.id;
    let owned =
        shared
            .runtime
            .list_owned(id)
            .await
            .map_err(|source| AgentError::ListContainersFailed {
                executor: id.clone(),
                source,
            })?;
    let reconcile_failed = |source| AgentError::ReconcileFailed {
        executor: id.clone(),
        source,
    };
    let executor = retry::with_backoff("read executor", shared.config.store_retry_for, || {
        shared.store.executor(id)
    })
    .await
    .map_err(reconcile_failed)?;

    let mut with_container = HashSet::new();
    for container in owned {
        let job = match retry::with_backoff("load job", shared.config.store_retry_for, || {
            shared.store.job(container.job)
        })
        .await
        {
            Ok(job) => Some(job),
            Err(StoreError::JobNotFound { .. }) => None,
            Err(error) => return Err(reconcile_failed(error)),
        };
        let ours = job
            .as_ref()
            .is_some_and(|j| j.state.holds_resources() && j.executor.as_ref() == Some(id));
        if ours && !jobs.has(container.job) {
            tracing::info!(job = %container.job, container = %container.id, running = container.running, "re-attaching to a job's container");
            with_container.insert(container.job);
            jobs.spawn_reattach(shared, container.job, container.id);
        } else {
            tracing::info!(job = %container.job, container = %container.id, "removing a container whose job is not on this executor");
            let shared = shared.clone();
            jobs.tasks.spawn(async move {
                shared.stop_and_remove(&container.id).await;
            });
        }
    }
    for job_id in executor.jobs {
        if with_container.contains(&job_id) {
            continue;
        }
        let Some(job) = shared.load(job_id).await else {
            continue;
        };
        match job.state {
            JobState::Assigned => jobs.spawn_assigned(shared, job_id),
            JobState::Running => {
                tracing::warn!(job = %job_id, "running job has no container after the restart");
                shared
                    .record(job_id, Outcome::failed(REASON_CONTAINER_LOST))
                    .await;
            }
            _ => {}
        }
    }
    Ok(())
}
