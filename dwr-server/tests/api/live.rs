//! The API with its moving parts: the scheduling loop and an agent with the fake runtime
//! behind it, and `serve` on a real socket.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use dwr_core::{ExecutorId, FirstFit, InMemoryJobStore, Scheduler, SchedulerConfig};
use dwr_server::ApiConfig;
use serde_json::{json, Value};

use crate::{harness, hello, Harness};

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

    let h = harness();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let looping = h.scheduler.clone();
    let loop_stop = stopped(stop_rx.clone());
    let loop_task = tokio::spawn(async move { looping.run(loop_stop).await });
    let mut config = AgentConfig::new(ExecutorId::new("fake-1"), "127.0.0.1");
    config.heartbeat_interval = Duration::from_secs(1);
    config.poll_interval = Duration::from_secs(1);
    let agent = ExecutorAgent::new(
        h.store.clone(),
        Arc::new(FakeRuntime::new()),
        Arc::new(FakeGpuProbe::none()),
        Arc::new(FakeHostProbe::new(4000, 8192)),
        config,
    );
    let agent_task = tokio::spawn(agent.run(stopped(stop_rx.clone())));

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
