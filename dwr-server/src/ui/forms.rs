//! The pages that change something: submit a job, abort one, sign in and out.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use dwr_client::wire::JobRequest;
use dwr_core::JobId;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;

use super::{check_csrf, error_page, layout, session_cookie, tokens_configured, Nav, Session};
use crate::api::{auth, ApiError, AppState};

/// The submit form's fields, as typed.
#[derive(Debug, Default, Deserialize)]
pub struct SubmitFields {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    docker_image: String,
    /// One argument per line.
    #[serde(default)]
    command: String,
    #[serde(default)]
    cpu_cores: String,
    #[serde(default)]
    memory_gb: String,
    #[serde(default)]
    gpu_count: String,
    #[serde(default)]
    gpu_type: String,
    /// `NAME=value`, one per line.
    #[serde(default)]
    env: String,
}

/// `GET /ui/submit`.
pub async fn submit_form(Extension(session): Extension<Session>) -> Response {
    let fields = SubmitFields {
        cpu_cores: "1".to_owned(),
        memory_gb: "1".to_owned(),
        gpu_count: "0".to_owned(),
        ..SubmitFields::default()
    };
    submit_page(&session, &fields, &BTreeMap::new(), None).into_response()
}

/// `POST /ui/submit`: submits the job and shows its page, or the form again with the API's
/// message next to the field at fault.
pub async fn submit(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Form(fields): Form<SubmitFields>,
) -> Response {
    if let Err(e) = check_csrf(&session, &fields.csrf_token) {
        return error_page(e, Some(&session));
    }
    if let Err(e) = auth::authorize(&session.caller, &Method::POST, "/jobs") {
        return error_page(e, Some(&session));
    }
    let mut errors = BTreeMap::new();
    let request = match to_request(&fields, &mut errors) {
        Some(request) => request,
        None => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                submit_page(&session, &fields, &errors, None),
            )
                .into_response()
        }
    };
    let spec = match request.into_spec() {
        Ok(spec) => spec,
        Err(e) => {
            let field = match e.field().name() {
                "memory_mb" => "memory_gb",
                other => other,
            };
            errors.insert(field.to_owned(), e.to_string());
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                submit_page(&session, &fields, &errors, None),
            )
                .into_response();
        }
    };
    let mut spec = spec;
    if let Err(e) = session.caller.may_submit_to(&spec.queue) {
        return error_page(e, Some(&session));
    }
    spec.owner = session.caller.name.clone();
    match state.scheduler.submit(spec).await {
        Ok(job) => {
            tracing::info!(job = %job.id, image = %job.spec.image, "job submitted from the dashboard");
            Redirect::to(&format!("/ui/jobs/{}", job.id)).into_response()
        }
        Err(e) => {
            let e = ApiError::from(e);
            let status = e.status;
            (
                status,
                submit_page(&session, &fields, &errors, Some(&e.detail)),
            )
                .into_response()
        }
    }
}

/// The form's text as the API's request; `None` with `errors` filled when a number or an
/// environment line cannot be read.
fn to_request(fields: &SubmitFields, errors: &mut BTreeMap<String, String>) -> Option<JobRequest> {
    let mut number = |name: &str, text: &str, integer: bool| -> Option<serde_json::Value> {
        let text = text.trim();
        let value = if integer {
            text.parse::<u64>().ok().map(|n| json!(n))
        } else {
            text.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|f| json!(f))
        };
        if value.is_none() {
            errors.insert(
                name.to_owned(),
                format!(
                    "{name}: {:?} is not a {}",
                    text,
                    if integer { "whole number" } else { "number" }
                ),
            );
        }
        value
    };
    let cpu = number("cpu_cores", &fields.cpu_cores, false);
    let memory = number("memory_gb", &fields.memory_gb, false);
    let gpus = number("gpu_count", &fields.gpu_count, true);
    let mut env = BTreeMap::new();
    for line in fields.env.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((name, value)) => {
                env.insert(name.trim().to_owned(), value.to_owned());
            }
            None => {
                errors.insert("env".to_owned(), format!("env: {line:?} is not NAME=value"));
            }
        }
    }
    if !errors.is_empty() {
        return None;
    }
    let command: Vec<&str> = fields
        .command
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut body = json!({
        "docker_image": fields.docker_image.trim(),
        "command": command,
        "cpu_cores": cpu,
        "memory_gb": memory,
        "gpu_count": gpus,
        "env": env,
    });
    if !fields.gpu_type.trim().is_empty() {
        body["gpu_type"] = json!(fields.gpu_type.trim());
    }
    match serde_json::from_value::<JobRequest>(body) {
        Ok(request) => Some(request),
        Err(e) => {
            errors.insert(String::new(), e.to_string());
            None
        }
    }
}

