//! The [`JobStore`] trait: the single source of truth for jobs, executors and logs.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::arrays::{ArrayInfo, ArraySubmission, NewArray};
use crate::error::StoreError;
use crate::executor::{Executor, ExecutorRegistration, HostUsage};
use crate::ids::{ExecutorId, JobId};
use crate::job::{AbortCause, Job, JobState, Outcome};
use crate::queues::{QueueUsage, Quota};
use crate::time::Timestamp;

/// A proposed assignment: the scheduler proposes, the store checks and commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The job.
    pub job: JobId,
    /// The executor chosen.
    pub executor: ExecutorId,
    /// UUIDs of the GPU devices chosen on that executor (as many as the job asks for).
    pub gpu_ids: Vec<String>,
    /// The job as the proposer read it from this store while it was pending, when it has
    /// it (the scheduler always does). A store may build the committed job and the
    /// executor's event from it rather than read the job back (the Redis store does);
    /// it still checks the job's state and resources against what it stores, so a stale
    /// snapshot cannot commit anything the store would refuse. Not serialized.
    #[serde(skip)]
    pub snapshot: Option<Arc<Job>>,
    /// The quota of the job's queue as the proposer knows it: the store refuses the
    /// assignment (`QuotaReached`) when what the queue's jobs hold would go past it.
    #[serde(default)]
    pub quota: Quota,
}

impl Assignment {
    /// An assignment of `job` to `executor` naming `gpu_ids`, without a snapshot.
    pub fn new(job: JobId, executor: ExecutorId, gpu_ids: Vec<String>) -> Self {
        Self {
            job,
            executor,
            gpu_ids,
            snapshot: None,
            quota: Quota::NONE,
        }
    }
}

/// A pending job as a scheduling pass reads it
/// ([`JobStore::pending_for_placement`]), with its place in its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Its [`JobSpec::queue_key`](crate::JobSpec::queue_key): lower goes first.
    pub key: i64,
    /// The job, perhaps as its placement view.
    pub job: Job,
}

/// Something an executor must react to, delivered through its queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutorEvent {
    /// A job was assigned to it: the job as the assignment committed it (state assigned,
    /// with its executor, executor IP, GPU ids and assignment time), so that the agent can
    /// start it without reading it back from the store. A snapshot: an abort requested
    /// since arrives as its own [`ExecutorEvent::Abort`]. Boxed because a job is large
    /// next to the other variant.
    Assigned(Box<Job>),
    /// An abort of one of its jobs was requested.
    Abort(JobId, AbortCause),
}

impl ExecutorEvent {
    /// The job the event is about.
    pub fn job_id(&self) -> JobId {
        match self {
            ExecutorEvent::Assigned(job) => job.id,
            ExecutorEvent::Abort(id, _) => *id,
        }
    }
}

/// Which jobs to list, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobQuery {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Skip this many (paging).
    pub offset: usize,
    /// At most this many.
    pub limit: usize,
}

impl Default for JobQuery {
    fn default() -> Self {
        Self {
            state: None,
            offset: 0,
            limit: 100,
        }
    }
}

/// What [`JobStore::finish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The job's state after the call: the outcome's, or the terminal state it already had
    /// when `changed` is false.
    pub state: JobState,
    /// True when this call moved the job to its terminal state (and released what it held);
    /// false when the job was already terminal and nothing changed.
    pub changed: bool,
}

/// How long an idempotency key of [`JobStore::submit_idempotent`] names its job: 24 h.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// What [`JobStore::submit_idempotent`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Submission {
    /// The key was new: the job was stored (as returned).
    Created(Job),
    /// The key named a job already: that job as it is now; nothing was stored.
    Existing(Job),
}

/// When [`JobStore::expire_executor`] removes an executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Only when its lease has run out by the store's clock (its last heartbeat is older
    /// than its own lease): what a scheduler does to a lost executor. An executor that has
    /// heartbeated since is kept.
    IfLeaseExpired,
    /// Whatever its lease: a clean shutdown of a draining executor.
    Now,
}

/// What [`JobStore::request_abort`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AbortRequested {
    /// The job was pending and is now aborted: nothing to stop.
    AbortedAtOnce(Job),
    /// The job is assigned or running: its executor was told and will stop it.
    Signalled(Job),
}

