//! The store's tables and their indexes, touched only under the lock: job entries, the
//! arrival and per-state indexes, submission (plain and idempotent) and the reads over them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::executors::EventQueue;
use super::logs::JobLog;
use crate::arrays::{ArrayInfo, ArraySubmission, NewArray};
use crate::changes::{Change, ChangeFeed};
use crate::deps::Verdict;
use crate::error::StoreError;
use crate::executor::Executor;
use crate::ids::{ExecutorId, JobId};
use crate::job::{Job, JobState, Outcome};
use crate::queues::QueueUsage;
use crate::resources::Resources;
use crate::store::{JobQuery, Queued, Submission};
use crate::time::Timestamp;

/// Everything the store holds; only ever touched under the mutex.
#[derive(Default)]
pub(super) struct State {
    /// Sequence number of the next submitted job (arrival order).
    next_seq: u64,
    pub(super) jobs: HashMap<JobId, JobEntry>,
    /// Every job by arrival sequence.
    pub(super) all: BTreeMap<u64, JobId>,
    /// Jobs of each state (index [`slot`]) by arrival sequence.
    pub(super) by_state: [BTreeMap<u64, JobId>; 6],
    /// Pending jobs of each queue in its order: by (`JobSpec::queue_key`, sequence). A
    /// queue without pending jobs has no entry.
    pub(super) queue: BTreeMap<String, BTreeMap<(i64, u64), JobId>>,
    /// What the jobs of each queue hold (assigned or running). A queue that holds nothing
    /// has no entry.
    pub(super) held: HashMap<String, Resources>,
    /// Pending jobs waiting for their dependencies (in no queue), by sequence.
    pub(super) blocked: BTreeMap<u64, JobId>,
    /// The jobs waiting on each job or array, until it ends.
    pub(super) dependents: HashMap<JobId, Vec<JobId>>,
    /// Arrays by id.
    pub(super) arrays: HashMap<JobId, ArrayEntry>,
    /// Terminal jobs by (finish time, sequence), for `purge_finished`.
    pub(super) finished: BTreeMap<(Timestamp, u64), JobId>,
    pub(super) executors: BTreeMap<ExecutorId, Executor>,
    /// Event queues by executor. Never removed (only cleared on expiry) so that a waiter
    /// holding a queue's `Notify` always waits on the one future events will ring.
    pub(super) queues: HashMap<ExecutorId, EventQueue>,
    /// Idempotency keys: the job each names, and until when (store clock).
    pub(super) idempotency: HashMap<String, (JobId, Timestamp)>,
    /// Where every change goes out to live views (`JobStore::changes`).
    pub(super) changes: ChangeFeed,
}

/// An array and its tasks' ids in index order.
pub(super) struct ArrayEntry {
    pub(super) info: ArrayInfo,
    pub(super) tasks: Vec<JobId>,
    /// Its tasks not deleted by retention yet: the array goes with the last.
    pub(super) stored: usize,
}

pub(super) struct JobEntry {
    pub(super) job: Job,
    pub(super) seq: u64,
    pub(super) log: JobLog,
    /// Created by the first follower; rung on append and when the job becomes terminal.
    pub(super) log_notify: Option<Arc<Notify>>,
}

/// Index of a state in [`State::by_state`].
pub(super) fn slot(state: JobState) -> usize {
    match state {
        JobState::Pending => 0,
        JobState::Assigned => 1,
        JobState::Running => 2,
        JobState::Succeeded => 3,
        JobState::Failed => 4,
        JobState::Aborted => 5,
    }
}

impl State {
    /// Stores a new pending job stamped `now` (see `JobStore::submit`).
    pub(super) fn insert_job(&mut self, mut job: Job, now: Timestamp) -> Result<Job, StoreError> {
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
        let never = self.wait_on_dependencies(&mut job, now)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = job.id;
        self.all.insert(seq, id);
        self.by_state[slot(JobState::Pending)].insert(seq, id);
        self.changes.send(Change::Submitted {
            id,
            queue: job.spec.queue.clone(),
        });
        if job.deps_left > 0 {
            self.blocked.insert(seq, id);
        } else {
            self.queue
                .entry(job.spec.queue.clone())
                .or_default()
                .insert((job.spec.queue_key(seq), seq), id);
        }
        self.jobs.insert(
            id,
            JobEntry {
                job: job.clone(),
                seq,
                log: JobLog::default(),
                log_notify: None,
            },
        );
        match never {
            // Stored, then failed at once: as it stands, it can never run.
            Some(reason) => Ok(self.finish_job(id, &Outcome::failed(reason), now)?.0),
            None => Ok(job),
        }
    }

