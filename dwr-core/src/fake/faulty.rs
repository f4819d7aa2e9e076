//! [`FaultyStore`]: a [`JobStore`] decorator that injects failures and delays per
//! operation, counts calls, and can run a hook before an operation. The one fault-injecting
//! store that tests share, instead of a delegating wrapper of the whole trait per test.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::arrays::{ArrayInfo, ArraySubmission, NewArray};
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

/// One operation of [`JobStore`], to aim a fault at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Op {
    /// [`JobStore::now`].
    Now,
    /// [`JobStore::submit`].
    Submit,
    /// [`JobStore::submit_idempotent`].
    SubmitIdempotent,
    /// [`JobStore::job`].
    Job,
    /// [`JobStore::jobs`].
    Jobs,
    /// [`JobStore::pending_jobs`].
    PendingJobs,
    /// [`JobStore::counts`].
    Counts,
    /// [`JobStore::commit_assignment`].
    CommitAssignment,
    /// [`JobStore::commit_assignments`] (one call, whatever the batch size).
    CommitAssignments,
    /// [`JobStore::mark_running`].
    MarkRunning,
    /// [`JobStore::finish`].
    Finish,
    /// [`JobStore::request_abort`].
    RequestAbort,
    /// [`JobStore::register_executor`].
    RegisterExecutor,
    /// [`JobStore::heartbeat`].
    Heartbeat,
    /// [`JobStore::executor`].
    Executor,
    /// [`JobStore::executors`].
    Executors,
    /// [`JobStore::expire_executor`].
    ExpireExecutor,
    /// [`JobStore::next_event`].
    NextEvent,
    /// [`JobStore::wait_for_work`].
    WaitForWork,
    /// [`JobStore::append_logs`].
    AppendLogs,
    /// [`JobStore::logs`].
    Logs,
    /// [`JobStore::wait_logs`].
    WaitLogs,
    /// [`JobStore::purge_finished`].
    PurgeFinished,
}

impl Op {
    /// The operation's name, as [`StoreError::Unavailable`] reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Now => "now",
            Op::Submit => "submit",
            Op::SubmitIdempotent => "submit_idempotent",
            Op::Job => "job",
            Op::Jobs => "jobs",
            Op::PendingJobs => "pending_jobs",
            Op::Counts => "counts",
            Op::CommitAssignment => "commit_assignment",
            Op::CommitAssignments => "commit_assignments",
            Op::MarkRunning => "mark_running",
            Op::Finish => "finish",
            Op::RequestAbort => "request_abort",
            Op::RegisterExecutor => "register_executor",
            Op::Heartbeat => "heartbeat",
            Op::Executor => "executor",
            Op::Executors => "executors",
            Op::ExpireExecutor => "expire_executor",
            Op::NextEvent => "next_event",
            Op::WaitForWork => "wait_for_work",
            Op::AppendLogs => "append_logs",
            Op::Logs => "logs",
            Op::WaitLogs => "wait_logs",
            Op::PurgeFinished => "purge_finished",
        }
    }
}

/// What happens to a call an injected fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// It fails with [`StoreError::Unavailable`] before reaching the store: nothing applied.
    Unavailable,
    /// It reaches the store and applies, then answers [`StoreError::Unavailable`]: a reply
    /// lost on the way back, the case that makes retries ambiguous.
    LostReply,
}

/// A one-shot hook run before an operation reaches the store.
type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

#[derive(Default)]
struct Faults {
    /// Faults for the next calls of an operation, used up in order.
    next: HashMap<Op, VecDeque<Fault>>,
    /// Operations failing (`Unavailable`) until told otherwise.
    down: HashMap<Op, bool>,
    /// A delay before every call of an operation.
    delays: HashMap<Op, Duration>,
    /// Hooks for the next call of an operation.
    hooks: HashMap<Op, VecDeque<Hook>>,
    /// Calls made, per operation (counted whether or not a fault hit them).
    calls: BTreeMap<Op, u64>,
    /// Sizes of the batches given to `commit_assignments`, in order.
    commit_batches: Vec<usize>,
    /// Assignment events held back, with their executor.
    held: Vec<(ExecutorId, ExecutorEvent)>,
    /// Whether held events are handed out (before anything else) again.
    releasing: bool,
}