fn submit_page(
    session: &Session,
    fields: &SubmitFields,
    errors: &BTreeMap<String, String>,
    failure: Option<&str>,
) -> Markup {
    let error_of = |name: &str| errors.get(name).map(String::as_str);
    let field = |name: &str, label: &str, input: Markup, hint: &str| {
        let error = error_of(name);
        html! {
            div.field.invalid[error.is_some()] {
                label for=(name) { (label) }
                (input)
                @if !hint.is_empty() { small id={(name) "-hint"} { (hint) } }
                @if let Some(error) = error {
                    p.field-error id={(name) "-error"} role="alert" { (error) }
                }
            }
        }
    };
    let described = |name: &str| {
        if error_of(name).is_some() {
            format!("{name}-hint {name}-error")
        } else {
            format!("{name}-hint")
        }
    };
    let invalid = |name: &str| error_of(name).map(|_| "true");
    let text = |name: &str, value: &str, mode: Option<&str>| {
        html! {
            input id=(name) name=(name) type="text" inputmode=[mode] value=(value)
                aria-describedby=(described(name)) aria-invalid=[invalid(name)];
        }
    };
    let lines = |name: &str, value: &str| {
        html! {
            textarea id=(name) name=(name) rows="3" aria-describedby=(described(name))
                aria-invalid=[invalid(name)] { (value) }
        }
    };
    let other: Vec<&String> = errors
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "docker_image"
                    | "command"
                    | "cpu_cores"
                    | "memory_gb"
                    | "gpu_count"
                    | "gpu_type"
                    | "env"
            )
        })
        .map(|(_, v)| v)
        .collect();
    let body = html! {
        h1 { "Submit a job" }
        @if let Some(failure) = failure { p.error role="alert" { (failure) } }
        @for e in other { p.error role="alert" { (e) } }
        form.submit method="post" action="/ui/submit" novalidate {
            input type="hidden" name="csrf_token" value=(session.csrf);
            (field("docker_image", "Image", text("docker_image", &fields.docker_image, None),
                "A local image, e.g. dwr-test/busybox:latest"))
            (field("command", "Command", lines("command", &fields.command),
                "One argument per line, e.g. echo then hello"))
            (field("cpu_cores", "CPU cores", text("cpu_cores", &fields.cpu_cores, Some("decimal")),
                "e.g. 0.5 or 2"))
            (field("memory_gb", "Memory (GB)", text("memory_gb", &fields.memory_gb, Some("decimal")),
                "e.g. 0.25 or 8"))
            (field("gpu_count", "GPUs", text("gpu_count", &fields.gpu_count, Some("numeric")),
                "How many GPU devices"))
            (field("gpu_type", "GPU model", text("gpu_type", &fields.gpu_type, None),
                "Optional: only executors with this model"))
            (field("env", "Environment", lines("env", &fields.env), "NAME=value, one per line"))
            button type="submit" { "Submit" }
        }
    };
    layout("Submit", Nav::Submit, Some(session), None, body)
}

/// The abort form.
#[derive(Debug, Default, Deserialize)]
pub struct AbortFields {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    confirmed: String,
}

