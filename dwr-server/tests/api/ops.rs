//! The operations routes: the OpenAPI document and the Prometheus metrics.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::{harness, hello};

#[tokio::test]
async fn openapi_lists_the_paths() {
    let h = harness();
    let doc = h.get("/openapi.json").await.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/logs",
        "/schedule",
        "/cleanup",
        "/executors",
        "/stats",
        "/health",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(path), "missing {path}");
    }
    assert!(paths["/jobs"]["post"].is_object());
    assert!(paths["/jobs/{job_id}"]["delete"].is_object());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for schema in [
        "JobRequest",
        "JobView",
        "ErrorBody",
        "ExecutorsResponse",
        "StatsResponse",
    ] {
        assert!(schemas.contains_key(schema), "missing schema {schema}");
    }
}

#[tokio::test]
async fn metrics_expose_the_series() {
    let h = harness();
    h.register("exec-a", 1000, 1024).await;
    h.submit(hello()).await;
    let mut big = hello();
    big["cpu_cores"] = json!(64);
    h.submit(big).await;
    h.send(Method::POST, "/schedule", None).await;
    let answer = h.get("/metrics").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.content_type.starts_with("text/plain"));
    let text = String::from_utf8(answer.body.to_vec()).unwrap();
    for series in [
        "dwr_jobs{state=\"assigned\"} 1",
        "dwr_jobs{state=\"pending\"} 0",
        "dwr_jobs{state=\"failed\"} 1",
        "dwr_placements_total 1",
        "dwr_placement_failures_total{reason=\"cpu\"}",
        "dwr_placement_failures_total{reason=\"infeasible\"}",
        "dwr_scheduling_pass_seconds_count 1",
        "dwr_scheduling_pass_seconds_sum ",
        "dwr_executors_alive 1",
    ] {
        assert!(text.contains(series), "missing {series:?} in\n{text}");
    }
}
