//! The HTTP API in process: `app(state).oneshot(request)` over the in-memory store, with
//! executors played through the store's own operations (register, mark running, append
//! logs, finish), so every answer is deterministic.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use dwr_core::fake::{FaultyStore, Op};
use dwr_core::{
    ExecutorId, ExecutorRegistration, FirstFit, InMemoryJobStore, JobId, Outcome, Scheduler,
    SchedulerConfig,
};
use dwr_server::{app, ApiConfig, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Harness {
    app: Router,
    store: Arc<FaultyStore>,
    token: Option<String>,
}

fn harness_with(config: ApiConfig) -> Harness {
    let store = Arc::new(FaultyStore::new(Arc::new(InMemoryJobStore::new())));
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(FirstFit),
        SchedulerConfig::default(),
    );
    let token = config.api_token.clone();
    Harness {
        app: app(AppState::new(scheduler, config)),
        store,
        token,
    }
}

fn harness() -> Harness {
    harness_with(ApiConfig::default())
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            )
        })
    }

    /// Asserts a JSON error with `status` whose detail mentions `needle`.
    fn assert_error(&self, status: StatusCode, needle: &str) {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
        );
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        let v = self.json();
        assert!(v["error"].is_string(), "{v}");
        let detail = v["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(needle),
            "detail {detail:?} should name {needle:?}"
        );
    }
}

impl Harness {
    async fn send(&self, method: Method, uri: &str, body: Option<Vec<u8>>) -> Answer {
        self.send_as(method, uri, body, self.token.as_deref()).await
    }

    async fn send_as(
        &self,
        method: Method,
        uri: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Answer {
        self.send_with(method, uri, body, token, &[]).await
    }

    /// Sends a request with extra `headers`.
    async fn send_with(
        &self,
        method: Method,
        uri: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(bytes) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(bytes)),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = tokio::time::timeout(Duration::from_secs(20), response.into_body().collect())
            .await
            .expect("body within 20 s")
            .unwrap()
            .to_bytes();
        Answer {
            status,
            content_type,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Method::GET, uri, None).await
    }

    async fn post_json(&self, uri: &str, body: Value) -> Answer {
        self.send(Method::POST, uri, Some(body.to_string().into_bytes()))
            .await
    }

    async fn submit(&self, body: Value) -> String {
        let answer = self.post_json("/jobs", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json());
        answer.json()["job_id"].as_str().unwrap().to_owned()
    }

    async fn total_jobs(&self) -> u64 {
        self.store.inner().counts().await.unwrap().values().sum()
    }

    async fn register(&self, id: &str, cpu_millis: u64, memory_mib: u64) {
        let reg = ExecutorRegistration::new(
            ExecutorId::new(id),
            "10.0.0.7",
            cpu_millis,
            memory_mib,
            vec![],
        );
        self.store.inner().register_executor(&reg).await.unwrap();
    }
}

fn hello() -> Value {
    json!({
        "docker_image": "dwr-test/busybox:latest",
        "command": ["echo", "hello from dwr"],
        "cpu_cores": 0.5,
        "memory_gb": 0.25
    })
}

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
async fn a_pending_job_says_why() {
    let h = harness();
    let id = h.submit(hello()).await;
    let report = h.send(Method::POST, "/schedule", None).await;
    assert_eq!(report.status, StatusCode::OK);
    assert_eq!(report.json()["scheduled_jobs"], 0);
    let job = h.get(&format!("/jobs/{id}")).await.json();
    assert_eq!(job["status"], "pending");
    let why = job["pending_reason"].as_str().expect("pending_reason");
    assert!(why.contains("none registered"), "{why}");
}

