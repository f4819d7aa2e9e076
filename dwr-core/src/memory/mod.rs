//! [`InMemoryJobStore`]: a real [`JobStore`] kept in process memory, for the embedded mode,
//! the load tool, the simulations and the tests.
//!
//! # Why a std `Mutex`
//!
//! All state sits behind one `std::sync::Mutex`. Every transition is a short, purely
//! computational critical section (a few map look-ups and inserts, no I/O), and the lock is
//! never held across an `.await`. For such sections a blocking mutex is both simpler and
//! faster than `tokio::sync::Mutex`, whose lock is itself an async operation with a queue of
//! waiters; the tokio docs recommend the std mutex in exactly this case (and mini-redis's
//! `db.rs` does the same). One lock for everything makes each transition trivially atomic
//! across jobs and executors: `commit_assignment` checks the job and the executor and updates
//! both under the same guard, so two schedulers can never over-allocate or double-assign.
//!
//! # Wake-ups
//!
//! Nothing polls. Waiters register on a `tokio::sync::Notify` *before* re-checking the state
//! under the lock, and writers notify after changing the state, so a change can never fall
//! between the check and the wait:
//!
//! * each executor has an event queue with its own `Notify` (`notify_one` per event, which
//!   stores a permit when nobody waits);
//! * schedulers share one `Notify` for "work may be possible" (`notify_waiters` wakes every
//!   scheduler waiting now, `notify_one` leaves a permit for one that is between two calls,
//!   which is what makes a change between two `wait_for_work` calls not lost; the price is
//!   at most one spurious early return after a wake-up, harmless to a scheduling pass);
//! * each followed job has a `Notify` for its log, woken on append and when the job becomes
//!   terminal.
//!
//! # Logs and offsets
//!
//! A job keeps at most `log_cap` lines (default [`DEFAULT_LOG_CAP`]); when an append goes
//! over the cap the oldest lines are dropped. Offsets are absolute line numbers: line `n` is
//! always the `n`-th line ever appended to the job, whether or not older lines were dropped,
//! and the lines dropped are simply gone. Reading from an offset whose line was dropped
//! returns the lines still kept. A follower that advances its offset by the number of lines
//! returned stays exact as long as it never falls more than `log_cap` lines behind; one that
//! does sees some lines twice after the gap.

// Each transition is a synchronous method of the locked `State`, in the file of its concept;
// the `JobStore` impl below reads the clock, takes the lock, calls one and, once the lock is
// released, rings what changed (`wait.rs`).
mod executors;
mod lifecycle;
mod logs;
mod retention;
mod state;
mod wait;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::arrays::{ArrayInfo, ArraySubmission, NewArray};
use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;
use crate::executor::{Executor, ExecutorRegistration, HostUsage};
use crate::ids::{ExecutorId, JobId};
use crate::job::{AbortCause, Job, JobState, Outcome};
use crate::queues::QueueUsage;
use crate::store::{
    AbortRequested, Assignment, ExecutorEvent, Expiry, Finished, JobQuery, JobStore, Queued,
    Submission,
};
use crate::time::Timestamp;

use state::State;
use wait::{deadline_after, ring, until};

/// Lines kept per job log unless [`InMemoryJobStore::with_log_cap`] says otherwise.
pub const DEFAULT_LOG_CAP: usize = 10_000;

/// A [`JobStore`] in process memory. Cheap to share as `Arc<dyn JobStore>`; every method is
/// one short critical section. See the module docs for locking, wake-ups and log offsets.
pub struct InMemoryJobStore {
    state: Mutex<State>,
    /// The state's change feed, for subscribing without the lock.
    changes: crate::changes::ChangeFeed,
    /// Woken by submit, finish, abort of a pending job, executor expiry and registration.
    work: Notify,
    log_cap: usize,
    log_max_bytes: u64,
    /// The one clock every transition is stamped with and every lease judged by.
    clock: Arc<dyn Clock>,
}

impl InMemoryJobStore {
    /// An empty store keeping up to [`DEFAULT_LOG_CAP`] lines per job log.
    pub fn new() -> Self {
        Self::with_log_cap(DEFAULT_LOG_CAP)
    }

