//! The [`JobStore`] implementation of [`RedisJobStore`]: each transition is one script call,
//! whose status reply is decoded into the typed result or [`StoreError`]. This file is the
//! trait's table of contents; the work is done, one concept per file, in
//! [`jobs`] (submitting and reading jobs), [`assign`] (committing assignments),
//! [`transitions`] (running, finishing and aborting a job), [`executors`] (registration,
//! liveness, expiry), [`events`] (an executor's event list), [`logs`] and [`purge`].

mod arrays;
mod assign;
mod changes;
mod events;
mod executors;
mod jobs;
mod logs;
mod purge;
mod transitions;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use dwr_core::{
    AbortCause, AbortRequested, ArrayInfo, ArraySubmission, Assignment, Executor, ExecutorEvent,
    ExecutorId, ExecutorRegistration, Expiry, Finished, HostUsage, Job, JobId, JobQuery, JobState,
    JobStore, NewArray, Outcome, QueueUsage, Queued, StoreError, Submission, Timestamp,
};

use crate::batch::Batched;
use crate::codec::unexpected;
use crate::error::store_error;
use crate::store::RedisJobStore;
pub(crate) use changes::parse_change;
pub(crate) use executors::PlacementCache;
pub(crate) use jobs::QueuedCache;

/// How long [`JobStore::now`] carries a reading of Redis `TIME` forward before it reads
/// it again.
const CLOCK_REFRESH: Duration = Duration::from_secs(1);

fn timed_out(operation: &'static str) -> StoreError {
    StoreError::Unavailable {
        operation,
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from Redis in time",
        )),
    }
}

impl RedisJobStore {
    /// The log TTL argument of the scripts that may end a job or write its log (s).
    fn log_ttl_secs(&self) -> String {
        self.inner.config.log_ttl.as_secs().to_string()
    }

    /// Runs `script` with `args` through its batching task: log lines through their own,
    /// every transition through the one they share.
    async fn batched(
        &self,
        script: Batched,
        args: Vec<String>,
    ) -> Result<redis::Value, StoreError> {
        let batchers = &self.inner.batchers;
        let lane = match script {
            Batched::AppendLogs => &batchers.logs,
            _ => &batchers.transitions,
        };
        lane.call(script, args).await
    }
}