    /// Sets up `job`'s dependencies (each must exist): those ended count at once, the job
    /// waits on the others. Returns why it can never run, when one that ended already says
    /// so (the caller stores it failed). Changes nothing on error.
    fn wait_on_dependencies(
        &mut self,
        job: &mut Job,
        now: Timestamp,
    ) -> Result<Option<String>, StoreError> {
        let deps = job.spec.depends_on.clone();
        if deps.is_empty() {
            return Ok(None);
        }
        self.check_dependencies(&deps)?;
        job.deps_left = deps.len() as u32;
        let mut open = Vec::new();
        for dep in deps {
            // A job, or an array: ended when its last task did, ok when every one was.
            let ended = match (self.jobs.get(&dep), self.arrays.get(&dep)) {
                (Some(entry), _) => entry
                    .job
                    .state
                    .is_terminal()
                    .then_some(entry.job.state == JobState::Succeeded),
                (None, Some(array)) => array.info.ended().then_some(array.info.not_ok == 0),
                (None, None) => None,
            };
            let Some(ok) = ended else {
                open.push(dep);
                continue;
            };
            if let Verdict::Never(reason) = job.dependency_ended(dep, ok) {
                return Ok(Some(reason));
            }
        }
        if job.deps_left == 0 {
            job.ready_at = Some(now);
        }
        for dep in open {
            self.dependents.entry(dep).or_default().push(job.id);
        }
        Ok(None)
    }

    /// Refuses a dependency that is neither a job nor an array.
    fn check_dependencies(&self, deps: &[JobId]) -> Result<(), StoreError> {
        match deps
            .iter()
            .find(|d| !self.jobs.contains_key(d) && !self.arrays.contains_key(d))
        {
            Some(id) => Err(StoreError::UnknownDependency { id: *id }),
            None => Ok(()),
        }
    }

    /// Stores an array and its tasks (see `JobStore::submit_array`).
    pub(super) fn insert_array(
        &mut self,
        array: &NewArray,
        key: Option<(&str, Duration)>,
        now: Timestamp,
    ) -> Result<ArraySubmission, StoreError> {
        if let Some((key, _)) = key {
            if let Some(&(id, until)) = self.idempotency.get(key) {
                if let Some(existing) = self.arrays.get(&id).filter(|_| now <= until) {
                    return Ok(ArraySubmission::Existing(existing.info.clone()));
                }
            }
        }
        let taken = |id: &JobId| self.jobs.contains_key(id) || self.arrays.contains_key(id);
        if let Some(id) = std::iter::once(&array.id)
            .chain(&array.tasks)
            .find(|id| taken(id))
        {
            return Err(StoreError::JobExists { id: *id });
        }
        // Checked first: a refusal stores nothing.
        self.check_dependencies(&array.spec.depends_on)?;
        let info = ArrayInfo {
            id: array.id,
            count: array.tasks.len() as u32,
            parallelism: array.parallelism,
            active: 0,
            done: 0,
            not_ok: 0,
            created_at: now,
        };
        self.arrays.insert(
            array.id,
            ArrayEntry {
                info: info.clone(),
                tasks: array.tasks.clone(),
                stored: array.tasks.len(),
            },
        );
        for job in array.jobs() {
            self.insert_job(job, now)?;
        }
        if let Some((key, ttl)) = key {
            self.idempotency
                .insert(key.to_owned(), (array.id, now.plus(ttl)));
        }
        let info = self.arrays.get(&array.id).map_or(info, |a| a.info.clone());
        Ok(ArraySubmission::Created(info))
    }

    /// An array (`JobNotFound` for no such array).
    pub(super) fn array(&self, id: JobId) -> Result<&ArrayEntry, StoreError> {
        self.arrays.get(&id).ok_or(StoreError::JobNotFound { id })
    }