/// The single source of truth for jobs, executors and logs.
///
/// # Contract
///
/// * **One clock.** Every time a store records (submission, assignment, start, end,
///   heartbeat, registration) and every time it compares (an executor's lease, the purge
///   age) comes from the store's own clock, which [`now`](JobStore::now) reads: callers
///   never stamp a transition with theirs. Components that compare times themselves (the
///   scheduler's allocation timeout and max runtime) read the store's clock for it.
/// * **Leases.** An executor is alive while its last heartbeat is within its own lease
///   ([`ExecutorRegistration::lease_ttl`], three of the heartbeat intervals it registered)
///   of the store's clock. Commits to a lost executor are refused; `expire_executor` removes
///   one whose lease ran out.
/// * **Fencing.** Each commit of a job starts a new attempt ([`Job::attempt`]). The writes an
///   executor makes about a job (`mark_running`, `append_logs`, `finish` with an attempt)
///   name the attempt; the store refuses, with [`StoreError::StaleAttempt`] and nothing
///   changed, a write about an attempt that is not the job's current one, or about one that
///   is no longer under way (the job ended, or went back to pending for a retry). `finish`
///   of the current attempt of a job already terminal stays idempotent (`changed: false`).
/// * **Retries.** A transition that ends an attempt (`finish`, `expire_executor`) applies
///   [`Job::end_attempt`]: a failed attempt the job's retry policy covers sends the job back
///   to `pending` (releasing what it held, recording the attempt, setting `retry_at`)
///   instead of ending it; `finish` then answers `state: Pending, changed: true`.
/// * **Atomic transitions.** `submit`, `commit_assignment`, `mark_running`, `finish`,
///   `request_abort` and `expire_executor` each apply completely or not at all, and no two
///   interleave on the same job or executor. Two schedulers racing on one store can never
///   over-allocate an executor, hand out a GPU twice, or assign a job twice: the store
///   re-checks everything at commit time; the caller only proposes. `commit_assignments`
///   is each of its commits in turn, each one atomic (not the batch as a whole).
/// * **Release once.** The resources of a job (CPU, memory, the named GPU devices) are
///   released exactly once, by whichever terminal transition comes first (`finish`,
///   `request_abort` of a pending job, or `expire_executor`); later ones change nothing.
/// * **Idempotence.** `finish` of a terminal job returns `changed: false`;
///   `register_executor` of a live executor keeps its allocations; `expire_executor` of an
///   executor that is gone or heartbeated since returns no jobs; `append_logs` is not
///   idempotent (lines are appended).
/// * **Heartbeats never touch allocations.**
/// * **Wake-ups.** `next_event` and `wait_for_work` and `wait_logs` return as soon as there is
///   something to see; their `wait` argument bounds the wait, it is not a poll interval.
#[async_trait]
pub trait JobStore: Debug + Send + Sync + 'static {
    /// The store's clock: the one every transition is stamped with and every lease is
    /// judged by (see the contract).
    async fn now(&self) -> Result<Timestamp, StoreError>;

    /// Stores a new pending job and wakes schedulers. `JobExists` if the id is taken. The
    /// store stamps `created_at` and `updated_at` with its clock; returns the job stored.
    async fn submit(&self, job: Job) -> Result<Job, StoreError>;

    /// [`submit`](Self::submit) under an idempotency `key`, atomically: when no job was
    /// submitted under `key` within `ttl` (by the store's clock), stores `job` and keeps the
    /// key naming it for `ttl`; otherwise stores nothing and returns the job the key names,
    /// as it is now. Of concurrent calls with one key exactly one creates a job.
    /// `JobNotFound` when the job the key names was purged since.
    async fn submit_idempotent(
        &self,
        job: Job,
        key: &str,
        ttl: Duration,
    ) -> Result<Submission, StoreError>;

    /// The job with this id, or `JobNotFound`.
    async fn job(&self, id: JobId) -> Result<Job, StoreError>;

    /// Stores an array: its record and each of its tasks as a new pending job (the tasks'
    /// `array` set, in index order), in one operation, under an idempotency key when given
    /// (as [`submit_idempotent`](Self::submit_idempotent)). The array's dependencies are
    /// each task's. `UnknownDependency` (nothing stored) for a dependency that is neither a
    /// job nor an array.
    async fn submit_array(
        &self,
        array: &NewArray,
        key: Option<(&str, Duration)>,
    ) -> Result<ArraySubmission, StoreError>;

    /// The array with this id, or `JobNotFound`.
    async fn array(&self, id: JobId) -> Result<ArrayInfo, StoreError>;

    /// The tasks of an array in index order, each with its state (`JobNotFound` for no
    /// such array). A task deleted by retention is left out.
    async fn array_tasks(&self, id: JobId) -> Result<Vec<(JobId, JobState)>, StoreError>;

    /// Jobs matching `query`, newest first.
    async fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError>;

    /// Up to `limit` pending jobs in arrival order (oldest first).
    async fn pending_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError>;

    /// Up to `limit` pending jobs of each queue, each queue's in its order (queues by
    /// name): by [`JobSpec::queue_key`](crate::JobSpec::queue_key) (priority, aged by later
    /// arrivals), then arrival. A pass merges the queues by fair share. Each with only what a pass needs of a job that is large
    /// to read: its spec may be its
    /// [`JobSpec::for_placement`](crate::JobSpec::for_placement) view (without `command`,
    /// `env` and `volumes`) and its `attempts` left out, so that a pass over a long queue
    /// of jobs with large commands or environments reads little. A store may return a
    /// small job whole. Either may be a commit's snapshot: with a view, the store takes
    /// the rest of the job from what it stores.
    async fn pending_for_placement(&self, limit: usize) -> Result<Vec<Queued>, StoreError>;

    /// How many pending jobs are ahead of job `id` in its queue; `None` when it is not
    /// pending, `JobNotFound` when there is no such job.
    async fn queue_position(&self, id: JobId) -> Result<Option<u64>, StoreError>;

    /// Per queue that has pending jobs or jobs holding resources: what they hold and how
    /// many wait (see [`crate::queues`]).
    async fn queue_usage(&self) -> Result<BTreeMap<String, QueueUsage>, StoreError>;

    /// Job counts per state (every state present, zero where none).
    async fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError>;

    /// Atomically checks that the job is pending, the executor registered and alive (its
    /// lease holds by the store's clock), the room free and the named GPUs free on that
    /// executor and as many as requested, and that the job's queue stays within the
    /// assignment's quota; then records the assignment as the job's next
    /// attempt, allocates, and queues an [`ExecutorEvent::Assigned`] for the executor
    /// carrying the job exactly as returned here. `Rejected` otherwise, with nothing changed.
    async fn commit_assignment(&self, assignment: &Assignment) -> Result<Job, StoreError>;

    /// [`commit_assignment`](Self::commit_assignment) of each assignment in turn, as if
    /// called one after the other (each checked against the effects of those before it),
    /// with one result per assignment in the same order. A scheduler commits a whole pass
    /// through this, so a store can send the lot in few round trips; the default calls
    /// `commit_assignment` for each.
    async fn commit_assignments(&self, assignments: &[Assignment]) -> Vec<Result<Job, StoreError>> {
        let mut results = Vec::with_capacity(assignments.len());
        for assignment in assignments {
            results.push(self.commit_assignment(assignment).await);
        }
        results
    }

    /// Assigned → running, only by the executor the job is assigned to and only for its
    /// current `attempt` (`StaleAttempt` otherwise). The agent calls it between creating
    /// the container and starting it: a container is started only once the store has
    /// confirmed the attempt is this executor's. Returns nothing: the executor has the job
    /// already, and a store need not read it back.
    async fn mark_running(
        &self,
        id: JobId,
        executor: &ExecutorId,
        attempt: u32,
    ) -> Result<(), StoreError>;

    /// Moves the job to the terminal state of `outcome` from pending, assigned or running,
    /// releasing what it held, once, and waking schedulers and log followers. Idempotent.
    /// With `attempt` (an executor's report) the write is fenced: refused with
    /// `StaleAttempt` unless it is the job's current attempt. Returns the state, not the
    /// job (read it with [`job`](Self::job) when needed).
    async fn finish(
        &self,
        id: JobId,
        outcome: &Outcome,
        attempt: Option<u32>,
    ) -> Result<Finished, StoreError>;

    /// Aborts a pending job at once; for an assigned or running job records the request and
    /// queues an [`ExecutorEvent::Abort`] for its executor. `AlreadyTerminal` for a finished
    /// job.
    async fn request_abort(
        &self,
        id: JobId,
        cause: AbortCause,
    ) -> Result<AbortRequested, StoreError>;

    /// Asks the executor of an assigned or running job to stop it because job `by` needs
    /// its room: records [`AbortCause::Preempted`] and the reason `preempted by <by>`, and
    /// queues an [`ExecutorEvent::Abort`]. When the executor reports the attempt's end, the
    /// job goes back to pending (see [`Job::end_attempt`]). A pending job is
    /// `InvalidTransition` and a finished one `AlreadyTerminal`; neither is touched.
    async fn preempt(&self, id: JobId, by: JobId) -> Result<Job, StoreError>;

    /// Registers an executor, or refreshes the registration of a live one (keeping its
    /// allocations and jobs), and wakes schedulers. Its lease starts now, by the store's
    /// clock.
    async fn register_executor(
        &self,
        registration: &ExecutorRegistration,
    ) -> Result<Executor, StoreError>;

    /// Renews the executor's lease (its last heartbeat becomes the store's now) and records
    /// its observed usage. `ExecutorNotFound` if the executor is not registered (it
    /// expired): the agent then registers again.
    async fn heartbeat(&self, id: &ExecutorId, usage: &HostUsage) -> Result<(), StoreError>;

    /// The executor with this id, or `ExecutorNotFound`.
    async fn executor(&self, id: &ExecutorId) -> Result<Executor, StoreError>;

    /// Every registered executor, ordered by id.
    async fn executors(&self) -> Result<Vec<Executor>, StoreError>;

    /// Every registered executor, ordered by id, as a scheduling pass reads them: what
    /// [`executors`](Self::executors) gives, except that [`Executor::jobs`] may be empty and
    /// [`Executor::usage`] the default (a store may skip what placement never reads: over
    /// Redis, a set per executor per pass).
    async fn executors_for_placement(&self) -> Result<Vec<Executor>, StoreError> {
        self.executors().await
    }

    /// Removes an executor whose lease ran out by the store's clock (or any executor, with
    /// [`Expiry::Now`]: a clean shutdown), failing its assigned and running jobs with
    /// `reason` and releasing their resources. Returns the jobs failed; empty when the
    /// executor is gone or its lease still holds.
    async fn expire_executor(
        &self,
        id: &ExecutorId,
        when: Expiry,
        reason: &str,
    ) -> Result<Vec<JobId>, StoreError>;

    /// The next event for `executor`, waiting up to `wait` for one. Events are delivered
    /// once (a queue, not a broadcast). An [`ExecutorEvent::Assigned`] carries the job as
    /// committed, so the executor need not read it again; it may be stale by the time it is
    /// popped (aborted or failed meanwhile), which later store calls reveal.
    async fn next_event(
        &self,
        executor: &ExecutorId,
        wait: Duration,
    ) -> Result<Option<ExecutorEvent>, StoreError>;

    /// Returns when a job was submitted, a job ended while others wait in a queue (room
    /// came back for them; a store may also return after an end with no job waiting), or
    /// an executor registered since the last call, or after `wait`.
    async fn wait_for_work(&self, wait: Duration) -> Result<(), StoreError>;

    /// The changes made from now on, by any process sharing the store: jobs entering a
    /// state, aborts asked, executors joining and being lost (see [`crate::changes`]), for
    /// live views: every change made after this returns is delivered, in order. Best
    /// effort beyond that: a [`Change::Gap`](crate::Change::Gap) says some were missed.
    async fn changes(&self) -> Result<crate::changes::ChangeReceiver, StoreError>;

    /// Appends lines to the job's log in one operation. With `attempt` (an executor's
    /// output) the write is fenced: refused with `StaleAttempt` unless it is the job's
    /// current attempt and the job still holds resources (assigned or running).
    ///
    /// A job's log keeps at most its store's byte cap (default [`DEFAULT_LOG_MAX_BYTES`],
    /// counted over the lines' bytes): the first line that would pass it, and every line
    /// after it, is dropped, and the log ends with one line, [`log_cap_marker`], that says
    /// how much was dropped (rewritten in place as more is). The appender is not told: its
    /// output was accepted, and only kept up to the cap.
    async fn append_logs(
        &self,
        id: JobId,
        attempt: Option<u32>,
        lines: &[String],
    ) -> Result<(), StoreError>;

    /// The job's log lines from index `from` on (oldest first).
    async fn logs(&self, id: JobId, from: usize) -> Result<Vec<String>, StoreError>;

    /// Like [`logs`](Self::logs) but waits up to `wait` for lines past `from` to appear;
    /// returns early (maybe empty) when the job becomes terminal.
    async fn wait_logs(
        &self,
        id: JobId,
        from: usize,
        wait: Duration,
    ) -> Result<Vec<String>, StoreError>;

    /// Deletes terminal jobs (and their logs) that finished `older_than` ago or earlier, by
    /// the store's clock. Returns how many were deleted. A store may take them in the order
    /// they finished rather than by their finish times (the Redis store does): with one
    /// clock stamping every finish the two orders agree, except across a step of that clock.
    /// An array is deleted with the last of its tasks.
    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError>;

    /// Deletes the terminal jobs (and their logs) that finished first, beyond the `keep`
    /// that finished last. Returns how many were deleted. An array is deleted with the last
    /// of its tasks.
    async fn purge_finished_beyond(&self, keep: u64) -> Result<u64, StoreError>;
}

/// Bytes of log kept per job unless a store is configured otherwise: 16 MiB.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The longest log line, bytes: executors split longer output into lines of this size, so
/// that no component ever buffers an unbounded line.
pub const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

/// The last line of a log that reached its byte cap (`cap` bytes kept): how many bytes, in
/// how many lines, were dropped after it. Both stores write exactly this text.
pub fn log_cap_marker(cap: u64, dropped_bytes: u64, dropped_lines: u64) -> String {
    format!(
        "[dwr] log cap of {cap} bytes reached: {dropped_bytes} more bytes in {dropped_lines} \
         lines were dropped"
    )
}
