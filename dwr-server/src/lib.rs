//! dwr-server: the pieces of the `dwr` binary as a library: the HTTP API, the JSON wire
//! types, configuration and the services (`scheduler`, `executor`, `dev`).

pub mod api;
pub mod client;
pub mod wire;

pub use api::{app, ApiConfig, ApiDoc, ApiError, AppState};
