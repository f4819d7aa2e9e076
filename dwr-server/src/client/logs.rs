//! `dwr logs [-f] ID`, and following a job to its end: log lines streamed from
//! `GET /jobs/{id}/logs?follow=true`, status changes (and why a job is still pending) on stderr.

use std::io::Write;
use std::time::{Duration, Instant};

use dwr_core::{JobId, JobState};
use futures::StreamExt;

use super::{jobs, Api, ClientError};
use crate::wire::{JobView, LogsResponse};

/// How often a followed job's status is polled while its log stream is reopened.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// First pause between two polls of an awaited job: short jobs end in well under a second.
const WATCH_FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two polls of an awaited job (one request a second at most).
const WATCH_MAX_PAUSE: Duration = Duration::from_secs(1);
/// After the job ended, how long the log stream gets to deliver its last lines.
const DRAIN_GRACE: Duration = Duration::from_secs(3);
/// A pending job's unchanged reason is repeated this often.
const REPEAT_PENDING_AFTER: Duration = Duration::from_secs(15);
/// Two pending notes are never closer than this, even when the reason changes.
const MIN_PENDING_GAP: Duration = Duration::from_secs(3);

/// `dwr logs ID`: every line so far, oldest first (or the server's JSON).
pub async fn all(api: &Api, id: JobId, json: bool) -> Result<String, ClientError> {
    let body = api.get(&format!("/jobs/{id}/logs")).await?;
    if json {
        return Ok(body.pretty()? + "\n");
    }
    let logs: LogsResponse = body.decode()?;
    let mut text = logs.lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    Ok(text)
}

/// `dwr logs -f ID`: prints lines as they come until the job ends. With `json`, the log
/// lines (which are not JSON) go to stderr and the final job is printed as JSON on stdout.
pub async fn follow(api: &Api, id: JobId, json: bool) -> Result<(), ClientError> {
    let job = if json {
        follow_to_end(api, id, &mut std::io::stderr()).await?
    } else {
        follow_to_end(api, id, &mut std::io::stdout()).await?
    };
    if json {
        super::print(&(serde_json::to_string_pretty(&job).unwrap_or_default() + "\n"))?;
    } else {
        eprintln!("{}", final_note(&job));
    }
    Ok(())
}

