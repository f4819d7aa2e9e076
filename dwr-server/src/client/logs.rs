//! `dwr logs [-f] ID`, and following a job to its end on a terminal: log lines on stdout
//! (stderr with `--json`), status changes (and why a job is still pending) on stderr. The
//! following itself is [`Client::follow`]'s.

use std::io::Write;
use std::time::{Duration, Instant};

use dwr_client::{to_pretty_json, Client, JobView};
use dwr_core::{JobId, JobState};

use super::ClientError;

/// A pending job's unchanged reason is repeated this often.
const REPEAT_PENDING_AFTER: Duration = Duration::from_secs(15);
/// Two pending notes are never closer than this, even when the reason changes.
const MIN_PENDING_GAP: Duration = Duration::from_secs(3);

/// `dwr logs ID`: every line so far, oldest first (or the server's JSON).
pub async fn all(api: &Client, id: JobId, json: bool) -> Result<String, ClientError> {
    let logs = api.logs(id).await?;
    if json {
        return Ok(to_pretty_json(&logs) + "\n");
    }
    let mut text = logs.lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    Ok(text)
}

/// `dwr logs -f ID`: prints lines as they come until the job ends. With `json`, the log
/// lines (which are not JSON) go to stderr and the final job is printed as JSON on stdout.
pub async fn follow(api: &Client, id: JobId, json: bool) -> Result<(), ClientError> {
    let job = if json {
        follow_to_end(api, id, &mut std::io::stderr()).await?
    } else {
        follow_to_end(api, id, &mut std::io::stdout()).await?
    };
    if json {
        super::print(&(to_pretty_json(&job) + "\n"))?;
    } else {
        eprintln!("{}", final_note(&job));
    }
    Ok(())
}

/// Writes the job's log into `out` until the job ends, with status notes on stderr;
/// returns the job as it ended.
pub async fn follow_to_end(
    api: &Client,
    id: JobId,
    out: &mut impl Write,
) -> Result<JobView, ClientError> {
    let mut reporter = StatusReporter::default();
    let write_line = |line: &str| {
        // A closed pipe (`dwr logs -f ID | head`) is not worth an error: the lines are gone
        // anyway.
        let _ = writeln!(out, "{line}").and_then(|_| out.flush());
    };
    Ok(api.follow(id, write_line, reporter.printer()).await?)
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
    /// An observer for [`Client::follow`] and [`Client::wait`] that prints the notes on
    /// stderr.
    pub fn printer(&mut self) -> impl FnMut(&JobView) + '_ {
        |job| {
            for note in self.observe(job, Instant::now()) {
                eprintln!("{note}");
            }
        }
    }

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
