//! `GET /events`: a Server-Sent Events stream of job and executor changes, for live views
//! (the dashboard, `curl -N`, any `EventSource`).
//!
//! An [`EventHub`] per API process follows the store's changes
//! ([`JobStore::changes`](dwr_core::JobStore::changes): every process sharing the store, not
//! only this one), numbers them, and keeps the last [`EVENTS_KEPT`] in memory. A client that
//! reconnects with `Last-Event-ID` gets what it missed from there, then the live events; when
//! that is not possible (the id is older than what is kept, or from another process or
//! another start of this one) it gets a `reset` event first: reload what you show. A `reset`
//! also follows a gap in the changes themselves (the store's subscription reconnected, or the
//! client fell behind). The hub starts with the first stream, so the first stream of a
//! process replays nothing.
//!
//! Wire format: `event: job` with `{"job_id", "change", "status", "previous", "queue"}`
//! (`change`: `submitted`, `assigned`, `running`, `succeeded`, `failed`, `aborted`,
//! `requeued` (back to pending for a retry or after a preemption), `abort_requested`,
//! `preempted`), `event: executor` with `{"executor_id", "change"}` (`joined`, `lost`), and
//! `event: reset` with `{"reason"}`; each with an `id:` of the form `<start>-<n>`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use dwr_core::{Change, JobId, JobState, JobStore};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use utoipa::IntoParams;

use super::jobs::parse_job_id;
use super::{ApiError, AppState};

/// Events kept for replay (`Last-Event-ID`).
pub const EVENTS_KEPT: usize = 10_000;
/// Live events a slow stream may fall behind by before it gets a `reset`.
const LIVE_BUFFER: usize = 1024;
/// Jobs whose queue the hub remembers (from their submission, or read once) at most; a job
/// is forgotten when it ends.
const QUEUES_KEPT: usize = 100_000;

/// One numbered event.
#[derive(Debug)]
struct Numbered {
    n: u64,
    /// `job`, `executor` or `reset`.
    kind: &'static str,
    job: Option<JobId>,
    /// The state a job event left the job in (`None` for an abort request).
    status: Option<JobState>,
    queue: Option<String>,
    data: String,
}

/// The process's event numbering, replay buffer and live fan-out.
#[derive(Debug)]
pub struct EventHub {
    /// Names this start of the process in event ids.
    start: String,
    state: Mutex<HubState>,
    live: broadcast::Sender<Arc<Numbered>>,
    started: tokio::sync::OnceCell<()>,
}

#[derive(Debug, Default)]
struct HubState {
    next: u64,
    kept: VecDeque<Arc<Numbered>>,
    queues: HashMap<JobId, String>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            start: JobId::new().to_string()[..8].to_owned(),
            state: Mutex::new(HubState {
                next: 1,
                ..HubState::default()
            }),
            live: broadcast::channel(LIVE_BUFFER).0,
            started: tokio::sync::OnceCell::new(),
        }
    }
}

