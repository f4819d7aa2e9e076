//! Reconciling with the store: at start-up after a restart, and at each fallback check.

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::StoreError;
use crate::ids::JobId;
use crate::job::{JobState, Outcome, REASON_EXECUTOR_LOST};
use crate::retry::RetryCause;

use super::job::Signal;
use super::tasks::JobTasks;
use super::{abort, retry, AgentError, Shared, REASON_CONTAINER_LOST};

/// Reconciles the containers labelled as this executor's with the store; see the
/// [module docs](self#reconcile-after-a-restart).
pub(super) async fn reconcile(shared: &Arc<Shared>, jobs: &mut JobTasks) -> Result<(), AgentError> {
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
        if ours && !container.started {
            // Created, never started: the agent stopped before the store confirmed the
            // attempt (or before the start). Removed; the job is handled below as one
            // without a container.
            tracing::info!(job = %container.job, container = %container.id, "removing a container that was never started");
            shared.remove(&container.id).await;
        } else if ours && !jobs.has(container.job) {
            tracing::info!(job = %container.job, container = %container.id, running = container.running, "re-attaching to a job's container");
            with_container.insert(container.job);
            jobs.spawn_reattach(shared, container.job, container.id);
        } else {
            tracing::info!(job = %container.job, container = %container.id, "removing a container whose job is not on this executor");
            let shared = shared.clone();
            jobs.tasks.spawn(async move {
                shared.stop_and_remove(&container.id).await;
                None
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
            JobState::Assigned => jobs.spawn_assigned(shared, job),
            JobState::Running => {
                tracing::warn!(job = %job_id, "running job has no container after the restart");
                shared
                    .record(
                        job_id,
                        job.attempt,
                        Outcome::failed(REASON_CONTAINER_LOST).because(RetryCause::ExecutorLost),
                    )
                    .await;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The fallback check after a wait without events: re-reads this executor's jobs.
pub(super) async fn fallback_check(shared: &Arc<Shared>, jobs: &mut JobTasks) {
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
                    jobs.spawn_assigned(shared, job);
                }
                JobState::Running => {
                    tracing::warn!(job = %id, "fallback check: running job without a task");
                    shared
                        .record(
                            id,
                            job.attempt,
                            Outcome::failed(REASON_CONTAINER_LOST)
                                .because(RetryCause::ExecutorLost),
                        )
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
    let pending: Vec<(JobId, (u32, Outcome))> = shared
        .unrecorded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for (id, (attempt, outcome)) in pending {
        match shared.store.finish(id, &outcome, Some(attempt)).await {
            Ok(finished) => {
                tracing::info!(job = %id, state = %finished.state, "recorded an outcome kept while the store was down");
            }
            Err(error) if retry::is_transient(&error) => {
                shared.keep_unrecorded(id, attempt, outcome)
            }
            Err(error) => {
                tracing::warn!(job = %id, error = %error, "dropping an outcome the store refuses");
            }
        }
    }
}
