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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clock::{Clock, SystemClock};
use crate::error::{Rejection, StoreError};
use crate::executor::{Executor, ExecutorRegistration, HostUsage};
use crate::ids::{ExecutorId, JobId};
use crate::job::{AbortCause, Ended, Job, JobState, Outcome};
use crate::resources::Dimension;
use crate::retry::RetryCause;
use crate::store::{
    AbortRequested, Assignment, ExecutorEvent, Expiry, Finished, JobQuery, JobStore, Submission,
};
use crate::time::Timestamp;

/// Lines kept per job log unless [`InMemoryJobStore::with_log_cap`] says otherwise.
pub const DEFAULT_LOG_CAP: usize = 10_000;

/// A [`JobStore`] in process memory. Cheap to share as `Arc<dyn JobStore>`; every method is
/// one short critical section. See the module docs for locking, wake-ups and log offsets.
pub struct InMemoryJobStore {
    state: Mutex<State>,
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
        Self {
            state: Mutex::new(State::default()),
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

    /// Wakes every scheduler waiting in `wait_for_work`, and leaves one permit so a scheduler
    /// that is between two calls does not miss the change.
    fn wake_schedulers(&self) {
        self.work.notify_waiters();
        self.work.notify_one();
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

/// Everything the store holds; only ever touched under the mutex.
#[derive(Default)]
struct State {
    /// Sequence number of the next submitted job (arrival order).
    next_seq: u64,
    jobs: HashMap<JobId, JobEntry>,
    /// Every job by arrival sequence.
    all: BTreeMap<u64, JobId>,
    /// Jobs of each state (index [`slot`]) by arrival sequence.
    by_state: [BTreeMap<u64, JobId>; 6],
    /// Terminal jobs by (finish time, sequence), for `purge_finished`.
    finished: BTreeMap<(Timestamp, u64), JobId>,
    executors: BTreeMap<ExecutorId, Executor>,
    /// Event queues by executor. Never removed (only cleared on expiry) so that a waiter
    /// holding a queue's `Notify` always waits on the one future events will ring.
    queues: HashMap<ExecutorId, EventQueue>,
    /// Idempotency keys: the job each names, and until when (store clock).
    idempotency: HashMap<String, (JobId, Timestamp)>,
}

struct JobEntry {
    job: Job,
    seq: u64,
    log: JobLog,
    /// Created by the first follower; rung on append and when the job becomes terminal.
    log_notify: Option<Arc<Notify>>,
}

#[derive(Default)]
struct JobLog {
    lines: VecDeque<String>,
    /// Lines dropped from the front by the cap: the absolute number of `lines[0]`.
    dropped: usize,
    /// Bytes of the lines kept (ever appended and not cut by the byte cap).
    bytes: u64,
    /// Bytes and lines cut by the byte cap; once non-zero, the last line is the marker.
    cut_bytes: u64,
    cut_lines: u64,
}

impl JobLog {
    fn end(&self) -> usize {
        self.dropped + self.lines.len()
    }

    /// Appends `new` up to `max_bytes` of log (0: no byte cap), then keeps the newest
    /// `cap` lines.
    fn push(&mut self, new: &[String], cap: usize, max_bytes: u64) {
        let mut taken = 0;
        if self.cut_lines == 0 {
            for line in new {
                let len = line.len() as u64;
                if max_bytes > 0 && self.bytes + len > max_bytes {
                    break;
                }
                self.bytes += len;
                taken += 1;
            }
        }
        self.lines.extend(new[..taken].iter().cloned());
        let cut = &new[taken..];
        if !cut.is_empty() {
            let first_cut = self.cut_lines == 0;
            self.cut_lines += cut.len() as u64;
            self.cut_bytes += cut.iter().map(|l| l.len() as u64).sum::<u64>();
            let marker = crate::store::log_cap_marker(max_bytes, self.cut_bytes, self.cut_lines);
            match self.lines.back_mut() {
                Some(last) if !first_cut => *last = marker,
                _ => self.lines.push_back(marker),
            }
        }
        let over = self.lines.len().saturating_sub(cap);
        if over > 0 {
            self.lines.drain(..over);
            self.dropped += over;
        }
    }

    fn read_from(&self, from: usize) -> Vec<String> {
        let skip = from.saturating_sub(self.dropped);
        self.lines.iter().skip(skip).cloned().collect()
    }
}

#[derive(Default)]
struct EventQueue {
    events: VecDeque<ExecutorEvent>,
    notify: Arc<Notify>,
}

/// Index of a state in [`State::by_state`].
fn slot(state: JobState) -> usize {
    match state {
        JobState::Pending => 0,
        JobState::Assigned => 1,
        JobState::Running => 2,
        JobState::Succeeded => 3,
        JobState::Failed => 4,
        JobState::Aborted => 5,
    }
}

/// The refusal of an executor's write about `attempt` of `job`, which is not current.
fn stale(job: &Job, attempt: u32) -> StoreError {
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
    /// Stores a new pending job stamped `now` (see [`JobStore::submit`]).
    fn insert_job(&mut self, mut job: Job, now: Timestamp) -> Result<Job, StoreError> {
        if self.jobs.contains_key(&job.id) {
            return Err(StoreError::JobExists { id: job.id });
        }
        if job.state != JobState::Pending {
            // A job enters the store pending; any other state would hold resources it was
            // never allocated, or skip the lifecycle.
            return Err(StoreError::InvalidTransition {
                id: job.id,
                state: job.state,
                action: "submit a job that is not pending",
            });
        }
        job.created_at = now;
        job.updated_at = now;
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = job.id;
        self.all.insert(seq, id);
        self.by_state[slot(JobState::Pending)].insert(seq, id);
        self.jobs.insert(
            id,
            JobEntry {
                job: job.clone(),
                seq,
                log: JobLog::default(),
                log_notify: None,
            },
        );
        Ok(job)
    }

    fn entry(&self, id: JobId) -> Result<&JobEntry, StoreError> {
        self.jobs.get(&id).ok_or(StoreError::JobNotFound { id })
    }

    fn entry_mut(&mut self, id: JobId) -> Result<&mut JobEntry, StoreError> {
        self.jobs.get_mut(&id).ok_or(StoreError::JobNotFound { id })
    }

    /// Moves a job between state indexes (the job itself is already updated).
    fn reindex(&mut self, id: JobId, seq: u64, from: JobState, to: JobState) {
        self.by_state[slot(from)].remove(&seq);
        self.by_state[slot(to)].insert(seq, id);
    }

    fn queue(&mut self, executor: &ExecutorId) -> &mut EventQueue {
        self.queues.entry(executor.clone()).or_default()
    }

    fn push_event(&mut self, executor: &ExecutorId, event: ExecutorEvent) {
        let queue = self.queue(executor);
        queue.events.push_back(event);
        queue.notify.notify_one();
    }

    /// Checks and records one assignment (see [`JobStore::commit_assignment`]).
    fn commit(&mut self, assignment: &Assignment, now: Timestamp) -> Result<Job, StoreError> {
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
        for (i, uuid) in assignment.gpu_ids.iter().enumerate() {
            let on_executor = executor.registration.gpus.iter().any(|g| &g.uuid == uuid);
            let named_twice = assignment.gpu_ids[..i].contains(uuid);
            if !on_executor || named_twice || executor.gpu_holders.contains_key(uuid) {
                return reject(Rejection::GpuUnavailable { uuid: uuid.clone() });
            }
        }
        Ok(())
    }

    /// Ends the current attempt of a non-terminal job with `outcome` (see
    /// [`Job::end_attempt`]): to its terminal state, or back to pending for a retry;
    /// releases what it held either way. Returns the job's log notifier to ring (if someone
    /// follows it) when the job ended.
    fn finish_job(
        &mut self,
        id: JobId,
        outcome: &Outcome,
        now: Timestamp,
    ) -> Result<(Job, Option<Arc<Notify>>), StoreError> {
        let entry = self
            .jobs
            .get_mut(&id)
            .ok_or(StoreError::JobNotFound { id })?;
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

/// The instant `wait` from now, or `None` when that is too far to represent (wait forever).
fn deadline_after(wait: Duration) -> Option<Instant> {
    Instant::now().checked_add(wait)
}

/// Awaits `fut` until `deadline`. True when it completed, false on timeout.
async fn until<F: Future>(deadline: Option<Instant>, fut: F) -> bool {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, fut).await.is_ok(),
        None => {
            fut.await;
            true
        }
    }
}

fn ring(notify: Option<Arc<Notify>>) {
    if let Some(notify) = notify {
        notify.notify_waiters();
    }
}

#[async_trait]
impl JobStore for InMemoryJobStore {
    async fn now(&self) -> Result<Timestamp, StoreError> {
        Ok(self.clock.now())
    }

    async fn submit(&self, job: Job) -> Result<Job, StoreError> {
        let now = self.clock.now();
        let stored = self.lock().insert_job(job, now)?;
        self.wake_schedulers();
        Ok(stored)
    }

    async fn submit_idempotent(
        &self,
        job: Job,
        key: &str,
        ttl: Duration,
    ) -> Result<Submission, StoreError> {
        let now = self.clock.now();
        let created = {
            let mut st = self.lock();
            // Expired keys go when they are next looked at, or at a purge.
            match st.idempotency.get(key) {
                Some(&(id, until)) if now <= until => {
                    return Ok(Submission::Existing(st.entry(id)?.job.clone()));
                }
                _ => {}
            }
            let stored = st.insert_job(job, now)?;
            st.idempotency
                .insert(key.to_owned(), (stored.id, now.plus(ttl)));
            stored
        };
        self.wake_schedulers();
        Ok(Submission::Created(created))
    }

    async fn job(&self, id: JobId) -> Result<Job, StoreError> {
        Ok(self.lock().entry(id)?.job.clone())
    }

    async fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let st = self.lock();
        let index = match query.state {
            Some(state) => &st.by_state[slot(state)],
            None => &st.all,
        };
        Ok(index
            .values()
            .rev()
            .skip(query.offset)
            .take(query.limit)
            .filter_map(|id| st.jobs.get(id).map(|e| e.job.clone()))
            .collect())
    }

    async fn pending_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        let st = self.lock();
        Ok(st.by_state[slot(JobState::Pending)]
            .values()
            .take(limit)
            .filter_map(|id| st.jobs.get(id).map(|e| e.job.clone()))
            .collect())
    }

    async fn pending_for_placement(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        let st = self.lock();
        Ok(st.by_state[slot(JobState::Pending)]
            .values()
            .take(limit)
            .filter_map(|id| st.jobs.get(id))
            .map(|e| Job {
                spec: e.job.spec.for_placement(),
                attempts: Vec::new(),
                ..e.job.clone()
            })
            .collect())
    }

    async fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError> {
        let st = self.lock();
        Ok(JobState::ALL
            .into_iter()
            .map(|state| (state, st.by_state[slot(state)].len() as u64))
            .collect())
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
        let mut st = self.lock();
        let entry = st.entry_mut(id)?;
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
        st.reindex(id, seq, JobState::Assigned, JobState::Running);
        Ok(())
    }

    async fn finish(
        &self,
        id: JobId,
        outcome: &Outcome,
        attempt: Option<u32>,
    ) -> Result<Finished, StoreError> {
        let now = self.clock.now();
        let (job, notify) = {
            let mut st = self.lock();
            let job = &st.entry(id)?.job;
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
                return Ok(Finished {
                    state,
                    changed: false,
                });
            }
            st.finish_job(id, outcome, now)?
        };
        ring(notify);
        self.wake_schedulers();
        Ok(Finished {
            state: job.state,
            changed: true,
        })
    }

