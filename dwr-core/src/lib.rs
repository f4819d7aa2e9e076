//! dwr-core: the model, the traits and the logic of dwr, with no I/O of its own.
//!
//! * The model: [`JobSpec`] (validated here), [`Job`] and its [`JobState`] machine,
//!   [`Executor`] and the [`Resources`] arithmetic.
//! * The traits every adapter implements: [`JobStore`], [`ContainerRuntime`], [`GpuProbe`]
//!   (plus [`HostProbe`]) and the pure [`Placement`].
//! * The logic written against them: the scheduler and the executor agent.
//! * Real in-memory and fake implementations that tests, benchmarks and the embedded mode
//!   share.

pub mod agent;
pub mod arrays;
pub mod changes;
pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod deps;
pub mod error;
pub mod executor;
pub mod fake;
pub mod ids;
pub mod job;
pub mod memory;
pub mod placement;
pub mod probe;
pub mod queues;
pub mod resources;
pub mod retry;
pub mod runtime;
pub mod scheduler;
pub mod spec;
pub mod store;
pub mod time;
pub mod units;

pub use agent::{AgentConfig, AgentError, ExecutorAgent};
pub use arrays::{ArrayInfo, ArraySubmission, ArrayTask, NewArray};
pub use changes::{Change, ChangeFeed, ChangeReceiver, CHANGES_BUFFER};
pub use clock::{Clock, ManualClock, SystemClock};
pub use deps::Dependency;
pub use error::{BoxError, Rejection, RuntimeError, StoreError};
pub use executor::{Executor, ExecutorRegistration, GpuDevice, HostUsage, LEASE_INTERVALS};
pub use fake::{FakeBehaviour, FakeGpuProbe, FakeHostProbe, FakeRuntime};
pub use ids::{ExecutorId, JobId, MalformedJobId};
pub use job::{AbortCause, IllegalTransition, Job, JobState, Outcome, UnknownJobState};
pub use memory::InMemoryJobStore;
pub use placement::{ClusterView, Explanation, FirstFit, Placement, Spread};
pub use probe::{GpuProbe, HostProbe};
pub use queues::{QueueConfig, QueueUsage, Queues, Quota, DEFAULT_QUEUE};
pub use resources::{Dimension, Resources};
pub use retry::{AttemptRecord, RetryCause, RetryPolicy};
pub use runtime::{
    ContainerId, ContainerRuntime, ContainerRuntimeExt, ContainerSpec, ContainerUsage, ExitStatus,
    LogLine, LogSource, OwnedContainer, ProgressSink,
};
pub use scheduler::{
    PassReport, PendingReason, Placed, Retention, Scheduler, SchedulerConfig, SchedulerMetrics,
    SubmitError,
};
pub use spec::{GpuModel, GpuRequest, JobSpec, SpecError, SpecField, VolumeMount};
pub use store::{
    log_cap_marker, AbortRequested, Assignment, ExecutorEvent, Expiry, Finished, JobQuery,
    JobStore, Queued, Submission, DEFAULT_LOG_MAX_BYTES, IDEMPOTENCY_TTL, MAX_LOG_LINE_BYTES,
};
pub use time::Timestamp;