/// A [`JobStore`] over another, with failures, delays and hooks injected per operation.
///
/// ```
/// # use std::sync::Arc;
/// # use dwr_core::fake::{FaultyStore, Fault, Op};
/// # use dwr_core::{InMemoryJobStore, JobStore, StoreError};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = FaultyStore::new(Arc::new(InMemoryJobStore::new()));
/// store.fail_next(Op::Counts, Fault::Unavailable, 1);
/// assert!(matches!(store.counts().await, Err(StoreError::Unavailable { .. })));
/// assert!(store.counts().await.is_ok());
/// assert_eq!(store.calls(Op::Counts), 2);
/// # });
/// ```
pub struct FaultyStore {
    inner: Arc<dyn JobStore>,
    faults: Mutex<Faults>,
    /// Every operation fails (`Unavailable`) while set: the store is unreachable.
    all_down: AtomicBool,
    /// Abort events are dropped by `next_event` while set: lost deliveries.
    lose_aborts: AtomicBool,
    /// A delay before every call, of every operation (a slow store).
    all_delay: Mutex<Duration>,
    /// Assignment events are held back by `next_event` while set: late deliveries.
    hold_assignments: AtomicBool,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("all_down", &self.all_down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl FaultyStore {
    /// A store passing every call to `inner` until faults are injected.
    pub fn new(inner: Arc<dyn JobStore>) -> Self {
        Self {
            inner,
            faults: Mutex::new(Faults::default()),
            all_down: AtomicBool::new(false),
            lose_aborts: AtomicBool::new(false),
            all_delay: Mutex::new(Duration::ZERO),
            hold_assignments: AtomicBool::new(false),
        }
    }

    /// The store behind.
    pub fn inner(&self) -> &Arc<dyn JobStore> {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `times` calls of `op` meet `fault`.
    pub fn fail_next(&self, op: Op, fault: Fault, times: usize) {
        self.lock()
            .next
            .entry(op)
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
    }

    /// Calls of `op` fail with `Unavailable` while `down` is set.
    pub fn set_down(&self, op: Op, down: bool) {
        self.lock().down.insert(op, down);
    }

    /// Every call fails with `Unavailable` while `down` is set: the store is unreachable.
    pub fn set_all_down(&self, down: bool) {
        self.all_down.store(down, Ordering::SeqCst);
    }

    /// Every call of `op` waits `delay` first (`Duration::ZERO` to stop).
    pub fn set_delay(&self, op: Op, delay: Duration) {
        self.lock().delays.insert(op, delay);
    }

    /// Every call of every operation waits `delay` first (`Duration::ZERO` to stop).
    pub fn set_all_delay(&self, delay: Duration) {
        *self.all_delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// `next_event` drops abort events while `lose` is set.
    pub fn set_lose_aborts(&self, lose: bool) {
        self.lose_aborts.store(lose, Ordering::SeqCst);
    }

    /// `next_event` holds assignment events back (answers as if there were none) while
    /// `hold` is set; [`release_held`](Self::release_held) delivers them later.
    pub fn set_hold_assignments(&self, hold: bool) {
        self.hold_assignments.store(hold, Ordering::SeqCst);
    }

    /// The assignment events held back so far are delivered by the next `next_event`
    /// calls of their executors, before anything else: a late delivery.
    pub fn release_held(&self) {
        self.lock().releasing = true;
    }

    /// How many assignment events are held back and not yet delivered.
    pub fn held_count(&self) -> usize {
        self.lock().held.len()
    }

    /// Runs `hook` (to completion) before the next call of `op` reaches the store.
    pub fn before_next<F>(&self, op: Op, hook: F)
    where
        F: FnOnce() -> BoxFuture<'static, ()> + Send + 'static,
    {
        self.lock()
            .hooks
            .entry(op)
            .or_default()
            .push_back(Box::new(hook));
    }

    /// How many injected faults are still waiting for calls of `op`.
    pub fn faults_left(&self, op: Op) -> usize {
        self.lock().next.get(&op).map_or(0, VecDeque::len)
    }

    /// How many calls of `op` were made.
    pub fn calls(&self, op: Op) -> u64 {
        self.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// The sizes of the batches `commit_assignments` was called with, in order.
    pub fn commit_batches(&self) -> Vec<usize> {
        self.lock().commit_batches.clone()
    }

    /// Counts the call, runs its hook and delay, and says what fault (if any) hits it.
    async fn enter(&self, op: Op) -> Option<Fault> {
        let (hook, delay, fault) = {
            let mut f = self.lock();
            *f.calls.entry(op).or_default() += 1;
            let hook = f.hooks.get_mut(&op).and_then(VecDeque::pop_front);
            let all = *self.all_delay.lock().unwrap_or_else(|e| e.into_inner());
            let delay = f.delays.get(&op).copied().unwrap_or_default().max(all);
            let down =
                self.all_down.load(Ordering::SeqCst) || f.down.get(&op).copied().unwrap_or(false);
            let fault = if down {
                Some(Fault::Unavailable)
            } else {
                f.next.get_mut(&op).and_then(VecDeque::pop_front)
            };
            (hook, delay, fault)
        };
        if let Some(hook) = hook {
            hook().await;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        fault
    }

    /// Runs `call` under the faults aimed at `op`.
    async fn run<T, Fut>(&self, op: Op, call: Fut) -> Result<T, StoreError>
    where
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        match self.enter(op).await {
            None => call.await,
            Some(Fault::Unavailable) => Err(unavailable(op)),
            Some(Fault::LostReply) => {
                call.await?;
                Err(unavailable(op))
            }
        }
    }
}

fn unavailable(op: Op) -> StoreError {
    StoreError::Unavailable {
        operation: op.as_str(),
        source: "injected fault".into(),
    }
}

#[async_trait]
impl JobStore for FaultyStore {
    async fn now(&self) -> Result<Timestamp, StoreError> {
        self.run(Op::Now, self.inner.now()).await
    }

    async fn submit(&self, job: Job) -> Result<Job, StoreError> {
        self.run(Op::Submit, self.inner.submit(job)).await
    }

    async fn submit_idempotent(
        &self,
        job: Job,
        key: &str,
        ttl: Duration,
    ) -> Result<Submission, StoreError> {
        self.run(
            Op::SubmitIdempotent,
            self.inner.submit_idempotent(job, key, ttl),
        )
        .await
    }

    async fn job(&self, id: JobId) -> Result<Job, StoreError> {
        self.run(Op::Job, self.inner.job(id)).await
    }

    async fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        self.run(Op::Jobs, self.inner.jobs(query)).await
    }

    async fn pending_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.run(Op::PendingJobs, self.inner.pending_jobs(limit))
            .await
    }

    async fn pending_for_placement(&self, limit: usize) -> Result<Vec<Queued>, StoreError> {
        self.run(Op::PendingJobs, self.inner.pending_for_placement(limit))
            .await
    }

    async fn queue_position(&self, id: JobId) -> Result<Option<u64>, StoreError> {
        self.run(Op::Job, self.inner.queue_position(id)).await
    }

    async fn submit_array(
        &self,
        array: &NewArray,
        key: Option<(&str, Duration)>,
    ) -> Result<ArraySubmission, StoreError> {
        self.run(Op::Submit, self.inner.submit_array(array, key))
            .await
    }

    async fn array(&self, id: JobId) -> Result<ArrayInfo, StoreError> {
        self.run(Op::Job, self.inner.array(id)).await
    }

    async fn array_tasks(&self, id: JobId) -> Result<Vec<(JobId, JobState)>, StoreError> {
        self.run(Op::Job, self.inner.array_tasks(id)).await
    }

    async fn queue_usage(&self) -> Result<BTreeMap<String, QueueUsage>, StoreError> {
        self.run(Op::Counts, self.inner.queue_usage()).await
    }

    async fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError> {
        self.run(Op::Counts, self.inner.counts()).await
    }

    async fn commit_assignment(&self, assignment: &Assignment) -> Result<Job, StoreError> {
        self.run(
            Op::CommitAssignment,
            self.inner.commit_assignment(assignment),
        )
        .await
    }

    async fn commit_assignments(&self, assignments: &[Assignment]) -> Vec<Result<Job, StoreError>> {
        self.lock().commit_batches.push(assignments.len());
        let fault = self.enter(Op::CommitAssignments).await;
        // Only an `Unavailable` fault keeps the batch from the store; a lost reply applies it.
        if fault != Some(Fault::Unavailable) {
            let results = self.inner.commit_assignments(assignments).await;
            if fault.is_none() {
                return results;
            }
        }
        assignments
            .iter()
            .map(|_| Err(unavailable(Op::CommitAssignments)))
            .collect()
    }

    async fn mark_running(
        &self,
        id: JobId,
        executor: &ExecutorId,
        attempt: u32,
    ) -> Result<(), StoreError> {
        self.run(
            Op::MarkRunning,
            self.inner.mark_running(id, executor, attempt),
        )
        .await
    }

    async fn finish(
        &self,
        id: JobId,
        outcome: &Outcome,
        attempt: Option<u32>,
    ) -> Result<Finished, StoreError> {
        self.run(Op::Finish, self.inner.finish(id, outcome, attempt))
            .await
    }

    async fn preempt(&self, id: JobId, by: JobId) -> Result<Job, StoreError> {
        self.run(Op::RequestAbort, self.inner.preempt(id, by)).await
    }

    async fn request_abort(
        &self,
        id: JobId,
        cause: AbortCause,
    ) -> Result<AbortRequested, StoreError> {
        self.run(Op::RequestAbort, self.inner.request_abort(id, cause))
            .await
    }

    async fn register_executor(
        &self,
        registration: &ExecutorRegistration,
    ) -> Result<Executor, StoreError> {
        self.run(
            Op::RegisterExecutor,
            self.inner.register_executor(registration),
        )
        .await
    }

    async fn heartbeat(&self, id: &ExecutorId, usage: &HostUsage) -> Result<(), StoreError> {
        self.run(Op::Heartbeat, self.inner.heartbeat(id, usage))
            .await
    }

    async fn executor(&self, id: &ExecutorId) -> Result<Executor, StoreError> {
        self.run(Op::Executor, self.inner.executor(id)).await
    }

    async fn executors(&self) -> Result<Vec<Executor>, StoreError> {
        self.run(Op::Executors, self.inner.executors()).await
    }

    async fn executors_for_placement(&self) -> Result<Vec<Executor>, StoreError> {
        self.run(Op::Executors, self.inner.executors_for_placement())
            .await
    }

    async fn expire_executor(
        &self,
        id: &ExecutorId,
        when: Expiry,
        reason: &str,
    ) -> Result<Vec<JobId>, StoreError> {
        self.run(
            Op::ExpireExecutor,
            self.inner.expire_executor(id, when, reason),
        )
        .await
    }

    async fn next_event(
        &self,
        executor: &ExecutorId,
        wait: Duration,
    ) -> Result<Option<ExecutorEvent>, StoreError> {
        {
            let mut f = self.lock();
            if f.releasing {
                if let Some(i) = f.held.iter().position(|(e, _)| e == executor) {
                    return Ok(Some(f.held.remove(i).1));
                }
            }
        }
        let event = self
            .run(Op::NextEvent, self.inner.next_event(executor, wait))
            .await?;
        if self.lose_aborts.load(Ordering::SeqCst)
            && matches!(event, Some(ExecutorEvent::Abort(..)))
        {
            return Ok(None);
        }
        if let Some(assigned @ ExecutorEvent::Assigned(_)) = &event {
            if self.hold_assignments.load(Ordering::SeqCst) {
                self.lock().held.push((executor.clone(), assigned.clone()));
                return Ok(None);
            }
        }
        Ok(event)
    }

    async fn wait_for_work(&self, wait: Duration) -> Result<(), StoreError> {
        self.run(Op::WaitForWork, self.inner.wait_for_work(wait))
            .await
    }

    async fn changes(&self) -> Result<crate::changes::ChangeReceiver, StoreError> {
        self.inner.changes().await
    }

    async fn append_logs(
        &self,
        id: JobId,
        attempt: Option<u32>,
        lines: &[String],
    ) -> Result<(), StoreError> {
        self.run(Op::AppendLogs, self.inner.append_logs(id, attempt, lines))
            .await
    }

    async fn logs(&self, id: JobId, from: usize) -> Result<Vec<String>, StoreError> {
        self.run(Op::Logs, self.inner.logs(id, from)).await
    }

    async fn wait_logs(
        &self,
        id: JobId,
        from: usize,
        wait: Duration,
    ) -> Result<Vec<String>, StoreError> {
        self.run(Op::WaitLogs, self.inner.wait_logs(id, from, wait))
            .await
    }

    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.run(Op::PurgeFinished, self.inner.purge_finished(older_than))
            .await
    }

    async fn purge_finished_beyond(&self, keep: u64) -> Result<u64, StoreError> {
        self.run(Op::PurgeFinished, self.inner.purge_finished_beyond(keep))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::InMemoryJobStore;
    use crate::spec::JobSpec;

    fn store() -> FaultyStore {
        FaultyStore::new(Arc::new(InMemoryJobStore::new()))
    }

    fn job() -> Job {
        Job::new(
            JobId::new(),
            JobSpec::new("img", vec!["true".into()], 100, 64),
            Timestamp(0),
        )
    }

    #[tokio::test]
    async fn an_unavailable_fault_applies_nothing_and_a_lost_reply_applies() {
        let s = store();
        s.fail_next(Op::Submit, Fault::Unavailable, 1);
        s.fail_next(Op::Submit, Fault::LostReply, 1);
        let (a, b) = (job(), job());
        assert!(matches!(
            s.submit(a.clone()).await,
            Err(StoreError::Unavailable {
                operation: "submit",
                ..
            })
        ));
        assert!(matches!(
            s.job(a.id).await,
            Err(StoreError::JobNotFound { .. })
        ));
        assert!(matches!(
            s.submit(b.clone()).await,
            Err(StoreError::Unavailable { .. })
        ));
        assert_eq!(
            s.job(b.id).await.unwrap().id,
            b.id,
            "the lost reply applied"
        );
        assert!(s.submit(job()).await.is_ok(), "faults are used up");
        assert_eq!(s.calls(Op::Submit), 3);
    }

    #[tokio::test]
    async fn down_switches_and_hooks() {
        let s = store();
        s.set_down(Op::Counts, true);
        assert!(s.counts().await.is_err());
        assert!(s.pending_jobs(1).await.is_ok(), "only that operation");
        s.set_down(Op::Counts, false);
        s.set_all_down(true);
        assert!(s.pending_jobs(1).await.is_err());
        s.set_all_down(false);
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        s.before_next(Op::Counts, move || {
            Box::pin(async move { flag.store(true, Ordering::SeqCst) })
        });
        s.counts().await.unwrap();
        assert!(ran.load(Ordering::SeqCst));
        assert!(s.commit_assignments(&[]).await.is_empty());
        assert_eq!(s.commit_batches(), vec![0]);
    }
}
