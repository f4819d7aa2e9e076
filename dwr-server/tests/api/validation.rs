//! What `POST /jobs` and the other routes refuse, each refusal naming the field or
//! parameter at fault with nothing stored, and what they accept beyond the required.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{harness, hello};

#[tokio::test]
async fn what_a_job_may_carry_is_bounded_and_named() {
    let h = harness();
    let with = |field: &str, value: Value| {
        let mut body = hello();
        body[field] = value;
        body
    };
    let many_args: Vec<String> = vec!["x".into(); 5000];
    let env: serde_json::Map<String, Value> =
        (0..600).map(|i| (format!("K{i}"), json!("v"))).collect();
    let volumes: Vec<String> = (0..65).map(|i| format!("/data/{i}:/mnt/{i}")).collect();
    // Each value of a valid job's field is refused, naming that field.
    for (field, value) in [
        ("command", json!(many_args)),
        ("command", json!(["echo", "x".repeat(200_000)])),
        ("env", json!(env)),
        ("env", json!({"BIG": "v".repeat(200_000)})),
        ("volumes", json!(volumes)),
        ("docker_image", json!("Not/A/Valid:Image")),
        ("docker_image", json!("busybox:")),
        ("docker_image", json!("busybox@sha256:short")),
    ] {
        h.post_json("/jobs", with(field, value))
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, field);
    }
    assert_eq!(h.total_jobs().await, 0, "a refused job changes nothing");
    h.submit(with(
        "docker_image",
        json!("registry.local:5000/team/app:1.2"),
    ))
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_problem_and_nothing_is_stored() {
    let h = harness();
    let with = |patch: Value| {
        let mut body = hello();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    // Each patch of a valid job is refused, naming the field it patches.
    for patch in [
        json!({"docker_image": null}),
        json!({"command": null}),
        json!({"cpu_cores": null}),
        json!({"memory_gb": null}),
        json!({"cpu_cores": "two"}),
        json!({"memory_gb": [1]}),
        json!({"command": "echo hi"}),
        json!({"command": [1, 2]}),
        json!({"cpu_cores": -1}),
        json!({"cpu_cores": 0}),
        json!({"memory_gb": -0.5}),
        json!({"memory_gb": 0}),
        json!({"command": []}),
        json!({"docker_image": ""}),
        json!({"allocation_timeout": 5}),
        json!({"allocation_timeout": -5}),
        json!({"gpu_count": -1}),
        json!({"gpu_count": 1000}),
        json!({"volumes": ["etc:/x"]}),
        json!({"priority": 101}),
        json!({"priority": 5000000000u64}),
        json!({"priority": 1.5}),
        json!({"priority": -1}),
    ] {
        let field = patch.as_object().unwrap().keys().next().unwrap().clone();
        h.post_json("/jobs", with(patch))
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, &field);
    }
    let not_an_object = h.post_json("/jobs", json!([1, 2, 3])).await;
    assert_eq!(not_an_object.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(not_an_object.json()["error"], "validation_error");
    h.send(Method::POST, "/jobs", Some(b"{\"docker_image\": ".to_vec()))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "JSON");
    h.send(Method::POST, "/jobs", Some(Vec::new()))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "empty");
    let mut huge = br#"{"docker_image":"x","command":[""#.to_vec();
    huge.extend(vec![b'a'; 10 * 1024 * 1024]);
    huge.extend(br#""],"cpu_cores":1,"memory_gb":1}"#);
    h.send(Method::POST, "/jobs", Some(huge))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "larger");

    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    for (uri, status, needle) in [
        ("/jobs?status_filter=bogus", invalid, "status_filter"),
        ("/jobs?limit=0", invalid, "limit"),
        ("/jobs?limit=5000", invalid, "limit"),
        ("/jobs?limit=ten", invalid, "limit"),
        ("/jobs?offset=-1", invalid, "offset"),
        ("/jobs/not-a-uuid", StatusCode::BAD_REQUEST, "not-a-uuid"),
        (
            "/jobs/not-a-uuid/logs",
            StatusCode::BAD_REQUEST,
            "not-a-uuid",
        ),
        (
            "/jobs/00000000-0000-0000-0000-000000000000",
            StatusCode::NOT_FOUND,
            "00000000-0000-0000-0000-000000000000",
        ),
        (
            "/jobs/00000000-0000-0000-0000-000000000000/logs",
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "/jobs/00000000-0000-0000-0000-000000000000/logs?follow=perhaps",
            invalid,
            "follow",
        ),
        ("/no/such/route", StatusCode::NOT_FOUND, "/no/such/route"),
    ] {
        h.get(uri).await.assert_error(status, needle);
    }
    h.send(Method::POST, "/cleanup?timeout_minutes=-1", None)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "timeout_minutes");
    h.send(Method::PUT, "/jobs", None)
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "PUT");

    assert_eq!(h.total_jobs().await, 0, "a bad request stored nothing");
    let health = h.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "healthy");
    h.submit(hello()).await;
    assert_eq!(h.total_jobs().await, 1, "the server still works");
}

#[tokio::test]
async fn unknown_fields_and_extensions_are_accepted() {
    let h = harness();
    let mut body = hello();
    body["priority"] = json!(7);
    body["gpu_type"] = Value::Null;
    body["eligible_regions"] = json!(["eu"]);
    body["env"] = json!({"A": "1"});
    body["max_runtime_seconds"] = json!(60);
    let answer = h.post_json("/jobs", body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json());
    let v = answer.json();
    assert_eq!(v["eligible_regions"], json!(["eu"]));
    assert_eq!(v["env"], json!({"A": "1"}));
    assert_eq!(v["max_runtime_seconds"], 60);
    assert!(v["gpu_type"].is_null());

    let mut gpu = hello();
    gpu["gpu_type"] = json!("A100");
    let v = h.post_json("/jobs", gpu).await.json();
    assert_eq!(
        (v["gpu_type"].as_str(), v["gpu_count"].as_u64()),
        (Some("A100"), Some(1))
    );
}
