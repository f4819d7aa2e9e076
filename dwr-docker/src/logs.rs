//! Following a container's output: engine frames cut into lines, one buffer per stream,
//! with a catch-up read for the last frame a follow stream can miss.

use std::collections::VecDeque;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use dwr_core::runtime::log_piece_len;
use dwr_core::{ContainerId, LogLine, LogSource, RuntimeError, MAX_LOG_LINE_BYTES};
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
    let options = LogsOptionsBuilder::new()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .tail("all")
        .build();
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
    let options = LogsOptionsBuilder::new()
        .follow(false)
        .stdout(true)
        .stderr(true)
        .tail(&CATCH_UP_FRAMES.to_string())
        .build();
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
///
/// No line is held or emitted whole past [`MAX_LOG_LINE_BYTES`]: a longer one is emitted as
/// pieces of at most that many bytes, cut on a character boundary ([`log_piece_len`]), as
/// soon as more than that is held. The pieces concatenate back to the line, and the agent's
/// memory per container stays bounded whatever a job prints.
#[derive(Debug, Default)]
pub struct LineSplitter {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl LineSplitter {
    /// Adds a chunk of `source` and returns the lines (and pieces of long lines) it
    /// completes, in order.
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
            push_pieces(&mut lines, source, strip_cr(&buffer[start..end]));
            start = end + 1;
        }
        // The partial line left: cut while more than a piece's worth is held, keeping the
        // rest (never empty) for the newline to come. A full piece and a `\r` are held one
        // byte longer: the `\r` may begin the line's CRLF, which must not become a line.
        while buffer.len() - start > MAX_LOG_LINE_BYTES
            && !(buffer.len() - start == MAX_LOG_LINE_BYTES + 1 && buffer.ends_with(b"\r"))
        {
            let len = log_piece_len(&buffer[start..]);
            lines.push(line(source, &buffer[start..start + len]));
            start += len;
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
                push_pieces(&mut lines, source, strip_cr(buffer));
                buffer.clear();
            }
        }
        lines
    }
}

/// Appends the complete line `bytes` to `lines`: as one line, or in pieces when long.
fn push_pieces(lines: &mut Vec<LogLine>, source: LogSource, mut bytes: &[u8]) {
    loop {
        let len = log_piece_len(bytes);
        lines.push(line(source, &bytes[..len]));
        bytes = &bytes[len..];
        if bytes.is_empty() {
            return;
        }
    }
}

fn strip_cr(bytes: &[u8]) -> &[u8] {
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

fn line(source: LogSource, bytes: &[u8]) -> LogLine {
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
    fn a_line_longer_than_the_limit_is_split_as_it_arrives() {
        const MAX: usize = MAX_LOG_LINE_BYTES;
        let mut s = LineSplitter::default();
        // 100 KiB of varied text without a newline, fed in 4 KiB chunks.
        let text: String = (0..30_000).map(|i| i.to_string()).collect();
        let text = &text[..100 * 1024];
        let mut pieces = Vec::new();
        for chunk in text.as_bytes().chunks(4096) {
            pieces.extend(s.push(LogSource::Stdout, chunk));
            assert!(s.stdout.len() <= MAX, "held {} bytes", s.stdout.len());
        }
        pieces.extend(s.finish());
        assert_eq!(pieces.len(), text.len().div_ceil(MAX));
        assert!(pieces.iter().all(|l| l.text.len() <= MAX));
        assert_eq!(texts(&pieces).concat(), text);

        // A long line inside one chunk, with its newline, then a short one.
        let long = "x".repeat(2 * MAX + 1);
        let lines = s.push(LogSource::Stderr, format!("{long}\r\nshort\n").as_bytes());
        assert_eq!(
            lines.iter().map(|l| l.text.len()).collect::<Vec<_>>(),
            vec![MAX, MAX, 1, 5]
        );
        assert!(lines.iter().all(|l| l.source == LogSource::Stderr));

        // Exactly the limit is one line, and its newline adds no empty line.
        let exact = "y".repeat(MAX);
        assert!(s.push(LogSource::Stdout, exact.as_bytes()).is_empty());
        assert_eq!(
            texts(&s.push(LogSource::Stdout, b"\n")),
            vec![exact.as_str()]
        );
        // So is the limit and a CRLF whose `\n` comes in the next chunk.
        let crlf_pending = format!("{exact}\r");
        assert!(s
            .push(LogSource::Stdout, crlf_pending.as_bytes())
            .is_empty());
        assert_eq!(
            texts(&s.push(LogSource::Stdout, b"\n")),
            vec![exact.as_str()]
        );
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let mut s = LineSplitter::default();
        let text = "é".repeat(MAX_LOG_LINE_BYTES); // two bytes each
        let mut pieces = s.push(LogSource::Stdout, text.as_bytes());
        pieces.extend(s.finish());
        assert!(pieces.iter().all(|l| !l.text.contains('\u{fffd}')));
        assert_eq!(texts(&pieces).concat(), text);
    }

    #[test]
    fn utf8_split_across_chunks_is_kept() {
        let mut s = LineSplitter::default();
        let bytes = "é\n".as_bytes();
        assert!(s.push(LogSource::Stdout, &bytes[..1]).is_empty());
        assert_eq!(texts(&s.push(LogSource::Stdout, &bytes[1..])), vec!["é"]);
    }
}
