//! `GET /events`: the Server-Sent Events stream of changes, its filters, and the replay
//! from `Last-Event-ID`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use dwr_core::{JobId, Outcome};
use dwr_server::ApiConfig;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::{harness, harness_with, hello, Harness};

/// One event as received.
#[derive(Debug, Clone)]
struct Received {
    id: Option<String>,
    event: String,
    data: Value,
}

/// An open stream, read frame by frame.
struct Events {
    body: Body,
    buffer: String,
}

impl Events {
    /// The next event (keep-alive comments skipped), within 10 s.
    async fn next(&mut self) -> Received {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Received {
                    id,
                    event,
                    data: serde_json::from_str(&data).expect("data is JSON"),
                };
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event within 10 s")
                .expect("the stream is open")
                .expect("a frame");
            if let Ok(bytes) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }

    /// Asserts that nothing more comes within `quiet`.
    async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(event) = tokio::time::timeout(quiet, self.next()).await {
            panic!("unexpected event {event:?}");
        }
    }
}

/// Opens `/events{query}` with `headers`; the status and, when 200, the stream.
async fn open(h: &Harness, query: &str, headers: &[(&str, &str)]) -> (StatusCode, Events) {
    let mut request = Request::builder().uri(format!("/events{query}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(token) = &h.token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = h
        .app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    if status == StatusCode::OK {
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
    }
    let events = Events {
        body: response.into_body(),
        buffer: String::new(),
    };
    (status, events)
}

async fn stream(h: &Harness, query: &str) -> Events {
    let (status, events) = open(h, query, &[]).await;
    assert_eq!(status, StatusCode::OK);
    events
}

/// Submits and schedules a job onto executor `e1`, and marks it running; returns its id.
async fn running_job(h: &Harness) -> JobId {
    let id: JobId = h.submit(hello()).await.parse().unwrap();
    assert_eq!(
        h.post_json("/schedule", Value::Null).await.status,
        StatusCode::OK
    );
    let store = h.store.inner();
    store
        .mark_running(id, &dwr_core::ExecutorId::new("e1"), 1)
        .await
        .unwrap();
    id
}

fn job_change(event: &Received) -> (&str, &str) {
    assert_eq!(event.event, "job", "{event:?}");
    (
        event.data["job_id"].as_str().unwrap(),
        event.data["change"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn a_jobs_life_and_an_executor_arrive_in_order_with_increasing_ids() {
    let h = harness();
    let mut events = stream(&h, "").await;
    h.register("e1", 4000, 8192).await;
    let joined = events.next().await;
    assert_eq!(joined.event, "executor");
    assert_eq!(joined.data["executor_id"], "e1");
    assert_eq!(joined.data["change"], "joined");

    let id = running_job(&h).await;
    let id_text = id.to_string();
    let submitted = events.next().await;
    assert_eq!(job_change(&submitted), (id_text.as_str(), "submitted"));
    assert_eq!(submitted.data["queue"], "default");
    assert_eq!(submitted.data["status"], "pending");
    let assigned = events.next().await;
    assert_eq!(job_change(&assigned), (id_text.as_str(), "assigned"));
    assert_eq!(assigned.data["previous"], "pending");
    assert_eq!(assigned.data["queue"], "default");
    assert_eq!(
        job_change(&events.next().await),
        (id_text.as_str(), "running")
    );
    assert_eq!(
        h.send(axum::http::Method::DELETE, &format!("/jobs/{id}"), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        job_change(&events.next().await),
        (id_text.as_str(), "abort_requested")
    );
    h.store
        .inner()
        .finish(id, &dwr_core::AbortCause::User.outcome(), Some(1))
        .await
        .unwrap();
    let aborted = events.next().await;
    assert_eq!(job_change(&aborted), (id_text.as_str(), "aborted"));
    assert_eq!(aborted.data["previous"], "running");

    let ids: Vec<u64> = [&joined, &submitted, &assigned, &aborted]
        .iter()
        .map(|e| {
            let id = e.id.as_deref().expect("every event has an id");
            id.rsplit_once('-').unwrap().1.parse().unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[tokio::test]
async fn filters_by_job_status_and_queue_leave_executors_out() {
    let h = harness();
    h.register("e1", 4000, 8192).await;
    let first = h.submit(hello()).await;
    let mut of_job = stream(&h, &format!("?job={first}")).await;
    let mut ended = stream(&h, "?status=succeeded,failed").await;
    let mut of_queue = stream(&h, "?queue=default").await;
    let mut of_other_queue = stream(&h, "?queue=batch").await;
    h.register("e2", 4000, 8192).await;
    let second: JobId = h.submit(hello()).await.parse().unwrap();
    let first: JobId = first.parse().unwrap();
    assert_eq!(
        h.post_json("/schedule", Value::Null).await.status,
        StatusCode::OK
    );
    let store = h.store.inner();
    for id in [first, second] {
        let on = store.job(id).await.unwrap().executor.unwrap();
        store.mark_running(id, &on, 1).await.unwrap();
        store
            .finish(id, &Outcome::exited(0, false), Some(1))
            .await
            .unwrap();
    }
    let first_text = first.to_string();
    for change in ["assigned", "running", "succeeded"] {
        assert_eq!(
            job_change(&of_job.next().await),
            (first_text.as_str(), change)
        );
    }
    of_job.assert_quiet(Duration::from_millis(200)).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = ended.next().await;
        assert_eq!(event.data["change"], "succeeded", "{event:?}");
        seen.push(event.data["job_id"].as_str().unwrap().to_owned());
    }
    seen.sort();
    let mut both = vec![first.to_string(), second.to_string()];
    both.sort();
    assert_eq!(seen, both);
    ended.assert_quiet(Duration::from_millis(200)).await;
    // The queue's events: the second job's submission, then both jobs' three moves.
    let mut in_queue = 0;
    while tokio::time::timeout(Duration::from_millis(300), of_queue.next())
        .await
        .is_ok()
    {
        in_queue += 1;
    }
    assert_eq!(
        in_queue, 7,
        "no executor events, every job event of the queue"
    );
    of_other_queue
        .assert_quiet(Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn last_event_id_resumes_after_what_was_received() {
    let h = harness();
    let mut events = stream(&h, "").await;
    h.register("e1", 4000, 8192).await;
    let id = running_job(&h).await;
    let _joined = events.next().await;
    let submitted = events.next().await;
    drop(events);
    // While nobody listens: the job ends.
    h.store
        .inner()
        .finish(id, &Outcome::exited(0, false), Some(1))
        .await
        .unwrap();

    let last = submitted.id.clone().unwrap();
    let (status, mut resumed) = open(&h, "", &[("Last-Event-ID", &last)]).await;
    assert_eq!(status, StatusCode::OK);
    let id_text = id.to_string();
    for change in ["assigned", "running", "succeeded"] {
        assert_eq!(
            job_change(&resumed.next().await),
            (id_text.as_str(), change)
        );
    }
    // Then live.
    h.register("e2", 4000, 8192).await;
    assert_eq!(resumed.next().await.data["executor_id"], "e2");

    // An id from another start of the server cannot be resumed: reset first, then live.
    let (_, mut foreign) = open(&h, "", &[("Last-Event-ID", "0000beef-3")]).await;
    let reset = foreign.next().await;
    assert_eq!(reset.event, "reset", "{reset:?}");
    h.register("e3", 4000, 8192).await;
    assert_eq!(foreign.next().await.data["executor_id"], "e3");
}

#[tokio::test]
async fn bad_filters_name_their_field_and_a_token_is_required() {
    let h = harness();
    for (query, field) in [
        ("?job=not-a-job", "job"),
        ("?status=running,sleeping", "status"),
        ("?queue=%20", "queue"),
    ] {
        let (status, events) = open(&h, query, &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let body = events.body.collect().await.unwrap().to_bytes();
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            error["detail"].as_str().unwrap().starts_with(field),
            "{query}: {error}"
        );
    }
    let guarded = harness_with(ApiConfig {
        api_token: Some("s3cret-token-for-events".to_owned()),
        ..ApiConfig::default()
    });
    let unauthenticated = Harness {
        token: None,
        ..guarded
    };
    let (status, _) = open(&unauthenticated, "", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let authenticated = Harness {
        token: Some("s3cret-token-for-events".to_owned()),
        ..unauthenticated
    };
    let (status, _) = open(&authenticated, "", &[]).await;
    assert_eq!(status, StatusCode::OK);
}