impl EventHub {
    /// Starts following `store` (once): waits until its changes are subscribed.
    async fn start(self: &Arc<Self>, store: Arc<dyn JobStore>) -> Result<(), ApiError> {
        self.started
            .get_or_try_init(|| async {
                let changes = store
                    .changes()
                    .await
                    .map_err(|e| ApiError::unavailable(format!("events: {e}")))?;
                tokio::spawn(follow(Arc::downgrade(self), store, changes));
                Ok::<_, ApiError>(())
            })
            .await
            .map(|_| ())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers, keeps and sends one event.
    fn publish(
        &self,
        kind: &'static str,
        job: Option<JobId>,
        status: Option<JobState>,
        queue: Option<String>,
        data: serde_json::Value,
    ) {
        let mut state = self.lock();
        let event = Arc::new(Numbered {
            n: state.next,
            kind,
            job,
            status,
            queue,
            data: data.to_string(),
        });
        state.next += 1;
        if state.kept.len() == EVENTS_KEPT {
            state.kept.pop_front();
        }
        state.kept.push_back(event.clone());
        // Sent under the lock: a stream that took its replay under the lock misses nothing.
        let _ = self.live.send(event);
    }

    fn id_of(&self, event: &Numbered) -> String {
        format!("{}-{}", self.start, event.n)
    }

    /// The events after `last` (an id this hub gave) and the live ones from then on; `reset`
    /// first when `last` is given and what followed it is no longer all kept.
    fn resume(
        &self,
        last: Option<&str>,
    ) -> (bool, Vec<Arc<Numbered>>, broadcast::Receiver<Arc<Numbered>>) {
        let state = self.lock();
        let live = self.live.subscribe();
        let Some(last) = last else {
            return (false, Vec::new(), live);
        };
        let after = last
            .split_once('-')
            .filter(|(start, _)| *start == self.start)
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .filter(|n| *n < state.next);
        let oldest = state.kept.front().map_or(state.next, |e| e.n);
        match after {
            Some(n) if n + 1 >= oldest => {
                let replay = state.kept.iter().filter(|e| e.n > n).cloned().collect();
                (false, replay, live)
            }
            _ => (true, Vec::new(), live),
        }
    }
}

/// Turns the store's changes into events until the hub is gone.
async fn follow(
    hub: std::sync::Weak<EventHub>,
    store: Arc<dyn JobStore>,
    mut changes: dwr_core::ChangeReceiver,
) {
    loop {
        let Some(change) = changes.next().await else {
            // The feed ended: subscribe again, and say that changes were missed.
            tokio::time::sleep(Duration::from_secs(1)).await;
            match store.changes().await {
                Ok(again) => changes = again,
                Err(error) => {
                    tracing::warn!(%error, "events: subscribing to the store's changes failed");
                    continue;
                }
            }
            let Some(hub) = hub.upgrade() else { return };
            hub.publish(
                "reset",
                None,
                None,
                None,
                json!({"reason": "changes were missed"}),
            );
            continue;
        };
        let Some(hub) = hub.upgrade() else { return };
        match change {
            Change::Submitted { id, queue } => {
                {
                    let mut state = hub.lock();
                    if state.queues.len() >= QUEUES_KEPT {
                        state.queues.clear();
                    }
                    state.queues.insert(id, queue.clone());
                }
                hub.publish(
                    "job",
                    Some(id),
                    Some(JobState::Pending),
                    Some(queue.clone()),
                    json!({"job_id": id, "change": "submitted", "status": "pending",
                           "previous": null, "queue": queue}),
                );
            }
            Change::Job { id, from, to } => {
                let queue = queue_of(&hub, store.as_ref(), id).await;
                if to.is_terminal() {
                    // Its last change: what the hub remembers stays bounded by the jobs
                    // under way.
                    hub.lock().queues.remove(&id);
                }
                let change = if to == JobState::Pending {
                    "requeued"
                } else {
                    to.as_str()
                };
                hub.publish(
                    "job",
                    Some(id),
                    Some(to),
                    queue.clone(),
                    json!({"job_id": id, "change": change, "status": to.as_str(),
                           "previous": from.as_str(), "queue": queue}),
                );
            }
            Change::AbortRequested { id, preempted } => {
                let queue = queue_of(&hub, store.as_ref(), id).await;
                let change = if preempted {
                    "preempted"
                } else {
                    "abort_requested"
                };
                hub.publish(
                    "job",
                    Some(id),
                    None,
                    queue.clone(),
                    json!({"job_id": id, "change": change, "status": null,
                           "previous": null, "queue": queue}),
                );
            }
            Change::ExecutorJoined { id } => hub.publish(
                "executor",
                None,
                None,
                None,
                json!({"executor_id": id, "change": "joined"}),
            ),
            Change::ExecutorLost { id } => hub.publish(
                "executor",
                None,
                None,
                None,
                json!({"executor_id": id, "change": "lost"}),
            ),
            Change::Gap => hub.publish(
                "reset",
                None,
                None,
                None,
                json!({"reason": "changes were missed"}),
            ),
            other => tracing::debug!(?other, "events: a change this version does not show"),
        }
    }
}

/// The queue of job `id`: remembered from its submission, else read once (a job submitted
/// before the hub started); `None` when it cannot be read (deleted meanwhile).
async fn queue_of(hub: &EventHub, store: &dyn JobStore, id: JobId) -> Option<String> {
    if let Some(queue) = hub.lock().queues.get(&id) {
        return Some(queue.clone());
    }
    let queue = store.job(id).await.ok()?.spec.queue;
    let mut state = hub.lock();
    if state.queues.len() >= QUEUES_KEPT {
        state.queues.clear();
    }
    state.queues.insert(id, queue.clone());
    Some(queue)
}

/// Query of `GET /events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only the events of this job.
    job: Option<String>,
    /// Only job events that leave a job in one of these states (comma-separated).
    status: Option<String>,
    /// Only the events of jobs of this queue.
    queue: Option<String>,
}

/// What a stream lets through.
#[derive(Debug, Default)]
struct Filter {
    job: Option<JobId>,
    status: Option<HashSet<JobState>>,
    queue: Option<String>,
}