    async fn request_abort(
        &self,
        id: JobId,
        cause: AbortCause,
    ) -> Result<AbortRequested, StoreError> {
        let now = self.clock.now();
        let (job, notify) = {
            let mut st = self.lock();
            let entry = st.entry_mut(id)?;
            let state = entry.job.state;
            match state {
                s if s.is_terminal() => return Err(StoreError::AlreadyTerminal { id, state }),
                JobState::Pending => st.finish_job(id, &cause.outcome(), now)?,
                _ => {
                    // Assigned or running: the executor stops it and then finishes it. Each
                    // request is queued (a repeated DELETE re-signals; the agent ignores an
                    // abort of a job it no longer runs).
                    entry.job.abort_requested = Some(cause);
                    entry.job.updated_at = now;
                    let job = entry.job.clone();
                    if let Some(executor) = &job.executor {
                        st.push_event(executor, ExecutorEvent::Abort(id, cause));
                    }
                    return Ok(AbortRequested::Signalled(job));
                }
            }
        };
        ring(notify);
        self.wake_schedulers();
        Ok(AbortRequested::AbortedAtOnce(job))
    }

    async fn register_executor(
        &self,
        registration: &ExecutorRegistration,
    ) -> Result<Executor, StoreError> {
        let now = self.clock.now();
        let executor = {
            let mut st = self.lock();
            let executor = st
                .executors
                .entry(registration.id.clone())
                .and_modify(|e| {
                    // A live executor registering again (agent restart, changed capacity):
                    // allocations, GPU holders and jobs stay; they are released by the jobs.
                    e.registration = registration.clone();
                    e.last_heartbeat = now;
                })
                .or_insert_with(|| Executor::new(registration.clone(), now));
            executor.clone()
        };
        self.wake_schedulers();
        Ok(executor)
    }

