//! A pass commits its placements together: when the store refuses some of them (another
//! scheduler took the room after the pass read the cluster), the others still land, the
//! refused executor is left out for the rest of the pass, and its jobs stay pending with a
//! reason and are placed by the next pass.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dwr_core::placement::FirstFit;
use dwr_core::{
    AbortCause, AbortRequested, Assignment, Executor, ExecutorEvent, ExecutorId,
    ExecutorRegistration, Expiry, Finished, HostUsage, InMemoryJobStore, Job, JobId, JobQuery,
    JobSpec, JobState, JobStore, Outcome, Scheduler, SchedulerConfig, StoreError, Timestamp,
};

/// The in-memory store, except that just before the first batch of commits another
/// "scheduler" fills executor `thief_target` with `thief`.
#[derive(Debug)]
struct Raced {
    inner: InMemoryJobStore,
    thief: Mutex<Option<(Job, ExecutorId)>>,
    batches: Mutex<Vec<usize>>,
}

#[async_trait]
impl JobStore for Raced {
    async fn now(&self) -> Result<Timestamp, StoreError> {
        self.inner.now().await
    }

    async fn submit(&self, job: Job) -> Result<Job, StoreError> {
        self.inner.submit(job).await
    }
    async fn job(&self, id: JobId) -> Result<Job, StoreError> {
        self.inner.job(id).await
    }
    async fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, StoreError> {
        self.inner.jobs(query).await
    }
    async fn pending_jobs(&self, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.inner.pending_jobs(limit).await
    }
    async fn counts(&self) -> Result<BTreeMap<JobState, u64>, StoreError> {
        self.inner.counts().await
    }
    async fn commit_assignment(&self, assignment: &Assignment) -> Result<Job, StoreError> {
        self.inner.commit_assignment(assignment).await
    }
    async fn commit_assignments(&self, assignments: &[Assignment]) -> Vec<Result<Job, StoreError>> {
        self.batches.lock().unwrap().push(assignments.len());
        let thief = self.thief.lock().unwrap().take();
        if let Some((job, executor)) = thief {
            let id = job.id;
            self.inner.submit(job).await.unwrap();
            let steal = Assignment::new(id, executor, Vec::new());
            self.inner.commit_assignment(&steal).await.unwrap();
        }
        self.inner.commit_assignments(assignments).await
    }
    async fn mark_running(
        &self,
        id: JobId,
        executor: &ExecutorId,
        attempt: u32,
    ) -> Result<(), StoreError> {
        self.inner.mark_running(id, executor, attempt).await
    }
    async fn finish(
        &self,
        id: JobId,
        outcome: &Outcome,
        attempt: Option<u32>,
    ) -> Result<Finished, StoreError> {
        self.inner.finish(id, outcome, attempt).await
    }
    async fn request_abort(
        &self,
        id: JobId,
        cause: AbortCause,
    ) -> Result<AbortRequested, StoreError> {
        self.inner.request_abort(id, cause).await
    }
    async fn register_executor(
        &self,
        registration: &ExecutorRegistration,
    ) -> Result<Executor, StoreError> {
        self.inner.register_executor(registration).await
    }
    async fn heartbeat(&self, id: &ExecutorId, usage: &HostUsage) -> Result<(), StoreError> {
        self.inner.heartbeat(id, usage).await
    }
    async fn executor(&self, id: &ExecutorId) -> Result<Executor, StoreError> {
        self.inner.executor(id).await
    }
    async fn executors(&self) -> Result<Vec<Executor>, StoreError> {
        self.inner.executors().await
    }
    async fn expire_executor(
        &self,
        id: &ExecutorId,
        when: Expiry,
        reason: &str,
    ) -> Result<Vec<JobId>, StoreError> {
        self.inner.expire_executor(id, when, reason).await
    }
    async fn next_event(
        &self,
        executor: &ExecutorId,
        wait: Duration,
    ) -> Result<Option<ExecutorEvent>, StoreError> {
        self.inner.next_event(executor, wait).await
    }
    async fn wait_for_work(&self, wait: Duration) -> Result<(), StoreError> {
        self.inner.wait_for_work(wait).await
    }
    async fn append_logs(
        &self,
        id: JobId,
        attempt: Option<u32>,
        lines: &[String],
    ) -> Result<(), StoreError> {
        self.inner.append_logs(id, attempt, lines).await
    }
    async fn logs(&self, id: JobId, from: usize) -> Result<Vec<String>, StoreError> {
        self.inner.logs(id, from).await
    }
    async fn wait_logs(
        &self,
        id: JobId,
        from: usize,
        wait: Duration,
    ) -> Result<Vec<String>, StoreError> {
        self.inner.wait_logs(id, from, wait).await
    }
    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.inner.purge_finished(older_than).await
    }
}

