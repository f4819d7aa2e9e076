//! The cluster routes: `POST /schedule` and why a job still waits, the executors and
//! the stats views, `POST /cleanup`.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::{harness, hello};

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
async fn priority_orders_the_queue_and_a_job_says_what_it_waits_behind() {
    let h = harness();
    let mut ids = Vec::new();
    for priority in [50, 90, 10] {
        let mut body = hello();
        body["priority"] = json!(priority);
        ids.push(h.submit(body).await);
    }
    h.send(Method::POST, "/schedule", None).await;
    let job = |i: usize| {
        let uri = format!("/jobs/{}", ids[i]);
        let h = &h;
        async move { h.get(&uri).await.json() }
    };
    let (normal, urgent, low) = (job(0).await, job(1).await, job(2).await);
    assert_eq!(urgent["priority"], 90);
    assert_eq!(urgent["queue_position"], 0);
    let why = urgent["pending_reason"].as_str().expect("why");
    assert!(
        why.contains("none registered") && !why.contains("behind"),
        "{why}"
    );
    assert_eq!(normal["queue_position"], 1);
    assert_eq!(low["queue_position"], 2, "{low}");
    let why = low["pending_reason"].as_str().expect("why");
    assert!(why.starts_with("behind 2 jobs in the queue; "), "{why}");
    // Lists carry the priority, not the position (one look-up per job).
    let listed = h.get("/jobs").await.json();
    assert_eq!(listed[0]["priority"], 10);
    assert!(listed[0]["queue_position"].is_null());

    // Room for one job: the urgent one gets it, whatever the order of arrival.
    h.register("exec-a", 500, 4096).await;
    let report = h.send(Method::POST, "/schedule", None).await.json();
    assert_eq!(report["scheduled_jobs"], 1, "{report}");
    assert_eq!(report["assignments"][0]["job_id"], ids[1].as_str());
    assert_eq!(job(0).await["queue_position"], 0);
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