    async fn heartbeat(&self, id: &ExecutorId, usage: &HostUsage) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut st = self.lock();
        let executor = st
            .executors
            .get_mut(id)
            .ok_or_else(|| StoreError::ExecutorNotFound { id: id.clone() })?;
        // Liveness and observed usage only: allocations belong to the transitions.
        executor.last_heartbeat = executor.last_heartbeat.max(now);
        executor.usage = *usage;
        Ok(())
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

    async fn expire_executor(
        &self,
        id: &ExecutorId,
        when: Expiry,
        reason: &str,
    ) -> Result<Vec<JobId>, StoreError> {
        let now = self.clock.now();
        let (failed, notifies) = {
            let mut st = self.lock();
            let Some(executor) = st.executors.get(id) else {
                return Ok(Vec::new());
            };
            if when == Expiry::IfLeaseExpired && executor.is_alive(now) {
                return Ok(Vec::new());
            }
            let jobs = executor.jobs.clone();
            let outcome = Outcome::failed(reason).because(RetryCause::ExecutorLost);
            let mut failed = Vec::with_capacity(jobs.len());
            let mut notifies = Vec::new();
            for job in jobs {
                let holds = st
                    .jobs
                    .get(&job)
                    .is_some_and(|e| e.job.state.holds_resources());
                if holds {
                    let (_, notify) = st.finish_job(job, &outcome, now)?;
                    notifies.extend(notify);
                    failed.push(job);
                }
            }
            st.executors.remove(id);
            // Its pending events concern jobs that are now failed.
            if let Some(queue) = st.queues.get_mut(id) {
                queue.events.clear();
            }
            (failed, notifies)
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
        let deadline = deadline_after(wait);
        loop {
            let notify = {
                let mut st = self.lock();
                let queue = st.queue(executor);
                if let Some(event) = queue.events.pop_front() {
                    return Ok(Some(event));
                }
                queue.notify.clone()
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before the re-check: an event queued after it rings this waiter.
            notified.as_mut().enable();
            if let Some(event) = self.lock().queue(executor).events.pop_front() {
                return Ok(Some(event));
            }
            if !until(deadline, notified).await {
                return Ok(None);
            }
        }
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
        let cap = self.log_cap;
        let notify = {
            let mut st = self.lock();
            let entry = st.entry_mut(id)?;
            if let Some(attempt) = attempt {
                if attempt != entry.job.attempt || !entry.job.state.holds_resources() {
                    return Err(stale(&entry.job, attempt));
                }
            }
            entry.log.push(lines, cap, self.log_max_bytes);
            entry.log_notify.clone()
        };
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
        let deadline = deadline_after(wait);
        loop {
            let notify = {
                let mut st = self.lock();
                let entry = st.entry_mut(id)?;
                if entry.log.end() > from || entry.job.state.is_terminal() {
                    return Ok(entry.log.read_from(from));
                }
                entry
                    .log_notify
                    .get_or_insert_with(|| Arc::new(Notify::new()))
                    .clone()
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before the re-check: an append after it rings this waiter.
            notified.as_mut().enable();
            {
                let st = self.lock();
                let entry = st.entry(id)?;
                if entry.log.end() > from || entry.job.state.is_terminal() {
                    return Ok(entry.log.read_from(from));
                }
            }
            if !until(deadline, notified).await {
                return Ok(self.lock().entry(id)?.log.read_from(from));
            }
        }
    }

    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError> {
        let now = self.clock.now();
        let finished_before = now.minus(older_than);
        let mut st = self.lock();
        st.idempotency.retain(|_, (_, until)| now <= *until);
        let cut: Vec<((Timestamp, u64), JobId)> = st
            .finished
            .range(..=(finished_before, u64::MAX))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (key, id) in &cut {
            st.finished.remove(key);
            if let Some(entry) = st.jobs.remove(id) {
                st.all.remove(&entry.seq);
                st.by_state[slot(entry.job.state)].remove(&entry.seq);
                // Followers of a purged job see JobNotFound on their next check.
                ring(entry.log_notify);
            }
        }
        Ok(cut.len() as u64)
    }

    async fn purge_finished_beyond(&self, keep: u64) -> Result<u64, StoreError> {
        let mut st = self.lock();
        let excess = (st.finished.len() as u64).saturating_sub(keep);
        let mut deleted = 0;
        for _ in 0..excess {
            let Some((_, id)) = st.finished.pop_first() else {
                break;
            };
            if let Some(entry) = st.jobs.remove(&id) {
                st.all.remove(&entry.seq);
                st.by_state[slot(entry.job.state)].remove(&entry.seq);
                ring(entry.log_notify);
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
