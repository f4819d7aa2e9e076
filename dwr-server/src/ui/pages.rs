//! The pages that read: overview, jobs, a job (and its log lines for the script), executors,
//! and the change stream the script listens to.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use dwr_client::wire::{ExecutorView, JobView};
use dwr_core::{JobId, JobQuery, JobState};
use maud::{html, Markup};
use serde::Deserialize;

use super::{error_page, layout, sparkline, status_badge, Nav, Session};
use crate::api::{ApiError, AppState};

/// Jobs per page of the jobs list.
pub const PAGE_SIZE: usize = 50;
/// With a filter the store cannot apply (queue, owner, image), the newest jobs searched.
pub const SEARCH_LIMIT: usize = 20_000;
/// Log lines a job page shows before the script takes over.
const LOG_LINES_SHOWN: usize = 1_000;

/// `GET /ui`: counts per status, and the last hour's placements and utilization.
pub async fn overview(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Response {
    let store = state.scheduler.store();
    let counts = match store.counts().await {
        Ok(counts) => counts,
        Err(e) => return error_page(e.into(), Some(&session)),
    };
    let (cpu, memory) = super::history::utilization(&state.scheduler)
        .await
        .unwrap_or((0.0, 0.0));
    let samples = state.ui.history.samples();
    let rates: Vec<f64> = samples.iter().map(|s| s.placements_per_second).collect();
    let cpus: Vec<f64> = samples.iter().map(|s| s.cpu).collect();
    let mems: Vec<f64> = samples.iter().map(|s| s.memory).collect();
    let top_rate = rates.iter().copied().fold(1.0, f64::max);
    let last_rate = rates.last().copied().unwrap_or(0.0);
    let body = html! {
        h1 { "Overview" }
        section aria-labelledby="counts" {
            h2 id="counts" { "Jobs by status" }
            ul.counts {
                @for state in JobState::ALL {
                    li {
                        a href={"/ui/jobs?status=" (state.as_str())} {
                            (status_badge(state.as_str()))
                            " "
                            strong data-count=(state.as_str()) { (counts.get(&state).copied().unwrap_or(0)) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="history" {
            h2 id="history" { "The last hour" }
            p.note { "Sampled every 10 s since this scheduler first showed the dashboard ("
                (samples.len()) " samples)." }
            div.charts {
                figure {
                    figcaption { "Placements per second (this scheduler): " strong { (format!("{last_rate:.1}")) } }
                    (sparkline(&rates, top_rate, "placements per second over the last hour"))
                }
                figure {
                    figcaption { "CPU allocated: " strong { (format!("{:.0} %", cpu * 100.0)) } }
                    (sparkline(&cpus, 1.0, "CPU allocated over the last hour"))
                }
                figure {
                    figcaption { "Memory allocated: " strong { (format!("{:.0} %", memory * 100.0)) } }
                    (sparkline(&mems, 1.0, "memory allocated over the last hour"))
                }
            }
        }
    };
    layout(
        "Overview",
        Nav::Overview,
        Some(&session),
        Some("main"),
        body,
    )
    .into_response()
}

/// Query of `GET /ui/jobs`.
#[derive(Debug, Default, Deserialize)]
pub struct JobsQuery {
    status: Option<String>,
    queue: Option<String>,
    owner: Option<String>,
    /// A job id, or part of an image name.
    q: Option<String>,
    page: Option<String>,
}

/// `GET /ui/jobs`: newest first, filtered, a page at a time.
pub async fn jobs(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<JobsQuery>,
) -> Response {
    match jobs_page(&state, &query).await {
        Ok(body) => layout("Jobs", Nav::Jobs, Some(&session), Some("main"), body).into_response(),
        Err(e) => error_page(e, Some(&session)),
    }
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The jobs page's content.
async fn jobs_page(state: &AppState, query: &JobsQuery) -> Result<Markup, ApiError> {
    let store = state.scheduler.store();
    let status = match nonempty(&query.status) {
        None => None,
        Some(s) => Some(
            s.parse::<JobState>()
                .map_err(|e| ApiError::validation(format!("status: {e}")))?,
        ),
    };
    let page = match nonempty(&query.page) {
        None => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|p| (1..=100_000).contains(p))
            .ok_or_else(|| ApiError::validation("page: a number from 1 to 100000"))?,
    };
    let (queue, owner, search) = (
        nonempty(&query.queue),
        nonempty(&query.owner),
        nonempty(&query.q),
    );
    let mut note = None;
    let mut more = false;
    let rows: Vec<dwr_core::Job> = if let Some(id) = search.and_then(|q| q.parse::<JobId>().ok()) {
        match store.job(id).await {
            Ok(job) => vec![job],
            Err(dwr_core::StoreError::JobNotFound { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        }
    } else if queue.is_none() && owner.is_none() && search.is_none() {
        let mut jobs = store
            .jobs(&JobQuery {
                state: status,
                offset: (page - 1) * PAGE_SIZE,
                limit: PAGE_SIZE + 1,
            })
            .await?;
        more = jobs.len() > PAGE_SIZE;
        jobs.truncate(PAGE_SIZE);
        jobs
    } else {
        // Filters the store does not index: search the newest jobs a batch at a time.
        let wanted = page * PAGE_SIZE + 1;
        let (mut found, mut offset) = (Vec::new(), 0);
        while found.len() < wanted && offset < SEARCH_LIMIT {
            let batch = store
                .jobs(&JobQuery {
                    state: status,
                    offset,
                    limit: 1000,
                })
                .await?;
            let done = batch.len() < 1000;
            offset += batch.len();
            found.extend(batch.into_iter().filter(|j| {
                queue.is_none_or(|q| j.spec.queue == q)
                    && owner.is_none_or(|o| j.spec.owner.as_deref() == Some(o))
                    && search.is_none_or(|s| j.spec.image.contains(s))
            }));
            if done {
                break;
            }
        }
        if offset >= SEARCH_LIMIT {
            note = Some(format!("Searched the newest {SEARCH_LIMIT} jobs."));
        }
        more = found.len() > page * PAGE_SIZE;
        found
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect()
    };
    let link = |page: usize| {
        let mut params = vec![format!("page={page}")];
        for (name, value) in [
            ("status", nonempty(&query.status)),
            ("queue", queue),
            ("owner", owner),
            ("q", search),
        ] {
            if let Some(v) = value {
                params.push(format!("{name}={}", super::percent_encode(v)));
            }
        }
        format!("/ui/jobs?{}", params.join("&"))
    };
    Ok(html! {
        h1 { "Jobs" }
        form.filters method="get" action="/ui/jobs" role="search" {
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for s in JobState::ALL {
                        option value=(s.as_str()) selected[status == Some(s)] { (s.as_str()) }
                    }
                }
            }
            label { "Queue " input type="text" name="queue" value=[queue] size="10"; }
            label { "Owner " input type="text" name="owner" value=[owner] size="10"; }
            label { "Job id or image " input type="search" name="q" value=[search] size="24"; }
            button type="submit" { "Filter" }
        }
        @if let Some(note) = note { p.note { (note) } }
        @if rows.is_empty() {
            p { "No jobs." }
        } @else {
            table.jobs {
                caption.visually-hidden { "Jobs, newest first" }
                thead { tr {
                    th scope="col" { "Job" } th scope="col" { "Status" } th scope="col" { "Image" }
                    th scope="col" { "Queue" } th scope="col" { "Owner" } th scope="col" { "Created" }
                    th scope="col" { "Log" }
                } }
                tbody {
                    @for job in &rows {
                        tr data-job=(job.id) {
                            td { a href={"/ui/jobs/" (job.id)} { code { (short(&job.id.to_string())) } } }
                            td { (status_badge(job.state.as_str())) }
                            td { (job.spec.image) }
                            td { (job.spec.queue) }
                            td { (job.spec.owner.as_deref().unwrap_or("")) }
                            td { (job.created_at.to_rfc3339()) }
                            td { a href={"/ui/jobs/" (job.id) "#log"} { "log" } }
                        }
                    }
                }
            }
        }
        nav.pages aria-label="Pages" {
            @if page > 1 { a href=(link(page - 1)) rel="prev" { "← Newer" } }
            span { "Page " (page) }
            @if more { a href=(link(page + 1)) rel="next" { "Older →" } }
        }
    })
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `GET /ui/jobs/{id}`.
pub async fn job(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    // The page's script re-reads the page for its live region only, which holds no log
    // line: its own reads follow the log. The log is read for a page a person opens.
    let refresh = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes() == b"dwr-ui");
    match job_page(&state, &session, &id, !refresh).await {
        Ok(body) => {
            layout("Job", Nav::Jobs, Some(&session), Some("job-live"), body).into_response()
        }
        Err(e) => error_page(e, Some(&session)),
    }
}

async fn job_page(
    state: &AppState,
    session: &Session,
    id: &str,
    with_log: bool,
) -> Result<Markup, ApiError> {
    let id: JobId = id.trim().parse()?;
    let store = state.scheduler.store();
    let job = store.job(id).await?;
    let view = crate::api::job_view_now(state, &session.caller, &job).await?;
    let lines = if with_log {
        store.logs(id, 0).await?
    } else {
        Vec::new()
    };
    let skipped = lines.len().saturating_sub(LOG_LINES_SHOWN);
    let shown = &lines[skipped..];
    let terminal = job.state.is_terminal();
    Ok(html! {
        h1 { "Job " code { (view.job_id) } }
        div id="job-live" data-job=(view.job_id) data-terminal=(terminal) {
            (job_summary(&view))
            @if !terminal && !view.abort_requested {
                form.abort method="post" action={"/ui/jobs/" (view.job_id) "/abort"}
                    data-confirm="Abort this job? Its container is stopped." {
                    input type="hidden" name="csrf_token" value=(session.csrf);
                    input type="hidden" name="confirmed" value="";
                    button type="submit" class="danger" { "Abort job" }
                }
            }
        }
        section aria-labelledby="log-title" {
            h2 id="log-title" { "Log" }
            div.log-controls {
                button type="button" id="log-follow" aria-pressed="true" hidden { "Pause" }
                button type="button" id="log-end" hidden { "Jump to the end" }
                span id="log-state" role="status" {}
            }
            @if skipped > 0 { p.note { "The first " (skipped) " lines are not shown." } }
            pre id="log" tabindex="0" data-next=(skipped + shown.len()) aria-label="Job log" {
                @for line in shown { (line) "\n" }
            }
        }
        section aria-labelledby="spec-title" {
            h2 id="spec-title" { "Spec" }
            dl.spec {
                dt { "Image" } dd { code { (view.docker_image) } }
                dt { "Command" } dd { code { (view.command.join(" ")) } }
                dt { "CPU" } dd { (view.cpu_cores) " cores" }
                dt { "Memory" } dd { (view.memory_mb) " MB" }
                dt { "GPUs" } dd { (view.gpu_count) @if let Some(t) = &view.gpu_type { " × " (t) } }
                dt { "Queue" } dd { (view.queue) }
                dt { "Priority" } dd { (view.priority) }
                dt { "Owner" } dd { (view.owner.as_deref().unwrap_or("—")) }
                @if !view.env.is_empty() {
                    dt { "Environment" }
                    dd { ul { @for (k, v) in &view.env { li { code { (k) "=" (v) } } } } }
                }
            }
        }
    })
}

/// The parts of a job page that change: status, pending reason, timeline.
fn job_summary(view: &JobView) -> Markup {
    html! {
        p.status-line {
            "Status: " span id="job-status" data-status=(view.status.as_str()) { (status_badge(view.status.as_str())) }
            @if view.abort_requested && !view.status.is_terminal() { " (stopping: abort requested)" }
        }
        @if let Some(reason) = &view.pending_reason {
            p id="pending-reason" { strong { "Why it is pending: " } (reason) }
        }
        @if let Some(reason) = &view.reason {
            p id="job-reason" { strong { "Reason: " } (reason) }
        }
        @if let Some(code) = view.exit_code { p { "Exit code " (code) @if view.oom_killed { " (killed: out of memory)" } } }
        h2 { "Timeline" }
        ol.timeline {
            @for (at, what) in timeline(view) { li { time { (at) } " " (what) } }
        }
    }
}

/// The job's moves, oldest first: submitted, each earlier attempt's end, then the current
/// attempt's assignment, start and end.
fn timeline(view: &JobView) -> Vec<(String, String)> {
    let mut moves = vec![(view.created_at.clone(), "submitted".to_owned())];
    for attempt in view.attempts.iter().filter(|a| a.attempt < view.attempt) {
        let mut what = format!("attempt {} ended", attempt.attempt);
        if let Some(on) = &attempt.executor_id {
            what.push_str(&format!(" on {on}"));
        }
        if let Some(reason) = &attempt.reason {
            what.push_str(&format!(": {reason}"));
        }
        moves.push((attempt.ended_at.clone(), what));
    }
    if let Some(at) = &view.assigned_at {
        let to = view
            .executor_id
            .as_deref()
            .map(|e| format!(" to {e}"))
            .unwrap_or_default();
        moves.push((at.clone(), format!("assigned{to}")));
    }
    if let Some(at) = &view.started_at {
        moves.push((at.clone(), "running".to_owned()));
    }
    if let Some(at) = &view.finished_at {
        moves.push((at.clone(), view.status.as_str().to_owned()));
    }
    // RFC 3339 in UTC with the same precision: text order is time order.
    moves.sort_by(|a, b| a.0.cmp(&b.0));
    moves
}

/// Query of `GET /ui/jobs/{id}/lines`.
#[derive(Debug, Deserialize)]
pub struct LinesQuery {
    from: Option<usize>,
}

/// `GET /ui/jobs/{id}/lines?from=N`: the log lines from line N, and whether the job ended
/// (for the page's script).
pub async fn job_lines(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LinesQuery>,
) -> Result<Response, ApiError> {
    let id: JobId = id.trim().parse()?;
    let store = state.scheduler.store();
    let from = query.from.unwrap_or(0);
    let lines = store.logs(id, from).await?;
    let ended = store.job(id).await?.state.is_terminal();
    Ok(axum::Json(serde_json::json!({
        "from": from,
        "lines": lines,
        "ended": ended,
    }))
    .into_response())
}

/// `GET /ui/executors`.
pub async fn executors(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Response {
    let store = state.scheduler.store();
    let read = async {
        let now = store.now().await?;
        let executors = store.executors().await?;
        Ok::<_, dwr_core::StoreError>(
            executors
                .iter()
                .map(|e| ExecutorView::from_executor(e, now))
                .collect::<Vec<_>>(),
        )
    };
    let views = match read.await {
        Ok(v) => v,
        Err(e) => return error_page(e.into(), Some(&session)),
    };
    let bar = |label: &str, used: f64, total: f64, unit: &str| {
        let pct = if total > 0.0 {
            used / total * 100.0
        } else {
            0.0
        };
        html! {
            div.bar-row {
                span.bar-label { (label) }
                meter min="0" max=(total) value=(used) aria-label=(label) {}
                span { (format!("{used:.1} of {total:.1} {unit} ({pct:.0} %)")) }
            }
        }
    };
    let body = html! {
        h1 { "Executors" }
        @if views.is_empty() { p { "No executors registered." } }
        @for e in &views {
            article.executor data-executor=(e.id) aria-labelledby={"ex-" (e.id)} {
                h2 id={"ex-" (e.id)} {
                    (e.id) " "
                    @if e.alive { span.badge.alive { "alive" } } @else { span.badge.lost { "lost" } }
                }
                p.meta { (e.ip) " · region " (e.region.as_deref().unwrap_or("—"))
                    " · datacenter " (e.datacenter.as_deref().unwrap_or("—"))
                    " · " (e.running_jobs) " jobs · last heartbeat " (e.last_heartbeat) }
                (bar("CPU", e.total_cpu_cores - e.available_cpu_cores, e.total_cpu_cores, "cores"))
                (bar("Memory", e.total_memory_gb - e.available_memory_gb, e.total_memory_gb, "GB"))
                (bar("GPUs", f64::from(e.total_gpus - e.available_gpus), f64::from(e.total_gpus), "GPUs"))
                @if !e.gpus.is_empty() {
                    table.gpus {
                        caption { "GPU devices of " (e.id) }
                        thead { tr { th scope="col" { "Index" } th scope="col" { "Model" } th scope="col" { "UUID" } th scope="col" { "Held by" } } }
                        tbody { @for g in &e.gpus { tr {
                            td { (g.index) } td { (g.model) } td { code { (g.uuid) } }
                            td { @if let Some(j) = &g.job_id { a href={"/ui/jobs/" (j)} { code { (short(j)) } } } @else { "free" } }
                        } } }
                    }
                }
            }
        }
    };
    layout(
        "Executors",
        Nav::Executors,
        Some(&session),
        Some("main"),
        body,
    )
    .into_response()
}

/// `GET /ui/events`: the change stream for the page's script (session-authenticated).
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<crate::api::EventParams>,
) -> Result<Response, ApiError> {
    crate::api::stream_events(state, &headers, &params).await
}