#[tokio::test]
async fn schedule_assigns_and_cluster_views_follow() {
    let h = harness();
    h.register("exec-a", 2000, 4096).await;
    let id = h.submit(hello()).await;
    let report = h.send(Method::POST, "/schedule", None).await.json();
    assert_eq!(report["scheduled_jobs"], 1, "{report}");
    assert_eq!(report["assignments"][0]["job_id"], id.as_str());
    assert_eq!(report["assignments"][0]["executor_ip"], "10.0.0.7");

    let job = h.get(&format!("/jobs/{id}")).await.json();
    assert_eq!(job["status"], "assigned");
    assert_eq!(job["executor_ip"], "10.0.0.7");
    assert!(job["pending_reason"].is_null());

    let ex = h.get("/executors").await.json();
    let e = &ex["executors"][0];
    assert_eq!(e["id"], "exec-a");
    assert_eq!(e["ip"], "10.0.0.7");
    assert_eq!(e["total_cpu_cores"], 2.0);
    assert_eq!(e["available_cpu_cores"], 1.5);
    assert_eq!(e["total_memory_gb"], 4.0);
    assert_eq!(e["available_memory_gb"], 3.75);
    assert_eq!(e["running_jobs"], 1);
    assert_eq!(e["alive"], true);
    assert_eq!(e["cpu_utilization"], 25.0);
    assert_eq!(ex["cluster_stats"]["alive_executors"], 1);
    assert_eq!(ex["cluster_stats"]["available_cpu_cores"], 1.5);

    // The original system's names too: 0.5 of 2 cores and 0.25 of 4 GB allocated.
    assert_eq!(ex["cluster_stats"]["cluster_cpu_utilization"], 25.0);
    assert_eq!(ex["cluster_stats"]["cluster_memory_utilization"], 6.25);

    // Pending jobs of each size class, the oldest first.
    let small = h.submit(hello()).await;
    let mut medium = hello();
    medium["cpu_cores"] = json!(4);
    medium["memory_gb"] = json!(16);
    h.submit(medium).await;
    let mut large = hello();
    large["memory_gb"] = json!(16.5);
    h.submit(large).await;

    let stats = h.get("/stats").await.json();
    assert_eq!(stats["queue"]["assigned"], 1);
    assert_eq!(stats["queue"]["total"], 4);
    assert_eq!(stats["queue"]["pending_jobs"], 3);
    assert_eq!(stats["queue"]["running_jobs"], 1);
    assert_eq!(
        stats["queue"]["pending_by_size"],
        json!({"small": 1, "medium": 1, "large": 1})
    );
    assert_eq!(
        stats["queue"]["oldest_pending_job"]["job_id"],
        small.as_str()
    );
    assert!(stats["queue"]["oldest_pending_job"]["wait_seconds"].is_u64());
    assert_eq!(stats["cluster"]["total_executors"], 1);
    assert_eq!(stats["cluster"]["total_cpu_cores"], 2.0);
    assert_eq!(stats["cluster"]["available_memory_gb"], 3.75);
    assert_eq!(stats["cluster"]["cluster_cpu_utilization"], 25.0);
    assert_eq!(stats["cluster"]["cluster_memory_utilization"], 6.25);
    assert!(stats["timestamp"].is_string());
}

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
    for (body, field) in [
        (with("command", json!(many_args)), "command"),
        (
            with("command", json!(["echo", "x".repeat(200_000)])),
            "command",
        ),
        (with("env", json!(env)), "env"),
        (with("env", json!({"BIG": "v".repeat(200_000)})), "env"),
        (with("volumes", json!(volumes)), "volumes"),
        (
            with("docker_image", json!("Not/A/Valid:Image")),
            "docker_image",
        ),
        (with("docker_image", json!("busybox:")), "docker_image"),
        (
            with("docker_image", json!("busybox@sha256:short")),
            "docker_image",
        ),
    ] {
        h.post_json("/jobs", body)
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
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            with(json!({"docker_image": null})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "docker_image",
        ),
        (
            with(json!({"command": null})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "command",
        ),
        (
            with(json!({"cpu_cores": null})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cpu_cores",
        ),
        (
            with(json!({"memory_gb": null})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "memory_gb",
        ),
        (
            with(json!({"cpu_cores": "two"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cpu_cores",
        ),
        (
            with(json!({"memory_gb": [1]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "memory_gb",
        ),
        (
            with(json!({"command": "echo hi"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "command",
        ),
        (
            with(json!({"command": [1, 2]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "command",
        ),
        (
            with(json!({"cpu_cores": -1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cpu_cores",
        ),
        (
            with(json!({"cpu_cores": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cpu_cores",
        ),
        (
            with(json!({"memory_gb": -0.5})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "memory_gb",
        ),
        (
            with(json!({"memory_gb": 0})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "memory_gb",
        ),
        (
            with(json!({"command": []})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "command",
        ),
        (
            with(json!({"docker_image": ""})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "docker_image",
        ),
        (
            with(json!({"allocation_timeout": 5})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "allocation_timeout",
        ),
        (
            with(json!({"allocation_timeout": -5})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "allocation_timeout",
        ),
        (
            with(json!({"gpu_count": -1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "gpu_count",
        ),
        (
            with(json!({"gpu_count": 1000})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "gpu_count",
        ),
        (
            with(json!({"volumes": ["etc:/x"]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "volumes",
        ),
        (
            json!([1, 2, 3]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "JobRequest",
        ),
    ];
    for (body, status, needle) in cases {
        let answer = h.post_json("/jobs", body.clone()).await;
        assert!(answer.status.is_client_error(), "{body}");
        if needle == "JobRequest" {
            assert_eq!(answer.status, status, "{body}");
            assert_eq!(answer.json()["error"], "validation_error");
        } else {
            answer.assert_error(status, needle);
        }
    }
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

    for (uri, status, needle) in [
        (
            "/jobs?status_filter=bogus",
            StatusCode::UNPROCESSABLE_ENTITY,
            "status_filter",
        ),
        ("/jobs?limit=0", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        (
            "/jobs?limit=5000",
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit",
        ),
        ("/jobs?limit=ten", StatusCode::UNPROCESSABLE_ENTITY, "limit"),
        (
            "/jobs?offset=-1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "offset",
        ),
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
            StatusCode::UNPROCESSABLE_ENTITY,
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

#[tokio::test]
async fn the_token_guards_every_route_but_health() {
    let h = harness_with(ApiConfig {
        api_token: Some("s3cret".into()),
        ..ApiConfig::default()
    });
    for uri in ["/jobs", "/executors", "/stats", "/metrics", "/openapi.json"] {
        h.send_as(Method::GET, uri, None, None)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "token");
        h.send_as(Method::GET, uri, None, Some("wrong"))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "token");
        assert_eq!(
            h.send_as(Method::GET, uri, None, Some("s3cret"))
                .await
                .status,
            StatusCode::OK
        );
        let lower = Request::builder()
            .uri(uri)
            .header(header::AUTHORIZATION, "bearer s3cret")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            h.app.clone().oneshot(lower).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let unauth = h
        .send_as(
            Method::POST,
            "/jobs",
            Some(hello().to_string().into_bytes()),
            None,
        )
        .await;
    unauth.assert_error(StatusCode::UNAUTHORIZED, "token");
    assert_eq!(h.total_jobs().await, 0);
    assert_eq!(
        h.send_as(Method::GET, "/health", None, None).await.status,
        StatusCode::OK
    );
}

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

#[tokio::test]
async fn cleanup_purges_finished_jobs() {
    let h = harness();
    let done = h.submit(hello()).await;
    let live = h.submit(hello()).await;
    h.send(Method::DELETE, &format!("/jobs/{done}"), None).await;
    // The cut-off is "finished strictly before now": let the clock move past the abort.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let answer = h
        .send(Method::POST, "/cleanup?timeout_minutes=0", None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let v = answer.json();
    assert_eq!(v["cleaned_jobs"], 1, "{v}");
    assert_eq!(v["timeout_minutes"], 0);
    assert_eq!(
        h.get(&format!("/jobs/{done}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.get(&format!("/jobs/{live}")).await.status, StatusCode::OK);
    let kept = h.send(Method::POST, "/cleanup", None).await.json();
    assert_eq!(kept["cleaned_jobs"], 0);
    assert_eq!(kept["timeout_minutes"], 60);
}

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

/// Polls `GET /jobs/{id}` until its status is `status` (at most 10 s).
async fn wait_status(h: &Harness, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let job = h.get(&format!("/jobs/{id}")).await.json();
        if job["status"] == status {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never became {status}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_through_the_scheduling_loop_and_an_agent_with_the_fake_runtime() {
    use dwr_core::{AgentConfig, ExecutorAgent, FakeGpuProbe, FakeHostProbe, FakeRuntime};

    let store = Arc::new(FaultyStore::new(Arc::new(InMemoryJobStore::new())));
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(FirstFit),
        SchedulerConfig::default(),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let looping = scheduler.clone();
    let loop_stop = stopped(stop_rx.clone());
    let loop_task = tokio::spawn(async move { looping.run(loop_stop).await });
    let mut config = AgentConfig::new(ExecutorId::new("fake-1"), "127.0.0.1");
    config.heartbeat_interval = Duration::from_secs(1);
    config.poll_interval = Duration::from_secs(1);
    let agent = ExecutorAgent::new(
        store.clone(),
        Arc::new(FakeRuntime::new()),
        Arc::new(FakeGpuProbe::none()),
        Arc::new(FakeHostProbe::new(4000, 8192)),
        config,
    );
    let agent_task = tokio::spawn(agent.run(stopped(stop_rx.clone())));
    let h = Harness {
        app: app(AppState::new(scheduler, ApiConfig::default())),
        store,
        token: None,
    };

    // No POST /schedule: the submit wakes the loop, the agent runs the job.
    let mut body = hello();
    body["command"] = json!(["fake", "print=hello", "print=world", "run=200ms"]);
    let id = h.submit(body).await;
    let followed = h.get(&format!("/jobs/{id}/logs?follow=true")).await;
    // The agent logs image preparation first; the container's own lines come last.
    let text = String::from_utf8_lossy(&followed.body);
    assert!(text.ends_with("\nhello\nworld\n"), "{text:?}");
    let done = wait_status(&h, &id, "succeeded").await;
    assert_eq!(done["executor_ip"], "127.0.0.1");
    assert_eq!(done["exit_code"], 0);

    let mut body = hello();
    body["command"] = json!(["fake", "hang", "term"]);
    let hanging = h.submit(body).await;
    wait_status(&h, &hanging, "running").await;
    let answer = h
        .send(Method::DELETE, &format!("/jobs/{hanging}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let aborted = wait_status(&h, &hanging, "aborted").await;
    assert!(aborted["reason"].as_str().unwrap().contains("aborted"));

    stop_tx.send(true).unwrap();
    loop_task.await.unwrap().unwrap();
    agent_task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_on_a_socket_and_stops_on_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Arc::new(InMemoryJobStore::new());
    let scheduler = Scheduler::new(store, Arc::new(FirstFit), SchedulerConfig::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dwr_server::serve(
        listener,
        scheduler,
        ApiConfig::default(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let health: Value = reqwest::get(format!("http://{addr}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "healthy");
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(reqwest::get(format!("http://{addr}/health")).await.is_err());
}

/// `POST /jobs` with an `Idempotency-Key`.
async fn submit_with_key(h: &Harness, body: &Value, key: &str) -> Answer {
    h.send_with(
        Method::POST,
        "/jobs",
        Some(body.to_string().into_bytes()),
        h.token.as_deref(),
        &[("Idempotency-Key", key)],
    )
    .await
}

#[tokio::test]
async fn an_idempotency_key_makes_a_repeated_submit_return_the_first_job() {
    let h = harness();
    let first = submit_with_key(&h, &hello(), "order-42").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json());
    let again = submit_with_key(&h, &hello(), "order-42").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json());
    assert_eq!(again.json()["job_id"], first.json()["job_id"]);
    assert_eq!(h.total_jobs().await, 1, "no second job");

    // Another request under the same key is refused, naming the key; nothing is stored.
    let mut other = hello();
    other["command"] = json!(["echo", "something else"]);
    submit_with_key(&h, &other, "order-42")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "Idempotency-Key");
    // Another key is another job; no key is a new job every time.
    assert_eq!(
        submit_with_key(&h, &hello(), "order-43").await.status,
        StatusCode::CREATED
    );
    h.submit(hello()).await;
    h.submit(hello()).await;
    assert_eq!(h.total_jobs().await, 4);

    for bad in ["", "has space", &"k".repeat(256), "caf\u{e9}"] {
        let answer = submit_with_key(&h, &hello(), bad).await;
        answer.assert_error(StatusCode::BAD_REQUEST, "Idempotency-Key");
    }
    assert_eq!(h.total_jobs().await, 4, "bad keys store nothing");
}

/// A client whose submit is slow to answer sends it again with its key while the first is
/// still in flight (its own timeout passed): one job, both answers name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_sent_again_after_a_client_timeout_creates_one_job() {
    let h = Arc::new(harness());
    h.store
        .set_delay(Op::SubmitIdempotent, Duration::from_millis(300));
    let slow = {
        let h = h.clone();
        tokio::spawn(async move { submit_with_key(&h, &hello(), "retry-me").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let retried = submit_with_key(&h, &hello(), "retry-me").await;
    let first = slow.await.unwrap();
    let mut statuses = [first.status, retried.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CREATED]);
    assert_eq!(first.json()["job_id"], retried.json()["job_id"]);
    assert_eq!(h.total_jobs().await, 1);
}
