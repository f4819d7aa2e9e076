//! Jobs through the API: submit, read, list and filter, abort.

use axum::http::{Method, StatusCode};
use dwr_core::JobId;
use serde_json::json;

use crate::{harness, hello};

#[tokio::test]
async fn submit_get_and_list() {
    let h = harness();
    let answer = h.post_json("/jobs", hello()).await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let job = answer.json();
    assert_eq!(job["status"], "pending");
    assert_eq!(job["docker_image"], "dwr-test/busybox:latest");
    assert_eq!(job["command"], json!(["echo", "hello from dwr"]));
    assert_eq!(job["cpu_cores"], 0.5);
    assert_eq!(job["memory_gb"], 0.25);
    assert_eq!(job["gpu_count"], 0);
    assert_eq!(job["allocation_timeout"], 300);
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'));
    let id = job["job_id"].as_str().unwrap().to_owned();

    let got = h.get(&format!("/jobs/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json()["job_id"], id.as_str());

    let second = h.submit(hello()).await;
    let list = h.get("/jobs").await.json();
    let ids: Vec<&str> = list
        .as_array()
        .expect("GET /jobs is a plain array")
        .iter()
        .map(|j| j["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id.as_str()) && ids.contains(&second.as_str()));
    assert_eq!(
        h.get("/jobs?limit=1")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let pending = h.get("/jobs?status_filter=pending").await.json();
    assert_eq!(pending.as_array().unwrap().len(), 2);
    let running = h.get("/jobs?status_filter=running&limit=1000").await.json();
    assert_eq!(running.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn abort_pending_assigned_and_finished() {
    let h = harness();
    let pending = h.submit(hello()).await;
    let answer = h
        .send(Method::DELETE, &format!("/jobs/{pending}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["status"], "aborted");
    h.send(Method::DELETE, &format!("/jobs/{pending}"), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "aborted");

    h.register("exec-a", 2000, 4096).await;
    let assigned = h.submit(hello()).await;
    h.send(Method::POST, "/schedule", None).await;
    let answer = h
        .send(Method::DELETE, &format!("/jobs/{assigned}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let v = answer.json();
    assert_eq!(v["status"], "assigned");
    assert_eq!(v["abort_requested"], true);

    h.send(Method::DELETE, &format!("/jobs/{}", JobId::new()), None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not found");
    h.send(Method::DELETE, "/jobs/nope", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "nope");
}