    /// Stores `job` under `key` for `ttl`, or returns the job a live `key` already names.
    pub(super) fn submit_idempotent(
        &mut self,
        job: Job,
        key: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Submission, StoreError> {
        // Expired keys go when they are next looked at, or at a purge.
        match self.idempotency.get(key) {
            Some(&(id, until)) if now <= until => {
                return Ok(Submission::Existing(self.entry(id)?.job.clone()));
            }
            _ => {}
        }
        let stored = self.insert_job(job, now)?;
        self.idempotency
            .insert(key.to_owned(), (stored.id, now.plus(ttl)));
        Ok(Submission::Created(stored))
    }

    pub(super) fn entry(&self, id: JobId) -> Result<&JobEntry, StoreError> {
        self.jobs.get(&id).ok_or(StoreError::JobNotFound { id })
    }

    pub(super) fn entry_mut(&mut self, id: JobId) -> Result<&mut JobEntry, StoreError> {
        self.jobs.get_mut(&id).ok_or(StoreError::JobNotFound { id })
    }

    /// Moves a job between state indexes (the job itself is already updated): the
    /// per-state index, its queue's order, and what its queue holds.
    pub(super) fn reindex(&mut self, id: JobId, seq: u64, from: JobState, to: JobState) {
        self.by_state[slot(from)].remove(&seq);
        self.by_state[slot(to)].insert(seq, id);
        self.changes.send(Change::Job { id, from, to });
        if from == to {
            return;
        }
        if from == JobState::Pending {
            self.blocked.remove(&seq);
        }
        let spec = &self.jobs[&id].job.spec;
        let key = (spec.queue_key(seq), seq);
        if to == JobState::Pending {
            self.queue
                .entry(spec.queue.clone())
                .or_default()
                .insert(key, id);
        } else if from == JobState::Pending {
            if let Some(queue) = self.queue.get_mut(&spec.queue) {
                queue.remove(&key);
                if queue.is_empty() {
                    self.queue.remove(&spec.queue);
                }
            }
        }
        let need = spec.resources();
        let array = self.jobs[&id]
            .job
            .array
            .and_then(|t| self.arrays.get_mut(&t.array_job_id));
        if let Some(array) = array {
            if to.holds_resources() && !from.holds_resources() {
                array.info.active += 1;
            } else if from.holds_resources() && !to.holds_resources() {
                array.info.active = array.info.active.saturating_sub(1);
            }
        }
        let spec = &self.jobs[&id].job.spec;
        if to.holds_resources() && !from.holds_resources() {
            let held = self.held.entry(spec.queue.clone()).or_default();
            *held = held.checked_add(&need).unwrap_or(*held);
        } else if from.holds_resources() && !to.holds_resources() {
            if let Some(held) = self.held.get_mut(&spec.queue) {
                *held = held.saturating_sub(&need);
                if *held == Resources::ZERO {
                    self.held.remove(&spec.queue);
                }
            }
        }
    }

    /// What the jobs of `queue` hold.
    pub(super) fn held_by(&self, queue: &str) -> Resources {
        self.held.get(queue).copied().unwrap_or_default()
    }

    /// What each queue with pending or holding jobs holds, and how many wait.
    pub(super) fn queue_usage(&self) -> BTreeMap<String, QueueUsage> {
        let mut usage: BTreeMap<String, QueueUsage> = self
            .queue
            .iter()
            .map(|(name, pending)| {
                let usage = QueueUsage {
                    held: Resources::ZERO,
                    pending: pending.len() as u64,
                };
                (name.clone(), usage)
            })
            .collect();
        for (name, held) in &self.held {
            usage.entry(name.clone()).or_default().held = *held;
        }
        usage
    }

    /// A page of jobs, the newest first, of one state or all.
    pub(super) fn jobs(&self, query: &JobQuery) -> Vec<Job> {
        let index = match query.state {
            Some(state) => &self.by_state[slot(state)],
            None => &self.all,
        };
        index
            .values()
            .rev()
            .skip(query.offset)
            .take(query.limit)
            .filter_map(|id| self.jobs.get(id).map(|e| e.job.clone()))
            .collect()
    }

    /// Up to `limit` pending jobs, the oldest first, each as `view` copies it.
    pub(super) fn pending(&self, limit: usize, view: impl Fn(&Job) -> Job) -> Vec<Job> {
        let ids = self.by_state[slot(JobState::Pending)].values();
        self.copies(ids, limit, view)
    }

    /// Up to `limit` pending jobs of each queue in its order, each as `view` copies it.
    pub(super) fn queued(&self, limit: usize, view: impl Fn(&Job) -> Job) -> Vec<Queued> {
        self.queue
            .values()
            .flat_map(|queue| queue.iter().take(limit))
            .filter_map(|(&(key, _), id)| {
                let job = view(&self.jobs.get(id)?.job);
                Some(Queued { key, job })
            })
            .collect()
    }

    /// How many pending jobs are ahead of job `id` in its queue (`None` unless it is
    /// pending). Counts along the queue: O(its place).
    pub(super) fn queue_position(&self, id: JobId) -> Result<Option<u64>, StoreError> {
        let entry = self.entry(id)?;
        if entry.job.state != JobState::Pending || entry.job.is_blocked() {
            return Ok(None);
        }
        let key = (entry.job.spec.queue_key(entry.seq), entry.seq);
        let ahead = self
            .queue
            .get(&entry.job.spec.queue)
            .map_or(0, |queue| queue.range(..key).count());
        Ok(Some(ahead as u64))
    }

    fn copies<'a>(
        &self,
        ids: impl Iterator<Item = &'a JobId>,
        limit: usize,
        view: impl Fn(&Job) -> Job,
    ) -> Vec<Job> {
        ids.take(limit)
            .filter_map(|id| self.jobs.get(id).map(|e| view(&e.job)))
            .collect()
    }

    /// The number of jobs in every state.
    pub(super) fn counts(&self) -> BTreeMap<JobState, u64> {
        JobState::ALL
            .into_iter()
            .map(|state| (state, self.by_state[slot(state)].len() as u64))
            .collect()
    }
}
