//! dwr-server: the pieces of the `dwr` binary as a library.
//!
//! * [`api`]: the HTTP API ([`app`] builds the router over an [`AppState`]).
//! * [`ui`]: the web dashboard at `/ui`, served by the same router.
//! * [`config`]: flags and environment variables of the services.
//! * [`service`]: `dwr scheduler`, `dwr executor` and `dwr dev` as library functions.
//! * [`client`]: the client commands (`dwr submit`, `dwr jobs`, …) over HTTP.

pub mod api;
pub mod bench;
pub mod client;
pub mod config;
pub mod http;
pub mod logging;
pub mod queues_file;
pub mod service;
pub mod ui;

pub use api::{app, ApiConfig, ApiDoc, ApiError, AppState};
pub use service::{
    run_dev, run_executor, run_scheduler, serve, shutdown_signal, DevArgs, ExecutorArgs,
    SchedulerArgs, ServiceError,
};
