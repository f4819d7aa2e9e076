//! Arrays over the API: one submit of N tasks, the array at its own id with counts per
//! status, at most P tasks placed at once, an abort of every task not ended.

use axum::http::{Method, StatusCode};
use dwr_core::{ExecutorId, JobId, Outcome};
use serde_json::{json, Value};

use crate::{harness, hello};

fn array(count: u32, parallelism: Option<u32>) -> Value {
    let mut job = hello();
    job["array"] = match parallelism {
        Some(p) => json!({"count": count, "parallelism": p}),
        None => json!({"count": count}),
    };
    job
}

#[tokio::test]
async fn an_array_is_submitted_at_once_and_placed_p_at_a_time() {
    let h = harness();
    let answer = h.post_json("/jobs", array(6, Some(2))).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json());
    let created = answer.json();
    let id = created["array_job_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (&created["count"], &created["parallelism"]),
        (&json!(6), &json!(2))
    );
    assert_eq!(created["status"], "pending");
    assert_eq!(created["status_counts"]["pending"], 6);
    let tasks: Vec<String> = serde_json::from_value(created["task_ids"].clone()).unwrap();
    assert_eq!(tasks.len(), 6);
    for (index, task) in tasks.iter().enumerate() {
        let job = h.get(&format!("/jobs/{task}")).await.json();
        assert_eq!(
            (job["array_job_id"].as_str(), job["array_index"].as_u64()),
            (Some(id.as_str()), Some(index as u64))
        );
    }

    h.register("exec-a", 8000, 8192).await;
    let pass = h.send(Method::POST, "/schedule", None).await.json();
    assert_eq!(pass["scheduled_jobs"], 2, "parallelism 2: {pass}");
    let held = h.get(&format!("/jobs/{}", tasks[2])).await.json();
    assert_eq!(
        held["pending_reason"],
        format!("array {id} at its parallelism (2 of its tasks under way)"),
        "{held}"
    );
    let seen = h.get(&format!("/jobs/{id}")).await.json();
    assert_eq!(
        (&seen["status"], &seen["status_counts"]["assigned"]),
        (&json!("running"), &json!(2))
    );

    // One ends: one more is placed.
    let exec = ExecutorId::new("exec-a");
    let first: JobId = tasks[0].parse().unwrap();
    let store = h.store.inner();
    store.mark_running(first, &exec, 1).await.unwrap();
    store
        .finish(first, &Outcome::exited(0, false), Some(1))
        .await
        .unwrap();
    let pass = h.send(Method::POST, "/schedule", None).await.json();
    assert_eq!(pass["scheduled_jobs"], 1, "{pass}");

    // Aborting the array aborts every task not ended; the one that ended keeps its state.
    let aborted = h.send(Method::DELETE, &format!("/jobs/{id}"), None).await;
    assert_eq!(aborted.status, StatusCode::OK);
    let seen = h.get(&format!("/jobs/{id}")).await.json();
    let counts = &seen["status_counts"];
    assert_eq!(
        (&counts["succeeded"], &counts["aborted"]),
        (&json!(1), &json!(3)),
        "{seen}"
    );
    let under_way = h.get(&format!("/jobs/{}", tasks[1])).await.json();
    assert_eq!(under_way["abort_requested"], true, "{under_way}");
}

#[tokio::test]
async fn an_array_submit_is_idempotent_and_checked() {
    let h = harness();
    let key = [("Idempotency-Key", "array-1")];
    let body = Some(array(3, None).to_string().into_bytes());
    let first = h
        .send_with(Method::POST, "/jobs", body.clone(), None, &key)
        .await;
    let again = h.send_with(Method::POST, "/jobs", body, None, &key).await;
    assert_eq!(
        (first.status, again.status),
        (StatusCode::CREATED, StatusCode::OK)
    );
    assert_eq!(first.json()["array_job_id"], again.json()["array_job_id"]);
    assert_eq!(h.total_jobs().await, 3);
    for (body, needle) in [
        (array(0, None), "array.count"),
        (array(10_001, None), "array.count"),
        (array(3, Some(0)), "array.parallelism"),
        (array(3, Some(10_001)), "array.parallelism"),
    ] {
        h.post_json("/jobs", body)
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, needle);
    }
    assert_eq!(h.total_jobs().await, 3);
    // Whole numbers written with a fraction of zero are whole numbers (JSON Schema's integer).
    let mut whole = array(2, None);
    whole["array"] = json!({"count": 2.0, "parallelism": 1.0});
    let created = h.post_json("/jobs", whole).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json());
    assert_eq!(created.json()["parallelism"], 1);
}
