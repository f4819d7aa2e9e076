//! The web dashboard at `/ui`, served by the scheduler on the API's port: HTML rendered on
//! the server ([maud]), readable without JavaScript, with a small embedded script that
//! keeps the page live from the change stream (`/ui/events`, the same stream as
//! `GET /events`) and follows a job's log. Every asset is in the binary.
//!
//! Sessions: with an API token or tenants configured, `/ui/login` asks for a token once and
//! keeps it in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/ui`; every page and
//! action then authenticates with it exactly as the API does with a bearer token (same
//! roles). Every form that changes something carries a CSRF token derived from the session
//! (or, without tokens, from a secret of the process) and is refused without it.

mod forms;
mod history;
mod pages;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use subtle::ConstantTimeEq;

use crate::api::auth::{self, Caller};
use crate::api::{ApiError, AppState};

pub use history::History;

/// Name of the session cookie.
const SESSION_COOKIE: &str = "dwr_session";
/// The stylesheet and the script, embedded.
const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");

/// The routes of the dashboard, to merge into the API's router (outside its bearer check:
/// these authenticate by the session cookie).
pub fn routes(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/ui", get(pages::overview))
        .route("/ui/jobs", get(pages::jobs))
        .route("/ui/jobs/{job_id}", get(pages::job))
        .route("/ui/jobs/{job_id}/lines", get(pages::job_lines))
        .route("/ui/jobs/{job_id}/abort", post(forms::abort))
        .route("/ui/executors", get(pages::executors))
        .route("/ui/submit", get(forms::submit_form).post(forms::submit))
        .route("/ui/events", get(pages::events))
        .route("/ui/logout", post(forms::logout))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/ui/login", get(forms::login_form).post(forms::login))
        .route("/ui/assets/app.css", get(css))
        .route("/ui/assets/app.js", get(js))
        .merge(pages)
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Whether the API asks for tokens at all.
fn tokens_configured(state: &AppState) -> bool {
    state.config.api_token.is_some() || !state.config.tenants.is_empty()
}

/// The token kept in the session cookie, if any.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| percent_decode(value))
}

/// The caller of a session cookie, as the API would know it by the same bearer token.
fn session_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let mut bearer = HeaderMap::new();
    if let Some(token) = session_token(headers) {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ApiError::unauthorized())?;
        bearer.insert(header::AUTHORIZATION, value);
    }
    auth::authenticate(
        state.config.api_token.as_deref(),
        &state.config.tenants,
        &bearer,
    )
}

/// Knows the caller by the session cookie: a page without a valid one sends the browser to
/// the login page, a script's request gets 401.
async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match session_caller(&state, request.headers()) {
        Ok(caller) => {
            // The overview's history starts with the first page of the dashboard shown.
            state.ui.history.start(state.scheduler.clone()).await;
            let csrf = csrf_token(&state, request.headers());
            let signed_in = tokens_configured(&state);
            request.extensions_mut().insert(Session {
                csrf,
                caller,
                signed_in,
            });
            next.run(request).await
        }
        Err(error) => {
            let page = request.method() == axum::http::Method::GET
                && !request.uri().path().ends_with("/events")
                && !request.uri().path().ends_with("/lines");
            if page {
                Redirect::to("/ui/login").into_response()
            } else {
                error.into_response()
            }
        }
    }
}

/// Who is using the dashboard, and the CSRF token its forms carry.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub caller: Caller,
    pub csrf: String,
    /// Signed in with a token (there is something to sign out of).
    pub signed_in: bool,
}

/// The CSRF token of a request's session: a digest of the session token (with tokens), or
/// of the process's own secret (without), which a page of another site can neither read
/// nor compute.
fn csrf_token(state: &AppState, headers: &HeaderMap) -> String {
    let basis = if tokens_configured(state) {
        session_token(headers).unwrap_or_default()
    } else {
        state.ui.secret.clone()
    };
    auth::sha256_hex(&format!("dwr-ui-csrf\0{basis}"))
}

