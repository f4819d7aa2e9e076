//! The dashboard's HTTP behaviour in process: sessions, CSRF, and the executors page's GPU
//! devices (the pages themselves are driven in a real browser by `tests/ui.rs`).

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use dwr_core::{ExecutorId, ExecutorRegistration, GpuDevice};
use dwr_server::ApiConfig;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use crate::{harness, harness_with, Harness};

const TOKEN: &str = "dashboard-token-0123456789";

struct Page {
    status: StatusCode,
    location: Option<String>,
    cookie: Option<String>,
    body: String,
}

async fn request(
    h: &Harness,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Page {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let body = match form {
        Some(form) => {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(form.to_owned())
        }
        None => Body::empty(),
    };
    let response = h
        .app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let header_of = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, location, cookie) = (
        response.status(),
        header_of(header::LOCATION),
        header_of(header::SET_COOKIE),
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Page {
        status,
        location,
        cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The CSRF token of the page's forms.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf_token\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &page[at + "name=\"csrf_token\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn with_a_token_pages_ask_for_a_session_kept_in_a_strict_http_only_cookie() {
    let h = harness_with(ApiConfig {
        api_token: Some(TOKEN.to_owned()),
        ..ApiConfig::default()
    });
    let page = request(&h, "GET", "/ui/jobs", None, None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location.as_deref(), Some("/ui/login"));
    // A script's request gets 401, not a login page.
    let events = request(&h, "GET", "/ui/events", None, None).await;
    assert_eq!(events.status, StatusCode::UNAUTHORIZED);
    let refused = request(&h, "POST", "/ui/login", None, Some("token=guess")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.cookie.is_none());
    assert!(refused
        .body
        .contains("token: not a token this server knows"));

    // A sign-in posted from another site's page is refused.
    let cross = h
        .app
        .clone()
        .oneshot(
            Request::post("/ui/login")
                .header(header::HOST, "dwr.internal:8000")
                .header(header::ORIGIN, "https://evil.example")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={TOKEN}")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(cross.headers().get(header::SET_COOKIE).is_none());
    let login = request(
        &h,
        "POST",
        "/ui/login",
        None,
        Some(&format!("token={TOKEN}")),
    )
    .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let cookie = login.cookie.expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = request(&h, "GET", "/ui/jobs", Some(&session), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<h1>Jobs</h1>"));
    // The API itself still wants the bearer token: the cookie is the dashboard's only.
    let api = request(&h, "GET", "/jobs", Some(&session), None).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_form_without_its_sessions_csrf_token_changes_nothing() {
    let h = harness();
    let form = "docker_image=dwr-test%2Fbusybox%3Alatest&command=echo%0Ahi&cpu_cores=1&memory_gb=1&gpu_count=0";
    for csrf in ["", "&csrf_token=0000", "&csrf_token=forged"] {
        let page = request(
            &h,
            "POST",
            "/ui/submit",
            None,
            Some(&format!("{form}{csrf}")),
        )
        .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{csrf}");
        assert!(page.body.contains("csrf_token"), "{}", page.body);
    }
    assert_eq!(h.total_jobs().await, 0);
    let csrf = csrf_of(&request(&h, "GET", "/ui/submit", None, None).await.body);
    let page = request(
        &h,
        "POST",
        "/ui/submit",
        None,
        Some(&format!("{form}&csrf_token={csrf}")),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(page.location.unwrap().starts_with("/ui/jobs/"));
    assert_eq!(h.total_jobs().await, 1);
}

#[tokio::test]
async fn the_executors_page_names_each_gpu_and_the_job_holding_it() {
    let h = harness();
    let gpu = |index: u32| GpuDevice {
        index,
        uuid: format!("GPU-test-{index}"),
        model: "NVIDIA L4".to_owned(),
        memory_mib: 23_034,
    };
    let reg = ExecutorRegistration::new(
        ExecutorId::new("g1"),
        "10.0.0.9",
        8_000,
        16_384,
        vec![gpu(0), gpu(1)],
    );
    h.store.inner().register_executor(&reg).await.unwrap();
    let mut body = crate::hello();
    body["gpu_count"] = json!(1);
    let id = h.submit(body).await;
    assert_eq!(
        h.post_json("/schedule", serde_json::Value::Null)
            .await
            .status,
        StatusCode::OK
    );
    let page = request(&h, "GET", "/ui/executors", None, None).await.body;
    let held = h.get(&format!("/jobs/{id}")).await.json()["gpu_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let free = if held == "GPU-test-0" {
        "GPU-test-1"
    } else {
        "GPU-test-0"
    };
    let row = |uuid: &str| {
        let at = page.find(uuid).unwrap_or_else(|| panic!("{uuid} listed"));
        page[at..at + page[at..].find("</tr>").unwrap()].to_owned()
    };
    assert!(
        row(&held).contains(&format!("/ui/jobs/{id}")),
        "{}",
        row(&held)
    );
    assert!(row(free).contains("free"), "{}", row(free));
    assert!(page.contains("alive"));
}
