//! dwr: a distributed workload runner, as a library.
//!
//! This is the crate to depend on to embed dwr in a Rust service. The core is at the top
//! level: the model ([`Job`], [`JobSpec`], [`Executor`]), the traits ([`JobStore`],
//! [`ContainerRuntime`], [`GpuProbe`], [`Placement`]), the [`Scheduler`] and the
//! [`ExecutorAgent`], and the in-memory store and fakes for tests. The adapters a fleet runs
//! on, and the client of a running server, are behind features, all on by default:
//!
//! | feature | module | what |
//! |---|---|---|
//! | `client` | [`client`] | [`client::Client`]: the HTTP API of a dwr server, typed |
//! | `redis` | [`redis`] | [`redis::RedisJobStore`]: the shared store of a cluster |
//! | `docker` | [`docker`] | [`docker::DockerRuntime`], [`docker::NvmlGpuProbe`], [`docker::SysinfoHostProbe`] |
//!
//! ```toml
//! [dependencies]
//! dwr = { version = "0.1", default-features = false, features = ["redis"] }
//! ```
//!
//! `examples/submit.rs` submits a job to a running server and follows it through the client;
//! `examples/embedded.rs` runs a scheduler and an agent in one process on the in-memory
//! store; `examples/embedded_redis.rs` does the same over a real Redis.

pub use dwr_core::*;

/// The HTTP API's JSON types and a typed async client (feature `client`).
#[cfg(feature = "client")]
pub mod client {
    pub use dwr_client::*;
}

/// The Redis job store (feature `redis`): every transition is one Lua script, so any number
/// of schedulers and executors can share one Redis.
#[cfg(feature = "redis")]
pub mod redis {
    pub use dwr_redis::*;
}

/// The Docker container runtime and the host's probes (feature `docker`).
#[cfg(feature = "docker")]
pub mod docker {
    pub use dwr_docker::*;
}