impl Filter {
    fn parse(params: &EventParams) -> Result<Self, ApiError> {
        let job = match params.job.as_deref() {
            None => None,
            Some(text) => Some(parse_job_id(text).map_err(|_| {
                ApiError::validation(format!("job: {:?} is not a job id", clip(text)))
            })?),
        };
        let status = match params.status.as_deref() {
            None => None,
            Some(text) => Some(
                text.split(',')
                    .map(|s| {
                        s.trim().parse::<JobState>().map_err(|_| {
                            ApiError::validation(format!(
                                "status: {:?} is not one of pending, assigned, running, \
                                 succeeded, failed, aborted",
                                clip(s)
                            ))
                        })
                    })
                    .collect::<Result<HashSet<_>, _>>()?,
            ),
        };
        let queue = match params.queue.as_deref().map(str::trim) {
            None => None,
            Some("") => return Err(ApiError::validation("queue: empty")),
            Some(q) => Some(q.to_owned()),
        };
        Ok(Self { job, status, queue })
    }

    fn admits(&self, event: &Numbered) -> bool {
        if event.kind == "reset" {
            return true;
        }
        let filtered = self.job.is_some() || self.status.is_some() || self.queue.is_some();
        if event.kind != "job" {
            return !filtered;
        }
        self.job.is_none_or(|id| event.job == Some(id))
            && self
                .status
                .as_ref()
                .is_none_or(|set| event.status.is_some_and(|s| set.contains(&s)))
            && self
                .queue
                .as_ref()
                .is_none_or(|q| event.queue.as_deref() == Some(q.as_str()))
    }
}

fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

/// `GET /events`.
#[utoipa::path(
    get,
    path = "/events",
    params(
        EventParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (the id of the last event received)"),
    ),
    responses(
        (status = 200, description = "A text/event-stream of `job`, `executor` and `reset` events (see the README, \"Events\")", content_type = "text/event-stream", body = String),
        (status = 422, description = "A bad job id, status or queue", body = dwr_client::wire::ErrorBody),
        (status = 503, description = "The store's changes cannot be followed, too many streams are open, or the request took longer than the server's limit", body = dwr_client::wire::ErrorBody),
    ),
    tag = "events"
)]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<EventParams>,
) -> Result<Response, ApiError> {
    stream_events(state, &headers, &params).await
}

/// The stream of `GET /events` (and of the dashboard's `/ui/events`) for a caller already
/// authenticated.
pub(crate) async fn stream_events(
    state: AppState,
    headers: &HeaderMap,
    params: &EventParams,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(params)?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    // A stream holds a permit of the streams' limit until it ends.
    let permit = state.followers.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too_many_followers",
            format!(
                "{} streams are open, the most this server allows; retry later",
                state.config.max_log_followers
            ),
        )
    })?;
    let hub = state.events.clone();
    hub.start(state.scheduler.store().clone()).await?;
    let (reset, replay, live) = hub.resume(last.as_deref());
    let stream = event_stream(hub, filter, reset, replay, live).map(move |event| {
        let _held = &permit;
        event
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn event_stream(
    hub: Arc<EventHub>,
    filter: Filter,
    reset: bool,
    replay: Vec<Arc<Numbered>>,
    live: broadcast::Receiver<Arc<Numbered>>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send {
    let last_replayed = replay.last().map(|e| e.n);
    let first = reset.then(|| {
        SseEvent::default()
            .event("reset")
            .data(r#"{"reason":"the events after Last-Event-ID are no longer kept"}"#)
    });
    let hub_replay = hub.clone();
    let filter = Arc::new(filter);
    let filter_replay = filter.clone();
    let replayed = stream::iter(replay)
        .filter(move |e| std::future::ready(filter_replay.admits(e)))
        .map(move |e| sse(&hub_replay, &e));
    let live = stream::unfold(live, |mut live| async move {
        match live.recv().await {
            Ok(event) => Some((Some(event), live)),
            // Fell behind: say so, and go on with what comes next.
            Err(broadcast::error::RecvError::Lagged(_)) => Some((None, live)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
    .filter_map(move |event| {
        let admitted = match event {
            None => Some(
                SseEvent::default()
                    .event("reset")
                    .data(r#"{"reason":"this stream fell behind"}"#),
            ),
            Some(e) if last_replayed.is_some_and(|n| e.n <= n) => None,
            Some(e) if filter.admits(&e) => Some(sse(&hub, &e)),
            Some(_) => None,
        };
        std::future::ready(admitted)
    });
    stream::iter(first)
        .chain(replayed)
        .chain(live)
        .map(Ok::<_, Infallible>)
}

fn sse(hub: &EventHub, event: &Numbered) -> SseEvent {
    SseEvent::default()
        .id(hub.id_of(event))
        .event(event.kind)
        .data(&event.data)
}
