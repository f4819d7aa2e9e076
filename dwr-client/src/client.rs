//! [`Client`]: one method per endpoint of the HTTP API, typed on both sides.

use std::time::Duration;

use dwr_core::{JobId, JobState};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::wire::{
    ArrayView, CleanupResponse, ErrorBody, ExecutorsResponse, HealthResponse, JobOrArray,
    JobRequest, JobView, LogsResponse, QueuesResponse, ScheduleResponse, StatsResponse,
};

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a plain (non-streaming) request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries of a submission that finds the server unreachable (each with the same key).
const SUBMIT_TRIES: u32 = 3;
/// Pause between two tries of a submission.
const SUBMIT_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The server's URL when none is given: the default `SCHEDULER_API_PORT` on this host.
pub const DEFAULT_URL: &str = "http://localhost:8000";

/// A connection to one dwr server (cheap to clone: clones share their connection pool).
///
/// ```no_run
/// # async fn demo() -> Result<(), dwr_client::Error> {
/// use dwr_client::{Client, JobRequest};
///
/// let client = Client::new("http://localhost:8000")?;
/// let request = JobRequest::new("busybox:latest", vec!["echo".into(), "hi".into()], 0.5, 0.25);
/// let job = client.submit(&request).await?;
/// let done = client.follow(job.id()?, |line| println!("{line}"), |_| {}).await?;
/// println!("{} ({:?})", done.status, done.exit_code);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The filters of [`Client::jobs`]; every one optional, as on the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobsQuery {
    /// Only jobs in this state.
    pub status: Option<JobState>,
    /// At most this many (1..=1000; the server's default is 100).
    pub limit: Option<u32>,
    /// Skip this many of the newest first.
    pub offset: Option<u64>,
}

