//! `dwr bench` and `dwr simulate`: the load tool and the scale simulation.
//!
//! `dwr bench` runs the real scheduler and N executor agents in this process over a real
//! store (in-memory or Redis) with the fake runtime or Docker, submits jobs through the
//! same call the API makes ([`Scheduler::submit`](dwr_core::Scheduler::submit)), and prints
//! latency percentiles, throughput, memory and (with Redis) commands per job. Its last line
//! is one JSON object with the figures.
//!
//! `dwr simulate` registers many executors and queues many jobs on the in-memory store and
//! times scheduling passes as the queue grows.

mod load;
mod simulate;
mod stats;
mod submit;

pub use load::{run_bench, BenchArgs, BenchReport, RuntimeKind, StoreKind};
pub use simulate::{run_simulation, HeartbeatCost, SimulateArgs, SimulationReport, SimulationStep};
pub use submit::{run_submit_bench, SubmitReport};

/// The store configuration of a tool's run on the Redis at `url`: a key prefix of its own,
/// unique per run and short (every key the store touches carries it, and a long one costs
/// Redis hashing and comparing that the default prefix does not).
fn fresh_redis_config(url: &str, tool: &str) -> dwr_redis::RedisConfig {
    dwr_redis::RedisConfig {
        url: Some(url.to_owned()),
        key_prefix: format!("{tool}-{}:", &dwr_core::JobId::new().to_string()[..8]),
        ..dwr_redis::RedisConfig::default()
    }
}

/// Why a load run or a simulation could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The store failed.
    #[error("store error")]
    Store(#[source] dwr_core::StoreError),
    /// Redis could not be reached.
    #[error("cannot connect to Redis")]
    Redis(#[source] dwr_redis::Error),
    /// Docker is not configured properly.
    #[error("bad Docker configuration")]
    DockerConfig(#[source] dwr_docker::Error),
    /// Docker failed.
    #[error("Docker error")]
    Docker(#[source] dwr_core::RuntimeError),
    /// The run did not complete.
    #[error("{0}")]
    Stalled(String),
    /// The settings asked for are refused.
    #[error("bad settings: {0}")]
    Config(String),
}
