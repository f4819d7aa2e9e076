//! Following a container's output: engine frames cut into lines, one buffer per stream,
//! with a catch-up read for the last frame a follow stream can miss.

use std::collections::VecDeque;

use bollard::container::{LogOutput, LogsOptions};
use bollard::errors::Error as BollardError;
use bollard::Docker;
use dwr_core::{ContainerId, LogLine, LogSource, RuntimeError};
use futures::stream::BoxStream;
use futures::StreamExt;

/// Frames remembered, and re-read from the end of the log, to find what a follow missed.
const CATCH_UP_FRAMES: usize = 16;

/// The lines of container `id`, from its start, following until it exits.
///
/// Docker 20.10's follow stream can end without the container's last message when that
/// message has no trailing newline (a race between the log copier's final flush and the
/// follower's close). So when the stream ends, the last [`CATCH_UP_FRAMES`] messages are read
/// again without following, aligned with the last ones received, and any that are new are
/// emitted before the held partial lines are flushed.
pub fn follow_lines(
    docker: Docker,
    id: ContainerId,
    map_error: impl Fn(BollardError) -> RuntimeError + Send + Sync + 'static,
) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
    let options = LogsOptions::<String> {
        follow: true,
        stdout: true,
        stderr: true,
        tail: "all".to_owned(),
        ..Default::default()
    };
    let frames = docker.logs(&id.0, Some(options)).boxed();
    let follower = Follower {
        docker,
        id,
        frames,
        splitter: LineSplitter::default(),
        recent: VecDeque::with_capacity(CATCH_UP_FRAMES),
        pending: VecDeque::new(),
        finished: false,
        map_error: Box::new(map_error),
    };
    futures::stream::unfold(follower, |mut f| async move {
        let item = f.next_line().await?;
        Some((item, f))
    })
    .boxed()
}

type ErrorMap = Box<dyn Fn(BollardError) -> RuntimeError + Send + Sync>;

struct Follower {
    docker: Docker,
    id: ContainerId,
    frames: BoxStream<'static, Result<LogOutput, BollardError>>,
    splitter: LineSplitter,
    recent: VecDeque<LogOutput>,
    pending: VecDeque<Result<LogLine, RuntimeError>>,
    finished: bool,
    map_error: ErrorMap,
}

impl Follower {
    async fn next_line(&mut self) -> Option<Result<LogLine, RuntimeError>> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.finished {
                return None;
            }
            match self.frames.next().await {
                Some(Ok(frame)) => {
                    self.split(&frame);
                    if self.recent.len() == CATCH_UP_FRAMES {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(frame);
                }
                Some(Err(e)) => {
                    self.flush();
                    self.pending.push_back(Err((self.map_error)(e)));
                    self.finished = true;
                }
                None => {
                    let seen: Vec<LogOutput> = self.recent.iter().cloned().collect();
                    for frame in catch_up(&self.docker, &self.id, &seen).await {
                        self.split(&frame);
                    }
                    self.flush();
                    self.finished = true;
                }
            }
        }
    }

    fn split(&mut self, frame: &LogOutput) {
        let lines = match frame {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                self.splitter.push(LogSource::Stdout, message)
            }
            LogOutput::StdErr { message } => self.splitter.push(LogSource::Stderr, message),
            LogOutput::StdIn { .. } => Vec::new(),
        };
        self.pending.extend(lines.into_iter().map(Ok));
    }

    fn flush(&mut self) {
        self.pending
            .extend(self.splitter.finish().into_iter().map(Ok));
    }
}

/// The frames at the end of the log of `id` that come after `seen`, the last ones received.
async fn catch_up(docker: &Docker, id: &ContainerId, seen: &[LogOutput]) -> Vec<LogOutput> {
    let options = LogsOptions::<String> {
        follow: false,
        stdout: true,
        stderr: true,
        tail: CATCH_UP_FRAMES.to_string(),
        ..Default::default()
    };
    let mut tail = Vec::with_capacity(CATCH_UP_FRAMES);
    let mut frames = docker.logs(&id.0, Some(options));
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(frame) => tail.push(frame),
            Err(e) => {
                // Removed already, say: what was followed stands.
                tracing::debug!(container = %id, error = %e, "log catch-up read failed");
                return Vec::new();
            }
        }
    }
    missing_suffix(seen, &tail).to_vec()
}

