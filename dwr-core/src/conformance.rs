//! The [`JobStore`] conformance suite: written once, run unchanged by every store.
//!
//! Each check is a `pub async fn(Arc<dyn JobStore>)` that panics (assertion failure) when the
//! store breaks the contract; it is given a fresh, empty store and uses only the trait, so
//! the in-memory store and the Redis store run exactly the same code.
//!
//! Two ways to run it:
//!
//! * [`run_all`] runs every check in turn, each on a store built by `make`;
//! * [`job_store_conformance!`](crate::job_store_conformance) expands to one
//!   `#[tokio::test]` per check, so a failure names the check:
//!
//! ```text
//! async fn make_store() -> Arc<dyn JobStore> { Arc::new(InMemoryJobStore::new()) }
//! dwr_core::job_store_conformance!(make_store);
//! ```
//!
//! Waits are liveness bounds (a wake-up must come within seconds while the store was asked
//! to wait a minute), never timing measurements.
//!
//! What the suite pins down beyond the trait docs:
//! * `mark_running` of a terminal job is `AlreadyTerminal`; from another state, or by an
//!   executor the job is not assigned to, `InvalidTransition`.
//! * `finish` with an outcome the lifecycle forbids (pending → succeeded, a non-terminal
//!   outcome) is `InvalidTransition` and changes nothing.
//! * `commit_assignment` of an unknown job is `JobNotFound`; of an unknown executor,
//!   `Rejected(ExecutorGone)`; a GPU named twice in one assignment is `GpuUnavailable`.
//! * Liveness: an executor is judged by its own lease on the store's clock; the lease checks
//!   register executors with a 300 ms lease and outlive it by sleeping (the store's clock is
//!   real time: no caller passes one).
//! * Fencing: `mark_running` checks the state and the executor first (`AlreadyTerminal`,
//!   `InvalidTransition`), then the attempt (`StaleAttempt`).

mod arrays;
mod assign;
mod changes;
mod deps;
mod executors;
mod jobs;
mod lifecycle;
mod logs;
mod queues;
mod retries;
pub mod runtime;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use arrays::{
    an_array_goes_with_its_last_task, an_array_is_a_dependency_like_a_job,
    an_array_keeps_its_tasks_and_its_parallelism,
};
pub use assign::{
    a_job_is_never_assigned_twice, commit_assignment_records_and_allocates,
    commit_assignments_apply_in_order, commit_rejects_a_dead_executor,
    commit_rejects_a_gpu_count_mismatch, commit_rejects_a_job_not_pending,
    commit_rejects_an_unknown_executor, commit_rejects_no_room_per_dimension,
    commit_rejects_unavailable_gpus, concurrent_commits_never_over_allocate,
    pending_for_placement_reads_little_and_commits_whole,
};
pub use changes::changes_follow_jobs_and_executors_in_order;
pub use deps::{
    a_failed_dependency_fails_its_dependents_in_turn, a_job_waits_for_its_dependencies,
};
pub use executors::{
    events_are_delivered_once, executors_are_listed_by_id, expire_executor_fails_its_jobs,
    expire_executor_ignores_fresh_and_unknown, heartbeat_keeps_allocations,
    next_event_wakes_on_commit_from_another_task, reregister_keeps_allocations,
    wait_for_work_wakes_on_changes,
};
pub use jobs::{
    all_jobs_page_in_arrival_order_across_states, counts_cover_every_state,
    jobs_are_listed_newest_first_with_paging, pending_jobs_are_queued_by_priority_with_aging,
    pending_jobs_in_arrival_order, purge_finished_beyond_keeps_the_newest,
    purge_finished_deletes_old_terminal_jobs, submit_get_and_duplicate,
    submit_with_an_idempotency_key_creates_once, unknown_ids_are_not_found,
};
pub use lifecycle::{
    abort_then_finish_releases_once, finish_after_expire_changes_nothing,
    finish_follows_the_lifecycle, finish_releases_once, mark_running_only_by_its_executor,
    request_abort_by_state,
};
pub use logs::{
    logs_append_and_read_from_offset, logs_stop_at_the_byte_cap_with_one_marker,
    wait_logs_wakes_on_append_and_on_finish,
};
pub use queues::{
    a_preempted_job_goes_back_to_pending, commits_keep_the_queue_quota,
    each_queue_keeps_its_own_order, queue_usage_follows_assignments_and_ends,
};
pub use retries::{
    a_failed_attempt_is_retried_by_its_policy, a_pass_reads_a_requeued_job_as_it_is_now,
    retries_follow_backoff_causes_aborts_and_expiry, writes_from_a_stale_attempt_are_refused,
};

