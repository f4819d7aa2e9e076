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

/// SHA-256 of `token` as `sha256sum` prints it.
fn digest(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn tenants_do_what_their_role_allows_and_keep_their_env_to_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let mut file = String::new();
    for (name, role) in [("alice", "submit"), ("bob", "submit"), ("viewer", "read")] {
        file.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            digest(&format!("{name}-token"))
        ));
    }
    std::fs::write(&path, file).unwrap();
    let h = harness_with(ApiConfig {
        api_token: Some("admin-token".into()),
        tenants: dwr_server::api::auth::read_tokens_file(&path).unwrap(),
        ..ApiConfig::default()
    });
    let post = |token: &'static str, body: serde_json::Value| h.submit_as(token, body);
    let mut secret = hello();
    secret["env"] = serde_json::json!({"API_KEY": "alice's secret"});
    let created = post("alice-token", secret).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let job = created.json();
    assert_eq!(job["owner"], "alice");
    assert_eq!(job["env"]["API_KEY"], "alice's secret", "the owner sees it");
    let uri = format!("/jobs/{}", job["job_id"].as_str().unwrap());

    // Another tenant sees the job, not its env values; nor does a reader.
    for token in ["bob-token", "viewer-token"] {
        let seen = h.send_as(Method::GET, &uri, None, Some(token)).await.json();
        assert_eq!(seen["env"]["API_KEY"], "(hidden)", "{token}: {seen}");
        let listed = h
            .send_as(Method::GET, "/jobs", None, Some(token))
            .await
            .json();
        assert_eq!(listed[0]["env"]["API_KEY"], "(hidden)", "{token}");
    }
    let admin = h
        .send_as(Method::GET, &uri, None, Some("admin-token"))
        .await
        .json();
    assert_eq!(admin["env"]["API_KEY"], "alice's secret");

    // Bob may not abort it (403 naming its owner), nor a reader submit; nothing changes.
    h.send_as(Method::DELETE, &uri, None, Some("bob-token"))
        .await
        .assert_error(StatusCode::FORBIDDEN, "belongs to alice");
    post("viewer-token", hello())
        .await
        .assert_error(StatusCode::FORBIDDEN, "needs the submit role");
    h.send_as(Method::POST, "/cleanup", None, Some("alice-token"))
        .await
        .assert_error(StatusCode::FORBIDDEN, "needs the admin role");
    h.send_as(Method::GET, &uri, None, Some("nobody-token"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "token");
    assert_eq!(h.total_jobs().await, 1);
    let still = h
        .send_as(Method::GET, &uri, None, Some("alice-token"))
        .await
        .json();
    assert_eq!(still["status"], "pending");

    // Its owner may abort it.
    let aborted = h
        .send_as(Method::DELETE, &uri, None, Some("alice-token"))
        .await;
    assert_eq!(aborted.json()["status"], "aborted");

    // The OpenAPI document says a tenant may be refused.
    let doc = h
        .send_as(Method::GET, "/openapi.json", None, Some("viewer-token"))
        .await
        .json();
    assert!(doc["paths"]["/jobs"]["post"]["responses"]["403"].is_object());
    assert!(doc["paths"]["/jobs"]["get"]["responses"]
        .get("403")
        .is_none());
}