/// Refuses a form whose CSRF token is not its session's.
pub(crate) fn check_csrf(session: &Session, given: &str) -> Result<(), ApiError> {
    if bool::from(session.csrf.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "csrf_token: this form is not from this session (reload the page and try again)",
        ))
    }
}

/// What the dashboard keeps per process: the CSRF secret and the overview's history.
#[derive(Debug)]
pub struct UiState {
    secret: String,
    /// Placements and utilization sampled over the last hour.
    pub history: Arc<History>,
}

impl Default for UiState {
    fn default() -> Self {
        Self {
            secret: format!("{}{}", dwr_core::JobId::new(), dwr_core::JobId::new()),
            history: Arc::new(History::default()),
        }
    }
}

/// The session cookie holding `token` (empty and expired: the logout).
fn session_cookie(token: Option<&str>) -> HeaderValue {
    let cookie = match token {
        Some(token) => format!(
            "{SESSION_COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=43200",
            percent_encode(token)
        ),
        None => format!("{SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `text` with every byte but ASCII letters and digits percent-encoded: safe in a cookie
/// value and in a query string.
fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_values_round_trip_and_odd_ones_never_panic() {
        for token in ["plain", "with space;and=semicolon", "ünïcode-τoken", "%41"] {
            assert_eq!(percent_decode(&percent_encode(token)), token);
        }
        for odd in ["%", "%a", "%aé", "%zz", "%é9", "abc%4", "%%41"] {
            let _ = percent_decode(odd);
        }
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("%%41"), "%A");
    }
}

/// Which page the navigation marks as current.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Overview,
    Jobs,
    Executors,
    Submit,
    None,
}

/// The page around `body`: navigation, the stylesheet and the script. `live` names what the
/// script refreshes on changes (`None`: nothing).
fn layout(
    title: &str,
    nav: Nav,
    session: Option<&Session>,
    live: Option<&str>,
    body: Markup,
) -> Markup {
    let link = |href: &str, label: &str, this: Nav| {
        html! {
            a href=(href) aria-current=[(nav == this).then_some("page")] { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · dwr" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body data-live=[live] {
                header {
                    nav aria-label="Main" {
                        span.brand { "dwr" }
                        (link("/ui", "Overview", Nav::Overview))
                        (link("/ui/jobs", "Jobs", Nav::Jobs))
                        (link("/ui/executors", "Executors", Nav::Executors))
                        (link("/ui/submit", "Submit", Nav::Submit))
                        @if let Some(session) = session.filter(|s| s.signed_in) {
                            @if let Some(name) = &session.caller.name {
                                span.who { "Signed in as " (name) }
                            }
                            form.logout method="post" action="/ui/logout" {
                                input type="hidden" name="csrf_token" value=(session.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                    p.live-status role="status" aria-live="polite" id="live-status" {}
                }
                main id="main" { (body) }
            }
        }
    }
}

/// A status shown by text and by colour.
fn status_badge(status: &str) -> Markup {
    html! { span class={"badge status-" (status)} { (status) } }
}

/// An error page for `error` (the API's status and message).
fn error_page(error: ApiError, session: Option<&Session>) -> Response {
    let (status, detail) = (error.status, error.detail);
    let body = layout(
        "Error",
        Nav::None,
        session,
        None,
        html! {
            h1 { "Error " (status.as_u16()) }
            p.error role="alert" { (detail) }
            p { a href="/ui" { "Back to the overview" } }
        },
    );
    (status, body).into_response()
}

/// Inline SVG of `values` (0..=`max`) as a line, for the overview's history.
fn sparkline(values: &[f64], max: f64, label: &str) -> Markup {
    let (w, h) = (360.0, 60.0);
    let n = values.len().max(2) as f64 - 1.0;
    let points: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = i as f64 * w / n;
            let y = h - (v / max.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0) * h;
            format!("{x:.1},{y:.1} ")
        })
        .collect();
    html! {
        svg.spark viewBox="0 0 360 60" role="img" aria-label=(label) preserveAspectRatio="none" {
            polyline points=(PreEscaped(points)) fill="none" stroke="currentColor" stroke-width="2" {}
        }
    }
}
