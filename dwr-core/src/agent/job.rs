//! One job on this executor: pull, start, mark running, follow, record the outcome, clean up.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::arrays::{ENV_ARRAY_INDEX, ENV_ARRAY_JOB_ID};
use crate::error::StoreError;
use crate::ids::JobId;
use crate::job::{Job, JobState, Outcome};
use crate::retry::RetryCause;
use crate::runtime::{ContainerId, ContainerSpec};

use super::{logs, retry, Shared};

/// How long the agent waits for a container's output to end after the container exited.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Extra time given to a stopped container to report its exit, beyond the grace period.
const STOP_WAIT_SLACK: Duration = Duration::from_secs(5);
/// The line written into the log of a job the agent re-attached to after a restart.
pub(super) const REATTACH_NOTE: &str =
    "[dwr] executor restarted and re-attached to this job's container; output after the restart is not captured";

/// What the agent asks of a job's task.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Signal {
    /// Stop the container (grace, then kill), remove it, and finish the job with this outcome
    /// (a no-op when the job is terminal already).
    Stop(Outcome),
    /// The agent is shutting down: flush what is buffered and leave the container running,
    /// for a restarted agent to re-attach to.
    Detach,
    /// The executor lost its lease (self-fencing): stop and remove the container and record
    /// nothing, since the store may have handed the job and its resources to another.
    Fence,
}

/// What a job task listens to: its own signal from the agent's loop, and the executor-wide
/// fence the heartbeat task raises when the lease is lost (it cannot wait for the loop,
/// which may itself be waiting on an unreachable store).
pub(super) struct SignalRx {
    /// The task's own signal.
    pub(super) own: watch::Receiver<Option<Signal>>,
    /// The fence generation: any change means fence.
    pub(super) fence: watch::Receiver<u64>,
}

/// Waits for the next signal; `Detach` when the agent dropped the sender.
async fn next_signal(rx: &mut SignalRx) -> Signal {
    let fence = async {
        match rx.fence.changed().await {
            Ok(()) => Signal::Fence,
            // The agent is gone: no fence will come.
            Err(_) => std::future::pending().await,
        }
    };
    let own = async {
        rx.own
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|signal| signal.clone())
            .unwrap_or(Signal::Detach)
    };
    tokio::select! {
        biased;
        signal = fence => signal,
        signal = own => signal,
    }
}

/// The signal already sent, if any.
fn current_signal(rx: &SignalRx) -> Option<Signal> {
    if rx.fence.has_changed().unwrap_or(false) {
        return Some(Signal::Fence);
    }
    rx.own.borrow().clone()
}

