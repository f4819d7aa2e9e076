//! A job's moves once stored: assignment (checked in full, then committed), running,
//! finishing or retrying, abort; the fencing that refuses an executor's word about an
//! attempt that is not current, and the release of what an attempt held.

use std::sync::Arc;

use tokio::sync::Notify;

use super::state::State;
use crate::changes::Change;
use crate::deps::Verdict;
use crate::error::{Rejection, StoreError};
use crate::executor::Executor;
use crate::ids::{ExecutorId, JobId};
use crate::job::{preempted_by, AbortCause, Ended, Job, JobState, Outcome};
use crate::resources::Dimension;
use crate::store::{AbortRequested, Assignment, ExecutorEvent, Finished};
use crate::time::Timestamp;

/// The refusal of an executor's write about `attempt` of `job`, which is not current.
pub(super) fn stale(job: &Job, attempt: u32) -> StoreError {
    StoreError::StaleAttempt {
        id: job.id,
        attempt,
        current: job.attempt,
        state: job.state,
    }
}

fn rejected(assignment: &Assignment, reason: Rejection) -> StoreError {
    StoreError::Rejected {
        job: assignment.job,
        executor: assignment.executor.clone(),
        reason,
    }
}

impl State {
    /// Checks and records one assignment (see `JobStore::commit_assignment`).
    pub(super) fn commit(
        &mut self,
        assignment: &Assignment,
        now: Timestamp,
    ) -> Result<Job, StoreError> {
        self.check_assignment(assignment, now)?;
        // Every condition holds: apply. Nothing below can fail.
        let (Some(entry), Some(executor)) = (
            self.jobs.get_mut(&assignment.job),
            self.executors.get_mut(&assignment.executor),
        ) else {
            return Err(StoreError::JobNotFound { id: assignment.job });
        };
        entry.job.transition(JobState::Assigned, now).map_err(|_| {
            StoreError::InvalidTransition {
                id: assignment.job,
                state: entry.job.state,
                action: "assign",
            }
        })?;
        entry.job.attempt += 1;
        entry.job.retry_at = None;
        entry.job.executor = Some(assignment.executor.clone());
        entry.job.executor_ip = Some(executor.registration.ip.clone());
        entry.job.gpu_ids = assignment.gpu_ids.clone();
        let need = entry.job.spec.resources();
        executor.allocated = executor
            .allocated
            .checked_add(&need)
            .unwrap_or(executor.allocated);
        for uuid in &assignment.gpu_ids {
            executor.gpu_holders.insert(uuid.clone(), assignment.job);
        }
        executor.jobs.insert(assignment.job);
        let job = entry.job.clone();
        let seq = entry.seq;
        self.reindex(job.id, seq, JobState::Pending, JobState::Assigned);
        self.push_event(
            &assignment.executor,
            ExecutorEvent::Assigned(Box::new(job.clone())),
        );
        Ok(job)
    }

    /// Checks every condition of an assignment without changing anything.
    fn check_assignment(&self, assignment: &Assignment, now: Timestamp) -> Result<(), StoreError> {
        let job = &self.entry(assignment.job)?.job;
        let reject = |reason| Err(rejected(assignment, reason));
        if job.state != JobState::Pending {
            return reject(Rejection::JobNotPending { state: job.state });
        }
        if job.is_blocked() {
            return reject(Rejection::DependenciesNotMet);
        }
        if let Some(task) = job.array {
            if self
                .arrays
                .get(&task.array_job_id)
                .is_some_and(|a| !a.info.has_room())
            {
                return reject(Rejection::ArrayAtParallelism {
                    array: task.array_job_id,
                });
            }
        }
        let Some(executor) = self.executors.get(&assignment.executor) else {
            return reject(Rejection::ExecutorGone);
        };
        if !executor.is_alive(now) {
            return reject(Rejection::ExecutorNotAlive);
        }
        let wanted = job.spec.gpu.count;
        if assignment.gpu_ids.len() != wanted as usize {
            return reject(Rejection::GpuCountMismatch {
                given: assignment.gpu_ids.len(),
                wanted,
            });
        }
        let need = job.spec.resources();
        let Some(total) = executor.allocated.checked_add(&need) else {
            return reject(Rejection::NoRoom {
                dimension: Dimension::Cpu,
            });
        };
        if let Some(dimension) = total.first_short_dimension(&executor.capacity()) {
            return reject(Rejection::NoRoom { dimension });
        }
        let queue = &job.spec.queue;
        let held = self.held_by(queue).checked_add(&need);
        if let Some(dimension) = held.map_or(Some(Dimension::Cpu), |held| {
            assignment.quota.exceeded_by(&held)
        }) {
            return reject(Rejection::QuotaReached {
                queue: queue.clone(),
                dimension,
            });
        }
        for (i, uuid) in assignment.gpu_ids.iter().enumerate() {
            let on_executor = executor.registration.gpus.iter().any(|g| &g.uuid == uuid);
            let named_twice = assignment.gpu_ids[..i].contains(uuid);
            if !on_executor || named_twice || executor.gpu_holders.contains_key(uuid) {
                return reject(Rejection::GpuUnavailable { uuid: uuid.clone() });
            }
        }
        Ok(())
    }

