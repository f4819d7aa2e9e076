//! `POST /jobs` with an `Idempotency-Key`: a repeated submit returns the first job.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use dwr_core::fake::Op;
use serde_json::{json, Value};

use crate::{harness, hello, Answer, Harness};

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
