//! Submits the hello-world job to a running dwr server, follows its logs and prints its final
//! status: the HTTP API from a program, with nothing but an HTTP client and JSON.
//!
//! ```text
//! scripts/dev.sh                  # in one terminal: the product (API on localhost:8000)
//! cargo run --example submit      # in another
//! ```
//!
//! Environment: `DWR_URL` (default `http://localhost:8000`), `DWR_IMAGE` (default
//! `dwr-test/busybox:latest`), `DWR_API_TOKEN` (sent as a bearer token when set).
//! Exits 0 when the job succeeded.

use std::error::Error;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long the example waits for the job to end before giving up.
const DEADLINE: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::var("DWR_URL").unwrap_or_else(|_| "http://localhost:8000".to_owned());
    let url = url.trim_end_matches('/').to_owned();
    match run(&url).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            if e.downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_connect)
            {
                eprintln!("hint: no dwr server answers at {url}; start one with scripts/dev.sh");
            }
            ExitCode::FAILURE
        }
    }
}

/// A request builder with the bearer token when `DWR_API_TOKEN` is set.
fn authorized(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match std::env::var("DWR_API_TOKEN") {
        Ok(token) if !token.is_empty() => request.bearer_auth(token),
        _ => request,
    }
}

/// The body of an answer, or an error carrying the server's `detail`.
async fn json_of(response: reqwest::Response) -> Result<Value, Box<dyn Error>> {
    let status = response.status();
    let body: Value = response.json().await?;
    if status.is_success() {
        Ok(body)
    } else {
        let detail = body["detail"].as_str().unwrap_or("no detail").to_owned();
        Err(format!("the server answered {status}: {detail}").into())
    }
}

async fn run(url: &str) -> Result<bool, Box<dyn Error>> {
    let image = std::env::var("DWR_IMAGE").unwrap_or_else(|_| "dwr-test/busybox:latest".into());
    let http = reqwest::Client::new();

    // 1. Submit: the original API's fields (cpu in cores, memory in GB of 1024 MiB).
    let request = json!({
        "docker_image": image,
        "command": ["echo", "hello from dwr"],
        "cpu_cores": 0.5,
        "memory_gb": 0.25,
    });
    let job = json_of(
        authorized(http.post(format!("{url}/jobs")))
            .json(&request)
            .send()
            .await?,
    )
    .await?;
    let id = job["job_id"]
        .as_str()
        .ok_or("the answer has no job_id")?
        .to_owned();
    let status = job["status"].as_str().unwrap_or("unknown");
    println!("submitted job {id} ({image}), status {status}");

    // 2. Follow the logs: a text/plain stream, one line per log line, that ends with the job.
    let mut logs = authorized(http.get(format!("{url}/jobs/{id}/logs?follow=true")))
        .send()
        .await?;
    if !logs.status().is_success() {
        return Err(format!("following the logs failed: {}", logs.status()).into());
    }
    let started = Instant::now();
    let mut out = std::io::stdout();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(DEADLINE.saturating_sub(started.elapsed()), logs.chunk()).await
    {
        out.write_all(&chunk)?;
        out.flush()?;
    }

    // 3. The final status (the stream may end a moment before the job is marked).
    loop {
        let job = json_of(
            authorized(http.get(format!("{url}/jobs/{id}")))
                .send()
                .await?,
        )
        .await?;
        let status = job["status"].as_str().unwrap_or("unknown").to_owned();
        if matches!(status.as_str(), "succeeded" | "failed" | "aborted") {
            let text = |field: &str| match &job[field] {
                Value::Null => "-".to_owned(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!(
                "job {id} {status} (exit code {}, reason {}, executor {})",
                text("exit_code"),
                text("reason"),
                text("executor_ip")
            );
            return Ok(status == "succeeded");
        }
        if started.elapsed() > DEADLINE {
            return Err(format!("job {id} is still {status} after {DEADLINE:?}").into());
        }
        if status == "pending" {
            if let Some(reason) = job["pending_reason"].as_str() {
                eprintln!("job {id} is pending: {reason}");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
