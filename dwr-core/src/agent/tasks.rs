//! [`JobTasks`]: the agent's job tasks and the signal sender of each.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ids::JobId;
use crate::job::{Job, Outcome};
use crate::retry::RetryCause;
use crate::runtime::ContainerId;

use super::job::{self, Signal};
use super::{Shared, DETACH_TIMEOUT, REASON_EXECUTOR_SHUT_DOWN};

/// The job tasks of the agent, and the signal sender of each.
#[derive(Default)]
pub(super) struct JobTasks {
    /// Each task returns the job it handled (`None` for container clean-ups).
    pub(super) tasks: JoinSet<Option<JobId>>,
    pub(super) signals: HashMap<JobId, watch::Sender<Option<Signal>>>,
}

impl JobTasks {
    /// Forgets tasks that ended.
    pub(super) fn reap(&mut self) {
        // Per ended task, not a sweep of the map: this runs before every event, and
        // thousands of jobs may be in flight.
        while let Some(ended) = self.tasks.try_join_next() {
            match ended {
                Ok(Some(id)) => {
                    // A later task of the same job (a repeated event) may own the entry
                    // now; a task's receiver lives as long as the task.
                    if self.signals.get(&id).is_some_and(|s| s.is_closed()) {
                        self.signals.remove(&id);
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(error = %error, "a job task failed");
                    self.signals.retain(|_, signal| !signal.is_closed());
                }
            }
        }
    }

    pub(super) fn has(&self, id: JobId) -> bool {
        self.signals.get(&id).is_some_and(|s| !s.is_closed())
    }

    /// Starts the task of an assigned job, unless it has one already.
    pub(super) fn spawn_assigned(&mut self, shared: &Arc<Shared>, job: Job) {
        let id = job.id;
        if self.has(id) {
            tracing::debug!(job = %id, "already being handled");
            return;
        }
        self.spawn(shared, id, |shared, rx| job::run_assigned(shared, job, rx));
    }

    /// Starts the task that re-attaches to a job's container.
    pub(super) fn spawn_reattach(
        &mut self,
        shared: &Arc<Shared>,
        id: JobId,
        container: ContainerId,
    ) {
        self.spawn(shared, id, |shared, rx| {
            job::reattach(shared, id, container, rx)
        });
    }

    /// Starts `task`, the task of job `id`, with a signal channel of its own (replacing the
    /// job's sender) that also hears the agent's fence.
    fn spawn<F, Fut>(&mut self, shared: &Arc<Shared>, id: JobId, task: F)
    where
        F: FnOnce(Arc<Shared>, job::SignalRx) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (signal, own) = watch::channel(None);
        self.signals.insert(id, signal);
        let rx = job::SignalRx {
            own,
            fence: shared.fence.subscribe(),
        };
        let task = task(shared.clone(), rx);
        self.tasks.spawn(async move {
            task.await;
            Some(id)
        });
    }

    /// Signals a job's task; false when it has none.
    pub(super) fn signal(&self, id: JobId, signal: Signal) -> bool {
        match self.signals.get(&id) {
            Some(sender) if !sender.is_closed() => {
                sender.send_replace(Some(signal));
                true
            }
            _ => false,
        }
    }

    /// Hands over (or, draining, stops) every job and waits for the tasks to end.
    pub(super) async fn shut_down(mut self, shared: &Shared) {
        let (signal, budget) = if shared.config.drain_on_shutdown {
            let stop = Signal::Stop(
                Outcome::failed(REASON_EXECUTOR_SHUT_DOWN).because(RetryCause::ExecutorLost),
            );
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
