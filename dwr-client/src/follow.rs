//! Following a job to its end: its log lines as they come, its status as it changes.
//!
//! Written once here for every caller (`dwr logs -f`, `dwr submit --follow`, programs): the
//! log stream (`GET /jobs/{id}/logs?follow=true`) is reopened when it breaks while the job
//! is still live, skipping the lines already delivered, so a server restart or a proxy's
//! timeout does not end the follow; and the job is polled beside it, so the end is seen
//! even when the stream's last bytes are late.

use std::time::Duration;

use dwr_core::JobId;
use futures::StreamExt;

use crate::error::Error;
use crate::wire::JobView;
use crate::Client;

/// How often a followed job's status is polled while its log stream is reopened.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// First pause between two polls of an awaited job: short jobs end in well under a second.
const WATCH_FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two polls of an awaited job (one request a second at most).
const WATCH_MAX_PAUSE: Duration = Duration::from_secs(1);
/// After the job ended, how long the log stream gets to deliver its last lines.
const DRAIN_GRACE: Duration = Duration::from_secs(3);

impl Client {
    /// Follows job `id` until it ends and returns it as it ended: `on_line` gets each log
    /// line once, in order (without its line break), and `on_job` each observation of the
    /// job (for status notes: pending and why, assigned, running).
    pub async fn follow(
        &self,
        id: JobId,
        mut on_line: impl FnMut(&str),
        mut on_job: impl FnMut(&JobView),
    ) -> Result<JobView, Error> {
        let path = format!("/jobs/{id}/logs?follow=true");
        let mut delivered = 0usize;
        loop {
            let response = self.stream(&path).await?;
            let copy = deliver_lines(response, delivered, &mut delivered, &mut on_line);
            tokio::pin!(copy);
            tokio::select! {
                _ = &mut copy => {}
                ended = self.wait(id, &mut on_job) => {
                    let job = ended?;
                    // The job is over: let the stream hand over its last lines, then stop.
                    let _ = tokio::time::timeout(DRAIN_GRACE, &mut copy).await;
                    return Ok(job);
                }
            }
            let job = self.job(id).await?;
            on_job(&job);
            if job.status.is_terminal() {
                return Ok(job);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Polls job `id` until it ends and returns it as it ended; `on_job` gets each
    /// observation.
    ///
    /// The pause between polls starts short and grows to a second, and starts over when
    /// the job changes state: a short job is seen ending at once, a long one costs one
    /// request a second.
    pub async fn wait(
        &self,
        id: JobId,
        mut on_job: impl FnMut(&JobView),
    ) -> Result<JobView, Error> {
        let mut pause = WATCH_FIRST_PAUSE;
        let mut last_state = None;
        loop {
            let job = self.job(id).await?;
            on_job(&job);
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
}

/// The pause after `pause`: half as long again, at most [`WATCH_MAX_PAUSE`].
fn next_pause(pause: Duration) -> Duration {
    (pause + pause / 2).min(WATCH_MAX_PAUSE)
}

/// Hands the stream's lines to `on_line`, skipping the first `skip` (delivered from an
/// earlier stream); `delivered` counts every line of this stream seen so far. A broken
/// stream simply ends: the caller decides from the job's status what comes next.
async fn deliver_lines(
    response: reqwest::Response,
    skip: usize,
    delivered: &mut usize,
    on_line: &mut impl FnMut(&str),
) {
    let mut stream = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut index = 0usize;
    let mut emit = |line: &[u8], index: &mut usize| {
        if *index >= skip {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            on_line(&String::from_utf8_lossy(line));
            *delivered = (*delivered).max(*index + 1);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
