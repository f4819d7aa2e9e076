//! The [`ContainerRuntime`] trait: what an executor needs from a container engine.

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::RuntimeError;
use crate::ids::{ExecutorId, JobId};
use crate::spec::VolumeMount;
use crate::store::MAX_LOG_LINE_BYTES;

/// Label carrying the job id on every container dwr starts.
pub const LABEL_JOB_ID: &str = "dwr.job_id";
/// Label carrying the executor id on every container dwr starts.
pub const LABEL_EXECUTOR: &str = "dwr.executor";
/// Label carrying the job's attempt a container runs.
pub const LABEL_ATTEMPT: &str = "dwr.attempt";

/// The engine's id of a container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContainerId(pub String);

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything needed to create and start a job's container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The job.
    pub job: JobId,
    /// The job's attempt this container runs (goes into the name, so that two attempts on
    /// one engine never collide, and the `dwr.attempt` label).
    #[serde(default)]
    pub attempt: u32,
    /// The executor starting it (goes into the labels).
    pub executor: ExecutorId,
    /// The executor's IP (goes into `EXECUTOR_IP`).
    pub executor_ip: String,
    /// Image reference.
    pub image: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// The job's own environment; the runtime adds `JOB_ID` and `EXECUTOR_IP`.
    pub env: BTreeMap<String, String>,
    /// CPU limit in millicores.
    pub cpu_millis: u64,
    /// Memory limit in MiB (swap equal to it: no swap beyond the limit).
    pub memory_mib: u64,
    /// UUIDs of the GPU devices to expose, exactly these.
    pub gpu_ids: Vec<String>,
    /// Host volumes (checked against the runtime's allow-list).
    pub volumes: Vec<VolumeMount>,
    /// The container's root filesystem is mounted read-only.
    #[serde(default)]
    pub read_only_rootfs: bool,
}

/// Which output stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of container output, without its newline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// stdout or stderr.
    pub source: LogSource,
    /// The text.
    pub text: String,
}

/// How a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code (137 after SIGKILL).
    pub code: i64,
    /// Whether the kernel OOM-killed it, as the engine reports (not guessed from 137).
    pub oom_killed: bool,
}

/// Observed usage of a running container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerUsage {
    /// CPU use in percent of one core (200 = two cores busy).
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
}

/// A container labelled as belonging to an executor, found by [`ContainerRuntime::list_owned`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedContainer {
    /// The container.
    pub id: ContainerId,
    /// The job from its label.
    pub job: JobId,
    /// Whether it is still running.
    pub running: bool,
    /// Whether it was ever started: false for a container created and never started (its
    /// agent stopped between the two, before the store confirmed the attempt).
    #[serde(default = "started_default")]
    pub started: bool,
}

fn started_default() -> bool {
    true
}

/// Where pull progress lines go (into the job's log).
pub type ProgressSink = UnboundedSender<String>;

/// How many bytes of `line` (the rest of a line, without its newline) make its next piece:
/// all of it when it fits in [`MAX_LOG_LINE_BYTES`], else at most that many, moved back to
/// the start of a UTF-8 character (at most 3 bytes back) so that no character is cut in two.
/// Bytes that are not UTF-8 are cut at the limit. Never 0 for a non-empty `line`.
pub fn log_piece_len(line: &[u8]) -> usize {
    if line.len() <= MAX_LOG_LINE_BYTES {
        return line.len();
    }
    let is_continuation = |b: u8| b & 0b1100_0000 == 0b1000_0000;
    (MAX_LOG_LINE_BYTES - 3..=MAX_LOG_LINE_BYTES)
        .rev()
        .find(|&cut| !is_continuation(line[cut]))
        .unwrap_or(MAX_LOG_LINE_BYTES)
}

