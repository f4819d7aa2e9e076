//! Queues over the API: a job names one, `GET /queues` shows each queue's weight, quota,
//! use, share and pending jobs, a job held by its queue's quota says so, and a tenant's
//! token may be limited to some queues.

use axum::http::StatusCode;
use dwr_core::SchedulerConfig;
use dwr_server::queues_file::parse_queues;
use dwr_server::ApiConfig;
use serde_json::{json, Value};

use crate::{harness_scheduling, hello, Harness};

fn with_queues() -> Harness {
    let queues = parse_queues(
        r#"
        [[queues]]
        name = "research"
        weight = 3
        cpu_cores = 1.5

        [[queues]]
        name = "batch"
        "#,
    )
    .unwrap();
    harness_scheduling(
        ApiConfig::default(),
        SchedulerConfig {
            queues,
            ..SchedulerConfig::default()
        },
    )
}

fn in_queue(queue: &str, cores: f64) -> Value {
    let mut job = hello();
    job["queue"] = json!(queue);
    job["cpu_cores"] = json!(cores);
    job
}

fn queue<'a>(queues: &'a Value, name: &str) -> &'a Value {
    queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {queues}"))
}

#[tokio::test]
async fn jobs_wait_in_their_queue_within_its_quota() {
    let h = with_queues();
    h.register("e1", 8000, 8192).await;
    let first = h.submit(in_queue("research", 1.0)).await;
    let held = h.submit(in_queue("research", 1.0)).await;
    let other = h.submit(in_queue("batch", 1.0)).await;
    let default = h.submit(hello()).await;

    let view = h.get(&format!("/jobs/{held}")).await.json();
    assert_eq!(
        (view["queue"].as_str(), view["queue_position"].as_u64()),
        (Some("research"), Some(1))
    );
    assert_eq!(
        view["pending_reason"], "behind 1 job in queue research",
        "{view}"
    );
    let view = h.get(&format!("/jobs/{default}")).await.json();
    assert_eq!(
        (view["queue"].as_str(), view["queue_position"].as_u64()),
        (Some("default"), Some(0))
    );

    let queues = h.get("/queues").await.json();
    let names: Vec<&str> = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["batch", "default", "research"]);
    let research = queue(&queues, "research");
    assert_eq!(research["weight"], 3);
    assert_eq!(research["preemption"], false, "off by default");
    assert_eq!(
        research["quota"],
        json!({"cpu_cores": 1.5, "memory_gb": null, "gpus": null})
    );
    assert_eq!(research["pending"], 2);
    assert_eq!(research["used"]["cpu_cores"], 0.0);

    let pass = h.post_json("/schedule", json!({})).await.json();
    assert_eq!(pass["scheduled_jobs"], 3, "{pass}");
    for id in [&first, &other, &default] {
        assert_eq!(
            h.get(&format!("/jobs/{id}")).await.json()["status"],
            "assigned"
        );
    }
    let view = h.get(&format!("/jobs/{held}")).await.json();
    assert_eq!(view["status"], "pending");
    assert_eq!(
        view["pending_reason"], "queue research at its CPU quota (1/1.5 cores)",
        "{view}"
    );

    let queues = h.get("/queues").await.json();
    let research = queue(&queues, "research");
    assert_eq!(research["used"]["cpu_cores"], 1.0);
    assert_eq!(research["used"]["memory_gb"], 0.25);
    assert_eq!(research["pending"], 1);
    assert_eq!(research["share"], 0.125, "1 of 8 cores: {research}");
    assert_eq!(queue(&queues, "batch")["pending"], 0);
}

#[tokio::test]
async fn an_unknown_queue_is_refused_naming_the_field_and_the_queues() {
    let h = with_queues();
    for (queue, needle) in [
        ("nope", "queues: batch, default, research"),
        ("Bad Name", "queue"),
    ] {
        h.post_json("/jobs", in_queue(queue, 1.0))
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, needle);
    }
    let answer = h.post_json("/jobs", in_queue("nope", 1.0)).await;
    assert!(
        answer.json()["detail"]
            .as_str()
            .unwrap()
            .starts_with("queue"),
        "names the field"
    );
    assert_eq!(h.total_jobs().await, 0);
}

#[tokio::test]
async fn a_token_may_be_limited_to_some_queues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let digest = |token: &str| {
        use sha2::{Digest, Sha256};
        Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    std::fs::write(
        &path,
        format!(
            "[[tokens]]\nname = \"rita\"\nrole = \"submit\"\nsha256 = \"{}\"\nqueues = [\"research\"]\n",
            digest("rita-token")
        ),
    )
    .unwrap();
    let queues = parse_queues("[[queues]]\nname = \"research\"").unwrap();
    let h = harness_scheduling(
        ApiConfig {
            tenants: dwr_server::api::auth::read_tokens_file(&path).unwrap(),
            ..ApiConfig::default()
        },
        SchedulerConfig {
            queues,
            ..SchedulerConfig::default()
        },
    );
    let post = |body: Value| h.submit_as("rita-token", body);
    assert_eq!(
        post(in_queue("research", 1.0)).await.status,
        StatusCode::CREATED
    );
    post(hello()).await.assert_error(
        StatusCode::FORBIDDEN,
        "may submit to the queues research, not to default",
    );
    assert_eq!(h.total_jobs().await, 1);
}
