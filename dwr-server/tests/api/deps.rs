//! Dependencies over the API: a job names the jobs it waits for; while it waits its
//! pending reason says for what; ids are checked at submit.

use axum::http::{Method, StatusCode};
use dwr_core::{ExecutorId, JobId, Outcome};
use serde_json::{json, Value};

use crate::{harness, hello, Harness};

fn after(ids: &[&str], kind: Option<&str>) -> Value {
    let mut job = hello();
    job["depends_on"] = json!(ids);
    if let Some(kind) = kind {
        job["dependency"] = json!(kind);
    }
    job
}

/// Runs the assigned job `id` on `exec-a` and ends it with `outcome`.
async fn end(h: &Harness, id: &str, outcome: Outcome) {
    let id: JobId = id.parse().unwrap();
    let store = h.store.inner();
    let exec = ExecutorId::new("exec-a");
    store.mark_running(id, &exec, 1).await.unwrap();
    store.finish(id, &outcome, Some(1)).await.unwrap();
}

#[tokio::test]
async fn a_job_waits_for_its_dependencies_and_says_so() {
    let h = harness();
    let a = h.submit(hello()).await;
    let b = h.submit(hello()).await;
    let c = h.submit(after(&[&a, &b], None)).await;

    let view = h.get(&format!("/jobs/{c}")).await.json();
    assert_eq!(view["status"], "pending");
    assert_eq!(view["depends_on"], json!([a, b]));
    assert_eq!(
        (&view["dependency"], &view["dependencies_left"]),
        (&json!("afterok"), &json!(2))
    );
    assert_eq!(view["queue_position"], Value::Null, "in no queue yet");
    let short = |id: &str| id[..8].to_owned();
    assert_eq!(
        view["pending_reason"],
        format!(
            "waiting for 2 of 2 dependencies ({}... pending, {}... pending)",
            short(&a),
            short(&b)
        )
    );
    let listed = h.get("/jobs?status=pending").await.json();
    let listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_id"] == c.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["pending_reason"], "waiting for 2 of 2 dependencies");

    h.register("exec-a", 4000, 4096).await;
    let pass = h.send(Method::POST, "/schedule", None).await.json();
    assert_eq!(pass["scheduled_jobs"], 2, "a and b, not c: {pass}");
    end(&h, &a, Outcome::exited(0, false)).await;
    let view = h.get(&format!("/jobs/{c}")).await.json();
    assert_eq!(
        view["pending_reason"],
        format!(
            "waiting for 1 of 2 dependencies ({}... assigned)",
            short(&b)
        )
    );
    end(&h, &b, Outcome::exited(0, false)).await;
    let view = h.get(&format!("/jobs/{c}")).await.json();
    assert_eq!(
        (&view["dependencies_left"], &view["queue_position"]),
        (&json!(0), &json!(0))
    );
    let pass = h.send(Method::POST, "/schedule", None).await.json();
    assert_eq!(pass["assignments"][0]["job_id"], c.as_str());
}

#[tokio::test]
async fn a_failed_dependency_fails_the_job_naming_it() {
    let h = harness();
    h.register("exec-a", 4000, 4096).await;
    let a = h.submit(hello()).await;
    let b = h.submit(after(&[&a], Some("afterok"))).await;
    let any = h.submit(after(&[&a], Some("afterany"))).await;
    h.send(Method::POST, "/schedule", None).await;
    end(&h, &a, Outcome::exited(2, false)).await;
    let b = h.get(&format!("/jobs/{b}")).await.json();
    assert_eq!(b["status"], "failed");
    assert_eq!(
        b["reason"],
        format!("dependency {a} did not succeed (afterok can no longer be met)")
    );
    let any = h.get(&format!("/jobs/{any}")).await.json();
    assert_eq!(
        (&any["status"], &any["dependencies_left"]),
        (&json!("pending"), &json!(0))
    );
}

#[tokio::test]
async fn bad_dependencies_are_refused_naming_the_field() {
    let h = harness();
    let a = h.submit(hello()).await;
    let unknown = JobId::new().to_string();
    for (body, field, needle) in [
        (after(&[&unknown], None), "depends_on", unknown.as_str()),
        (after(&["not-a-uuid"], None), "depends_on", "not-a-uuid"),
        (after(&[&a, &a], None), "depends_on", "named twice"),
        (after(&[&a], Some("afterall")), "dependency", "afterall"),
    ] {
        let answer = h.post_json("/jobs", body).await;
        answer.assert_error(StatusCode::UNPROCESSABLE_ENTITY, needle);
        let detail = answer.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.starts_with(field), "{detail}");
    }
    assert_eq!(h.total_jobs().await, 1, "only a");
}
