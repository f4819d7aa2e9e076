//! dwr-client: the HTTP API of a dwr server, typed.
//!
//! * [`wire`]: the API's JSON types ([`JobRequest`], [`JobView`], [`ExecutorsResponse`], …),
//!   shared with the server, which serializes the same types it documents.
//! * [`Client`]: one async method per endpoint, errors that say which step failed
//!   ([`Error`]), and [`Client::follow`] / [`Client::wait`] to see a job to its end.
//!
//! None of the server's machinery (axum, redis, bollard) is among its dependencies: a
//! program that only submits jobs adds this crate (or `dwr` with the `client` feature).

mod client;
mod error;
mod follow;
pub mod wire;

pub use client::{to_pretty_json, Client, JobsQuery, DEFAULT_URL};
pub use error::Error;
pub use wire::*;
