//! Executors: registration, heartbeats (liveness and usage), expiry of a lost or drained
//! executor with the failure of its jobs, and the event queue each one reads.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;

use tokio::sync::Notify;

use super::state::State;
use crate::changes::Change;
use crate::error::StoreError;
use crate::executor::{Executor, ExecutorRegistration, HostUsage};
use crate::ids::{ExecutorId, JobId};
use crate::job::Outcome;
use crate::retry::RetryCause;
use crate::store::{ExecutorEvent, Expiry};
use crate::time::Timestamp;

#[derive(Default)]
pub(super) struct EventQueue {
    events: VecDeque<ExecutorEvent>,
    notify: Arc<Notify>,
}

/// The jobs an expiry failed, and the log notifiers to ring.
type Expired = (Vec<JobId>, Vec<Arc<Notify>>);

impl State {
    /// Adds an executor, or updates a live one registering again.
    pub(super) fn register_executor(
        &mut self,
        registration: &ExecutorRegistration,
        now: Timestamp,
    ) -> Executor {
        self.changes.send(Change::ExecutorJoined {
            id: registration.id.clone(),
        });
        self.executors
            .entry(registration.id.clone())
            .and_modify(|e| {
                // A live executor registering again (agent restart, changed capacity):
                // allocations, GPU holders and jobs stay; they are released by the jobs.
                e.registration = registration.clone();
                e.last_heartbeat = now;
            })
            .or_insert_with(|| Executor::new(registration.clone(), now))
            .clone()
    }

    pub(super) fn heartbeat(
        &mut self,
        id: &ExecutorId,
        usage: &HostUsage,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let executor = self
            .executors
            .get_mut(id)
            .ok_or_else(|| StoreError::ExecutorNotFound { id: id.clone() })?;
        // Liveness and observed usage only: allocations belong to the transitions.
        executor.last_heartbeat = executor.last_heartbeat.max(now);
        executor.usage = *usage;
        Ok(())
    }

    /// Removes the executor (`when` allows) and fails the jobs it held, for a retry when
    /// their policy allows (see `JobStore::expire_executor`). `None` when nothing changed;
    /// otherwise the jobs failed and the log notifiers to ring.
    pub(super) fn expire_executor(
        &mut self,
        id: &ExecutorId,
        when: Expiry,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<Expired>, StoreError> {
        let Some(executor) = self.executors.get(id) else {
            return Ok(None);
        };
        if when == Expiry::IfLeaseExpired && executor.is_alive(now) {
            return Ok(None);
        }
        let jobs = executor.jobs.clone();
        let outcome = Outcome::failed(reason).because(RetryCause::ExecutorLost);
        let mut failed = Vec::with_capacity(jobs.len());
        let mut notifies = Vec::new();
        for job in jobs {
            let holds = self
                .jobs
                .get(&job)
                .is_some_and(|e| e.job.state.holds_resources());
            if holds {
                let (_, notify) = self.finish_job(job, &outcome, now)?;
                notifies.extend(notify);
                failed.push(job);
            }
        }
        self.executors.remove(id);
        self.changes.send(Change::ExecutorLost { id: id.clone() });
        // Its pending events concern jobs that are now failed.
        if let Some(queue) = self.queues.get_mut(id) {
            queue.events.clear();
        }
        Ok(Some((failed, notifies)))
    }

    fn queue(&mut self, executor: &ExecutorId) -> &mut EventQueue {
        self.queues.entry(executor.clone()).or_default()
    }

    pub(super) fn push_event(&mut self, executor: &ExecutorId, event: ExecutorEvent) {
        let queue = self.queue(executor);
        queue.events.push_back(event);
        queue.notify.notify_one();
    }

    /// The executor's next event, or the notifier its next event will ring.
    pub(super) fn next_event(
        &mut self,
        executor: &ExecutorId,
    ) -> ControlFlow<ExecutorEvent, Arc<Notify>> {
        let queue = self.queue(executor);
        match queue.events.pop_front() {
            Some(event) => ControlFlow::Break(event),
            None => ControlFlow::Continue(queue.notify.clone()),
        }
    }
}