use crate::error::{Rejection, StoreError};
use crate::executor::{Executor, ExecutorRegistration, GpuDevice};
use crate::ids::{ExecutorId, JobId};
use crate::job::Job;
use crate::queues::Quota;
use crate::spec::{GpuModel, JobSpec};
use crate::store::{Assignment, JobStore};
use crate::time::Timestamp;

/// The one list of checks, handed to `$crate::__job_store_check!` in a mode.
#[doc(hidden)]
#[macro_export]
macro_rules! __job_store_for_each_check {
    ($mode:ident $($arg:tt)*) => {
        $crate::__job_store_check! { $mode ($($arg)*) [
            submit_get_and_duplicate,
            submit_with_an_idempotency_key_creates_once,
            unknown_ids_are_not_found,
            jobs_are_listed_newest_first_with_paging,
            all_jobs_page_in_arrival_order_across_states,
            pending_jobs_in_arrival_order,
            pending_jobs_are_queued_by_priority_with_aging,
            counts_cover_every_state,
            purge_finished_deletes_old_terminal_jobs,
            purge_finished_beyond_keeps_the_newest,
            commit_assignment_records_and_allocates,
            commit_rejects_a_job_not_pending,
            commit_rejects_an_unknown_executor,
            commit_rejects_a_dead_executor,
            commit_rejects_no_room_per_dimension,
            commit_rejects_unavailable_gpus,
            commit_rejects_a_gpu_count_mismatch,
            commit_assignments_apply_in_order,
            a_job_is_never_assigned_twice,
            pending_for_placement_reads_little_and_commits_whole,
            concurrent_commits_never_over_allocate,
            mark_running_only_by_its_executor,
            finish_follows_the_lifecycle,
            finish_releases_once,
            finish_after_expire_changes_nothing,
            abort_then_finish_releases_once,
            request_abort_by_state,
            events_are_delivered_once,
            next_event_wakes_on_commit_from_another_task,
            heartbeat_keeps_allocations,
            reregister_keeps_allocations,
            executors_are_listed_by_id,
            expire_executor_fails_its_jobs,
            expire_executor_ignores_fresh_and_unknown,
            wait_for_work_wakes_on_changes,
            changes_follow_jobs_and_executors_in_order,
            logs_append_and_read_from_offset,
            wait_logs_wakes_on_append_and_on_finish,
            logs_stop_at_the_byte_cap_with_one_marker,
            writes_from_a_stale_attempt_are_refused,
            a_failed_attempt_is_retried_by_its_policy,
            retries_follow_backoff_causes_aborts_and_expiry,
            a_pass_reads_a_requeued_job_as_it_is_now,
            each_queue_keeps_its_own_order,
            queue_usage_follows_assignments_and_ends,
            commits_keep_the_queue_quota,
            a_preempted_job_goes_back_to_pending,
            a_job_waits_for_its_dependencies,
            a_failed_dependency_fails_its_dependents_in_turn,
            an_array_keeps_its_tasks_and_its_parallelism,
            an_array_is_a_dependency_like_a_job,
            an_array_goes_with_its_last_task,
        ] }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __job_store_check {
    (tests ($make:expr) [$($check:ident),* $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store: ::std::sync::Arc<dyn $crate::JobStore> = ($make)().await;
                $crate::conformance::$check(store).await;
            }
        )*
    };
    (run ($make:expr) [$($check:ident),* $(,)?]) => {
        $(
            $crate::conformance::$check(($make)().await).await;
        )*
    };
}

/// Expands to one `#[tokio::test]` per conformance check (multi-threaded runtime), each
/// on a fresh store from `$make`: an `async fn() -> Arc<dyn JobStore>` or a closure
/// returning such a future. The calling crate needs `tokio` with `macros` and
/// `rt-multi-thread`.
#[macro_export]
macro_rules! job_store_conformance {
    ($make:expr) => {
        $crate::__job_store_for_each_check!(tests $make);
    };
}

/// Runs every check, each on a fresh empty store built by `make`. Panics at the first
/// check the store fails.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn JobStore>>,
{
    crate::__job_store_for_each_check!(run make);
}

// ----- shared fixtures -------------------------------------------------------------------

/// The heartbeat interval of the executors the lease checks register: a lease of 300 ms,
/// which they outlive by sleeping (the store's clock is real time, not the caller's).
pub(crate) const SHORT_HEARTBEAT: Duration = Duration::from_millis(100);
/// How long a check asks a store to wait when it expects a wake-up long before.
pub(crate) const LONG_WAIT: Duration = Duration::from_secs(60);
/// The liveness bound on such a wake-up.
pub(crate) const WAKE_BOUND: Duration = Duration::from_secs(10);

/// `ms` milliseconds after a fixed instant (2023-11-14).
pub(crate) fn at(ms: i64) -> Timestamp {
    Timestamp(1_700_000_000_000 + ms)
}

/// A CPU/memory job spec.
pub(crate) fn spec(cpu_millis: u64, memory_mib: u64) -> JobSpec {
    JobSpec::new(
        "dwr-test/busybox:latest",
        vec!["true".into()],
        cpu_millis,
        memory_mib,
    )
}

/// A spec asking for `gpus` devices of any model.
pub(crate) fn gpu_spec(cpu_millis: u64, memory_mib: u64, gpus: u32) -> JobSpec {
    spec(cpu_millis, memory_mib).with_gpus(gpus, GpuModel::Any)
}

/// Submits a new pending job (the store stamps its creation time).
pub(crate) async fn submit(store: &Arc<dyn JobStore>, spec: JobSpec) -> JobId {
    let id = JobId::new();
    store
        .submit(Job::new(id, spec, Timestamp::default()))
        .await
        .unwrap_or_else(|e| panic!("submit of {id} failed: {e}"));
    id
}

/// Runs `task(0)` to `task(tasks - 1)` at once, each on a Tokio task of its own, and
/// returns the jobs they say they committed, asserting that no job was committed twice.
/// For races of commits: the checks here, and a store's own tests.
pub async fn race<F, Fut>(tasks: usize, task: F) -> Vec<JobId>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Vec<JobId>> + Send + 'static,
{
    let handles: Vec<_> = (0..tasks).map(|t| tokio::spawn(task(t))).collect();
    let mut won = Vec::new();
    for handle in handles {
        won.extend(handle.await.expect("task"));
    }
    let unique: HashSet<JobId> = won.iter().copied().collect();
    assert_eq!(unique.len(), won.len(), "a job was committed twice");
    won
}

/// A GPU device with this UUID.
pub(crate) fn device(index: u32, uuid: &str) -> GpuDevice {
    GpuDevice {
        index,
        uuid: uuid.to_owned(),
        model: "NVIDIA H200".to_owned(),
        memory_mib: 143_771,
    }
}

/// A registration of `id` at IP `10.0.0.<n>`-like text with these GPUs.
pub(crate) fn registration(
    id: &str,
    cpu_millis: u64,
    memory_mib: u64,
    gpus: &[&str],
) -> ExecutorRegistration {
    let devices = gpus
        .iter()
        .enumerate()
        .map(|(i, uuid)| device(i as u32, uuid))
        .collect();
    ExecutorRegistration::new(
        ExecutorId::new(id),
        format!("ip-of-{id}"),
        cpu_millis,
        memory_mib,
        devices,
    )
}

/// Registers an executor (heartbeating every 30 s: a lease of 90 s).
pub(crate) async fn register(
    store: &Arc<dyn JobStore>,
    id: &str,
    cpu_millis: u64,
    memory_mib: u64,
    gpus: &[&str],
) -> ExecutorId {
    let reg = registration(id, cpu_millis, memory_mib, gpus);
    store
        .register_executor(&reg)
        .await
        .unwrap_or_else(|e| panic!("register of {id} failed: {e}"));
    reg.id
}

/// Registers an executor heartbeating every [`SHORT_HEARTBEAT`] (a lease of 300 ms).
pub(crate) async fn register_short_lease(store: &Arc<dyn JobStore>, id: &str) -> ExecutorId {
    let reg = registration(id, 8000, 8192, &["GPU-a0", "GPU-a1"])
        .with_heartbeat_interval(SHORT_HEARTBEAT);
    store
        .register_executor(&reg)
        .await
        .unwrap_or_else(|e| panic!("register of {id} failed: {e}"));
    reg.id
}

/// Sleeps until a lease of [`SHORT_HEARTBEAT`] renewed before the call has run out.
pub(crate) async fn outlive_short_lease() {
    tokio::time::sleep(SHORT_HEARTBEAT * crate::executor::LEASE_INTERVALS + SHORT_HEARTBEAT).await;
}

/// The store's clock now.
pub(crate) async fn store_now(store: &Arc<dyn JobStore>) -> Timestamp {
    store.now().await.expect("now")
}

/// How far a caller's reading of the store's clock may be off the clock itself: the
/// latency of reading it (a store may carry one reading forward between readings).
pub(crate) const CLOCK_READ_SLACK: Duration = Duration::from_millis(5);

/// Asserts that `stamp` was taken from the store's clock between `before` (read from it
/// earlier) and now, give or take [`CLOCK_READ_SLACK`].
pub(crate) async fn assert_stamped(
    store: &Arc<dyn JobStore>,
    what: &str,
    stamp: Option<Timestamp>,
    before: Timestamp,
) {
    let after = store_now(store).await.plus(CLOCK_READ_SLACK);
    let before = before.minus(CLOCK_READ_SLACK);
    let stamp = stamp.unwrap_or_else(|| panic!("{what}: not stamped"));
    assert!(
        before <= stamp && stamp <= after,
        "{what}: {stamp:?} is not the store's time between {before:?} and {after:?}"
    );
}

/// An assignment of `job` to `executor` naming `gpus`.
pub(crate) fn assignment(job: JobId, executor: &ExecutorId, gpus: &[&str]) -> Assignment {
    Assignment::new(
        job,
        executor.clone(),
        gpus.iter().map(|g| (*g).to_owned()).collect(),
    )
}

/// Commits an assignment that must succeed, as the scheduler does (with a snapshot of the
/// pending job), and takes its `Assigned` event off the queue.
pub(crate) async fn assign(
    store: &Arc<dyn JobStore>,
    job: JobId,
    executor: &ExecutorId,
    gpus: &[&str],
) -> Job {
    assign_with(store, job, executor, gpus, Quota::NONE).await
}

/// Runs job `id` on `exec` (assigned, then running) and ends it with `outcome`.
pub(crate) async fn run_and_end(
    store: &Arc<dyn JobStore>,
    id: JobId,
    exec: &ExecutorId,
    outcome: crate::job::Outcome,
) {
    let attempt = assign(store, id, exec, &[]).await.attempt;
    store
        .mark_running(id, exec, attempt)
        .await
        .expect("running");
    store
        .finish(id, &outcome, Some(attempt))
        .await
        .expect("finish");
}

/// [`assign`] under the quota of the job's queue.
pub(crate) async fn assign_with(
    store: &Arc<dyn JobStore>,
    job: JobId,
    executor: &ExecutorId,
    gpus: &[&str],
    quota: Quota,
) -> Job {
    let mut proposal = assignment(job, executor, gpus);
    proposal.quota = quota;
    proposal.snapshot = store.job(job).await.ok().map(Arc::new);
    let committed = store
        .commit_assignment(&proposal)
        .await
        .unwrap_or_else(|e| panic!("commit of {job} to {executor} failed: {e}"));
    drain_events(store, executor).await;
    committed
}

/// Takes every queued event of `executor` off its queue.
pub(crate) async fn drain_events(store: &Arc<dyn JobStore>, executor: &ExecutorId) {
    while store
        .next_event(executor, Duration::ZERO)
        .await
        .expect("next_event")
        .is_some()
    {}
}

/// The job, which must exist.
pub(crate) async fn job(store: &Arc<dyn JobStore>, id: JobId) -> Job {
    store
        .job(id)
        .await
        .unwrap_or_else(|e| panic!("job {id}: {e}"))
}

/// The executor, which must be registered.
pub(crate) async fn executor(store: &Arc<dyn JobStore>, id: &ExecutorId) -> Executor {
    store
        .executor(id)
        .await
        .unwrap_or_else(|e| panic!("executor {id}: {e}"))
}

/// Asserts `result` is `Rejected` for `job` on `executor` with a reason `check` accepts.
pub(crate) fn assert_rejected<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    what: &str,
    check: impl Fn(&Rejection) -> bool,
) {
    match result {
        Err(StoreError::Rejected { reason, .. }) if check(&reason) => {}
        other => panic!("{what}: expected a matching rejection, got {other:?}"),
    }
}

/// Asserts that a refused commit of `job` to `exec` changed nothing visible: the job, the
/// executor (when registered) and its event queue are as before.
pub(crate) async fn assert_unchanged(
    store: &Arc<dyn JobStore>,
    what: &str,
    before_job: &Job,
    before_executor: Option<&Executor>,
) {
    assert_eq!(
        &job(store, before_job.id).await,
        before_job,
        "{what}: the job changed"
    );
    if let Some(before) = before_executor {
        let now = executor(store, before.id()).await;
        assert_eq!(&now, before, "{what}: the executor changed");
        let event = store
            .next_event(before.id(), Duration::ZERO)
            .await
            .expect("next_event");
        assert_eq!(event, None, "{what}: an event was queued");
    }
}