    /// An empty store keeping up to `log_cap` lines per job log (the oldest are dropped;
    /// offsets stay absolute line numbers). A cap of 0 keeps no lines at all.
    pub fn with_log_cap(log_cap: usize) -> Self {
        let state = State::default();
        Self {
            changes: state.changes.clone(),
            state: Mutex::new(state),
            work: Notify::new(),
            log_cap,
            log_max_bytes: crate::store::DEFAULT_LOG_MAX_BYTES,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same store keeping at most `max_bytes` of log per job (0: no byte cap); see
    /// [`JobStore::append_logs`].
    pub fn with_log_max_bytes(mut self, max_bytes: u64) -> Self {
        self.log_max_bytes = max_bytes;
        self
    }

    /// The same store keeping time by `clock` instead of the process clock (tests pick
    /// the instant with a [`ManualClock`](crate::clock::ManualClock)).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The number of lines kept per job log.
    pub fn log_cap(&self) -> usize {
        self.log_cap
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic inside a critical section. Every section checks all
        // its preconditions before it mutates anything and the mutations themselves cannot
        // panic, so the state is still consistent: keep serving rather than poisoning every
        // later caller.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for InMemoryJobStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InMemoryJobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("InMemoryJobStore");
        s.field("log_cap", &self.log_cap);
        // Never block in Debug: report sizes only when the lock is free.
        if let Ok(state) = self.state.try_lock() {
            s.field("jobs", &state.jobs.len())
                .field("executors", &state.executors.len());
        }
        s.finish_non_exhaustive()
    }
}

#[async_trait]
impl JobStore for InMemoryJobStore {
    async fn now(&self) -> Result<Timestamp, StoreError> {
        Ok(self.clock.now())
    }

    async fn changes(&self) -> Result<crate::changes::ChangeReceiver, StoreError> {
        Ok(self.changes.subscribe())
    }

    async fn submit(&self, job: Job) -> Result<Job, StoreError> {
        let now = self.clock.now();
        let stored = self.lock().insert_job(job, now)?;
        self.wake_schedulers();
        Ok(stored)
    }

    async fn submit_array(
        &self,
        array: &NewArray,
        key: Option<(&str, Duration)>,
    ) -> Result<ArraySubmission, StoreError> {
        let now = self.clock.now();
        let submission = self.lock().insert_array(array, key, now)?;
        self.wake_schedulers();
        Ok(submission)
    }

    async fn array(&self, id: JobId) -> Result<ArrayInfo, StoreError> {
        Ok(self.lock().array(id)?.info.clone())
    }

    async fn array_tasks(&self, id: JobId) -> Result<Vec<(JobId, JobState)>, StoreError> {
        let state = self.lock();
        let array = state.array(id)?;
        Ok(array
            .tasks
            .iter()
            .filter_map(|t| state.jobs.get(t).map(|e| (*t, e.job.state)))
            .collect())
    }

    async fn submit_idempotent(
        &self,
        job: Job,
        key: &str,
        ttl: Duration,
    ) -> Result<Submission, StoreError> {
        let now = self.clock.now();
        let submission = self.lock().submit_idempotent(job, key, ttl, now)?;
        if let Submission::Created(_) = submission {
            self.wake_schedulers();
        }
        Ok(submission)
    }

    async fn job(&self, id: JobId) -> Result<Job, StoreError> {
        Ok(self.lock().entry(id)?.job.clone())
    }

    async fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        Ok(self.lock().jobs(query))
    }

    async fn pending_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        Ok(self.lock().pending(limit, Job::clone))
    }

    async fn pending_for_placement(&self, limit: usize) -> Result<Vec<Queued>, StoreError> {
        Ok(self.lock().queued(limit, |job| Job {
            spec: job.spec.for_placement(),
            attempts: Vec::new(),
            ..job.clone()
        }))
    }

    async fn queue_position(&self, id: JobId) -> Result<Option<u64>, StoreError> {
        self.lock().queue_position(id)
    }

    async fn queue_usage(&self) -> Result<BTreeMap<String, QueueUsage>, StoreError> {
        Ok(self.lock().queue_usage())
    }

    async fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError> {
        Ok(self.lock().counts())
    }

    async fn commit_assignment(&self, assignment: &Assignment) -> Result<Job, StoreError> {
        let mut st = self.lock();
        st.commit(assignment, self.clock.now())
    }

    /// All under one lock, so agents and API readers wait once per pass, not per job.
    async fn commit_assignments(&self, assignments: &[Assignment]) -> Vec<Result<Job, StoreError>> {
        let mut st = self.lock();
        let now = self.clock.now();
        assignments
            .iter()
            .map(|assignment| st.commit(assignment, now))
            .collect()
    }

