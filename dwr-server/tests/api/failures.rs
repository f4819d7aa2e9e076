//! A store that fails or is slow: JSON 503s that name no internals, the request timeout.

use std::time::Duration;

use axum::http::StatusCode;
use dwr_server::ApiConfig;

use crate::{harness, harness_with, hello};

#[tokio::test]
async fn a_broken_store_gives_503_without_internals() {
    let h = harness();
    h.store.set_all_down(true);
    let health = h.get("/health").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.json()["status"], "unhealthy");
    for answer in [h.get("/jobs").await, h.post_json("/jobs", hello()).await] {
        answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert!(!String::from_utf8_lossy(&answer.body).contains("injected fault"));
    }
    h.store.set_all_down(false);
    assert_eq!(h.get("/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_slow_request_times_out_as_json() {
    let h = harness_with(ApiConfig {
        request_timeout: Duration::from_millis(100),
        ..ApiConfig::default()
    });
    h.store.set_all_delay(Duration::from_secs(5));
    h.get("/jobs")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "longer than");
}
