//! dwr-docker: the executor host's adapters — containers through Docker, GPUs through NVML,
//! CPU and memory through sysinfo.
//!
//! * [`DockerRuntime`] implements [`dwr_core::ContainerRuntime`] over a Docker engine
//!   (bollard). It connects through `DOCKER_HOST` or the default socket and negotiates the API
//!   version, so older engines (Docker 20.10, API 1.41) work. Every job container gets:
//!   - `NanoCpus` from the CPU request, `Memory` and `MemorySwap` equal (no swap beyond the
//!     limit), a pids limit ([`DockerConfig::pids_limit`], 4096 by default), never privileged,
//!     the configured network mode;
//!   - Docker's init (`init: true`, tini) as PID 1: it forwards SIGTERM to the job and reaps
//!     zombies. Without it the job is PID 1, which the kernel shields from every signal it
//!     has no handler for, so a stop of `sleep 600` waited out the whole grace (10 s) and
//!     ended in SIGKILL; with it the job ends at once (exit 143 when it dies of SIGTERM);
//!   - `no-new-privileges` ([`SECURITY_OPTIONS`]), the capabilities `NET_RAW` and `MKNOD`
//!     dropped ([`DROPPED_CAPABILITIES`]), the user [`DockerConfig::container_user`] when set
//!     (else the image's), and a read-only root filesystem when the job asks for one
//!     (`read_only_rootfs`; volumes keep their own mode);
//!   - the `json-file` log driver rotated at [`DockerConfig::log_max_size`] (10 MiB) keeping
//!     [`DockerConfig::log_max_files`] (3) files, so a job's output on the executor's disk is
//!     bounded whatever the engine's default driver is;
//!   - env `JOB_ID`, `EXECUTOR_IP` and the job's own variables; the job cannot override
//!     `JOB_ID`, `EXECUTOR_IP` or `NVIDIA_VISIBLE_DEVICES` (its values are dropped with a
//!     warning), so a job cannot pose as another or widen its GPUs;
//!   - labels `dwr.job_id` and `dwr.executor` (filter `docker ps` by them), name
//!     `dwr-<job id>`;
//!   - for GPU jobs, one device request (driver `nvidia`, capabilities `[["gpu"]]`) naming
//!     exactly the assigned UUIDs, and `NVIDIA_VISIBLE_DEVICES` set to the same list; a job
//!     without GPUs gets `NVIDIA_VISIBLE_DEVICES=void`, which overrides CUDA base images'
//!     `all`;
//!   - host volumes only when the canonical host path lies under an entry of
//!     [`DockerConfig::volume_allowlist`] (empty by default: every host mount is refused with
//!     `RuntimeError::VolumeRefused`). The canonical path is what gets mounted.
//!
//!   Images are pulled only when missing (or before every job with
//!   [`PullPolicy::Always`]); a pull that goes [`DockerConfig::pull_stall_timeout`]
//!   without a message fails with `PullStalled`. Output is streamed as lines per stream; a
//!   line longer than [`dwr_core::MAX_LOG_LINE_BYTES`] (16 KiB) arrives in pieces of at most
//!   that size, so the agent never holds an unbounded line.
//!   `wait` reads the exit code and `OOMKilled` from the engine's state. Two engine limits
//!   (seen on Docker 20.10 with containerd 1.6) are worth knowing:
//!   - the engine learns of OOM kills from containerd's cgroup watcher, armed just after the
//!     container starts: a job killed for memory in its first milliseconds may be reported
//!     as exit 137 without `oom_killed` (real jobs take longer than that to fill their limit);
//!     and with many containers starting and stopping around it, the engine now and then
//!     loses the event altogether (`tests/oom.rs` runs alone for that reason);
//!   - a follow stream of the logs can end without the container's last message when it
//!     has no trailing newline; [`DockerRuntime`] re-reads the end of the log when the stream
//!     ends and emits what was missed, so no output is lost.
//! * [`NvmlGpuProbe`] implements [`dwr_core::GpuProbe`]: NVML is loaded at run time, and a host
//!   without the NVIDIA driver has no GPUs (one log line says so), never an error.
//! * [`SysinfoHostProbe`] implements [`dwr_core::HostProbe`]: cores × 1000 millicores, total
//!   memory, and usage for heartbeats.
//!
//! `cargo run -p dwr-docker --example probe` prints what the probes see on a host.
//!
//! # Configuration
//!
//! [`DockerConfig::from_env`] reads `DOCKER_HOST`, `DWR_DOCKER_NETWORK` (default `default`:
//! the engine's own), `DWR_VOLUME_ALLOW` (comma-separated absolute paths),
//! `DWR_PIDS_LIMIT` (`0`: none), `DWR_PULL_STALL_TIMEOUT_SECS` (120), `DWR_PULL_POLICY`
//! (`missing` or `always`; default `missing`),
//! `DWR_DOCKER_TIMEOUT_SECS` (120), `DWR_CONTAINER_USER`
//! (`uid[:gid]` or a name; default: the image's user), `DWR_CONTAINER_LOG_MAX_SIZE` (`10m`)
//! and `DWR_CONTAINER_LOG_MAX_FILES` (3).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use dwr_docker::{DockerConfig, DockerRuntime};
//! let runtime = DockerRuntime::connect(DockerConfig::from_env()?).await?;
//! println!("{:?}", runtime.engine_version().await?);
//! # Ok(()) }
//! ```
//!
//! # Probe output on a GPU machine
//!
//! Not yet recorded: the output of `cargo run -p dwr-docker --example probe` on a host with an
//! NVIDIA GPU and driver has not been captured yet.

mod config;
mod create;
mod error;
mod gpu;
mod host;
mod image;
mod logs;
mod runtime;
mod stats;

pub use config::{
    parse_allowed_path, parse_container_user, parse_log_max_files, parse_log_max_size,
    parse_pids_limit, parse_pull_stall_timeout, parse_request_timeout, DockerConfig, PullPolicy,
    DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE, DEFAULT_SOCKET, ENV_CONTAINER_USER,
    ENV_DOCKER_HOST, ENV_LOG_MAX_FILES, ENV_LOG_MAX_SIZE, ENV_NETWORK, ENV_PIDS_LIMIT,
    ENV_PULL_POLICY, ENV_PULL_STALL_TIMEOUT, ENV_REQUEST_TIMEOUT, ENV_VOLUME_ALLOW,
};
pub use create::{DROPPED_CAPABILITIES, LOG_DRIVER, NO_GPUS, RESERVED_ENV, SECURITY_OPTIONS};
pub use error::Error;
pub use gpu::NvmlGpuProbe;
pub use host::SysinfoHostProbe;
pub use runtime::{DockerRuntime, EngineVersion};