/// Runs a job the store assigned to this executor, from the pull to its terminal state.
///
/// `job` is a snapshot: the one the assignment event carries, or one the caller just read.
/// It is not read again: an abort or expiry since then shows as an abort event (a signal
/// to this task) or as a refused `mark_running`, which stops the container. Ignores a job
/// that is not assigned to this executor (a late or repeated event).
pub(super) async fn run_assigned(shared: Arc<Shared>, job: Job, mut signal: SignalRx) {
    let (id, attempt) = (job.id, job.attempt);
    if job.state != JobState::Assigned || job.executor.as_ref() != Some(&shared.config.id) {
        tracing::debug!(job = %id, state = %job.state, "not assigned to this executor; ignoring");
        return;
    }
    if let Some(cause) = job.abort_requested {
        tracing::info!(job = %id, ?cause, "abort requested before start");
        shared.record(id, attempt, cause.outcome()).await;
        return;
    }

    // Pull, with progress lines into the job's log. Cancelling a pull leaves nothing behind.
    let (progress, progress_rx) = mpsc::unbounded_channel();
    let (_keep_following, stop_following) = oneshot::channel();
    let progress_lines = stream::unfold(progress_rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok(line), rx))
    });
    let pull = futures::future::join(
        shared.runtime.ensure_image(&job.spec.image, progress),
        logs::forward(shared.clone(), id, attempt, progress_lines, stop_following),
    );
    let pulled = tokio::select! {
        (pulled, ()) = pull => pulled,
        signal = next_signal(&mut signal) => {
            if let Signal::Stop(outcome) = signal {
                tracing::info!(job = %id, "stopped while pulling");
                shared.record(id, attempt, outcome).await;
            }
            return;
        }
    };
    if let Err(error) = pulled {
        tracing::warn!(job = %id, image = %job.spec.image, error = %error, "image unavailable");
        shared
            .record_start_failure(id, attempt, error.job_reason())
            .await;
        return;
    }

    // Create, have the store confirm that this attempt is this executor's, then start: a
    // container starts only after that confirmation, and only one path gets it (an event,
    // the fallback check, the reconcile after a restart, a repeated event), so no job's
    // container runs twice. Not cancelled half-way: that could leave a container behind.
    let spec = container_spec(&shared, &job);
    let container = match shared.runtime.create(&spec).await {
        Ok(container) => container,
        Err(error) => {
            tracing::warn!(job = %id, error = %error, "container could not be created");
            shared
                .record_start_failure(id, attempt, error.job_reason())
                .await;
            return;
        }
    };
    if let Some(signal) = current_signal(&signal) {
        tracing::info!(job = %id, "stopped before the start");
        shared.remove(&container).await;
        if let Signal::Stop(outcome) = signal {
            shared.record(id, attempt, outcome).await;
        }
        return;
    }
    if let Err(error) = shared.mark_running(id, attempt).await {
        // Aborted, expired or run by another path meanwhile, or the store stayed down: the
        // attempt is not confirmed, and the container never starts.
        tracing::warn!(job = %id, error = %error, "the store did not confirm this attempt; removing its container unstarted");
        shared.remove(&container).await;
        if retry::is_transient(&error) {
            let reason = format!("could not record the start of the container: {error}");
            shared.record_start_failure(id, attempt, reason).await;
        }
        return;
    }
    if let Err(error) = shared.runtime.start(&container, id).await {
        tracing::warn!(job = %id, error = %error, "container did not start");
        shared.remove(&container).await;
        shared
            .record_start_failure(id, attempt, error.job_reason())
            .await;
        return;
    }
    tracing::info!(job = %id, container = %container, "container started");
    follow(shared, id, attempt, container, signal, true).await;
}

/// Re-attaches to the container of a job after an agent restart: waits for its exit and
/// records it, or stops it on request. Its earlier output is in the log already and later
/// output is not captured (the runtime streams from the container's start, which would
/// duplicate every line); a note in the log says so.
pub(super) async fn reattach(
    shared: Arc<Shared>,
    id: JobId,
    container: ContainerId,
    signal: SignalRx,
) {
    let Some(job) = shared.load(id).await else {
        return;
    };
    let attempt = job.attempt;
    if job.state == JobState::Assigned {
        // The agent stopped between starting the container and recording it.
        if let Err(error) = shared.mark_running(id, attempt).await {
            tracing::warn!(job = %id, error = %error, "could not mark a re-attached job running; removing its container");
            shared.stop_and_remove(&container).await;
            return;
        }
    }
    let note = [REATTACH_NOTE.to_owned()];
    if let Err(error) = retry::with_backoff("append logs", shared.config.store_retry_for, || {
        shared.store.append_logs(id, Some(attempt), &note)
    })
    .await
    {
        tracing::warn!(job = %id, error = %error, "could not note the re-attachment in the log");
    }
    if let Some(cause) = job.abort_requested {
        shared
            .stop_then_record(id, attempt, &container, cause.outcome())
            .await;
        return;
    }
    follow(shared, id, attempt, container, signal, false).await;
}

