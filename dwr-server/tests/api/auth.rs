//! The bearer token: every route but `/health` asks for it.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use dwr_server::ApiConfig;
use tower::ServiceExt;

use crate::{harness_with, hello};

#[tokio::test]
async fn the_token_guards_every_route_but_health() {
    let h = harness_with(ApiConfig {
        api_token: Some("s3cret".into()),
        ..ApiConfig::default()
    });
    for uri in ["/jobs", "/executors", "/stats", "/metrics", "/openapi.json"] {
        h.send_as(Method::GET, uri, None, None)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "token");
        h.send_as(Method::GET, uri, None, Some("wrong"))
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "token");
        let with_token = h.send_as(Method::GET, uri, None, Some("s3cret")).await;
        assert_eq!(with_token.status, StatusCode::OK);
        let lower = Request::builder()
            .uri(uri)
            .header(header::AUTHORIZATION, "bearer s3cret")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            h.app.clone().oneshot(lower).await.unwrap().status(),
            StatusCode::OK
        );
    }
    let unauth = h
        .send_as(
            Method::POST,
            "/jobs",
            Some(hello().to_string().into_bytes()),
            None,
        )
        .await;
    unauth.assert_error(StatusCode::UNAUTHORIZED, "token");
    assert_eq!(h.total_jobs().await, 0);
    assert_eq!(
        h.send_as(Method::GET, "/health", None, None).await.status,
        StatusCode::OK
    );
}
