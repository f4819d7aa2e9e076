//! The executor agent: registers an executor, keeps it alive, and runs the jobs the store
//! assigns to it through a [`ContainerRuntime`].
//!
//! # What it does
//!
//! * **Register** its capacity (from [`AgentConfig`] when overridden, else the
//!   [`HostProbe`]) and its GPUs (from the [`GpuProbe`]).
//! * **Heartbeat** every `heartbeat_interval` with the host's observed usage; the interval
//!   is registered with the executor, and its lease (three intervals) is what the store
//!   judges it by. Heartbeats never touch allocations. When the store answers
//!   `ExecutorNotFound` (the executor was expired, its jobs failed as "executor lost"), it
//!   stops the containers of its jobs first and only then registers again.
//! * **Self-fencing**: when the lease runs out without a renewal (the store or the network
//!   is down), every job container is stopped and removed and nothing is recorded for it:
//!   the store may already have handed those jobs and their resources to others.
//! * **Reconcile** at start: see [`reconcile`](self#reconcile-after-a-restart).
//! * **Wait for events** with [`JobStore::next_event`], which wakes at once on an
//!   assignment or abort; `poll_interval` only bounds the wait. When a wait ends without an
//!   event, and at least once per `poll_interval` while events keep coming, the agent
//!   re-reads its jobs from the store (the *fallback check*): abort requests
//!   and assignments whose events were lost are still honoured, jobs the store no longer
//!   gives this executor have their containers stopped, and outcomes the store refused
//!   while it was down are recorded.
//! * **Run each job** in its own task: pull (progress lines go to the job's log), create
//!   the container with the job's limits and its assigned GPU UUIDs, have the store confirm
//!   the job's attempt (`mark_running`), and only then start the container (a path that
//!   loses that race removes its container unstarted, so no job's container runs twice);
//!   forward its output in batches (one `append_logs` per `log_batch_max` lines or
//!   `log_flush_interval`), wait for its exit, record `Outcome::exited(code, oom)`, remove
//!   the container. A runtime failure (image unavailable, create or start failed, engine
//!   unreachable) fails the job with [`RuntimeError::job_reason`](crate::RuntimeError::job_reason).
//! * **Abort**: an abort event signals the job's task at once; the task stops the
//!   container (SIGTERM, `stop_grace`, then SIGKILL), removes it and finishes the job with
//!   the cause's outcome (a user abort ends `aborted`, a max-runtime abort ends `failed`
//!   "timed out").
//! * **Fencing**: every write about a job (mark running, log lines, the outcome) names the
//!   attempt the agent was given; the store refuses a stale one.
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
//! * a container of such a job that was created and never started is removed, and the job
//!   handled as one without a container;
//! * any other container (job terminal, unknown, or given to another executor) is stopped
//!   and removed.
//!
//! Then each job the store lists on this executor without a container is started when it is
//! `assigned`, or failed ("container lost") when it is `running`.