/// Streams the job's log into `out` until the job is terminal and returns the job as it
/// ended; status notes go to stderr.
///
/// A stream that ends or breaks while the job is still live is reopened, skipping the lines
/// already printed, so a server restart or a proxy timeout does not end the follow.
pub async fn follow_to_end(
    api: &Api,
    id: JobId,
    out: &mut (dyn Write + Send),
) -> Result<JobView, ClientError> {
    let path = format!("/jobs/{id}/logs?follow=true");
    let mut reporter = StatusReporter::default();
    let mut printed = 0usize;
    loop {
        let response = api.stream(&path).await?;
        let skip = printed;
        let copy = copy_lines(response, skip, &mut printed, &mut *out);
        tokio::pin!(copy);
        tokio::select! {
            _ = &mut copy => {}
            ended = watch(api, id, &mut reporter) => {
                let job = ended?;
                // The job is over: let the stream hand over its last lines, then stop.
                let _ = tokio::time::timeout(DRAIN_GRACE, &mut copy).await;
                return Ok(job);
            }
        }
        let job = jobs::fetch(api, id).await?;
        report(reporter.observe(&job, Instant::now()));
        if job.status.is_terminal() {
            return Ok(job);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls the job until it is terminal, printing status notes; returns the final job.
///
/// The pause between polls starts short and grows to a second, and starts over when the
/// job changes state: a short job is seen ending at once, a long one costs one request a
/// second.
pub async fn watch(
    api: &Api,
    id: JobId,
    reporter: &mut StatusReporter,
) -> Result<JobView, ClientError> {
    let mut pause = WATCH_FIRST_PAUSE;
    let mut last_state = None;
    loop {
        let job = jobs::fetch(api, id).await?;
        report(reporter.observe(&job, Instant::now()));
        if job.status.is_terminal() {
            return Ok(job);
        }
        if last_state != Some(job.status) {
            last_state = Some(job.status);
            pause = WATCH_FIRST_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = next_pause(pause);
    }
}

/// The pause after `pause`: half as long again, at most [`WATCH_MAX_PAUSE`].
fn next_pause(pause: Duration) -> Duration {
    (pause + pause / 2).min(WATCH_MAX_PAUSE)
}

fn report(notes: Vec<String>) {
    for note in notes {
        eprintln!("{note}");
    }
}

/// Copies the stream's lines to the terminal, skipping the first `skip` (already printed by
/// an earlier stream); `printed` counts every line of this stream seen so far. A broken
/// stream simply ends: the caller decides from the job's status what comes next.
async fn copy_lines(
    response: reqwest::Response,
    skip: usize,
    printed: &mut usize,
    out: &mut (dyn Write + Send),
) {
    let mut stream = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut index = 0usize;
    let mut emit = |line: &[u8], index: &mut usize| {
        if *index >= skip {
            write_line(out, line);
            *printed = (*printed).max(*index + 1);
        }
        *index += 1;
    };
    while let Some(Ok(chunk)) = stream.next().await {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            emit(&line[..line.len() - 1], &mut index);
        }
    }
    if !pending.is_empty() {
        emit(&pending, &mut index);
    }
}

fn write_line(out: &mut (dyn Write + Send), line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // A closed pipe (`dwr logs -f ID | head`) is not worth an error: the lines are gone anyway.
    let _ = out
        .write_all(line)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
}

/// Decides which status notes to print while following a job: state changes, and while the
/// job is pending, why — when the reason changes (at most every few seconds) and as a
/// reminder every 15 s.
#[derive(Debug, Default)]
pub struct StatusReporter {
    last_state: Option<JobState>,
    last_reason: Option<String>,
    last_pending_note: Option<Instant>,
    pending_since: Option<Instant>,
}

impl StatusReporter {
    /// The notes to print for this observation of the job at `now` (often none).
    pub fn observe(&mut self, job: &JobView, now: Instant) -> Vec<String> {
        let mut notes = Vec::new();
        let changed = self.last_state != Some(job.status);
        self.last_state = Some(job.status);
        match job.status {
            JobState::Pending => {
                let since = *self.pending_since.get_or_insert(now);
                let reason = job.pending_reason.clone();
                let quiet_for = self.last_pending_note.map(|t| now.duration_since(t));
                let say = match quiet_for {
                    None => true,
                    Some(q) if reason != self.last_reason => q >= MIN_PENDING_GAP,
                    Some(q) => q >= REPEAT_PENDING_AFTER,
                };
                if say {
                    let waited = now.duration_since(since).as_secs();
                    let head = if waited == 0 {
                        format!("dwr: job {} is pending", job.job_id)
                    } else {
                        format!("dwr: job {} is still pending after {waited}s", job.job_id)
                    };
                    notes.push(match &reason {
                        Some(r) => format!("{head}: {r}"),
                        None => head,
                    });
                    self.last_pending_note = Some(now);
                    self.last_reason = reason;
                }
            }
            JobState::Assigned if changed => notes.push(format!(
                "dwr: job {} assigned to {}",
                job.job_id,
                where_(job)
            )),
            JobState::Running if changed => notes.push(format!(
                "dwr: job {} running on {}",
                job.job_id,
                where_(job)
            )),
            _ => {}
        }
        notes
    }
}

fn where_(job: &JobView) -> String {
    match (&job.executor_id, &job.executor_ip) {
        (Some(id), Some(ip)) if id != ip => format!("{id} ({ip})"),
        (_, Some(ip)) => ip.clone(),
        (Some(id), None) => id.clone(),
        (None, None) => "an executor".to_owned(),
    }
}

/// The line printed when a followed or awaited job ends.
pub fn final_note(job: &JobView) -> String {
    let mut note = format!("dwr: job {} {}", job.job_id, job.status);
    if let Some(reason) = job.reason.as_deref().filter(|r| !r.is_empty()) {
        note.push_str(&format!(": {reason}"));
    }
    if let Some(code) = job.exit_code {
        note.push_str(&format!(" (exit code {code})"));
    }
    note
}

/// The process exit code for a job that ended: its own exit code when that fits a process
/// exit status and is non-zero, 0 when it succeeded, else 1.
pub fn exit_code_of(job: &JobView) -> i32 {
    match (job.status, job.exit_code) {
        (JobState::Succeeded, _) => 0,
        (_, Some(code)) if (1..=255).contains(&code) => code as i32,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dwr_core::{Job, JobSpec, Outcome, Timestamp};

    fn pending(reason: Option<&str>) -> JobView {
        let spec = JobSpec::new("img", vec!["true".into()], 100, 64);
        let job = Job::new(JobId::new(), spec, Timestamp(0));
        JobView::from_job(&job, reason.map(str::to_owned))
    }

    #[test]
    fn pending_reasons_are_rate_limited() {
        let mut r = StatusReporter::default();
        let t0 = Instant::now();
        let job = pending(Some("no executor has GPUs"));
        let first = r.observe(&job, t0);
        assert_eq!(first.len(), 1);
        assert!(
            first[0].ends_with("is pending: no executor has GPUs"),
            "{first:?}"
        );
        // The same reason is not repeated on every poll...
        assert!(r.observe(&job, t0 + Duration::from_secs(1)).is_empty());
        assert!(r.observe(&job, t0 + Duration::from_secs(14)).is_empty());
        // ...but as a reminder now and then.
        let again = r.observe(&job, t0 + Duration::from_secs(15));
        assert_eq!(again.len(), 1);
        assert!(again[0].contains("still pending after 15s"), "{again:?}");
        // A new reason is said soon, but not more often than the minimum gap.
        let other = pending(Some("cpu exhausted on 1 executor"));
        assert!(r.observe(&other, t0 + Duration::from_secs(16)).is_empty());
        let said = r.observe(&other, t0 + Duration::from_secs(18));
        assert!(said[0].ends_with("cpu exhausted on 1 executor"), "{said:?}");
    }

    #[test]
    fn state_changes_are_said_once() {
        let mut r = StatusReporter::default();
        let mut job = pending(None);
        let now = Instant::now();
        assert_eq!(r.observe(&job, now).len(), 1);
        job.status = JobState::Running;
        job.executor_ip = Some("10.0.0.2".into());
        let notes = r.observe(&job, now);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].ends_with("running on 10.0.0.2"), "{notes:?}");
        assert!(r.observe(&job, now).is_empty());
    }

    #[test]
    fn polling_backs_off_to_one_second() {
        let mut pause = WATCH_FIRST_PAUSE;
        let mut waited = Duration::ZERO;
        for _ in 0..20 {
            waited += pause;
            pause = next_pause(pause);
        }
        assert_eq!(pause, WATCH_MAX_PAUSE);
        assert!(next_pause(WATCH_FIRST_PAUSE) > WATCH_FIRST_PAUSE);
        assert!(waited > Duration::from_secs(5), "{waited:?}");
    }

    #[test]
    fn exit_codes_follow_the_job() {
        let mut job = pending(None);
        for (outcome, code) in [
            (Outcome::exited(0, false), 0),
            (Outcome::exited(3, false), 3),
            (Outcome::exited(137, true), 137),
            (Outcome::exited(-1, false), 1),
            (Outcome::exited(300, false), 1),
            (Outcome::failed("executor lost"), 1),
            (Outcome::aborted("aborted by user"), 1),
        ] {
            job.status = outcome.state;
            job.exit_code = outcome.exit_code;
            job.reason = outcome.reason.clone();
            assert_eq!(exit_code_of(&job), code, "{outcome:?}");
        }
        job.status = JobState::Failed;
        job.exit_code = Some(3);
        job.reason = Some("exited with code 3".into());
        assert!(final_note(&job).ends_with("failed: exited with code 3 (exit code 3)"));
    }
}