#[async_trait]
impl JobStore for RedisJobStore {
    /// Redis's clock: `TIME`, read at most once per [`CLOCK_REFRESH`] and carried forward
    /// in between by the local monotonic clock (which does not step, and drifts from
    /// Redis's by parts per million), so a scheduling pass costs no extra round trip. The
    /// reading is taken as of the middle of its round trip.
    async fn now(&self) -> Result<Timestamp, StoreError> {
        let cached = *self.inner.clock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, read)) = cached {
            if read.elapsed() < CLOCK_REFRESH {
                return Ok(at.plus(read.elapsed()));
            }
        }
        let sent = std::time::Instant::now();
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| store_error("now", e))?;
        let read = sent + sent.elapsed() / 2;
        let at = Timestamp(secs * 1000 + micros / 1000);
        *self.inner.clock.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, read));
        Ok(at.plus(read.elapsed()))
    }

    async fn submit(&self, job: Job) -> Result<Job, StoreError> {
        match jobs::submit(self, job, None).await? {
            Submission::Created(job) => Ok(job),
            Submission::Existing(job) => Err(unexpected("submit", &job.id.to_string())),
        }
    }

    async fn submit_idempotent(
        &self,
        job: Job,
        key: &str,
        ttl: Duration,
    ) -> Result<Submission, StoreError> {
        jobs::submit(self, job, Some((key, ttl))).await
    }

    async fn job(&self, id: JobId) -> Result<Job, StoreError> {
        jobs::get(self, id).await
    }

    async fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        let index = query.state.map(JobState::as_str).unwrap_or("all");
        jobs::list(self, index, query.offset, query.limit, "rev").await
    }

    async fn pending_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        jobs::list(self, JobState::Pending.as_str(), 0, limit, "fwd").await
    }

    async fn pending_for_placement(&self, limit: usize) -> Result<Vec<Queued>, StoreError> {
        jobs::pending_for_placement(self, limit).await
    }

    async fn queue_position(&self, id: JobId) -> Result<Option<u64>, StoreError> {
        jobs::queue_position(self, id).await
    }

    async fn submit_array(
        &self,
        array: &NewArray,
        key: Option<(&str, Duration)>,
    ) -> Result<ArraySubmission, StoreError> {
        arrays::submit(self, array, key).await
    }

    async fn array(&self, id: JobId) -> Result<ArrayInfo, StoreError> {
        arrays::read(self, id, false).await.map(|(info, _)| info)
    }

    async fn array_tasks(&self, id: JobId) -> Result<Vec<(JobId, JobState)>, StoreError> {
        arrays::read(self, id, true).await.map(|(_, tasks)| tasks)
    }

    async fn queue_usage(&self) -> Result<BTreeMap<String, QueueUsage>, StoreError> {
        jobs::queue_usage(self).await
    }

    async fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError> {
        jobs::counts(self).await
    }

    async fn commit_assignment(&self, assignment: &Assignment) -> Result<Job, StoreError> {
        let args = assign::args(assignment);
        let reply = self.batched(Batched::CommitAssignment, args).await?;
        assign::reply(assignment, &reply)
    }

    async fn commit_assignments(&self, assignments: &[Assignment]) -> Vec<Result<Job, StoreError>> {
        let args = assignments.iter().map(assign::args).collect();
        let replies = self
            .inner
            .batchers
            .transitions
            .call_many(Batched::CommitAssignment, args)
            .await;
        assignments
            .iter()
            .zip(replies)
            .map(|(assignment, reply)| assign::reply(assignment, &reply?))
            .collect()
    }

    async fn mark_running(
        &self,
        id: JobId,
        executor: &ExecutorId,
        attempt: u32,
    ) -> Result<(), StoreError> {
        transitions::mark_running(self, id, executor, attempt).await
    }

    async fn finish(
        &self,
        id: JobId,
        outcome: &Outcome,
        attempt: Option<u32>,
    ) -> Result<Finished, StoreError> {
        transitions::finish(self, id, outcome, attempt).await
    }

    async fn request_abort(
        &self,
        id: JobId,
        cause: AbortCause,
    ) -> Result<AbortRequested, StoreError> {
        transitions::request_abort(self, id, cause).await
    }

    async fn preempt(&self, id: JobId, by: JobId) -> Result<Job, StoreError> {
        transitions::preempt(self, id, by).await
    }

    async fn register_executor(
        &self,
        registration: &ExecutorRegistration,
    ) -> Result<Executor, StoreError> {
        executors::register(self, registration).await
    }

    async fn heartbeat(&self, id: &ExecutorId, usage: &HostUsage) -> Result<(), StoreError> {
        executors::heartbeat(self, id, usage).await
    }

    async fn executor(&self, id: &ExecutorId) -> Result<Executor, StoreError> {
        executors::snapshots(self, Some(id))
            .await?
            .pop()
            .ok_or_else(|| StoreError::ExecutorNotFound { id: id.clone() })
    }

    async fn executors(&self) -> Result<Vec<Executor>, StoreError> {
        executors::snapshots(self, None).await
    }

    async fn executors_for_placement(&self) -> Result<Vec<Executor>, StoreError> {
        executors::for_placement(self).await
    }

    async fn expire_executor(
        &self,
        id: &ExecutorId,
        when: Expiry,
        reason: &str,
    ) -> Result<Vec<JobId>, StoreError> {
        executors::expire(self, id, when, reason).await
    }

    async fn next_event(
        &self,
        executor: &ExecutorId,
        wait: Duration,
    ) -> Result<Option<ExecutorEvent>, StoreError> {
        events::next(self, executor, wait).await
    }

    async fn wait_for_work(&self, wait: Duration) -> Result<(), StoreError> {
        self.inner.wake.wait(wait).await;
        Ok(())
    }

    async fn changes(&self) -> Result<dwr_core::ChangeReceiver, StoreError> {
        self.inner
            .changes
            .subscribe(self.inner.config.connect_timeout)
            .await
            .ok_or_else(|| StoreError::Unavailable {
                operation: "changes",
                source: "the subscription to the changes channel is not in place".into(),
            })
    }

    async fn append_logs(
        &self,
        id: JobId,
        attempt: Option<u32>,
        lines: &[String],
    ) -> Result<(), StoreError> {
        logs::append(self, id, attempt, lines).await
    }

    async fn logs(&self, id: JobId, from: usize) -> Result<Vec<String>, StoreError> {
        Ok(logs::read(self, id, from).await?.1)
    }

    async fn wait_logs(
        &self,
        id: JobId,
        from: usize,
        wait: Duration,
    ) -> Result<Vec<String>, StoreError> {
        logs::follow(self, id, from, wait).await
    }

    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError> {
        let age_ms = older_than.as_millis().min(i64::MAX as u128);
        purge::purge(self, age_ms.to_string(), -1).await
    }

    async fn purge_finished_beyond(&self, keep: u64) -> Result<u64, StoreError> {
        purge::purge(self, String::new(), keep.min(i64::MAX as u64) as i64).await
    }
}
