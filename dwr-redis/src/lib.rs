//! dwr-redis: [`RedisJobStore`], the dwr [`JobStore`](dwr_core::JobStore) over Redis.
//!
//! (Crate docs with the key table and round-trip figures follow.)

mod codec;
mod config;
mod error;
mod job_store;
pub mod keys;
mod scripts;
mod server_info;
mod store;
mod wait;

pub use config::{RedisConfig, DEFAULT_LOG_MAX_LINES, DEFAULT_LOG_TTL};
pub use error::Error;
pub use keys::Keys;
pub use store::RedisJobStore;