/// `POST /ui/jobs/{id}/abort`: asks for confirmation (without the page's script), then
/// aborts as `DELETE /jobs/{id}` does.
pub async fn abort(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(fields): Form<AbortFields>,
) -> Response {
    let result = async {
        check_csrf(&session, &fields.csrf_token)?;
        let id: JobId = id.trim().parse()?;
        auth::authorize(&session.caller, &Method::DELETE, &format!("/jobs/{id}"))?;
        let job = state.scheduler.store().job(id).await?;
        if fields.confirmed != "yes" {
            return Ok(confirm_page(&session, id).into_response());
        }
        session
            .caller
            .may_abort(job.spec.owner.as_deref(), &id.to_string())?;
        state.scheduler.abort(id).await?;
        tracing::info!(job = %id, "abort requested from the dashboard");
        Ok::<_, ApiError>(Redirect::to(&format!("/ui/jobs/{id}")).into_response())
    };
    match result.await {
        Ok(response) => response,
        Err(e) => error_page(e, Some(&session)),
    }
}

fn confirm_page(session: &Session, id: JobId) -> Markup {
    let body = html! {
        h1 { "Abort job " code { (id) } "?" }
        p { "Its container is stopped (SIGTERM, then SIGKILL after the grace period) and the job ends aborted." }
        form method="post" action={"/ui/jobs/" (id) "/abort"} {
            input type="hidden" name="csrf_token" value=(session.csrf);
            input type="hidden" name="confirmed" value="yes";
            button type="submit" class="danger" { "Abort job" }
            " "
            a href={"/ui/jobs/" (id)} { "Cancel" }
        }
    };
    layout("Abort", Nav::Jobs, Some(session), None, body)
}

/// The login form.
#[derive(Debug, Default, Deserialize)]
pub struct LoginFields {
    #[serde(default)]
    token: String,
}

/// `GET /ui/login`.
pub async fn login_form(State(state): State<AppState>) -> Response {
    if !tokens_configured(&state) {
        return Redirect::to("/ui").into_response();
    }
    login_page(None).into_response()
}

/// `POST /ui/login`: keeps a valid token in the session cookie. There is no session yet
/// to derive a CSRF token from: a sign-in posted from another site's page (its `Origin`
/// names another host) is refused instead.
pub async fn login(
    State(state): State<AppState>,
    request_headers: HeaderMap,
    Form(fields): Form<LoginFields>,
) -> Response {
    if !same_origin(&request_headers) {
        return error_page(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "Origin: a sign-in must come from this server's own page",
            ),
            None,
        );
    }
    let token = fields.token.trim();
    let mut headers = HeaderMap::new();
    if let Ok(value) = format!("Bearer {token}").parse() {
        headers.insert(header::AUTHORIZATION, value);
    }
    let known = !token.is_empty()
        && auth::authenticate(
            state.config.api_token.as_deref(),
            &state.config.tenants,
            &headers,
        )
        .is_ok();
    if !known {
        return (
            StatusCode::UNAUTHORIZED,
            login_page(Some("token: not a token this server knows")),
        )
            .into_response();
    }
    let mut response = Redirect::to("/ui").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(Some(token)));
    response
}

/// Whether the request's `Origin`, when it has one, names the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

fn login_page(error: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        p { "This dwr asks for a token: the API token, or your tenant's." }
        form.login method="post" action="/ui/login" {
            div.field.invalid[error.is_some()] {
                label for="token" { "Token" }
                input id="token" name="token" type="password" autocomplete="current-password" required
                    aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| "token-error")];
                @if let Some(error) = error { p.field-error id="token-error" role="alert" { (error) } }
            }
            button type="submit" { "Sign in" }
        }
    };
    layout("Sign in", Nav::None, None, None, body)
}

/// The logout form.
#[derive(Debug, Default, Deserialize)]
pub struct LogoutFields {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /ui/logout`: forgets the session cookie.
pub async fn logout(
    Extension(session): Extension<Session>,
    Form(fields): Form<LogoutFields>,
) -> Response {
    if let Err(e) = check_csrf(&session, &fields.csrf_token) {
        return error_page(e, Some(&session));
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(None));
    response
}