    /// Moves `attempt` of a job assigned to `executor` to running.
    pub(super) fn mark_running(
        &mut self,
        id: JobId,
        executor: &ExecutorId,
        attempt: u32,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let entry = self.entry_mut(id)?;
        let state = entry.job.state;
        if state.is_terminal() {
            return Err(StoreError::AlreadyTerminal { id, state });
        }
        if state != JobState::Assigned {
            return Err(StoreError::InvalidTransition {
                id,
                state,
                action: "mark running",
            });
        }
        if entry.job.executor.as_ref() != Some(executor) {
            return Err(StoreError::InvalidTransition {
                id,
                state,
                action: "mark running from an executor it is not assigned to",
            });
        }
        if entry.job.attempt != attempt {
            return Err(stale(&entry.job, attempt));
        }
        entry.job.transition(JobState::Running, now).map_err(|_| {
            StoreError::InvalidTransition {
                id,
                state,
                action: "mark running",
            }
        })?;
        let seq = entry.seq;
        self.reindex(id, seq, JobState::Assigned, JobState::Running);
        Ok(())
    }

    /// Ends the current attempt with `outcome`, or changes nothing when the job is already
    /// terminal (see `JobStore::finish`). Also returns the log notifier to ring.
    pub(super) fn finish(
        &mut self,
        id: JobId,
        outcome: &Outcome,
        attempt: Option<u32>,
        now: Timestamp,
    ) -> Result<(Finished, Option<Arc<Notify>>), StoreError> {
        let job = &self.entry(id)?.job;
        let state = job.state;
        // An executor reports on its attempt only while that attempt is under way (or,
        // idempotently, once it made the job terminal): not about an older attempt,
        // nor about one that ended in a retry.
        if let Some(attempt) = attempt {
            if attempt != job.attempt || state == JobState::Pending {
                return Err(stale(job, attempt));
            }
        }
        if state.is_terminal() {
            let unchanged = Finished {
                state,
                changed: false,
            };
            return Ok((unchanged, None));
        }
        let (job, notify) = self.finish_job(id, outcome, now)?;
        let finished = Finished {
            state: job.state,
            changed: true,
        };
        Ok((finished, notify))
    }

    /// Aborts a pending job at once, or asks the executor of an assigned or running one to
    /// stop it (see `JobStore::request_abort`). Also returns the log notifier to ring.
    pub(super) fn request_abort(
        &mut self,
        id: JobId,
        cause: AbortCause,
        now: Timestamp,
    ) -> Result<(AbortRequested, Option<Arc<Notify>>), StoreError> {
        let entry = self.entry_mut(id)?;
        let state = entry.job.state;
        match state {
            s if s.is_terminal() => Err(StoreError::AlreadyTerminal { id, state }),
            JobState::Pending => {
                let (job, notify) = self.finish_job(id, &cause.outcome(), now)?;
                Ok((AbortRequested::AbortedAtOnce(job), notify))
            }
            _ => {
                // Assigned or running: the executor stops it and then finishes it. Each
                // request is queued (a repeated DELETE re-signals; the agent ignores an
                // abort of a job it no longer runs).
                entry.job.abort_requested = Some(cause);
                entry.job.updated_at = now;
                let job = entry.job.clone();
                if let Some(executor) = &job.executor {
                    self.push_event(executor, ExecutorEvent::Abort(id, cause));
                }
                self.changes.send(Change::AbortRequested {
                    id,
                    preempted: cause == AbortCause::Preempted,
                });
                Ok((AbortRequested::Signalled(job), None))
            }
        }
    }

    /// Asks the executor of an assigned or running job to stop it for job `by` (see
    /// `JobStore::preempt`).
    pub(super) fn preempt(
        &mut self,
        id: JobId,
        by: JobId,
        now: Timestamp,
    ) -> Result<Job, StoreError> {
        let entry = self.entry_mut(id)?;
        let state = entry.job.state;
        if state.is_terminal() {
            return Err(StoreError::AlreadyTerminal { id, state });
        }
        if !state.holds_resources() {
            return Err(StoreError::InvalidTransition {
                id,
                state,
                action: "preempt a job that is not under way",
            });
        }
        entry.job.abort_requested = Some(AbortCause::Preempted);
        entry.job.reason = Some(preempted_by(by));
        entry.job.updated_at = now;
        let job = entry.job.clone();
        if let Some(executor) = &job.executor {
            self.push_event(executor, ExecutorEvent::Abort(id, AbortCause::Preempted));
        }
        self.changes.send(Change::AbortRequested {
            id,
            preempted: true,
        });
        Ok(job)
    }

