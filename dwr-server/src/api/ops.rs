//! Operations routes: `GET /health` (no token), `GET /metrics` (Prometheus text),
//! `GET /openapi.json`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dwr_core::placement::PlacementFailure;
use dwr_core::{JobState, Timestamp};

use super::{openapi, ApiError, AppState};
use dwr_client::wire::{ErrorBody, HealthResponse};

/// How long `/health` waits for the store.
const HEALTH_STORE_WAIT: Duration = Duration::from_secs(2);

/// Liveness: 200 `healthy` when the store answers, 503 `unhealthy` when it does not.
#[utoipa::path(
    get, path = "/health", tag = "ops",
    responses(
        (status = 200, description = "Healthy", body = HealthResponse),
    )
)]
pub(super) async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthResponse>) {
    let probe = tokio::time::timeout(HEALTH_STORE_WAIT, state.scheduler.store().counts()).await;
    let (code, status, store) = match probe {
        Ok(Ok(_)) => (StatusCode::OK, "healthy", "ok".to_owned()),
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "health: store error");
            (StatusCode::SERVICE_UNAVAILABLE, "unhealthy", e.to_string())
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy",
            format!(
                "store did not answer within {} s",
                HEALTH_STORE_WAIT.as_secs()
            ),
        ),
    };
    (
        code,
        Json(HealthResponse {
            status: status.to_owned(),
            store,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: state.started.elapsed().as_secs(),
            timestamp: Timestamp::now().to_rfc3339(),
        }),
    )
}

/// Prometheus metrics: `dwr_jobs{state}`, `dwr_placements_total`,
/// `dwr_placement_failures_total{reason}`, `dwr_scheduling_pass_seconds` (summary),
/// `dwr_scheduling_passes_total`, `dwr_executors_alive`, `dwr_executors`.
#[utoipa::path(
    get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 503, description = "Store unavailable", body = ErrorBody),
    )
)]
pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.scheduler.store();
    let counts = store.counts().await?;
    let executors = store.executors().await?;
    let now = store.now().await?;
    let alive = executors.iter().filter(|e| e.is_alive(now)).count();
    let m = state.scheduler.metrics();

    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line("# HELP dwr_jobs Jobs in the store by state.".into());
    line("# TYPE dwr_jobs gauge".into());
    for s in JobState::ALL {
        let n = counts.get(&s).copied().unwrap_or(0);
        line(format!("dwr_jobs{{state=\"{s}\"}} {n}"));
    }
    line("# HELP dwr_placements_total Jobs placed on an executor by this scheduler.".into());
    line("# TYPE dwr_placements_total counter".into());
    line(format!("dwr_placements_total {}", m.placements));
    line(
        "# HELP dwr_placement_failures_total Placement attempts that found no room, by reason."
            .into(),
    );
    line("# TYPE dwr_placement_failures_total counter".into());
    // Every reason, zero until one happens.
    for reason in PlacementFailure::ALL {
        let n = m.placement_failures.get(&reason).copied().unwrap_or(0);
        line(format!(
            "dwr_placement_failures_total{{reason=\"{reason}\"}} {n}"
        ));
    }
    line("# HELP dwr_scheduling_pass_seconds Duration of scheduling passes.".into());
    line("# TYPE dwr_scheduling_pass_seconds summary".into());
    line(format!(
        "dwr_scheduling_pass_seconds_sum {}",
        m.pass_seconds_total
    ));
    line(format!("dwr_scheduling_pass_seconds_count {}", m.passes));
    line("# HELP dwr_scheduling_last_pass_seconds Duration of the last scheduling pass.".into());
    line("# TYPE dwr_scheduling_last_pass_seconds gauge".into());
    line(format!(
        "dwr_scheduling_last_pass_seconds {}",
        m.last_pass_seconds
    ));
    line("# HELP dwr_executors_alive Executors whose heartbeat is within the TTL.".into());
    line("# TYPE dwr_executors_alive gauge".into());
    line(format!("dwr_executors_alive {alive}"));
    line("# HELP dwr_executors Registered executors.".into());
    line("# TYPE dwr_executors gauge".into());
    line(format!("dwr_executors {}", executors.len()));
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

/// The OpenAPI 3.1 document of this API, exact for this server: with an API token it
/// declares the bearer scheme, without one no security at all.
#[utoipa::path(
    get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub(super) async fn openapi_json(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(openapi(&state.config, &state.scheduler.config().queues))
}
