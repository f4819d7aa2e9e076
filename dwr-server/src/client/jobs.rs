//! `dwr jobs`, `dwr job ID` and `dwr abort ID`, and how a job is shown to people.

use std::str::FromStr;

use dwr_core::JobId;

use super::args::{format_mib, trim_number};
use super::table::{key_values, Table, NONE};
use super::{ClientError, JobsArgs};
use dwr_client::{to_pretty_json, ArrayView, AttemptView, Client, JobOrArray, JobView, JobsQuery};

/// The longest command shown in the jobs table; `dwr job ID` shows it in full.
const COMMAND_WIDTH: usize = 40;

/// Checks a job id before it goes into a URL: a malformed one is the user's typo, said here.
pub fn parse_id(text: &str) -> Result<JobId, ClientError> {
    JobId::from_str(text.trim()).map_err(|e| ClientError::InvalidArgument {
        argument: "ID",
        reason: e.to_string(),
    })
}

/// `dwr jobs`: the table of jobs, or their JSON array.
pub async fn list(api: &Client, args: &JobsArgs, json: bool) -> Result<String, ClientError> {
    let query = JobsQuery {
        status: args.status,
        limit: Some(args.limit),
        offset: None,
    };
    let jobs = api.jobs(&query).await?;
    if json {
        return Ok(to_pretty_json(&jobs) + "\n");
    }
    if jobs.is_empty() {
        return Ok(match args.status {
            Some(status) => format!("no {status} jobs\n"),
            None => "no jobs\n".to_owned(),
        });
    }
    Ok(jobs_table(&jobs).to_string())
}

/// `dwr job ID`: one job in detail, or its JSON.
pub async fn show(api: &Client, id: &str, json: bool) -> Result<String, ClientError> {
    let answer = api.job_or_array(parse_id(id)?).await?;
    if json {
        return Ok(to_pretty_json(&answer) + "\n");
    }
    Ok(match answer {
        JobOrArray::Job(job) => job_detail(&job),
        JobOrArray::Array(array) => array_detail(&array),
    })
}