    async fn mark_running(
        &self,
        id: JobId,
        executor: &ExecutorId,
        attempt: u32,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.lock().mark_running(id, executor, attempt, now)
    }

    async fn finish(
        &self,
        id: JobId,
        outcome: &Outcome,
        attempt: Option<u32>,
    ) -> Result<Finished, StoreError> {
        let now = self.clock.now();
        let (finished, notify) = self.lock().finish(id, outcome, attempt, now)?;
        if finished.changed {
            ring(notify);
            self.wake_schedulers();
        }
        Ok(finished)
    }

    async fn preempt(&self, id: JobId, by: JobId) -> Result<Job, StoreError> {
        let now = self.clock.now();
        self.lock().preempt(id, by, now)
    }

    async fn request_abort(
        &self,
        id: JobId,
        cause: AbortCause,
    ) -> Result<AbortRequested, StoreError> {
        let now = self.clock.now();
        let (requested, notify) = self.lock().request_abort(id, cause, now)?;
        if let AbortRequested::AbortedAtOnce(_) = requested {
            ring(notify);
            self.wake_schedulers();
        }
        Ok(requested)
    }

    async fn register_executor(
        &self,
        registration: &ExecutorRegistration,
    ) -> Result<Executor, StoreError> {
        let now = self.clock.now();
        let executor = self.lock().register_executor(registration, now);
        self.wake_schedulers();
        Ok(executor)
    }

    async fn heartbeat(&self, id: &ExecutorId, usage: &HostUsage) -> Result<(), StoreError> {
        let now = self.clock.now();
        self.lock().heartbeat(id, usage, now)
    }

    async fn executor(&self, id: &ExecutorId) -> Result<Executor, StoreError> {
        self.lock()
            .executors
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::ExecutorNotFound { id: id.clone() })
    }

    async fn executors(&self) -> Result<Vec<Executor>, StoreError> {
        Ok(self.lock().executors.values().cloned().collect())
    }

    async fn executors_for_placement(&self) -> Result<Vec<Executor>, StoreError> {
        // Without the job sets: a pass over 10,000 busy executors would copy every one.
        Ok(self
            .lock()
            .executors
            .values()
            .map(|e| Executor {
                registration: e.registration.clone(),
                allocated: e.allocated,
                gpu_holders: e.gpu_holders.clone(),
                jobs: BTreeSet::new(),
                registered_at: e.registered_at,
                last_heartbeat: e.last_heartbeat,
                usage: e.usage,
            })
            .collect())
    }

    async fn expire_executor(
        &self,
        id: &ExecutorId,
        when: Expiry,
        reason: &str,
    ) -> Result<Vec<JobId>, StoreError> {
        let now = self.clock.now();
        let Some((failed, notifies)) = self.lock().expire_executor(id, when, reason, now)? else {
            return Ok(Vec::new());
        };
        for notify in notifies {
            notify.notify_waiters();
        }
        self.wake_schedulers();
        Ok(failed)
    }

    async fn next_event(
        &self,
        executor: &ExecutorId,
        wait: Duration,
    ) -> Result<Option<ExecutorEvent>, StoreError> {
        self.wait_for(wait, |st| Ok(st.next_event(executor))).await
    }

    async fn wait_for_work(&self, wait: Duration) -> Result<(), StoreError> {
        // A permit left by `notify_one` while nobody waited makes this return at once.
        until(deadline_after(wait), self.work.notified()).await;
        Ok(())
    }

    async fn append_logs(
        &self,
        id: JobId,
        attempt: Option<u32>,
        lines: &[String],
    ) -> Result<(), StoreError> {
        let notify =
            self.lock()
                .append_logs(id, attempt, lines, self.log_cap, self.log_max_bytes)?;
        ring(notify);
        Ok(())
    }

    async fn logs(&self, id: JobId, from: usize) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().entry(id)?.log.read_from(from))
    }

    async fn wait_logs(
        &self,
        id: JobId,
        from: usize,
        wait: Duration,
    ) -> Result<Vec<String>, StoreError> {
        match self.wait_for(wait, |st| st.new_logs(id, from)).await? {
            Some(lines) => Ok(lines),
            None => Ok(self.lock().entry(id)?.log.read_from(from)),
        }
    }

    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError> {
        let now = self.clock.now();
        Ok(self.lock().purge_finished(now, now.minus(older_than)))
    }

    async fn purge_finished_beyond(&self, keep: u64) -> Result<u64, StoreError> {
        Ok(self.lock().purge_finished_beyond(keep))
    }
}