/// Follows a started container to its end: forwards its output (when `capture_logs`),
/// waits for its exit or a signal, records the outcome and removes the container.
async fn follow(
    shared: Arc<Shared>,
    id: JobId,
    attempt: u32,
    container: ContainerId,
    mut signal: SignalRx,
    capture_logs: bool,
) {
    let forwarder = capture_logs.then(|| LogForwarder::spawn(&shared, id, attempt, &container));
    tokio::select! {
        exit = shared.runtime.wait(&container) => {
            let outcome = match exit {
                Ok(status) => {
                    if let Some(forwarder) = forwarder {
                        forwarder.drain().await;
                    }
                    tracing::info!(job = %id, code = status.code, oom = status.oom_killed, "container exited");
                    Outcome::exited(status.code, status.oom_killed)
                }
                Err(error) => {
                    // The engine lost the container or went away: its output will not end
                    // by itself; make sure the container is not left running, then fail the
                    // job with the engine's reason.
                    tracing::warn!(job = %id, error = %error, "waiting for the container failed");
                    if let Some(forwarder) = forwarder {
                        forwarder.stop().await;
                    }
                    let _ = shared.runtime.stop(&container, shared.config.stop_grace).await;
                    Outcome::failed(error.job_reason()).because(RetryCause::ExecutorLost)
                }
            };
            shared.record(id, attempt, outcome).await;
            shared.remove(&container).await;
        }
        signal = next_signal(&mut signal) => match signal {
            Signal::Stop(outcome) => {
                tracing::info!(job = %id, container = %container, "stopping the container");
                let status = shared.stop(&container).await;
                if let Some(forwarder) = forwarder {
                    forwarder.drain().await;
                }
                shared.remove(&container).await;
                let outcome = outcome.with_exit_code(status.map(|s| s.code));
                shared.record(id, attempt, outcome).await;
            }
            Signal::Detach => {
                tracing::info!(job = %id, container = %container, "leaving the container running");
                if let Some(forwarder) = forwarder {
                    forwarder.stop().await;
                }
            }
            Signal::Fence => {
                tracing::warn!(job = %id, container = %container, "lease lost: stopping the container, recording nothing");
                // Its buffered lines would go to a store that is likely unreachable, and
                // are refused there anyway once the job has been given up: drop them.
                if let Some(forwarder) = forwarder {
                    forwarder.abandon();
                }
                shared.stop_and_remove(&container).await;
            }
        },
    }
}

/// The task forwarding a container's output, and the switch that ends it.
struct LogForwarder {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl LogForwarder {
    fn spawn(shared: &Arc<Shared>, id: JobId, attempt: u32, container: &ContainerId) -> Self {
        let lines = shared
            .runtime
            .logs(container)
            .map(|line| line.map(|line| line.text));
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(logs::forward(shared.clone(), id, attempt, lines, stop_rx));
        Self { task, stop }
    }

    /// Waits for the output to end (the container exited), then for the last lines to be
    /// sent; gives up waiting for the end after [`LOG_DRAIN_TIMEOUT`].
    async fn drain(self) {
        let Self { mut task, stop } = self;
        if tokio::time::timeout(LOG_DRAIN_TIMEOUT, &mut task)
            .await
            .is_err()
        {
            tracing::debug!("container output did not end after its exit; stopping to follow it");
            let _ = stop.send(());
            let _ = task.await;
        }
    }

    /// Ends at once, dropping what is buffered.
    fn abandon(self) {
        self.task.abort();
    }

    /// Sends what is buffered and ends.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The container spec of a job on this executor.
fn container_spec(shared: &Shared, job: &Job) -> ContainerSpec {
    let mut env = job.spec.env.clone();
    if let Some(task) = job.array {
        // A task learns which it is, as Slurm's SLURM_ARRAY_TASK_ID tells it.
        env.insert(ENV_ARRAY_INDEX.to_owned(), task.index.to_string());
        env.insert(ENV_ARRAY_JOB_ID.to_owned(), task.array_job_id.to_string());
    }
    ContainerSpec {
        job: job.id,
        attempt: job.attempt,
        executor: shared.config.id.clone(),
        executor_ip: shared.config.ip.clone(),
        image: job.spec.image.clone(),
        command: job.spec.command.clone(),
        env,
        cpu_millis: job.spec.cpu_millis,
        memory_mib: job.spec.memory_mib,
        gpu_ids: job.gpu_ids.clone(),
        volumes: job.spec.volumes.clone(),
        read_only_rootfs: job.spec.read_only_rootfs,
    }
}

impl Shared {
    /// Marks attempt `attempt` of the job running on this executor, retrying while the
    /// store is unavailable.
    ///
    /// A retried call whose earlier try did apply (the reply was lost) is answered with an
    /// error; only then is the job read back, and found running here in the same attempt,
    /// a success. A refusal at the first answer is never taken for one: that is another
    /// path (a repeated event, a fallback check) that got there first.
    async fn mark_running(&self, id: JobId, attempt: u32) -> Result<(), StoreError> {
        let ambiguous = std::sync::atomic::AtomicBool::new(false);
        let marked = retry::with_backoff("mark running", self.config.store_retry_for, || async {
            let result = self.store.mark_running(id, &self.config.id, attempt).await;
            if result.as_ref().is_err_and(retry::is_transient) {
                ambiguous.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            result
        })
        .await;
        let Err(error) = marked else {
            return Ok(());
        };
        if !ambiguous.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(error);
        }
        match self.store.job(id).await {
            Ok(job)
                if job.state == JobState::Running
                    && job.attempt == attempt
                    && job.executor.as_ref() == Some(&self.config.id) =>
            {
                Ok(())
            }
            _ => Err(error),
        }
    }