/// An array in detail: its status, size, parallelism and its tasks per status.
pub fn array_detail(array: &ArrayView) -> String {
    let c = &array.status_counts;
    let parallelism = array
        .parallelism
        .map_or("no limit".to_owned(), |p| p.to_string());
    key_values(&[
        ("array", array.array_job_id.clone()),
        ("status", array.status.clone()),
        ("tasks", array.count.to_string()),
        ("parallelism", parallelism),
        (
            "task status",
            format!(
                "{} pending, {} assigned, {} running, {} succeeded, {} failed, {} aborted",
                c.pending, c.assigned, c.running, c.succeeded, c.failed, c.aborted
            ),
        ),
        ("created", array.created_at.clone()),
        (
            "first tasks",
            array
                .task_ids
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ])
}

/// `dwr abort ID`: asks the server to abort the job.
pub async fn abort(api: &Client, id: &str, json: bool) -> Result<String, ClientError> {
    let id = parse_id(id)?;
    let job = match api.abort_job_or_array(id).await? {
        JobOrArray::Job(job) => job,
        JobOrArray::Array(array) if json => return Ok(to_pretty_json(&array) + "\n"),
        JobOrArray::Array(array) => {
            let c = &array.status_counts;
            return Ok(format!(
                "abort of array {id} requested: {} aborted, {} stopping, {} ended before\n",
                c.aborted,
                c.assigned + c.running,
                c.succeeded + c.failed
            ));
        }
    };
    if json {
        return Ok(to_pretty_json(&job) + "\n");
    }
    // The answer is the job as it stands; a running job ends `aborted` once its executor has
    // stopped the container.
    Ok(if job.status.is_terminal() {
        format!("job {id} {}\n", job.status)
    } else {
        format!("abort of job {id} requested (status {})\n", job.status)
    })
}

/// The jobs table: one line per job.
pub fn jobs_table(jobs: &[JobView]) -> Table {
    let mut table = Table::new([
        "JOB ID", "STATUS", "IMAGE", "COMMAND", "CPUS", "MEMORY", "GPUS", "EXECUTOR", "CREATED",
        "EXIT", "NOTE",
    ])
    .right_align(&[4, 5, 6, 9]);
    for job in jobs {
        table.push([
            job.job_id.clone(),
            job.status.to_string(),
            job.docker_image.clone(),
            shorten(&job.command.join(" "), COMMAND_WIDTH),
            trim_number(job.cpu_cores),
            format_mib(memory_mib(job)),
            gpus(job),
            job.executor_ip.clone().unwrap_or_default(),
            job.created_at.clone(),
            job.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            note(job),
        ]);
    }
    table
}

/// What the table says of a task or a job with dependencies: `task 3 of 7d8a1b2c`,
/// `waits for 2 of 3`.
fn note(job: &JobView) -> String {
    let mut parts = Vec::new();
    if let (Some(array), Some(index)) = (&job.array_job_id, job.array_index) {
        parts.push(format!("task {index} of {}", &array[..array.len().min(8)]));
    }
    if job.dependencies_left > 0 {
        parts.push(format!(
            "waits for {} of {}",
            job.dependencies_left,
            job.depends_on.len()
        ));
    }
    parts.join(", ")
}

/// One job as `key: value` lines; empty fields are left out.
pub fn job_detail(job: &JobView) -> String {
    let mut pairs: Vec<(&str, String)> = vec![
        ("job id", job.job_id.clone()),
        ("status", job.status.to_string()),
    ];
    let mut opt = |key: &'static str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            pairs.push((key, v));
        }
    };
    opt("pending reason", job.pending_reason.clone());
    opt(
        "queue position",
        job.queue_position
            .map(|ahead| format!("{} (behind {ahead})", ahead + 1)),
    );
    opt("priority", Some(job.priority.to_string()));
    opt("queue", Some(job.queue.clone()));
    opt(
        "array",
        job.array_job_id
            .as_ref()
            .map(|a| format!("{a} [{}]", job.array_index.unwrap_or_default())),
    );
    opt(
        "depends on",
        job.dependency.map(|kind| {
            let left = match job.dependencies_left {
                0 => String::new(),
                n => format!(" ({n} not ended)"),
            };
            format!("{kind} {}{left}", job.depends_on.join(", "))
        }),
    );
    opt("owner", job.owner.clone());
    opt("reason", job.reason.clone());
    opt("exit code", job.exit_code.map(|c| c.to_string()));
    opt("oom killed", job.oom_killed.then(|| "yes".to_owned()));
    opt("abort", job.abort_requested.then(|| "requested".to_owned()));
    opt("image", Some(job.docker_image.clone()));
    opt("command", Some(quote_command(&job.command)));
    opt("cpus", Some(trim_number(job.cpu_cores)));
    opt("memory", Some(format_mib(memory_mib(job))));
    opt("gpus", Some(gpus(job)).filter(|g| g != NONE));
    opt("gpu ids", Some(job.gpu_ids.join(", ")));
    opt("executor ip", job.executor_ip.clone());
    opt("executor id", job.executor_id.clone());
    opt("regions", Some(job.eligible_regions.join(", ")));
    opt("datacenters", Some(job.eligible_datacenters.join(", ")));
    opt("volumes", Some(job.volumes.join(", ")));
    opt(
        "env",
        Some(
            job.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    );
    opt(
        "alloc timeout",
        Some(format!("{}s", job.allocation_timeout)).filter(|_| job.allocation_timeout > 0),
    );
    opt(
        "max runtime",
        Some(format!("{}s", job.max_runtime_seconds)).filter(|_| job.max_runtime_seconds > 0),
    );
    opt(
        "retries",
        (job.max_retries > 0).then(|| {
            format!(
                "up to {} on {}, backoff {}s doubling",
                job.max_retries,
                job.retry_on.join(", "),
                job.retry_backoff_seconds
            )
        }),
    );
    opt(
        "attempt",
        (job.attempt > 0).then(|| job.attempt.to_string()),
    );
    opt("retry at", job.retry_at.clone());
    opt("created", Some(job.created_at.clone()));
    opt("assigned", job.assigned_at.clone());
    opt("started", job.started_at.clone());
    opt("finished", job.finished_at.clone());
    let mut text = key_values(&pairs);
    if !job.attempts.is_empty() {
        text.push_str(
            "
attempts:
",
        );
        text.push_str(&attempts_table(&job.attempts).to_string());
    }
    text
}

