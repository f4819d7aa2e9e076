//! Submits the hello-world job to a running dwr server, follows its logs and prints its final
//! status: the HTTP API from a program, through the typed client (`dwr::client`).
//!
//! ```text
//! scripts/dev.sh                  # in one terminal: the product (API on localhost:8000)
//! cargo run --example submit      # in another
//! ```
//!
//! Environment: `DWR_URL` (default `http://localhost:8000`), `DWR_IMAGE` (default
//! `dwr-test/busybox:latest`), `DWR_API_TOKEN` (sent as a bearer token when set).
//! Exits 0 when the job succeeded.

use std::process::ExitCode;
use std::time::Duration;

use dwr::client::{Client, Error, JobRequest, JobView};
use dwr::JobState;

/// How long the example waits for the job to end before giving up.
const DEADLINE: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> ExitCode {
    let image = std::env::var("DWR_IMAGE").unwrap_or_else(|_| "dwr-test/busybox:latest".into());
    let outcome = match Client::from_env() {
        Ok(client) => tokio::time::timeout(DEADLINE, run(&client, &image)).await,
        Err(e) => Ok(Err(e)),
    };
    match outcome {
        Ok(Ok(job)) if job.status == JobState::Succeeded => ExitCode::SUCCESS,
        Ok(Ok(_)) => ExitCode::FAILURE,
        Ok(Err(e)) => {
            // An unreachable server's error ends with a hint to start one.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("error: the job did not end within {DEADLINE:?}");
            ExitCode::FAILURE
        }
    }
}

/// Submits the job, prints its log lines as they come and returns it as it ended.
pub async fn run(client: &Client, image: &str) -> Result<JobView, Error> {
    // The original API's units: CPU in cores, memory in GB of 1024 MiB.
    let request = JobRequest::new(
        image,
        vec!["echo".into(), "hello from dwr".into()],
        0.5,
        0.25,
    );
    let job = client.submit(&request).await?;
    println!(
        "submitted job {} ({image}), status {}",
        job.job_id, job.status
    );

    let mut pending_said = None;
    let done = client
        .follow(
            job.id()?,
            |line| println!("{line}"),
            |job| {
                // Why it waits, once per reason.
                if job.status == JobState::Pending && job.pending_reason != pending_said {
                    if let Some(reason) = &job.pending_reason {
                        eprintln!("job {} is pending: {reason}", job.job_id);
                    }
                    pending_said = job.pending_reason.clone();
                }
            },
        )
        .await?;
    let text = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    println!(
        "job {} {} (exit code {}, reason {}, executor {})",
        done.job_id,
        done.status,
        text(done.exit_code.map(|c| c.to_string())),
        text(done.reason.clone()),
        text(done.executor_ip.clone())
    );
    Ok(done)
}
