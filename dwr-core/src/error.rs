//! The errors of the core crate: store errors and container-runtime errors.

use std::error::Error as StdError;

use crate::ids::{ExecutorId, JobId};
use crate::job::JobState;
use crate::resources::Dimension;

/// A boxed cause kept as `#[source]`.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a store refused to commit an assignment. Not a failure of the store: the scheduler
/// refreshes its view and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The job is no longer pending (another scheduler took it, or it was aborted).
    #[error("job is {state}, not pending")]
    JobNotPending {
        /// Its state now.
        state: JobState,
    },
    /// The executor is not registered (expired or never joined).
    #[error("executor is not registered")]
    ExecutorGone,
    /// The executor's heartbeat is older than the liveness TTL.
    #[error("executor is not alive")]
    ExecutorNotAlive,
    /// The executor has no room left on a dimension.
    #[error("executor has no room for the job's {dimension:?}")]
    NoRoom {
        /// The dimension that is short.
        dimension: Dimension,
    },
    /// A named GPU is held by another job, or is not on the executor.
    #[error("GPU {uuid} is not free on the executor")]
    GpuUnavailable {
        /// The device.
        uuid: String,
    },
    /// The job would take its queue past its quota on a dimension.
    #[error("the job would take queue {queue} past its {dimension:?} quota")]
    QuotaReached {
        /// The queue.
        queue: String,
        /// The dimension.
        dimension: Dimension,
    },
    /// The job is a task of an array with as many tasks under way as its parallelism.
    #[error("array {array} has as many tasks under way as its parallelism")]
    ArrayAtParallelism {
        /// The array.
        array: JobId,
    },
    /// The job waits for its dependencies.
    #[error("the job waits for its dependencies")]
    DependenciesNotMet,
    /// The number of GPUs named differs from the job's request.
    #[error("assignment names {given} GPUs, job wants {wanted}")]
    GpuCountMismatch {
        /// Named in the assignment.
        given: usize,
        /// Requested by the job.
        wanted: u32,
    },
}

/// Errors of a [`JobStore`](crate::store::JobStore).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No job has this id.
    #[error("job {id} not found")]
    JobNotFound {
        /// The id.
        id: JobId,
    },
    /// A job with this id exists already.
    #[error("job {id} already exists")]
    JobExists {
        /// The id.
        id: JobId,
    },
    /// A job names a dependency that does not exist; nothing was stored.
    #[error("depends_on is invalid: job {id} does not exist")]
    UnknownDependency {
        /// The id named.
        id: JobId,
    },
    /// No executor has this id.
    #[error("executor {id} not found")]
    ExecutorNotFound {
        /// The id.
        id: ExecutorId,
    },
    /// The job is terminal; nothing more can happen to it.
    #[error("job {id} is already {state}")]
    AlreadyTerminal {
        /// The job.
        id: JobId,
        /// Its terminal state.
        state: JobState,
    },
    /// The transition is not allowed from the job's current state, or by this executor.
    #[error("job {id} is {state}: cannot {action}")]
    InvalidTransition {
        /// The job.
        id: JobId,
        /// Its state.
        state: JobState,
        /// What was attempted.
        action: &'static str,
    },
    /// An executor wrote about an attempt of the job that is no longer current: the job was
    /// assigned again since, or it ended (its executor was lost, it was aborted). The write
    /// changed nothing; the executor must stop that attempt's container.
    #[error("job {id}: attempt {attempt} is stale (the job is {state}, attempt {current})")]
    StaleAttempt {
        /// The job.
        id: JobId,
        /// The attempt the write named.
        attempt: u32,
        /// The job's current attempt.
        current: u32,
        /// The job's state.
        state: JobState,
    },
    /// The store refused an assignment; see [`Rejection`].
    #[error("assignment of job {job} to {executor} rejected: {reason}")]
    Rejected {
        /// The job.
        job: JobId,
        /// The executor.
        executor: ExecutorId,
        /// Why.
        reason: Rejection,
    },
    /// The backend could not be reached or the connection broke mid-operation. Nothing was
    /// applied, or the whole operation was (transitions are atomic); retry is safe for
    /// idempotent operations.
    #[error("store unavailable during {operation}")]
    Unavailable {
        /// The operation.
        operation: &'static str,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The backend answered with data this version cannot read.
    #[error("corrupt data for {what}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

/// Errors of a [`ContainerRuntime`](crate::runtime::ContainerRuntime).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The container engine cannot be reached.
    #[error("container engine unreachable at {endpoint}")]
    Unreachable {
        /// Where it was looked for (socket path or URL).
        endpoint: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The image is not present and could not be pulled.
    #[error("image {image} unavailable: {reason}")]
    ImageUnavailable {
        /// The image.
        image: String,
        /// Why.
        reason: String,
    },
    /// A pull made no progress for too long.
    #[error("pull of {image} stalled: no progress for {seconds} s")]
    PullStalled {
        /// The image.
        image: String,
        /// How long it stalled.
        seconds: u64,
    },
    /// A host volume outside the executor's allow-list.
    #[error("volume {host_path} refused: not under the executor's allowed host paths")]
    VolumeRefused {
        /// The host path.
        host_path: String,
    },
    /// The container could not be created.
    #[error("creating the container of job {job} failed")]
    CreateFailed {
        /// The job.
        job: JobId,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The container was created but could not be started.
    #[error("starting the container of job {job} failed")]
    StartFailed {
        /// The job.
        job: JobId,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// No such container.
    #[error("container {id} not found")]
    ContainerNotFound {
        /// The container id.
        id: String,
    },
    /// Another engine operation failed.
    #[error("{operation} failed")]
    Engine {
        /// The operation.
        operation: &'static str,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

impl RuntimeError {
    /// A short text for a job's `reason`, with the first cause when there is one.
    pub fn job_reason(&self) -> String {
        match StdError::source(self) {
            Some(cause) => format!("{self}: {cause}"),
            None => self.to_string(),
        }
    }
}