    /// Ends the current attempt of a non-terminal job with `outcome` (see
    /// [`Job::end_attempt`]): to its terminal state, or back to pending for a retry;
    /// releases what it held either way, and tells the jobs waiting on it when it ended.
    /// Returns the job's log notifier to ring (if someone follows it) when the job ended.
    pub(super) fn finish_job(
        &mut self,
        id: JobId,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Result<(Job, Option<Arc<Notify>>), StoreError> {
        let (job, notify) = self.end_without_dependents(id, outcome, now)?;
        if job.state.is_terminal() {
            let ended = self.ended(&job);
            self.release_dependents(ended, now);
        }
        Ok((job, notify))
    }

    /// [`finish_job`](Self::finish_job) but for the jobs waiting on it.
    fn end_without_dependents(
        &mut self,
        id: JobId,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Result<(Job, Option<Arc<Notify>>), StoreError> {
        let entry = self.entry_mut(id)?;
        let from = entry.job.state;
        let held = from.holds_resources();
        // What the attempt held, before a retry clears it from the job.
        let holder = entry.job.clone();
        let ended =
            entry
                .job
                .end_attempt(outcome, now)
                .map_err(|_| StoreError::InvalidTransition {
                    id,
                    state: from,
                    action: "finish",
                })?;
        let job = entry.job.clone();
        let seq = entry.seq;
        let notify = entry.log_notify.clone();
        if held {
            if let Some(executor) = holder
                .executor
                .as_ref()
                .and_then(|e| self.executors.get_mut(e))
            {
                release(executor, &holder);
            }
        }
        self.reindex(id, seq, from, job.state);
        match ended {
            Ended::Final => {
                self.finished.insert((now, seq), id);
                Ok((job, notify))
            }
            // Still going: log followers keep following.
            Ended::Retry { .. } => Ok((job, None)),
        }
    }
}

impl State {
    /// What ended with `job` (just terminal), as dependencies: the job, and its array when
    /// it was the array's last task to end (succeeded when every task did).
    fn ended(&mut self, job: &Job) -> Vec<(JobId, bool)> {
        let ok = job.state == JobState::Succeeded;
        let mut ended = vec![(job.id, ok)];
        if let Some(array) = job.array.and_then(|t| self.arrays.get_mut(&t.array_job_id)) {
            array.info.done += 1;
            array.info.not_ok += u32::from(!ok);
            if array.info.ended() {
                ended.push((array.info.id, array.info.not_ok == 0));
            }
        }
        ended
    }

    /// Tells the jobs waiting on what `ended` (each succeeded or not) that it ended: each
    /// waits for more, joins its queue, or fails when its dependencies can no longer be
    /// met, which its own dependents then hear in turn (a work list, not recursion: a chain
    /// of any length is fine).
    fn release_dependents(&mut self, ended: Vec<(JobId, bool)>, now: Timestamp) {
        let mut work = ended;
        while let Some((node, ok)) = work.pop() {
            for waiting in self.dependents.remove(&node).unwrap_or_default() {
                let Some(entry) = self.jobs.get_mut(&waiting) else {
                    continue;
                };
                let job = &mut entry.job;
                if !job.is_blocked() {
                    // Aborted (or otherwise ended) meanwhile.
                    continue;
                }
                let seq = entry.seq;
                match job.dependency_ended(node, ok) {
                    Verdict::Wait { .. } => {}
                    Verdict::Ready => {
                        job.ready_at = Some(now);
                        job.updated_at = now;
                        let key = (job.spec.queue_key(seq), seq);
                        let queue = job.spec.queue.clone();
                        self.blocked.remove(&seq);
                        self.queue.entry(queue).or_default().insert(key, waiting);
                    }
                    Verdict::Never(reason) => {
                        let failed = Outcome::failed(reason);
                        if let Ok((job, notify)) =
                            self.end_without_dependents(waiting, &failed, now)
                        {
                            super::wait::ring(notify);
                            work.extend(self.ended(&job));
                        }
                    }
                }
            }
        }
    }
}

/// Gives back what `job` holds on `executor`: its resources, its GPU devices, its place in
/// the executor's job list. Called once per job, by the transition that makes it terminal.
fn release(executor: &mut Executor, job: &Job) {
    let need = job.spec.resources();
    debug_assert!(
        executor.allocated.checked_sub(&need).is_some(),
        "release of more than allocated"
    );
    executor.allocated = executor.allocated.saturating_sub(&need);
    for uuid in &job.gpu_ids {
        if executor.gpu_holders.get(uuid) == Some(&job.id) {
            executor.gpu_holders.remove(uuid);
        }
    }
    executor.jobs.remove(&job.id);
}
