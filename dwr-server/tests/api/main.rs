//! The HTTP API in process: `app(state).oneshot(request)` over the in-memory store, with
//! executors played through the store's own operations (register, mark running, append
//! logs, finish), so every answer is deterministic. One test binary: the harness is here,
//! the tests are in a module per concept.

mod arrays;
mod auth;
mod cluster;
mod deps;
mod events;
mod failures;
mod idempotency;
mod jobs;
mod live;
mod logs;
mod ops;
mod queues;
mod ui;
mod validation;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use dwr_core::fake::FaultyStore;
use dwr_core::{
    ExecutorId, ExecutorRegistration, FirstFit, InMemoryJobStore, Scheduler, SchedulerConfig,
};
use dwr_server::{app, ApiConfig, AppState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Harness {
    app: Router,
    store: Arc<FaultyStore>,
    /// The scheduler behind `app`, for a test that runs its loop.
    scheduler: Scheduler,
    token: Option<String>,
}

fn harness_with(config: ApiConfig) -> Harness {
    harness_scheduling(config, SchedulerConfig::default())
}

/// A harness whose scheduler has `scheduling` (queues, ...).
fn harness_scheduling(config: ApiConfig, scheduling: SchedulerConfig) -> Harness {
    let store = Arc::new(FaultyStore::new(Arc::new(InMemoryJobStore::new())));
    let scheduler = Scheduler::new(store.clone(), Arc::new(FirstFit), scheduling);
    let token = config.api_token.clone();
    Harness {
        app: app(AppState::new(scheduler.clone(), config)),
        store,
        scheduler,
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

    /// `POST /jobs` with `body` as the holder of `token`.
    async fn submit_as(&self, token: &str, body: Value) -> Answer {
        let body = Some(body.to_string().into_bytes());
        self.send_as(Method::POST, "/jobs", body, Some(token)).await
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
