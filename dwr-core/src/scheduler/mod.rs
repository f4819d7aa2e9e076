//! The scheduler: places pending jobs on executors through the store, and keeps the
//! cluster tidy (lost executors, allocation timeouts, max runtimes).
//!
//! A pass reads the pending jobs oldest first, builds a [`ClusterView`] once, asks the
//! [`Placement`] for each job, takes the choice off the view, and commits the choices
//! through [`JobStore::commit_assignments`], up to [`COMMIT_BATCH`] at a time (so a store
//! can send them in few round trips). The store re-checks everything, so several
//! schedulers may share one store: a rejected commit only means someone else took the
//! room; that executor is left out for the rest of the pass, and the pass goes on. Jobs
//! that do not fit stay pending and do not block smaller ones.

mod config;
mod fair;
mod metrics;
mod preempt;

pub use config::{Retention, SchedulerConfig};
pub use metrics::SchedulerMetrics;
pub use preempt::PREEMPTION_GAP;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::arrays::{ArrayInfo, ArraySubmission, NewArray};
use crate::error::{Rejection, StoreError};
use crate::executor::Executor;
use crate::ids::{ExecutorId, JobId};
use crate::job::{executor_lost, AbortCause, Job, JobState, Outcome};
use crate::placement::{ClusterView, Explanation, Placement, PlacementFailure};
use crate::queues::AtQuota;
use crate::resources::Resources;
use crate::spec::{GpuRequest, JobSpec, SpecError};
use crate::store::{
    AbortRequested, Assignment, Expiry, JobQuery, JobStore, Submission, IDEMPOTENCY_TTL,
};
use crate::time::Timestamp;
use fair::FairQueues;
use preempt::{UnderWay, Victims};

/// How long after a lease deadline the run loop wakes to expire the executor: past the
/// deadline by a little, since an executor is alive exactly at it.
const LEASE_WAKE_MARGIN: Duration = Duration::from_millis(5);

/// Most placements a pass decides before committing them (one
/// [`JobStore::commit_assignments`] call).
pub const COMMIT_BATCH: usize = 256;

/// Pending jobs behind the considered ones checked for their allocation timeout per
/// housekeeping pass.
const SWEEP_PAGE: usize = 1000;

/// What a pass works on between the store's reads and its last commit.
struct PassState<'a> {
    view: &'a mut ClusterView,
    fair: &'a mut FairQueues,
    no_room: NoRoom,
    /// Why each job considered is still pending.
    reasons: HashMap<JobId, PendingReason>,
    batch: Batch,
    /// The jobs under way, read when a first job may preempt.
    victims: Option<Victims>,
    /// The arrays with tasks in the pass, counting this pass's placements.
    arrays: HashMap<JobId, ArrayInfo>,
}

/// Placements decided in a pass and not yet committed: the assignments, and beside each
/// what the pass needs once its commit is answered.
#[derive(Default)]
struct Batch {
    assignments: Vec<Assignment>,
    decided: Vec<Decided>,
}

/// A placement decided (and taken off the view) but not yet committed.
struct Decided {
    job: Arc<Job>,
    /// The executor's index in the view.
    index: usize,
    /// The job's queue's index in the pass's [`FairQueues`].
    queue: usize,
    ip: String,
}

/// Why a pending job was not placed by the last pass.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingReason {
    /// No executor had room (or none could ever run it).
    NoRoom(Explanation),
    /// Its queue is at its quota.
    AtQuota(AtQuota),
    /// Its array has as many tasks under way as its parallelism.
    ArrayAtParallelism {
        /// The array.
        array: JobId,
        /// Its parallelism.
        parallelism: u32,
    },
    /// It preempts jobs of lower priority on an executor, or waits for those it preempted
    /// to stop.
    Preempting {
        /// The executor.
        executor: ExecutorId,
        /// Jobs this pass asked to stop for it.
        evicted: usize,
        /// Jobs asked before, still stopping.
        stopping: usize,
    },
}