/// The ended attempts of a job, one line each.
pub fn attempts_table(attempts: &[AttemptView]) -> Table {
    let mut table = Table::new(["ATTEMPT", "EXECUTOR", "STARTED", "ENDED", "EXIT", "REASON"])
        .right_align(&[0, 4]);
    for a in attempts {
        table.push([
            a.attempt.to_string(),
            a.executor_id.clone().unwrap_or_default(),
            a.started_at.clone().unwrap_or_else(|| NONE.to_owned()),
            a.ended_at.clone(),
            a.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            a.reason.clone().unwrap_or_default(),
        ]);
    }
    table
}

/// The job's memory in MiB (`memory_mb` when the server sent it, else from `memory_gb`).
fn memory_mib(job: &JobView) -> f64 {
    if job.memory_mb > 0 {
        job.memory_mb as f64
    } else {
        job.memory_gb * dwr_core::units::MIB_PER_GB as f64
    }
}

/// `2 x A100`, `1 x any`, or `-` for none.
fn gpus(job: &JobView) -> String {
    if job.gpu_count == 0 {
        return NONE.to_owned();
    }
    match &job.gpu_type {
        Some(model) => format!("{} x {model}", job.gpu_count),
        None => job.gpu_count.to_string(),
    }
}

/// The command as a shell would need it typed: words with blanks or quotes are quoted.
fn quote_command(command: &[String]) -> String {
    command
        .iter()
        .map(|word| {
            if !word.is_empty()
                && !word
                    .chars()
                    .any(|c| c.is_whitespace() || "'\"\\$`!*?;&|<>()".contains(c))
            {
                word.clone()
            } else {
                format!("'{}'", word.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` cut to `width` characters, ending in `…` when cut.
fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwr_core::{Job, JobSpec, Timestamp};

    fn view(command: &[&str]) -> JobView {
        let mut spec = JobSpec::new(
            "dwr-test/busybox:latest",
            command.iter().map(|s| s.to_string()).collect(),
            1500,
            512,
        );
        spec.env.insert("A".into(), "1".into());
        let job = Job::new(JobId::new(), spec, Timestamp(0));
        JobView::from_job(&job, Some("no executors registered".into()))
    }

    #[test]
    fn the_jobs_table_shows_ids_and_units() {
        let a = view(&["echo", "hi"]);
        let b = view(&["sh", "-c", &"x".repeat(100)]);
        let text = jobs_table(&[a.clone(), b.clone()]).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("JOB ID"), "{text}");
        assert!(lines[1].starts_with(&a.job_id), "{text}");
        assert!(lines[2].starts_with(&b.job_id), "{text}");
        assert!(
            lines[1].contains("pending") && lines[1].contains("512m"),
            "{text}"
        );
        assert!(lines[1].contains("1.5"), "{text}");
        assert!(lines[2].contains('…'), "long commands are cut: {text}");
        // Columns line up: STATUS starts at the same offset on every line.
        let col = lines[0].find("STATUS").unwrap();
        assert_eq!(lines[1].find("pending"), Some(col), "{text}");
    }

    #[test]
    fn the_detail_view_says_why_a_job_is_pending() {
        let text = job_detail(&view(&["sh", "-c", "echo a b"]));
        assert!(
            text.contains("pending reason:  no executors registered"),
            "{text}"
        );
        assert!(text.contains("command:         sh -c 'echo a b'"), "{text}");
        assert!(text.contains("env:             A=1"), "{text}");
        assert!(
            !text.contains("exit code"),
            "empty fields are left out: {text}"
        );
    }

    #[test]
    fn ids_are_checked_before_any_request() {
        let err = parse_id("not-a-uuid").unwrap_err();
        assert!(err.to_string().contains("not-a-uuid"), "{err}");
        assert_eq!(err.exit_code(), 2);
        assert!(parse_id(" 67e55044-10b1-426f-9247-bb680e5fe0c8 ").is_ok());
    }
}
