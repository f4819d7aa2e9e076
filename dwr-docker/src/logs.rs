//! Splitting the engine's output chunks into lines, one buffer per stream.

use dwr_core::{LogLine, LogSource};

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
    fn utf8_split_across_chunks_is_kept() {
        let mut s = LineSplitter::default();
        let bytes = "é\n".as_bytes();
        assert!(s.push(LogSource::Stdout, &bytes[..1]).is_empty());
        assert_eq!(texts(&s.push(LogSource::Stdout, &bytes[1..])), vec!["é"]);
    }
}