/// A container engine as an executor uses it.
///
/// # Contract
///
/// * `ensure_image` pulls only when the image is missing locally, sending progress lines
///   to `progress`; an image that cannot be had is `ImageUnavailable`, a pull without
///   progress for too long is `PullStalled`.
/// * `create` creates the container with every limit of the spec applied, labels
///   `dwr.job_id` and `dwr.executor`, never privileged, and does not start it. The agent
///   starts it with `start` only once the store has confirmed that the job's attempt is its
///   own (`mark_running`), so that no path can run a job's container twice.
/// * `start` starts a created container. Starting a container a second time is an error
///   (`StartFailed`), never a second run: at most one start per container.
/// * `logs` streams stdout and stderr lines, in order per stream, from the start of the
///   container, ending when the container exits. A line longer than
///   [`MAX_LOG_LINE_BYTES`] arrives as several lines of at most that many bytes, cut where
///   [`log_piece_len`] says, that concatenate back to it: no line is ever held whole.
/// * `wait` returns when the container has exited (at once if it already has).
/// * `stop` sends SIGTERM, waits up to `grace`, then kills; stopping an exited container
///   is not an error. `remove` of a missing container is not an error (idempotent).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait ContainerRuntime: Debug + Send + Sync + 'static {
    /// Makes sure `image` is present locally, pulling it if missing.
    async fn ensure_image(&self, image: &str, progress: ProgressSink) -> Result<(), RuntimeError>;

    /// Creates the container of a job, without starting it.
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError>;

    /// Starts a created container (`job` is the job it runs, for the error). Fails with
    /// `StartFailed` when it cannot start, or was started before.
    async fn start(&self, id: &ContainerId, job: JobId) -> Result<(), RuntimeError>;

    /// The container's output lines, following until it exits.
    fn logs(&self, id: &ContainerId) -> BoxStream<'static, Result<LogLine, RuntimeError>>;

    /// One usage sample.
    async fn usage(&self, id: &ContainerId) -> Result<ContainerUsage, RuntimeError>;

    /// Waits for the container to exit.
    async fn wait(&self, id: &ContainerId) -> Result<ExitStatus, RuntimeError>;

    /// Stops with a grace period, then kills.
    async fn stop(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError>;

    /// Removes the container (idempotent).
    async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    /// Containers labelled as `executor`'s, running or not.
    async fn list_owned(&self, executor: &ExecutorId) -> Result<Vec<OwnedContainer>, RuntimeError>;
}

/// Conveniences over any [`ContainerRuntime`].
#[async_trait]
pub trait ContainerRuntimeExt: ContainerRuntime {
    /// Creates and starts the container of `spec` in one go, removing it when the start
    /// fails. For tests and tools with no store to confirm an attempt with: the agent never
    /// uses it (it starts a container only after the store confirmed the attempt).
    async fn create_and_start(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let id = self.create(spec).await?;
        if let Err(error) = self.start(&id, spec.job).await {
            let _ = self.remove(&id).await;
            return Err(error);
        }
        Ok(id)
    }
}

impl<T: ContainerRuntime + ?Sized> ContainerRuntimeExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_fits_is_one_piece() {
        assert_eq!(log_piece_len(b""), 0);
        assert_eq!(log_piece_len(b"short"), 5);
        let full = vec![b'a'; MAX_LOG_LINE_BYTES];
        assert_eq!(log_piece_len(&full), MAX_LOG_LINE_BYTES);
    }

    #[test]
    fn a_long_line_is_cut_at_the_limit_on_a_character_boundary() {
        let ascii = vec![b'a'; MAX_LOG_LINE_BYTES + 1];
        assert_eq!(log_piece_len(&ascii), MAX_LOG_LINE_BYTES);
        // A 4-byte character straddling the limit is left whole for the next piece.
        let mut text = "a".repeat(MAX_LOG_LINE_BYTES - 2);
        text.push('😀');
        text.push_str("tail");
        let cut = log_piece_len(text.as_bytes());
        assert_eq!(cut, MAX_LOG_LINE_BYTES - 2);
        assert!(text.is_char_boundary(cut));
        // Bytes that are not UTF-8 are cut at the limit.
        let junk = vec![0x80; MAX_LOG_LINE_BYTES + 10];
        assert_eq!(log_piece_len(&junk), MAX_LOG_LINE_BYTES);
    }
}