    /// Loads a job, retrying while the store is unavailable; `None` (logged) otherwise.
    pub(super) async fn load(&self, id: JobId) -> Option<Job> {
        match retry::with_backoff("load job", self.config.store_retry_for, || {
            self.store.job(id)
        })
        .await
        {
            Ok(job) => Some(job),
            Err(StoreError::JobNotFound { .. }) => {
                tracing::debug!(job = %id, "job not found (deleted)");
                None
            }
            Err(error) => {
                tracing::warn!(job = %id, error = %error, "could not load the job");
                None
            }
        }
    }

    /// Records the job's terminal state, retrying while the store is unavailable. An
    /// outcome the store still refuses after the retry budget is kept and retried at each
    /// fallback check, so the job ends once the store is back.
    pub(super) async fn record(&self, id: JobId, attempt: u32, outcome: Outcome) {
        let result = retry::with_backoff("finish", self.config.store_retry_for, || {
            self.store.finish(id, &outcome, Some(attempt))
        })
        .await;
        match result {
            Ok(finished) if finished.changed && finished.state == JobState::Pending => {
                tracing::info!(job = %id, attempt, reason = ?outcome.reason, "attempt failed; the job will be retried");
            }
            Ok(finished) if finished.changed => {
                tracing::info!(job = %id, state = %finished.state, reason = ?outcome.reason, "job finished");
            }
            Ok(finished) => {
                tracing::debug!(job = %id, state = %finished.state, "job was already terminal");
            }
            Err(error) if retry::is_transient(&error) => {
                tracing::error!(job = %id, error = %error, "store unavailable; the outcome will be recorded when it is back");
                self.keep_unrecorded(id, attempt, outcome);
            }
            Err(error) => {
                tracing::warn!(job = %id, error = %error, "could not record the job's outcome");
            }
        }
    }

    /// Records that the attempt failed before its container ran, for `reason`: a failure
    /// its retry policy may retry (`start_failed`).
    async fn record_start_failure(&self, id: JobId, attempt: u32, reason: String) {
        let outcome = Outcome::failed(reason).because(RetryCause::StartFailed);
        self.record(id, attempt, outcome).await;
    }

    /// Stops a container (grace, then kill) and waits for its exit status, if it can be had.
    pub(super) async fn stop(&self, container: &ContainerId) -> Option<crate::ExitStatus> {
        if let Err(error) = self.runtime.stop(container, self.config.stop_grace).await {
            tracing::warn!(container = %container, error = %error, "stopping the container failed");
        }
        let wait_for = self.config.stop_grace + STOP_WAIT_SLACK;
        match tokio::time::timeout(wait_for, self.runtime.wait(container)).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(error)) => {
                tracing::debug!(container = %container, error = %error, "no exit status after stop");
                None
            }
            Err(_) => {
                tracing::warn!(container = %container, "container did not report its exit after the stop");
                None
            }
        }
    }

    /// Removes a container, logging a failure (it is then left for the next reconcile).
    pub(super) async fn remove(&self, container: &ContainerId) {
        if let Err(error) = self.runtime.remove(container).await {
            tracing::warn!(container = %container, error = %error, "removing the container failed");
        }
    }

    /// Stops and removes a container.
    pub(super) async fn stop_and_remove(&self, container: &ContainerId) {
        self.stop(container).await;
        self.remove(container).await;
    }

    /// Stops and removes a container, then records `outcome` with its exit code.
    pub(super) async fn stop_then_record(
        &self,
        id: JobId,
        attempt: u32,
        container: &ContainerId,
        outcome: Outcome,
    ) {
        let status = self.stop(container).await;
        self.remove(container).await;
        self.record(id, attempt, outcome.with_exit_code(status.map(|s| s.code)))
            .await;
    }
}
