//! The HTTP side of the client: base URL, bearer token, and mapping of failures to
//! [`ClientError`] (unreachable server, `{"error","detail"}` answers, undecodable bodies).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ClientError;
use crate::wire::ErrorBody;

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a plain (non-streaming) request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to one dwr server.
#[derive(Clone, Debug)]
pub struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// A successful response body, kept as text so `--json` can print it unchanged.
#[derive(Clone, Debug)]
pub struct Body {
    /// The URL it came from.
    pub url: String,
    /// The body text.
    pub text: String,
}

impl Body {
    /// Decodes the body as `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_str(&self.text).map_err(|e| ClientError::BadResponse {
            url: self.url.clone(),
            reason: format!("the body is not the JSON expected: {e}"),
        })
    }

    /// The body as pretty-printed JSON (what `--json` prints).
    pub fn pretty(&self) -> Result<String, ClientError> {
        let value: serde_json::Value = self.decode()?;
        serde_json::to_string_pretty(&value).map_err(|e| ClientError::BadResponse {
            url: self.url.clone(),
            reason: e.to_string(),
        })
    }
}

impl Api {
    /// A client of the server at `url` (`http://host:port`, a trailing `/` is ignored),
    /// sending `token` as `Authorization: Bearer` when given.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = url.trim().trim_end_matches('/').to_owned();
        if base.starts_with("https://") {
            return Err(ClientError::InvalidArgument {
                argument: "--url",
                reason: format!(
                    "{base}: this build of dwr speaks plain http only; \
                     reach a TLS endpoint through a local proxy or tunnel"
                ),
            });
        }
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(ClientError::InvalidArgument {
                argument: "--url",
                reason: format!("{url:?} is not an http:// URL (e.g. http://localhost:8000)"),
            });
        }
        let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::InvalidArgument {
                argument: "--url",
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self { base, token, http })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Body, ClientError> {
        self.send(self.http.get(self.url(path)), path).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<Body, ClientError> {
        self.send(self.http.post(self.url(path)).json(body), path)
            .await
    }

    /// `POST path` with a JSON body and an `Idempotency-Key` header.
    pub async fn post_idempotent<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
        key: &str,
    ) -> Result<Body, ClientError> {
        let request = self
            .http
            .post(self.url(path))
            .header("Idempotency-Key", key)
            .json(body);
        self.send(request, path).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Body, ClientError> {
        self.send(self.http.delete(self.url(path)), path).await
    }

    /// `GET path` for a streaming body: no overall timeout; the caller reads the chunks.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let url = self.url(path);
        let response = self
            .authorize(self.http.get(&url))
            .send()
            .await
            .map_err(|e| self.request_failed(&url, e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            Err(server_error(status, &text))
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<Body, ClientError> {
        let url = self.url(path);
        let response = self
            .authorize(request.timeout(REQUEST_TIMEOUT))
            .send()
            .await
            .map_err(|e| self.request_failed(&url, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Transfer {
                url: url.clone(),
                source,
            })?;
        if status.is_success() {
            Ok(Body { url, text })
        } else {
            Err(server_error(status, &text))
        }
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn request_failed(&self, url: &str, source: reqwest::Error) -> ClientError {
        if source.is_connect() || source.is_timeout() || source.is_request() {
            ClientError::Unreachable {
                url: self.base.clone(),
                reason: root_cause(&source),
                source,
            }
        } else {
            ClientError::Transfer {
                url: url.to_owned(),
                source,
            }
        }
    }
}

/// The innermost cause of an error, which says what actually happened
/// ("Connection refused (os error 111)") where the outer layers only say "error sending request".
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if err.is_timeout() && !text.contains("timed out") {
        format!("timed out ({text})")
    } else {
        text
    }
}

/// The error of a non-2xx answer: the server's `{"error","detail"}` when it sent one,
/// else the status line and the start of the body.
pub fn server_error(status: reqwest::StatusCode, text: &str) -> ClientError {
    let code = status.as_u16();
    let (error, detail) = match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => (body.error, body.detail),
        Err(_) => {
            let snippet: String = text.trim().chars().take(200).collect();
            let detail = if snippet.is_empty() {
                format!("the server answered {}", status_text(status))
            } else {
                format!("the server answered {}: {snippet}", status_text(status))
            };
            (status_text(status), detail)
        }
    };
    let detail = if code == 401 {
        format!("{detail} (set DWR_API_TOKEN or --token to the server's API token)")
    } else {
        detail
    };
    ClientError::Server {
        status: code,
        error,
        detail,
    }
}

fn status_text(status: reqwest::StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn urls_must_be_http() {
        assert_eq!(
            Api::new("http://localhost:8000/", None).unwrap().base(),
            "http://localhost:8000"
        );
        for bad in [
            "localhost:8000",
            "ftp://x",
            "http://",
            "https://example.org",
        ] {
            let err = Api::new(bad, None).expect_err(bad);
            assert!(matches!(
                err,
                ClientError::InvalidArgument {
                    argument: "--url",
                    ..
                }
            ));
        }
    }

    #[test]
    fn server_errors_carry_the_detail() {
        let err = server_error(
            StatusCode::NOT_FOUND,
            r#"{"error":"not_found","detail":"job 42 not found"}"#,
        );
        assert_eq!(err.to_string(), "job 42 not found");
        assert!(matches!(err, ClientError::Server { status: 404, .. }));
    }

    #[test]
    fn non_json_errors_show_the_status() {
        let err = server_error(StatusCode::BAD_GATEWAY, "upstream down");
        assert_eq!(
            err.to_string(),
            "the server answered 502 Bad Gateway: upstream down"
        );
        let err = server_error(StatusCode::UNAUTHORIZED, "");
        assert!(err.to_string().contains("DWR_API_TOKEN"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_with_a_hint() {
        // Bind and drop a listener: its port is (almost certainly) closed afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let api = Api::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let err = api.get("/health").await.expect_err("nothing listens");
        let text = err.to_string();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(text.contains("dwr dev"), "{text}");
    }
}