mod config;
mod heartbeat;
mod job;
mod logs;
mod reconcile;
mod retry;
mod tasks;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::executor::ExecutorRegistration;
use crate::ids::JobId;
use crate::job::{AbortCause, Outcome};
use crate::probe::{GpuProbe, HostProbe};
use crate::runtime::ContainerRuntime;
use crate::store::{ExecutorEvent, Expiry, JobStore};

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
    /// Outcomes the store refused for longer than the retry budget, with the attempt each
    /// is about, recorded later.
    unrecorded: Mutex<HashMap<JobId, (u32, Outcome)>>,
    /// Raised (its generation bumped) by the heartbeat task when the lease is lost: every
    /// job task stops its container and records nothing.
    fence: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn keep_unrecorded(&self, id: JobId, attempt: u32, outcome: Outcome) {
        self.unrecorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (attempt, outcome));
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
        registration.with_heartbeat_interval(self.config.heartbeat_interval)
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
            fence: tokio::sync::watch::Sender::new(0),
        });
        let id = shared.config.id.clone();
        tracing::info!(
            executor = %id,
            cpu_millis = registration.capacity.cpu_millis,
            memory_mib = registration.capacity.memory_mib,
            gpus = registration.gpus.len(),
            "registering executor"
        );
        let registering = tokio::time::Instant::now();
        let registered = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            registered = retry::with_backoff("register", shared.config.store_retry_for, || {
                shared.store.register_executor(&registration)
            }) => registered,
        };
        registered.map_err(|source| AgentError::RegistrationFailed {
            executor: id.clone(),
            source,
        })?;

        let reregistered = Arc::new(Notify::new());
        let heartbeat = tokio::spawn(heartbeat::heartbeat(
            shared.clone(),
            self.host,
            heartbeat::Lease {
                registration,
                renewed: registering,
                reregistered: reregistered.clone(),
            },
        ));
        let mut jobs = tasks::JobTasks::default();
        // A shutdown during the reconcile skips the event loop: the shutdown future must not
        // be polled again once it has completed.
        let stopping = tokio::select! {
            biased;
            () = &mut shutdown => true,
            reconciled = reconcile::reconcile(&shared, &mut jobs) => {
                if let Err(error) = reconciled {
                    heartbeat.abort();
                    jobs.tasks.abort_all();
                    return Err(error);
                }
                false
            }
        };

        if !stopping {
            tracing::info!(executor = %id, "executor ready");
            // The fallback check runs when a wait ends without an event, and at least once
            // per poll interval while events keep coming.
            let mut last_check = tokio::time::Instant::now();
            loop {
                jobs.reap();
                if last_check.elapsed() >= shared.config.poll_interval {
                    reconcile::fallback_check(&shared, &mut jobs).await;
                    last_check = tokio::time::Instant::now();
                }
                let event = tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    // Expired and registered again: the expiry failed this executor's jobs,
                    // whose containers must stop now rather than at the next check. (An
                    // event lost by interrupting the wait is recovered by that check too.)
                    () = reregistered.notified() => Ok(None),
                    event = shared.store.next_event(&id, shared.config.poll_interval) => event,
                };
                match event {
                    Ok(Some(ExecutorEvent::Assigned(job))) => {
                        // The event carries the job as committed: no read of it here.
                        tracing::debug!(executor = %id, job = %job.id, "assigned");
                        jobs.spawn_assigned(&shared, *job);
                    }
                    Ok(Some(ExecutorEvent::Abort(job, cause))) => {
                        tracing::info!(executor = %id, %job, ?cause, "abort requested");
                        abort(&shared, &mut jobs, job, cause).await;
                    }
                    Ok(None) => {
                        reconcile::fallback_check(&shared, &mut jobs).await;
                        last_check = tokio::time::Instant::now();
                    }
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
        }

        tracing::info!(executor = %id, running = jobs.signals.len(), drain = shared.config.drain_on_shutdown, "shutting down");
        heartbeat.abort();
        jobs.shut_down(&shared).await;
        if shared.config.drain_on_shutdown {
            let removed = shared
                .store
                .expire_executor(&id, Expiry::Now, REASON_EXECUTOR_SHUT_DOWN)
                .await;
            if let Err(error) = removed {
                tracing::warn!(executor = %id, error = %error, "could not deregister");
            }
        }
        Ok(())
    }
}

/// Carries out an abort event.
async fn abort(shared: &Arc<Shared>, jobs: &mut tasks::JobTasks, id: JobId, cause: AbortCause) {
    if jobs.signal(id, Signal::Stop(cause.outcome())) {
        return;
    }
    // No task: the job never reached this agent's hands (or its task ended). If the store
    // still has it on this executor, end it here.
    let Some(job) = shared.load(id).await else {
        return;
    };
    if job.state.holds_resources() && job.executor.as_ref() == Some(&shared.config.id) {
        shared.record(id, job.attempt, cause.outcome()).await;
    }
}