impl PendingReason {
    /// The placement's explanation, when that is the reason.
    pub fn explanation(&self) -> Option<&Explanation> {
        match self {
            PendingReason::NoRoom(why) => Some(why),
            PendingReason::AtQuota(_)
            | PendingReason::ArrayAtParallelism { .. }
            | PendingReason::Preempting { .. } => None,
        }
    }
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PendingReason::NoRoom(why) => why.fmt(f),
            PendingReason::AtQuota(at) => at.fmt(f),
            PendingReason::ArrayAtParallelism { array, parallelism } => write!(
                f,
                "array {array} at its parallelism ({parallelism} of its tasks under way)"
            ),
            PendingReason::Preempting {
                executor,
                evicted: 0,
                stopping,
            } => write!(
                f,
                "waiting for {stopping} preempted job{} to stop on executor {executor}",
                if *stopping == 1 { "" } else { "s" }
            ),
            PendingReason::Preempting {
                executor, evicted, ..
            } => write!(
                f,
                "preempting {evicted} job{} of lower priority on executor {executor}",
                if *evicted == 1 { "" } else { "s" }
            ),
        }
    }
}

/// One job placed by a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The job.
    pub job: JobId,
    /// Where it went.
    pub executor: ExecutorId,
    /// That executor's IP.
    pub executor_ip: String,
    /// The GPU devices it got.
    pub gpu_ids: Vec<String>,
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Jobs assigned.
    pub assignments: Vec<Placed>,
    /// Executors removed because their lease ran out.
    pub expired_executors: Vec<ExecutorId>,
    /// The store's clock when the pass read it.
    pub now: Timestamp,
    /// The earliest instant (store clock) at which the lease of a live executor runs out:
    /// the run loop wakes for a pass then, so a lost executor's jobs leave `running`
    /// within its lease, not at the next tick.
    pub next_lease_deadline: Option<Timestamp>,
    /// Jobs pending for a retry whose backoff has not passed (not placed, not counted in
    /// `pending`).
    pub waiting_retry: usize,
    /// The earliest instant (store clock) at which such a job may be placed: the run loop
    /// wakes for a pass then.
    pub next_retry_at: Option<Timestamp>,
    /// Jobs failed because they waited past their allocation timeout or are infeasible.
    pub failed: Vec<JobId>,
    /// Running jobs asked to stop for running past their max runtime.
    pub timed_out: Vec<JobId>,
    /// Jobs under way asked to stop for a pending job of higher priority.
    pub preempted: Vec<JobId>,
    /// Jobs still pending after the pass (among those considered).
    pub pending: usize,
    /// Commits the store refused because the view was stale.
    pub rejected: usize,
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The spec is invalid; nothing was stored.
    #[error(transparent)]
    Invalid(#[from] SpecError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job names a queue that is not defined; nothing was stored.
    #[error("queue is invalid: {queue:?} is not a queue (queues: {known})")]
    UnknownQueue {
        /// The queue named.
        queue: String,
        /// The queues there are, comma-separated.
        known: String,
    },
    /// The idempotency key names a job submitted with another request; nothing was stored.
    #[error("Idempotency-Key {key:?} was used for job {job} with a different request")]
    KeyReused {
        /// The key.
        key: String,
        /// The job it names.
        job: JobId,
    },
}

/// The scheduler. Cheap to clone: clones share one state.
#[derive(Clone, Debug)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn JobStore>,
    placement: Arc<dyn Placement>,
    config: SchedulerConfig,
    wake: Notify,
    /// Serialises passes of this process; other processes are kept honest by the store.
    pass_lock: tokio::sync::Mutex<()>,
    /// Why each job of the last pass is still pending. A std mutex: held briefly, never
    /// across an await.
    pending_reasons: Mutex<HashMap<JobId, PendingReason>>,
    metrics: Mutex<SchedulerMetrics>,
    /// Where the sweep of the pending jobs behind the first page goes on (newest-first
    /// offset among those jobs).
    sweep_offset: Mutex<usize>,
}