impl JobsQuery {
    /// The query string, `?...` or empty.
    fn to_query_string(&self) -> String {
        let pairs: Vec<String> = [
            self.status.map(|status| format!("status_filter={status}")),
            self.limit.map(|limit| format!("limit={limit}")),
            self.offset.map(|offset| format!("offset={offset}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }
}

impl Client {
    /// A client of the server at `url` (`http://host:port`; a trailing `/` is ignored).
    pub fn new(url: &str) -> Result<Self, Error> {
        let base = url.trim().trim_end_matches('/').to_owned();
        let invalid = |reason: String| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        if base.starts_with("https://") {
            return Err(invalid(
                "this build of dwr speaks plain http only; \
                 reach a TLS endpoint through a local proxy or tunnel"
                    .into(),
            ));
        }
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(invalid(
                "is not an http:// URL (e.g. http://localhost:8000)".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self {
            base,
            token: None,
            http,
        })
    }

    /// The client configured as the `dwr` command line is: `DWR_URL` (default
    /// [`DEFAULT_URL`]) and `DWR_API_TOKEN`.
    pub fn from_env() -> Result<Self, Error> {
        let url = std::env::var("DWR_URL").unwrap_or_default();
        let url = match url.trim() {
            "" => DEFAULT_URL,
            url => url,
        };
        Ok(Self::new(url)?.with_token(std::env::var("DWR_API_TOKEN").ok()))
    }

    /// Sends `token` as `Authorization: Bearer` (none when `None` or blank).
    pub fn with_token(mut self, token: Option<impl Into<String>>) -> Self {
        self.token = token
            .map(|t| t.into().trim().to_owned())
            .filter(|t| !t.is_empty());
        self
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<HealthResponse, Error> {
        self.get("/health").await
    }

    /// `POST /jobs` with a fresh `Idempotency-Key`: see [`submit_with_key`](Self::submit_with_key).
    pub async fn submit(&self, request: &JobRequest) -> Result<JobView, Error> {
        // A fresh random UUID (a job id is one).
        self.submit_with_key(request, &JobId::new().to_string())
            .await
    }

    /// `POST /jobs` with `Idempotency-Key: key`. A server that cannot be reached is tried
    /// again (three tries, a second apart) with the same key, so a submission whose answer
    /// was lost makes at most one job.
    pub async fn submit_with_key(&self, request: &JobRequest, key: &str) -> Result<JobView, Error> {
        self.post_submit(request, key).await
    }

    /// `POST /jobs` of a request with `array`, with `Idempotency-Key: key` (tried again as
    /// [`submit_with_key`](Self::submit_with_key)): the array.
    pub async fn submit_array_with_key(
        &self,
        request: &JobRequest,
        key: &str,
    ) -> Result<ArrayView, Error> {
        self.post_submit(request, key).await
    }

    /// `GET /jobs/{id}` of an array: its status and its tasks' counts and ids.
    pub async fn array(&self, id: JobId) -> Result<ArrayView, Error> {
        self.get(&format!("/jobs/{id}")).await
    }

    /// `GET /jobs/{id}` of a job or an array, whichever the id names.
    pub async fn job_or_array(&self, id: JobId) -> Result<JobOrArray, Error> {
        self.get(&format!("/jobs/{id}")).await
    }

    /// `DELETE /jobs/{id}` of a job or an array (every task not ended).
    pub async fn abort_job_or_array(&self, id: JobId) -> Result<JobOrArray, Error> {
        let path = format!("/jobs/{id}");
        self.send(self.http.delete(self.url(&path)), &path).await
    }

    async fn post_submit<T: DeserializeOwned>(
        &self,
        request: &JobRequest,
        key: &str,
    ) -> Result<T, Error> {
        let mut tries = 0;
        loop {
            tries += 1;
            let sent = self
                .http
                .post(self.url("/jobs"))
                .header("Idempotency-Key", key)
                .json(request);
            match self.send(sent, "/jobs").await {
                Err(Error::Unreachable { .. }) if tries < SUBMIT_TRIES => {
                    tokio::time::sleep(SUBMIT_RETRY_PAUSE).await;
                }
                other => return other,
            }
        }
    }

    /// `GET /jobs/{id}`.
    pub async fn job(&self, id: JobId) -> Result<JobView, Error> {
        self.get(&format!("/jobs/{id}")).await
    }

    /// `GET /jobs`: newest first.
    pub async fn jobs(&self, query: &JobsQuery) -> Result<Vec<JobView>, Error> {
        self.get(&format!("/jobs{}", query.to_query_string())).await
    }

    /// `DELETE /jobs/{id}`: the job as it stands; a running one ends `aborted` once its
    /// executor has stopped the container.
    pub async fn abort(&self, id: JobId) -> Result<JobView, Error> {
        let path = format!("/jobs/{id}");
        self.send(self.http.delete(self.url(&path)), &path).await
    }

    /// `GET /jobs/{id}/logs`: every line so far, oldest first.
    pub async fn logs(&self, id: JobId) -> Result<LogsResponse, Error> {
        self.get(&format!("/jobs/{id}/logs")).await
    }

    /// `GET /executors`.
    pub async fn executors(&self) -> Result<ExecutorsResponse, Error> {
        self.get("/executors").await
    }

    /// `GET /queues`.
    pub async fn queues(&self) -> Result<QueuesResponse, Error> {
        self.get("/queues").await
    }

    /// `GET /stats`.
    pub async fn stats(&self) -> Result<StatsResponse, Error> {
        self.get("/stats").await
    }

    /// `POST /schedule`: one scheduling pass now.
    pub async fn schedule(&self) -> Result<ScheduleResponse, Error> {
        self.post("/schedule").await
    }

    /// `POST /cleanup`: a housekeeping pass, then finished jobs older than
    /// `timeout_minutes` (the server's default: 60) are deleted.
    pub async fn cleanup(&self, timeout_minutes: Option<u64>) -> Result<CleanupResponse, Error> {
        let query = timeout_minutes.map_or(String::new(), |m| format!("?timeout_minutes={m}"));
        self.post(&format!("/cleanup{query}")).await
    }

    /// `GET path` for a streaming body: no overall timeout; the caller reads the chunks.
    pub(crate) async fn stream(&self, path: &str) -> Result<reqwest::Response, Error> {
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

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.send(self.http.get(self.url(path)), path).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.send(self.http.post(self.url(path)), path).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T, Error> {
        let url = self.url(path);
        let response = self
            .authorize(request.timeout(REQUEST_TIMEOUT))
            .send()
            .await
            .map_err(|e| self.request_failed(&url, e))?;
        let status = response.status();
        let text = response.text().await.map_err(|source| Error::Transfer {
            url: url.clone(),
            source,
        })?;
        if !status.is_success() {
            return Err(server_error(status, &text));
        }
        serde_json::from_str(&text).map_err(|e| Error::BadResponse {
            url,
            reason: format!("the body is not the JSON expected: {e}"),
        })
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn request_failed(&self, url: &str, source: reqwest::Error) -> Error {
        if source.is_connect() || source.is_timeout() || source.is_request() {
            Error::Unreachable {
                url: self.base.clone(),
                reason: root_cause(&source),
                source,
            }
        } else {
            Error::Transfer {
                url: url.to_owned(),
                source,
            }
        }
    }
}

impl JobView {
    /// The job's id, parsed (an [`Error::BadResponse`] if the server sent something else).
    pub fn id(&self) -> Result<JobId, Error> {
        self.job_id.parse().map_err(|_| Error::BadResponse {
            url: String::new(),
            reason: format!("job_id {:?} is not a UUID", self.job_id),
        })
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
fn server_error(status: reqwest::StatusCode, text: &str) -> Error {
    let code = status.as_u16();
    let (error, mut detail) = match serde_json::from_str::<ErrorBody>(text) {
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
    if code == 401 {
        detail.push_str(" (set DWR_API_TOKEN or --token to the server's API token)");
    }
    Error::Server {
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

/// Serializes `value` as the pretty JSON the command line prints with `--json`.
pub fn to_pretty_json<T: Serialize>(value: &T) -> String {
    // The wire types hold only strings, numbers, lists and string-keyed maps: they always
    // serialize.
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn urls_must_be_http() {
        assert_eq!(
            Client::new("http://localhost:8000/").unwrap().base(),
            "http://localhost:8000"
        );
        for bad in [
            "localhost:8000",
            "ftp://x",
            "http://",
            "https://example.org",
        ] {
            let err = Client::new(bad).expect_err(bad);
            assert!(matches!(err, Error::InvalidUrl { .. }), "{err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn blank_tokens_are_none() {
        let client = Client::new(DEFAULT_URL).unwrap();
        assert_eq!(client.clone().with_token(Some("  ")).token, None);
        assert_eq!(client.clone().with_token(None::<String>).token, None);
        assert_eq!(
            client.with_token(Some(" s3cret ")).token.as_deref(),
            Some("s3cret")
        );
    }

    #[test]
    fn queries_name_only_the_filters_given() {
        assert_eq!(JobsQuery::default().to_query_string(), "");
        let query = JobsQuery {
            status: Some(JobState::Running),
            limit: Some(5),
            offset: Some(10),
        };
        assert_eq!(
            query.to_query_string(),
            "?status_filter=running&limit=5&offset=10"
        );
    }

    #[test]
    fn server_errors_carry_the_detail() {
        let err = server_error(
            StatusCode::NOT_FOUND,
            r#"{"error":"not_found","detail":"job 42 not found"}"#,
        );
        assert_eq!(err.to_string(), "job 42 not found");
        assert_eq!(err.status(), Some(404));
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
        let client = Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = client.health().await.expect_err("nothing listens");
        let text = err.to_string();
        assert!(matches!(err, Error::Unreachable { .. }), "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(text.contains("dwr dev"), "{text}");
    }
}
