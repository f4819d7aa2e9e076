//! [`AgentConfig`]: who the executor is and how it paces itself, and [`AgentError`].

use std::time::Duration;

use crate::error::{RuntimeError, StoreError};
use crate::ids::ExecutorId;

/// Default interval between heartbeats (`HEARTBEAT_INTERVAL`).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Default longest wait for an event before the fallback check (`JOB_POLL_INTERVAL`).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// Default grace period between SIGTERM and SIGKILL when stopping a container.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Default largest number of log lines sent to the store in one append.
pub const DEFAULT_LOG_BATCH_MAX: usize = 500;
/// Default largest number of log bytes sent to the store in one append: with lines of up
/// to 16 KiB, a batch by count alone would be 8 MiB, held several times over on its way.
pub const DEFAULT_LOG_BATCH_MAX_BYTES: usize = 1024 * 1024;
/// Default longest time a log line waits in the agent before it is sent.
pub const DEFAULT_LOG_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Default time a store operation of a job is retried while the store is unavailable.
pub const DEFAULT_STORE_RETRY_FOR: Duration = Duration::from_secs(60);

/// Configuration of an [`ExecutorAgent`](super::ExecutorAgent).
///
/// Build it with [`AgentConfig::new`] and adjust the public fields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The executor's id (`EXECUTOR_ID`, defaults to its IP).
    pub id: ExecutorId,
    /// The IP reported as the jobs' `executor_ip` and passed as `EXECUTOR_IP`.
    pub ip: String,
    /// Its region, if any.
    pub region: Option<String>,
    /// Its datacenter, if any.
    pub datacenter: Option<String>,
    /// CPU millicores to offer instead of what the host probe says (several executors on
    /// one host each offer a share).
    pub cpu_millis: Option<u64>,
    /// Memory MiB to offer instead of what the host probe says.
    pub memory_mib: Option<u64>,
    /// Interval between heartbeats.
    pub heartbeat_interval: Duration,
    /// Longest wait for an event before the agent re-reads its jobs from the store (to
    /// honour an event that was lost); not the latency of an assignment, which wakes it at
    /// once.
    pub poll_interval: Duration,
    /// Time between SIGTERM and SIGKILL when stopping a container.
    pub stop_grace: Duration,
    /// Most log lines sent in one append.
    pub log_batch_max: usize,
    /// Most log bytes sent in one append (a line is never split for it).
    pub log_batch_max_bytes: usize,
    /// Longest time a log line waits before it is sent.
    pub log_flush_interval: Duration,
    /// How long a store operation of a job is retried, with backoff, while the store is
    /// unavailable. An outcome still unrecorded after that is kept and retried at each
    /// fallback check until the store takes it.
    pub store_retry_for: Duration,
    /// On shutdown, stop the running containers and fail their jobs ("executor shut down"),
    /// then deregister. Off by default: the containers keep running and a restarted agent
    /// with the same id re-attaches to them.
    pub drain_on_shutdown: bool,
}

impl AgentConfig {
    /// A configuration with the defaults: capacity from the host probe, no region or
    /// datacenter, heartbeat every 30 s, fallback poll every 10 s, 10 s stop grace, logs in
    /// batches of at most 500 lines or 100 ms, store retries for 60 s, no drain on shutdown.
    pub fn new(id: ExecutorId, ip: impl Into<String>) -> Self {
        Self {
            id,
            ip: ip.into(),
            region: None,
            datacenter: None,
            cpu_millis: None,
            memory_mib: None,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            poll_interval: DEFAULT_POLL_INTERVAL,
            stop_grace: DEFAULT_STOP_GRACE,
            log_batch_max: DEFAULT_LOG_BATCH_MAX,
            log_batch_max_bytes: DEFAULT_LOG_BATCH_MAX_BYTES,
            log_flush_interval: DEFAULT_LOG_FLUSH_INTERVAL,
            store_retry_for: DEFAULT_STORE_RETRY_FOR,
            drain_on_shutdown: false,
        }
    }
}

/// Errors that stop an [`ExecutorAgent`](super::ExecutorAgent). Failures of single jobs are
/// not errors of the agent: they end in the job's terminal state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The executor could not register with the store.
    #[error("executor {executor} could not register")]
    RegistrationFailed {
        /// The executor.
        executor: ExecutorId,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The containers of the executor could not be listed at start-up (the container
    /// engine is unreachable).
    #[error("executor {executor} could not list its containers")]
    ListContainersFailed {
        /// The executor.
        executor: ExecutorId,
        /// The cause.
        #[source]
        source: RuntimeError,
    },
    /// The store could not be read while reconciling at start-up.
    #[error("executor {executor} could not read its jobs while reconciling")]
    ReconcileFailed {
        /// The executor.
        executor: ExecutorId,
        /// The cause.
        #[source]
        source: StoreError,
    },
}
