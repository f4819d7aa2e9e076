//! `GET /jobs/{job_id}/logs`: plain, paged and followed, and the bound on followers.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use dwr_core::{ExecutorId, JobId, Outcome};
use dwr_server::ApiConfig;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::{harness, harness_with, hello, Harness};

#[tokio::test]
async fn log_streams_past_the_cap_get_503_and_offsets_are_bounded() {
    let h = harness_with(ApiConfig {
        max_log_followers: 2,
        ..ApiConfig::default()
    });
    // Pending with no executor: a follow stream stays open.
    let id = h.submit(hello()).await;
    let follow = |h: &Harness| {
        let request = Request::builder()
            .uri(format!("/jobs/{id}/logs?follow=true"))
            .body(Body::empty())
            .unwrap();
        h.app.clone().oneshot(request)
    };
    let first = follow(&h).await.unwrap();
    let second = follow(&h).await.unwrap();
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = follow(&h).await.unwrap();
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = third.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"], "too_many_followers", "{v}");
    // Reading without follow is never refused.
    assert_eq!(
        h.get(&format!("/jobs/{id}/logs")).await.status,
        StatusCode::OK
    );
    // A stream that ends (its client went away) gives its place back.
    drop(first);
    let fourth = follow(&h).await.unwrap();
    assert_eq!(fourth.status(), StatusCode::OK);
    drop((second, fourth));

    for uri in [
        "/jobs?offset=100000001".to_owned(),
        "/jobs?offset=99999999999999999999999999".to_owned(),
        format!("/jobs/{id}/logs?offset=1000000001"),
        format!("/jobs/{id}/logs?offset=18446744073709551616&follow=true"),
    ] {
        h.get(&uri)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "offset");
    }
    h.get(&format!("/jobs/{id}/logs?offset=x"))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "offset");
    assert_eq!(h.get("/jobs?offset=100000000").await.json(), json!([]));
}

#[tokio::test]
async fn logs_plain_and_followed() {
    let h = harness();
    h.register("exec-a", 2000, 4096).await;
    let id = h.submit(hello()).await;
    h.send(Method::POST, "/schedule", None).await;
    let job_id: JobId = id.parse().unwrap();
    let exec = ExecutorId::new("exec-a");
    let store = &h.store.inner();
    store.mark_running(job_id, &exec, 1).await.unwrap();
    store
        .append_logs(job_id, None, &["one".into(), "two".into()])
        .await
        .unwrap();

    let logs = h.get(&format!("/jobs/{id}/logs")).await;
    assert_eq!(logs.status, StatusCode::OK);
    let v = logs.json();
    assert_eq!(v["job_id"], id.as_str());
    assert_eq!(v["lines"], json!(["one", "two"]));
    assert_eq!(v["logs"], "one\ntwo");
    // Paged: from a line number on.
    let page = h.get(&format!("/jobs/{id}/logs?offset=1")).await.json();
    assert_eq!(
        (&page["lines"], &page["logs"]),
        (&json!(["two"]), &json!("two"))
    );
    let past = h.get(&format!("/jobs/{id}/logs?offset=9")).await.json();
    assert_eq!((&past["lines"], &past["logs"]), (&json!([]), &json!("")));

    // Follow while the job still runs: more lines and the finish come later.
    let store2 = h.store.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        store2
            .inner()
            .append_logs(job_id, None, &["three".into()])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        store2
            .inner()
            .finish(job_id, &Outcome::exited(0, false), None)
            .await
            .unwrap();
    });
    let followed = h.get(&format!("/jobs/{id}/logs?follow=true")).await;
    writer.await.unwrap();
    assert_eq!(followed.status, StatusCode::OK);
    assert!(followed.content_type.starts_with("text/plain"));
    assert_eq!(String::from_utf8_lossy(&followed.body), "one\ntwo\nthree\n");
    let done = h.get(&format!("/jobs/{id}")).await.json();
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["exit_code"], 0);
    assert!(done["finished_at"].is_string());
}