/// The part of `tail` (the last frames of the log) after its longest prefix that ends `seen`
/// (the last frames received).
pub fn missing_suffix<'a, T: PartialEq>(seen: &[T], tail: &'a [T]) -> &'a [T] {
    let longest = seen.len().min(tail.len());
    (0..=longest)
        .rev()
        .find(|&j| tail[..j] == seen[seen.len() - j..])
        .map_or(tail, |j| &tail[j..])
}

/// Cuts chunks of stdout and stderr into lines. A partial line is held until its newline
/// arrives or the stream ends ([`finish`](Self::finish)); bytes are decoded per line, so a
/// UTF-8 character split across chunks survives.
#[derive(Debug, Default)]
pub struct LineSplitter {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl LineSplitter {
    /// Adds a chunk of `source` and returns the lines it completes, in order.
    pub fn push(&mut self, source: LogSource, chunk: &[u8]) -> Vec<LogLine> {
        let buffer = match source {
            LogSource::Stdout => &mut self.stdout,
            LogSource::Stderr => &mut self.stderr,
        };
        buffer.extend_from_slice(chunk);
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(offset) = buffer[start..].iter().position(|&b| b == b'\n') {
            let end = start + offset;
            lines.push(line(source, &buffer[start..end]));
            start = end + 1;
        }
        buffer.drain(..start);
        lines
    }

    /// The partial lines left when the output ends, stdout first.
    pub fn finish(&mut self) -> Vec<LogLine> {
        let mut lines = Vec::new();
        for (source, buffer) in [
            (LogSource::Stdout, &mut self.stdout),
            (LogSource::Stderr, &mut self.stderr),
        ] {
            if !buffer.is_empty() {
                lines.push(line(source, buffer));
                buffer.clear();
            }
        }
        lines
    }
}

fn line(source: LogSource, bytes: &[u8]) -> LogLine {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    LogLine {
        source,
        text: String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn splits_on_newlines_and_holds_partial_lines() {
        let mut s = LineSplitter::default();
        assert_eq!(texts(&s.push(LogSource::Stdout, b"a\nb")), vec!["a"]);
        assert_eq!(
            texts(&s.push(LogSource::Stdout, b"c\r\n\nd")),
            vec!["bc", ""]
        );
        assert_eq!(texts(&s.finish()), vec!["d"]);
        assert!(s.finish().is_empty());
    }

    #[test]
    fn streams_are_buffered_apart() {
        let mut s = LineSplitter::default();
        assert!(s.push(LogSource::Stdout, b"out-").is_empty());
        let err = s.push(LogSource::Stderr, b"err\n");
        assert_eq!(err[0].source, LogSource::Stderr);
        assert_eq!(err[0].text, "err");
        let out = s.push(LogSource::Stdout, b"line\n");
        assert_eq!(out[0].source, LogSource::Stdout);
        assert_eq!(out[0].text, "out-line");
    }

    #[test]
    fn missing_suffix_aligns_on_the_longest_overlap() {
        assert_eq!(missing_suffix(&[1, 2, 3], &[2, 3, 4]), &[4]);
        assert_eq!(missing_suffix(&[1, 2, 3], &[1, 2, 3]), &[] as &[i32]);
        assert_eq!(missing_suffix(&[] as &[i32], &[1, 2]), &[1, 2]);
        assert_eq!(missing_suffix(&[7, 7, 7], &[7, 7, 8]), &[8]);
        assert_eq!(missing_suffix(&[7, 7, 7], &[7, 7, 7]), &[] as &[i32]);
        assert_eq!(missing_suffix(&[1, 2], &[5, 6]), &[5, 6]);
    }

    #[test]
    fn utf8_split_across_chunks_is_kept() {
        let mut s = LineSplitter::default();
        let bytes = "é\n".as_bytes();
        assert!(s.push(LogSource::Stdout, &bytes[..1]).is_empty());
        assert_eq!(texts(&s.push(LogSource::Stdout, &bytes[1..])), vec!["é"]);
    }
}