fn spec(cpu: u64) -> JobSpec {
    JobSpec::new("img", vec!["true".into()], cpu, 64)
}

/// A [`Raced`] store (with `thief`, if any) holding these executors of `cpu` millicores,
/// and a first-fit scheduler over it.
async fn cluster(
    thief: Option<(Job, ExecutorId)>,
    executors: &[&ExecutorId],
    cpu: u64,
) -> (Arc<Raced>, Scheduler) {
    let store = Arc::new(Raced {
        inner: InMemoryJobStore::new(),
        thief: Mutex::new(thief),
        batches: Mutex::new(Vec::new()),
    });
    for id in executors {
        let reg = ExecutorRegistration::new((*id).clone(), "10.0.0.1", cpu, cpu, Vec::new());
        store.register_executor(&reg).await.unwrap();
    }
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(FirstFit),
        SchedulerConfig::default(),
    );
    (store, scheduler)
}

#[tokio::test]
async fn refused_commits_leave_the_rest_of_the_batch_placed() {
    let a = ExecutorId::new("a");
    let b = ExecutorId::new("b");
    let thief = Job::new(JobId::new(), spec(4_000), Timestamp::now());
    let (store, scheduler) = cluster(Some((thief, a.clone())), &[&a, &b], 4_000).await;
    // Six jobs of 1 CPU: first fit puts four on `a` and two on `b`.
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(scheduler.submit(spec(1_000)).await.unwrap().id);
    }

    let report = scheduler.run_pass().await.unwrap();
    assert_eq!(
        *store.batches.lock().unwrap(),
        vec![6],
        "one batch of six commits"
    );
    assert_eq!(report.rejected, 4, "{report:?}");
    let placed: Vec<(JobId, ExecutorId)> = report
        .assignments
        .iter()
        .map(|p| (p.job, p.executor.clone()))
        .collect();
    assert_eq!(placed, vec![(ids[4], b.clone()), (ids[5], b.clone())]);
    assert_eq!(report.pending, 4);
    for id in &ids[..4] {
        assert_eq!(store.job(*id).await.unwrap().state, JobState::Pending);
        let why = scheduler.pending_reason(*id).expect("a reason");
        assert!(!why.to_string().is_empty());
    }

    // The next pass sees the fresh cluster: `a` is full, `b` has room for two more.
    let report = scheduler.run_pass().await.unwrap();
    assert_eq!(report.rejected, 0);
    let placed: Vec<JobId> = report.assignments.iter().map(|p| p.job).collect();
    assert_eq!(placed, vec![ids[0], ids[1]]);
    assert!(report.assignments.iter().all(|p| p.executor == b));
    for e in store.executors().await.unwrap() {
        assert!(
            e.allocated.fits_in(&e.capacity()),
            "{} over-allocated",
            e.id()
        );
    }
}

#[tokio::test]
async fn a_long_queue_is_committed_in_bounded_batches() {
    let (store, scheduler) = cluster(None, &[&ExecutorId::new("big")], 1_000_000).await;
    let n = dwr_core::scheduler::COMMIT_BATCH * 2 + 7;
    for _ in 0..n {
        scheduler.submit(spec(10)).await.unwrap();
    }
    let report = scheduler.run_pass().await.unwrap();
    assert_eq!(report.assignments.len(), n);
    let batch = dwr_core::scheduler::COMMIT_BATCH;
    assert_eq!(*store.batches.lock().unwrap(), vec![batch, batch, 7]);
}