impl Scheduler {
    /// A scheduler over `store`, placing with `placement`.
    pub fn new(
        store: Arc<dyn JobStore>,
        placement: Arc<dyn Placement>,
        config: SchedulerConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                placement,
                config,
                wake: Notify::new(),
                sweep_offset: Mutex::new(0),
                pass_lock: tokio::sync::Mutex::new(()),
                pending_reasons: Mutex::new(HashMap::new()),
                metrics: Mutex::new(SchedulerMetrics::default()),
            }),
        }
    }

    /// The store it schedules over.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.inner.store
    }

    /// Its settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.config
    }

    /// The placement strategy's name.
    pub fn placement_name(&self) -> &'static str {
        self.inner.placement.name()
    }

    /// Validates `spec` (its queue must be defined), stores it as a new pending job and
    /// wakes the scheduling loop. An invalid spec changes nothing.
    pub async fn submit(&self, spec: JobSpec) -> Result<Job, SubmitError> {
        self.validate(&spec)?;
        // The store stamps the creation time with its own clock.
        let job = Job::new(JobId::new(), spec, Timestamp::default());
        let job = self.inner.store.submit(job).await?;
        self.trigger();
        Ok(job)
    }

    /// Like [`submit`](Self::submit) under an idempotency `key` (kept for
    /// [`IDEMPOTENCY_TTL`]): the first submit with the key creates the job; a later one
    /// with the same spec returns that job ([`Submission::Existing`]) and creates nothing,
    /// one with another spec is `KeyReused`. A client that sends a submit again after a
    /// timeout, with the same key, never gets a second job.
    pub async fn submit_idempotent(
        &self,
        spec: JobSpec,
        key: &str,
    ) -> Result<Submission, SubmitError> {
        self.validate(&spec)?;
        let job = Job::new(JobId::new(), spec.clone(), Timestamp::default());
        let submission = self
            .inner
            .store
            .submit_idempotent(job, key, IDEMPOTENCY_TTL)
            .await?;
        match &submission {
            Submission::Created(_) => self.trigger(),
            Submission::Existing(existing) if existing.spec != spec => {
                return Err(SubmitError::KeyReused {
                    key: key.to_owned(),
                    job: existing.id,
                });
            }
            Submission::Existing(_) => {}
        }
        Ok(submission)
    }

    fn validate(&self, spec: &JobSpec) -> Result<(), SubmitError> {
        spec.validate()?;
        let queues = &self.inner.config.queues;
        if queues.get(&spec.queue).is_none() {
            return Err(SubmitError::UnknownQueue {
                queue: spec.queue.clone(),
                known: queues.names(),
            });
        }
        Ok(())
    }

    /// Validates `spec` as [`submit`](Self::submit) does and stores an array of `count`
    /// tasks of it, at most `parallelism` under way at once, under an idempotency `key`
    /// when given (a repeat with the key returns the array stored first); wakes the loop.
    pub async fn submit_array(
        &self,
        spec: JobSpec,
        count: u32,
        parallelism: Option<u32>,
        key: Option<&str>,
    ) -> Result<ArraySubmission, SubmitError> {
        self.validate(&spec)?;
        let array = NewArray::new(spec, count, parallelism);
        array.validate()?;
        let submission = self
            .inner
            .store
            .submit_array(&array, key.map(|k| (k, IDEMPOTENCY_TTL)))
            .await?;
        self.trigger();
        Ok(submission)
    }

    /// Aborts every task of an array not ended yet (as [`abort`](Self::abort) each);
    /// returns how many it asked to abort.
    pub async fn abort_array(&self, id: JobId) -> Result<usize, StoreError> {
        let mut asked = 0;
        for (task, state) in self.inner.store.array_tasks(id).await? {
            if state.is_terminal() {
                continue;
            }
            match self.abort(task).await {
                Ok(_) => asked += 1,
                // It ended meanwhile.
                Err(StoreError::AlreadyTerminal { .. } | StoreError::JobNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(asked)
    }

    /// Aborts a job: a pending job at once, an assigned or running one through its executor.
    pub async fn abort(&self, id: JobId) -> Result<AbortRequested, StoreError> {
        let outcome = self.inner.store.request_abort(id, AbortCause::User).await?;
        if matches!(outcome, AbortRequested::AbortedAtOnce(_)) {
            lock(&self.inner.pending_reasons).remove(&id);
        }
        Ok(outcome)
    }

    /// Wakes the background loop for a pass now.
    pub fn trigger(&self) {
        self.inner.wake.notify_one();
    }

    /// Why a pending job is still pending, as of the last pass.
    pub fn pending_reason(&self, id: JobId) -> Option<PendingReason> {
        lock(&self.inner.pending_reasons).get(&id).cloned()
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> SchedulerMetrics {
        lock(&self.inner.metrics).clone()
    }

    /// Runs one full pass now, housekeeping included.
    pub async fn run_pass(&self) -> Result<PassReport, StoreError> {
        self.run_pass_with(true).await
    }

    /// Runs one pass as of the store's clock. Every pass expires executors whose lease ran
    /// out; with `housekeeping` it also stops jobs past their max runtime.
    pub async fn run_pass_with(&self, housekeeping: bool) -> Result<PassReport, StoreError> {
        let _serial = self.inner.pass_lock.lock().await;
        let started = Instant::now();
        let mut report = PassReport::default();
        let result = self.pass(housekeeping, &mut report).await;
        let mut m = lock(&self.inner.metrics);
        m.passes += 1;
        m.last_pass_seconds = started.elapsed().as_secs_f64();
        m.pass_seconds_total += m.last_pass_seconds;
        m.placements += report.assignments.len() as u64;
        result.map(|()| report)
    }

    async fn pass(&self, housekeeping: bool, report: &mut PassReport) -> Result<(), StoreError> {
        let store = &self.inner.store;
        // One clock: every time this pass compares comes from the store, as do the times
        // it compares them with.
        let now = store.now().await?;
        report.now = now;
        let mut executors = store.executors_for_placement().await?;
        // Lost executors are expired on every pass: it costs nothing beyond the read above,
        // and their jobs should fail as soon as their lease says so. Each is judged by its
        // own lease; the store checks again, so one that heartbeated since is kept.
        let mut expired = Vec::new();
        for exec in executors.iter().filter(|e| !e.is_alive(now)) {
            let reason = executor_lost(exec.id(), exec.lease_ttl());
            let failed = store
                .expire_executor(exec.id(), Expiry::IfLeaseExpired, &reason)
                .await?;
            if failed.is_empty() && store.executor(exec.id()).await.is_ok() {
                // It heartbeated between the read and the expiry: still alive.
                continue;
            }
            info!(executor = %exec.id(), jobs = failed.len(), lease_ms = exec.lease_ttl().as_millis() as u64, "executor lost: lease expired");
            expired.push(exec.id().clone());
        }
        executors.retain(|e| !expired.contains(e.id()) && e.is_alive(now));
        report.next_lease_deadline = executors.iter().map(Executor::lease_deadline).min();
        report.expired_executors = expired;
        if housekeeping {
            self.stop_overdue(now, report).await?;
            self.sweep_behind(now, report).await?;
        }

        let mut view = ClusterView::from_executors(&executors, now);
        lock(&self.inner.metrics).executors_alive = view.alive() as u64;
        // What the queues hold matters only to share between queues or to keep a quota;
        // one queue without a quota (the default set-up) pays no read for it.
        let queues = &self.inner.config.queues;
        let shared = queues.iter().count() > 1 || queues.any_quota();
        let mut usage = if shared {
            store.queue_usage().await?
        } else {
            BTreeMap::new()
        };
        // The pass considers `max_jobs_per_pass` jobs in all, shared among the queues
        // with waiting jobs.
        let waiting = usage.values().filter(|u| u.pending > 0).count().max(1);
        let limit = self.inner.config.max_jobs_per_pass.div_ceil(waiting);
        // Only what placement reads: a long queue of jobs with large commands or
        // environments costs the pass little.
        let pending = store.pending_for_placement(limit).await?;
        let one_queue = pending.first().is_none_or(|first| {
            pending
                .iter()
                .all(|q| q.job.spec.queue == first.job.spec.queue)
        });
        if !shared && !one_queue {
            // Jobs still wait in queues no longer defined.
            usage = store.queue_usage().await?;
        }
        let total = executors.iter().fold(Resources::ZERO, |total, e| {
            total.checked_add(&e.capacity()).unwrap_or(total)
        });
        // The arrays with tasks in this pass: how many of their tasks are under way.
        let mut arrays = HashMap::new();
        for task in pending.iter().filter_map(|q| q.job.array) {
            if let std::collections::hash_map::Entry::Vacant(slot) = arrays.entry(task.array_job_id)
            {
                match store.array(task.array_job_id).await {
                    Ok(array) => {
                        slot.insert(array);
                    }
                    Err(StoreError::JobNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let mut fair = FairQueues::new(pending, &usage, queues, total);
        let mut pass = PassState {
            view: &mut view,
            fair: &mut fair,
            no_room: NoRoom::default(),
            reasons: HashMap::new(),
            batch: Batch::default(),
            victims: None,
            arrays,
        };
        while let Some((queue, queued)) = pass.fair.next() {
            let id = queued.job.id;
            if let Some(why) = self
                .place_one(queued.job, queue, &mut pass, now, report)
                .await?
            {
                pass.reasons.insert(id, why);
            }
            if pass.batch.assignments.len() >= COMMIT_BATCH {
                self.commit(&mut pass, report).await?;
            }
        }
        self.commit(&mut pass, report).await?;
        let reasons = pass.reasons;
        report.pending = reasons.len();
        *lock(&self.inner.pending_reasons) = reasons;
        Ok(())
    }

    /// Places (into the pass's batch, to be committed), fails or leaves pending one job of
    /// queue `queue`; returns why it is still pending.
    async fn place_one(
        &self,
        job: Job,
        queue: usize,
        pass: &mut PassState<'_>,
        now: Timestamp,
        report: &mut PassReport,
    ) -> Result<Option<PendingReason>, StoreError> {
        let store = &self.inner.store;
        if let Some(at) = job.retry_at.filter(|at| *at > now) {
            report.waiting_retry += 1;
            report.next_retry_at = Some(report.next_retry_at.map_or(at, |next| next.min(at)));
            return Ok(None);
        }
        // A retried job waits for room from when its backoff ended, one with dependencies
        // from when they were met.
        let waited = now.since(job.waiting_since());
        let need = job.spec.resources();
        // A task held back by its array's parallelism waits for its siblings, not for room:
        // its allocation timeout does not run out for that.
        let array = job.array.and_then(|t| pass.arrays.get(&t.array_job_id));
        if let Some(array) = array.filter(|a| !a.has_room()) {
            return Ok(Some(PendingReason::ArrayAtParallelism {
                array: array.id,
                parallelism: array.parallelism.unwrap_or_default(),
            }));
        }
        let placed = match pass.fair.at_quota(queue, &need) {
            Some(at) => Err(PendingReason::AtQuota(at)),
            None => {
                let shape = Shape::of(&job.spec);
                let placed = match pass.no_room.get(&shape) {
                    Some(why) => Err(why.clone()),
                    None => self.inner.placement.place(&job.spec, pass.view),
                };
                placed.map_err(|why| {
                    pass.no_room.entry(shape).or_insert_with(|| why.clone());
                    lock(&self.inner.metrics).count_failure(why.failure());
                    PendingReason::NoRoom(why)
                })
            }
        };
        match placed {
            Ok(choice) => {
                // Taken now, so the next decisions of the pass see it taken; should the
                // commit be refused, the executor is set aside anyway.
                pass.view.reserve(choice.executor, &need, &choice.gpu_ids);
                pass.fair.take(queue, &need);
                if let Some(array) = job.array.and_then(|t| pass.arrays.get_mut(&t.array_job_id)) {
                    array.active += 1;
                }
                let exec = &pass.view.executors()[choice.executor];
                // The job as read goes with the proposal: the store need not read it back.
                let job = Arc::new(job);
                pass.batch.assignments.push(Assignment {
                    job: job.id,
                    executor: exec.id.clone(),
                    gpu_ids: choice.gpu_ids,
                    snapshot: Some(job.clone()),
                    quota: pass.fair.quota(queue),
                });
                pass.batch.decided.push(Decided {
                    index: choice.executor,
                    queue,
                    ip: exec.ip.clone(),
                    job,
                });
                Ok(None)
            }
            Err(why) => {
                let timed_out = waited > job.spec.allocation_timeout;
                let may_preempt = matches!(&why, PendingReason::NoRoom(e) if !e.infeasible)
                    && pass
                        .fair
                        .preemption(queue)
                        .unwrap_or(self.inner.config.preemption);
                if may_preempt && !timed_out {
                    if let Some(preempting) = self.preempt_for(&job, pass, report).await? {
                        return Ok(Some(preempting));
                    }
                }
                let infeasible = why.explanation().is_some_and(|e| e.infeasible);
                let infeasible_for_long = infeasible
                    && self
                        .inner
                        .config
                        .infeasible_grace
                        .is_some_and(|grace| waited >= grace);
                if !(infeasible_for_long || timed_out) {
                    return Ok(Some(why));
                }
                let reason = if infeasible_for_long {
                    why.to_string()
                } else {
                    format!(
                        "allocation timeout: not placed within {} s: {why}",
                        job.spec.allocation_timeout.as_secs()
                    )
                };
                let done = store
                    .finish(job.id, &Outcome::failed(&reason), None)
                    .await?;
                if done.changed {
                    info!(job = %job.id, %reason, "job failed before placement");
                    report.failed.push(job.id);
                }
                Ok(None)
            }
        }
    }

    /// Asks jobs under way to stop so that `job` (which fits nowhere) gets their room, by
    /// the rule of [`preempt`](self::preempt); `None` when no preemption makes room.
    async fn preempt_for(
        &self,
        job: &Job,
        pass: &mut PassState<'_>,
        report: &mut PassReport,
    ) -> Result<Option<PendingReason>, StoreError> {
        if job.spec.priority < PREEMPTION_GAP {
            return Ok(None);
        }
        let victims = match pass.victims.take() {
            Some(victims) => victims,
            None => self.under_way().await?,
        };
        let victims = pass.victims.insert(victims);
        let Some(plan) = victims.plan(&job.spec, pass.view) else {
            return Ok(None);
        };
        for &victim in &plan.evict {
            match self.inner.store.preempt(victim, job.id).await {
                Ok(_) => {
                    info!(job = %victim, by = %job.id, executor = %plan.executor, "preempted");
                    report.preempted.push(victim);
                }
                // It ended or went back to pending meanwhile: its room is free anyway.
                Err(StoreError::AlreadyTerminal { .. } | StoreError::InvalidTransition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        victims.carried_out(&plan, &job.spec.resources());
        Ok(Some(PendingReason::Preempting {
            executor: plan.executor,
            evicted: plan.evict.len(),
            stopping: plan.stopping,
        }))
    }

    /// Every job under way, by executor, as preemption sees it.
    async fn under_way(&self) -> Result<Victims, StoreError> {
        const PAGE: usize = 1000;
        let mut victims = Victims::default();
        for state in [JobState::Assigned, JobState::Running] {
            let mut offset = 0;
            loop {
                let query = JobQuery {
                    state: Some(state),
                    offset,
                    limit: PAGE,
                };
                let page = self.inner.store.jobs(&query).await?;
                for job in &page {
                    let Some(executor) = &job.executor else {
                        continue;
                    };
                    victims
                        .on
                        .entry(executor.clone())
                        .or_default()
                        .push(UnderWay {
                            id: job.id,
                            priority: job.spec.priority,
                            need: job.spec.resources(),
                            gpu_ids: job.gpu_ids.clone(),
                            started_at: job.started_at,
                            stopping: job.abort_requested.is_some(),
                        });
                }
                if page.len() < PAGE {
                    break;
                }
                offset += PAGE;
            }
        }
        Ok(victims)
    }

    /// Commits the placements in the pass's batch (leaving it empty): the accepted ones go
    /// into the report; a refused one stays pending and sets its executor aside for the
    /// rest of the pass (unless its queue's quota refused it). Any other store error fails
    /// the pass, after the others are accounted for.
    async fn commit(
        &self,
        pass: &mut PassState<'_>,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let PassState {
            view,
            fair,
            reasons,
            batch,
            ..
        } = pass;
        if batch.assignments.is_empty() {
            return Ok(());
        }
        let results = self
            .inner
            .store
            .commit_assignments(&batch.assignments)
            .await;
        let mut failure = None;
        let decided = batch.decided.drain(..);
        for ((assignment, decided), result) in batch.assignments.drain(..).zip(decided).zip(results)
        {
            match result {
                Ok(_) => {
                    debug!(job = %assignment.job, executor = %assignment.executor, "assigned");
                    report.assignments.push(Placed {
                        job: assignment.job,
                        executor: assignment.executor,
                        executor_ip: decided.ip,
                        gpu_ids: assignment.gpu_ids,
                    });
                }
                Err(StoreError::Rejected { reason, .. }) => {
                    // Someone else took the room, the job or the queue's quota: our view
                    // is stale. Take the executor out of this pass (unless only the quota
                    // refused); the next pass starts from fresh data.
                    debug!(job = %assignment.job, %reason, "assignment rejected; view was stale");
                    let need = decided.job.spec.resources();
                    fair.give_back(decided.queue, &need);
                    if !matches!(
                        reason,
                        Rejection::QuotaReached { .. } | Rejection::ArrayAtParallelism { .. }
                    ) {
                        view.set_aside(decided.index);
                    }
                    report.rejected += 1;
                    lock(&self.inner.metrics).count_failure(PlacementFailure::Rejected);
                    self.trigger();
                    let why = match fair.at_quota(decided.queue, &need) {
                        Some(at) => PendingReason::AtQuota(at),
                        None => PendingReason::NoRoom(Explanation::of(&decided.job.spec, view)),
                    };
                    reasons.insert(decided.job.id, why);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Asks the executors of running jobs past their max runtime to stop them.
    async fn stop_overdue(
        &self,
        now: Timestamp,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        const PAGE: usize = 1000;
        let store = &self.inner.store;
        let mut offset = 0;
        loop {
            let page = store
                .jobs(&JobQuery {
                    state: Some(JobState::Running),
                    offset,
                    limit: PAGE,
                })
                .await?;
            for job in &page {
                let overdue = job
                    .started_at
                    .is_some_and(|t| now.since(t) > job.spec.max_runtime);
                if overdue && job.abort_requested.is_none() {
                    match store.request_abort(job.id, AbortCause::TimedOut).await {
                        Ok(_) => {
                            warn!(job = %job.id, "job ran past its max runtime; stopping it");
                            report.timed_out.push(job.id);
                        }
                        // It finished meanwhile: nothing to stop.
                        Err(StoreError::AlreadyTerminal { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            if page.len() < PAGE {
                return Ok(());
            }
            offset += PAGE;
        }
    }

    /// Runs passes until `shutdown` resolves: on every wake-up from the store (a submit, a
    /// finish, an executor joining), on [`trigger`](Self::trigger), when the earliest lease
    /// of a live executor runs out (so a lost executor is expired within its own lease,
    /// whatever the tick), and at least every tick (with housekeeping). Store errors are
    /// logged and retried after a short pause.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StoreError> {
        tokio::pin!(shutdown);
        let tick = self.inner.config.tick;
        let mut next_housekeeping = tokio::time::Instant::now();
        let retention_every = self
            .inner
            .config
            .retention
            .every
            .max(Duration::from_millis(10));
        let mut next_retention = tokio::time::Instant::now() + retention_every;
        loop {
            if tokio::time::Instant::now() >= next_retention {
                next_retention = tokio::time::Instant::now() + retention_every;
                if let Err(e) = self.apply_retention().await {
                    warn!(error = %e, "deleting old finished jobs failed; trying again later");
                }
            }
            let now_instant = tokio::time::Instant::now();
            let housekeeping = now_instant >= next_housekeeping;
            if housekeeping {
                next_housekeeping = now_instant + tick;
            }
            let until_lease = match self.run_pass_with(housekeeping).await {
                Ok(report) => {
                    if !report.assignments.is_empty() || !report.failed.is_empty() {
                        debug!(
                            assigned = report.assignments.len(),
                            failed = report.failed.len(),
                            pending = report.pending,
                            "pass"
                        );
                    }
                    // Both instants are the store's: no local clock enters the wait.
                    [report.next_lease_deadline, report.next_retry_at]
                        .into_iter()
                        .flatten()
                        .min()
                        .map(|deadline| deadline.since(report.now) + LEASE_WAKE_MARGIN)
                }
                Err(e) => {
                    warn!(error = %e, "scheduling pass failed; retrying");
                    tokio::select! {
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            let until_tick = next_housekeeping
                .min(next_retention)
                .saturating_duration_since(tokio::time::Instant::now());
            let until_tick = until_lease.map_or(until_tick, |lease| lease.min(until_tick));
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = self.inner.wake.notified() => {}
                r = self.inner.store.wait_for_work(until_tick) => {
                    if let Err(e) = r {
                        warn!(error = %e, "waiting for work failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }

    /// Checks the allocation timeouts of one page of the pending jobs that no pass
    /// considers (those behind the oldest `max_jobs_per_pass`), so that every pending job
    /// eventually fails when it waited too long, however long the queue. A page per
    /// housekeeping pass, going round.
    async fn sweep_behind(
        &self,
        now: Timestamp,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let considered = self.inner.config.max_jobs_per_pass;
        let pending = store
            .counts()
            .await?
            .get(&JobState::Pending)
            .copied()
            .unwrap_or(0);
        // Newest first, the jobs behind the considered ones are the first `behind`.
        let behind = (pending as usize).saturating_sub(considered);
        if behind == 0 {
            *lock(&self.inner.sweep_offset) = 0;
            return Ok(());
        }
        let offset = {
            let mut at = lock(&self.inner.sweep_offset);
            let offset = if *at >= behind { 0 } else { *at };
            *at = offset + SWEEP_PAGE;
            offset
        };
        let query = JobQuery {
            state: Some(JobState::Pending),
            offset,
            limit: SWEEP_PAGE.min(behind - offset),
        };
        for job in store.jobs(&query).await? {
            if job.retry_at.is_some_and(|at| at > now) || job.is_blocked() {
                continue;
            }
            let waited = now.since(job.waiting_since());
            if waited <= job.spec.allocation_timeout {
                continue;
            }
            let reason = format!(
                "allocation timeout: not placed within {} s: {considered} or more older jobs \
                 were pending ahead of it",
                job.spec.allocation_timeout.as_secs()
            );
            if store
                .finish(job.id, &Outcome::failed(&reason), None)
                .await?
                .changed
            {
                info!(job = %job.id, %reason, "job failed before placement");
                report.failed.push(job.id);
            }
        }
        Ok(())
    }

    /// Deletes finished jobs past the [`Retention`] of the config, in the store's bounded
    /// batches. Returns how many were deleted.
    pub async fn apply_retention(&self) -> Result<u64, StoreError> {
        let retention = self.inner.config.retention;
        let store = &self.inner.store;
        let mut deleted = 0;
        if let Some(age) = retention.max_age {
            deleted += store.purge_finished(age).await?;
        }
        if let Some(keep) = retention.max_jobs {
            deleted += store.purge_finished_beyond(keep).await?;
        }
        if deleted > 0 {
            lock(&self.inner.metrics).retention_deleted += deleted;
            info!(deleted, "retention: finished jobs deleted");
        }
        Ok(deleted)
    }
}

/// What placement looks at in a job: two jobs of one shape fit in the same places.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Shape {
    cpu_millis: u64,
    memory_mib: u64,
    gpu: GpuRequest,
    regions: Vec<String>,
    datacenters: Vec<String>,
}

impl Shape {
    fn of(spec: &JobSpec) -> Self {
        Self {
            cpu_millis: spec.cpu_millis,
            memory_mib: spec.memory_mib,
            gpu: spec.gpu.clone(),
            regions: spec.eligible_regions.clone(),
            datacenters: spec.eligible_datacenters.clone(),
        }
    }
}

/// The shapes that found no room earlier in this pass, with the explanation they got.
/// Room only shrinks during a pass (reservations, executors set aside), so a shape that did
/// not fit still does not: a long queue of alike jobs costs one placement, not one each.
/// The explanation's counts are those of the shape's first failure in the pass.
type NoRoom = HashMap<Shape, Explanation>;

/// Locks a std mutex, recovering the data from a panicked holder (the data are counters
/// and explanations: always consistent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
