//! The scheduler and an executor agent embedded in one process over a real Redis: what
//! `examples/embedded.rs` does on the in-memory store, with `dwr::redis::RedisJobStore`
//! (feature `redis`). Any number of such processes, and `dwr scheduler` / `dwr executor`,
//! can share the Redis. The containers are still the fake runtime's; with the `docker`
//! feature, `dwr::docker::DockerRuntime::connect` gives real ones.
//!
//! ```text
//! redis-server --port 6379 &
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example embedded_redis
//! ```
//!
//! Its keys carry a fresh prefix, deleted at the end. `tests/examples.rs` runs it against a
//! private `redis-server`.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use dwr::redis::{RedisConfig, RedisJobStore};
use dwr::{JobId, JobStore};

#[path = "embedded.rs"]
#[allow(dead_code)] // its `main` is not called here
pub mod embedded;

/// Runs the demo jobs of `examples/embedded.rs` over the Redis at `url`, under a key prefix of
/// its own, then deletes what it stored.
pub async fn run_on_redis(url: &str) -> Result<Vec<embedded::Ended>, Box<dyn Error + Send + Sync>> {
    let config = RedisConfig {
        url: Some(url.to_owned()),
        key_prefix: format!("dwr-example-{}:", &JobId::new().to_string()[..8]),
        ..RedisConfig::default()
    };
    let store = Arc::new(RedisJobStore::connect(config).await?);
    let ended = embedded::run_demo_on(
        store.clone(),
        embedded::demo_jobs(),
        Duration::from_secs(30),
    )
    .await;
    // Every demo job is terminal by now (or the run failed): nothing of it is kept.
    store.purge_finished(Duration::ZERO).await?;
    ended
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    for embedded::Ended { job, logs } in run_on_redis(&url).await? {
        println!(
            "{}  {:<9}  {}  {}",
            job.id,
            job.state.to_string(),
            job.spec.command.join(" "),
            logs.last().map(String::as_str).unwrap_or("")
        );
    }
    Ok(())
}
