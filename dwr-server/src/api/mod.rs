//! The HTTP API: [`app`] builds the axum router over an [`AppState`].
//!
//! Tests call `app(state).oneshot(request)` with no socket; the services serve the same
//! router. Every route but `/health` is behind the optional bearer token; every error is
//! JSON `{"error", "detail"}` ([`ApiError`]); bodies are limited in size and requests in
//! time (the follow-logs stream is limited only in the time to its first byte).

pub mod auth;
mod cluster;
mod doc;
mod error;
mod events;
mod jobs;
mod logs;
mod ops;

pub use doc::{openapi, ApiDoc};
pub use error::{parse_json, ApiError, ApiJson};
pub(crate) use events::stream_events;
pub use events::{EventHub, EventParams, EVENTS_KEPT};
pub(crate) use jobs::job_view_now;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use dwr_core::Scheduler;

use crate::http::ConnectionLimits;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

/// Settings of the API itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// When set, every route but `/health` requires `Authorization: Bearer <token>`: this
    /// one (an administrator) or a tenant's.
    pub api_token: Option<String>,
    /// The named tokens of `DWR_TOKENS_FILE`, each with a role.
    pub tenants: Vec<auth::Tenant>,
    /// Largest request body accepted, bytes (413 beyond).
    pub body_limit: usize,
    /// Longest time a request may take before it gets a 503 `timeout`.
    pub request_timeout: Duration,
    /// Connection limits of the server loop.
    pub connections: ConnectionLimits,
    /// Most streams open at once (logs with `follow=true`, and `/events`); one more gets a
    /// 503.
    pub max_log_followers: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            api_token: None,
            tenants: Vec::new(),
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            connections: ConnectionLimits::default(),
            max_log_followers: 256,
        }
    }
}

/// What the handlers share: the scheduler (and through it the store), the API settings,
/// and the start time. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The scheduler; its store is the single source of truth.
    pub scheduler: Scheduler,
    /// The API settings.
    pub config: Arc<ApiConfig>,
    /// When the server started (for uptime).
    pub started: Instant,
    /// Permits for open streams, one each ([`ApiConfig::max_log_followers`]).
    pub followers: Arc<Semaphore>,
    /// The numbered changes `/events` streams (started by the first stream).
    pub events: Arc<EventHub>,
    /// The dashboard's own state.
    pub ui: Arc<crate::ui::UiState>,
}

impl AppState {
    /// State over `scheduler` with `config`, started now.
    pub fn new(scheduler: Scheduler, config: ApiConfig) -> Self {
        Self {
            scheduler,
            followers: Arc::new(Semaphore::new(config.max_log_followers)),
            events: Arc::new(EventHub::default()),
            ui: Arc::new(crate::ui::UiState::default()),
            config: Arc::new(config),
            started: Instant::now(),
        }
    }
}

/// The router of the whole API over `state`.
pub fn app(state: AppState) -> Router {
    let protected = Router::new()
        .route("/jobs", post(jobs::submit_job).get(jobs::list_jobs))
        .route("/jobs/{job_id}", get(jobs::get_job).delete(jobs::abort_job))
        .route("/jobs/{job_id}/logs", get(logs::job_logs))
        .route("/events", get(events::events))
        .route("/schedule", post(cluster::schedule))
        .route("/cleanup", post(cluster::cleanup))
        .route("/executors", get(cluster::executors))
        .route("/queues", get(cluster::queues))
        .route("/stats", get(cluster::stats))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi_json))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(ops::health))
        .merge(protected)
        .merge(crate::ui::routes(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), time_limit))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a request handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!("no route for {}", request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Knows the caller by its bearer token (401 without a configured one), refuses what its
/// role does not allow (403), and hands the [`auth::Caller`] to the handler.
async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let config = &state.config;
    let caller = auth::authenticate(
        config.api_token.as_deref(),
        &config.tenants,
        request.headers(),
    )?;
    auth::authorize(&caller, request.method(), request.uri().path())?;
    request.extensions_mut().insert(caller);
    Ok(next.run(request).await)
}

/// Answers 503 `timeout` when producing the response takes longer than the limit. A
/// streamed body (follow logs) is not limited once its headers are sent.
async fn time_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.config.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {} s", limit.as_secs_f64()),
        )
        .into_response(),
    }
}
