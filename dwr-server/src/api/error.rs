//! [`ApiError`]: every error the API answers, as JSON `{"error", "detail"}` with its status
//! code; and [`ApiJson`], the JSON body extractor whose rejections take the same shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dwr_core::{MalformedJobId, SpecError, StoreError, SubmitError};
use serde::de::DeserializeOwned;
use tracing::{error, warn};

use dwr_client::wire::ErrorBody;

/// An error answer: a status code, a short kind and a sentence naming the problem.
///
/// Built from the typed errors of the core (store, spec) with their status codes; the cause
/// of a server-side failure is logged, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `error` field: a short machine-readable kind.
    pub kind: &'static str,
    /// The `detail` field: what is wrong, naming the field or id.
    pub detail: String,
}

impl ApiError {
    /// An error with this status, kind and detail.
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
        }
    }

    /// 400: the request is malformed (bad JSON, bad id).
    pub fn bad_request(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, detail)
    }

    /// 422: well-formed, but a field's value is not acceptable.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", detail)
    }

    /// 404: no such thing.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 401: the bearer token is missing or wrong.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token (Authorization: Bearer <DWR_API_TOKEN>)",
        )
    }

    /// 503: the store cannot be reached.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    /// 500: a failure of the server itself (the cause is logged, not sent).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; see the scheduler log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.kind.to_owned(),
            detail: self.detail,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<SpecError> for ApiError {
    fn from(err: SpecError) -> Self {
        Self::validation(err.to_string())
    }
}

impl From<MalformedJobId> for ApiError {
    fn from(err: MalformedJobId) -> Self {
        Self::bad_request("invalid_job_id", err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::JobNotFound { .. } | StoreError::ExecutorNotFound { .. } => {
                Self::not_found(err.to_string())
            }
            StoreError::UnknownDependency { .. } => Self::validation(err.to_string()),
            StoreError::AlreadyTerminal { .. } => {
                Self::bad_request("invalid_state", err.to_string())
            }
            StoreError::InvalidTransition { .. }
            | StoreError::Rejected { .. }
            | StoreError::JobExists { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", err.to_string())
            }
            StoreError::Unavailable { operation, .. } => {
                warn!(error = ?err, "store unavailable");
                Self::unavailable(format!("the job store is unavailable ({operation})"))
            }
            _ => {
                error!(error = ?err, "store error");
                Self::internal()
            }
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(err: SubmitError) -> Self {
        match err {
            SubmitError::Invalid(spec) => spec.into(),
            SubmitError::Store(store) => store.into(),
            SubmitError::UnknownQueue { .. } => Self::validation(err.to_string()),
            SubmitError::KeyReused { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                err.to_string(),
            ),
            other => {
                error!(error = ?other, "submit failed");
                Self::internal()
            }
        }
    }
}

/// A JSON body, parsed whatever the `Content-Type`, whose rejections are [`ApiError`]s:
/// 413 for a body over the limit, 400 for malformed JSON, 422 naming the field for a
/// missing field or a value of the wrong type.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as `T`, naming the path of a bad field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        json_error(bytes, &path, err.into_inner())
    })?;
    de.end().map_err(|err| json_error(bytes, "", err))?;
    Ok(value)
}

fn json_error(bytes: &[u8], path: &str, err: serde_json::Error) -> ApiError {
    match err.classify() {
        serde_json::error::Category::Data => {
            let detail = if path == "." || path.is_empty() {
                err.to_string()
            } else {
                format!("{path}: {err}")
            };
            ApiError::validation(detail)
        }
        serde_json::error::Category::Eof if bytes.iter().all(u8::is_ascii_whitespace) => {
            ApiError::bad_request("invalid_json", "the request body is empty; expected JSON")
        }
        _ => ApiError::bad_request("invalid_json", format!("malformed JSON body: {err}")),
    }
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than the server's limit",
        )
    } else {
        ApiError::bad_request("invalid_body", "the request body could not be read")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwr_client::wire::JobRequest;

    #[test]
    fn json_errors_name_the_field() {
        let err =
            parse_json::<JobRequest>(br#"{"docker_image":"x","command":["a"],"cpu_cores":"two"}"#)
                .unwrap_err();
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.detail.contains("cpu_cores"), "{}", err.detail);
        let err = parse_json::<JobRequest>(br#"{"docker_image":"x","cpu_cores":1}"#).unwrap_err();
        assert!(err.detail.contains("command"), "{}", err.detail);
        let err = parse_json::<JobRequest>(b"{not json").unwrap_err();
        assert_eq!(
            (err.status, err.kind),
            (StatusCode::BAD_REQUEST, "invalid_json")
        );
        let err = parse_json::<JobRequest>(b"").unwrap_err();
        assert!(err.detail.contains("empty"), "{}", err.detail);
    }
}
