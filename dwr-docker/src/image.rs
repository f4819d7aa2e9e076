//! Pulling images: the reference to pull, progress lines, and the stall timeout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::models::{CreateImageInfo, ProgressDetail};
use dwr_core::{ProgressSink, RuntimeError};
use futures::{Stream, StreamExt};

/// How often one layer may report the same status with new progress figures.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// The reference to pull for `image`: with `:latest` added when it names neither a tag nor a
/// digest, as the Docker CLI does (the engine would otherwise pull every tag).
pub fn pull_reference(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// Follows a pull's progress stream to its end, sending readable lines to `progress`.
///
/// Any message counts as progress; none for `stall` is `PullStalled`. An error from the
/// engine (in the stream or as a response) is `ImageUnavailable` with the engine's message.
/// `map_other` turns the remaining errors (connection, decoding) into runtime errors.
pub async fn follow_pull<S>(
    image: &str,
    mut stream: S,
    stall: Duration,
    progress: &ProgressSink,
    map_other: impl Fn(BollardError) -> RuntimeError,
) -> Result<(), RuntimeError>
where
    S: Stream<Item = Result<CreateImageInfo, BollardError>> + Unpin,
{
    let mut throttle = ProgressThrottle::default();
    loop {
        let item = match tokio::time::timeout(stall, stream.next()).await {
            Err(_) => {
                return Err(RuntimeError::PullStalled {
                    image: image.to_owned(),
                    seconds: stall.as_secs(),
                })
            }
            Ok(None) => return Ok(()),
            Ok(Some(item)) => item,
        };
        match item {
            Ok(info) => {
                if let Some(line) = throttle.line(&info, Instant::now()) {
                    // The receiver may be gone (the job was aborted); the pull goes on.
                    let _ = progress.send(line);
                }
            }
            Err(BollardError::DockerStreamError { error }) => {
                return Err(RuntimeError::ImageUnavailable {
                    image: image.to_owned(),
                    reason: error,
                })
            }
            Err(BollardError::DockerResponseServerError { message, .. }) => {
                return Err(RuntimeError::ImageUnavailable {
                    image: image.to_owned(),
                    reason: message,
                })
            }
            Err(other) => return Err(map_other(other)),
        }
    }
}

/// Keeps a pull's log readable: a line when a layer's status changes, and at most one
/// progress update per layer every [`PROGRESS_EVERY`].
#[derive(Debug, Default)]
struct ProgressThrottle {
    last: HashMap<String, (String, Instant)>,
}

impl ProgressThrottle {
    fn line(&mut self, info: &CreateImageInfo, now: Instant) -> Option<String> {
        let status = info.status.as_deref()?.trim();
        if status.is_empty() {
            return None;
        }
        let id = info.id.clone().unwrap_or_default();
        if let Some((last_status, at)) = self.last.get(&id) {
            if last_status == status && now.duration_since(*at) < PROGRESS_EVERY {
                return None;
            }
        }
        self.last.insert(id.clone(), (status.to_owned(), now));
        let mut line = String::from("pull: ");
        if !id.is_empty() {
            line.push_str(&id);
            line.push_str(": ");
        }
        line.push_str(status);
        if let Some(p) = info.progress_detail.as_ref().and_then(progress_figures) {
            line.push(' ');
            line.push_str(&p);
        }
        Some(line)
    }
}

/// `current/total` of a layer's download or extraction in decimal units, as the Docker CLI
/// prints them (`1.2MB/10MB`); `None` without figures. The engine's own progress bar string
/// is no longer part of the API models, so it is rebuilt from the numbers.
fn progress_figures(detail: &ProgressDetail) -> Option<String> {
    let current = detail.current.filter(|&c| c > 0)?;
    Some(match detail.total.filter(|&t| t > 0) {
        Some(total) => format!("{}/{}", human_size(current), human_size(total)),
        None => human_size(current),
    })
}

/// A byte count with at most four significant digits and a decimal unit (`kB`, `MB`, ...).
fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        1
    } else if value >= 10.0 {
        2
    } else {
        3
    };
    let text = if unit == 0 {
        format!("{value}")
    } else {
        let fixed = format!("{value:.digits$}");
        fixed.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::unbounded_channel;

    /// A progress message; `progress` is `(current, total)` bytes, `(0, 0)` for none.
    fn info(id: &str, status: &str, progress: (i64, i64)) -> Result<CreateImageInfo, BollardError> {
        Ok(CreateImageInfo {
            id: (!id.is_empty()).then(|| id.to_owned()),
            status: Some(status.to_owned()),
            progress_detail: (progress != (0, 0)).then_some(ProgressDetail {
                current: Some(progress.0),
                total: Some(progress.1),
            }),
            ..Default::default()
        })
    }

    fn unexpected(e: BollardError) -> RuntimeError {
        panic!("unexpected error {e:?}")
    }

    #[test]
    fn references_get_latest_only_without_tag_or_digest() {
        assert_eq!(pull_reference("busybox"), "busybox:latest");
        assert_eq!(pull_reference("busybox:1.36"), "busybox:1.36");
        assert_eq!(
            pull_reference("localhost:5000/a/b"),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(
            pull_reference("localhost:5000/a/b:v1"),
            "localhost:5000/a/b:v1"
        );
        assert_eq!(pull_reference("a/b@sha256:abc"), "a/b@sha256:abc");
    }

    #[tokio::test]
    async fn progress_lines_are_sent_and_repeats_throttled() {
        let (tx, mut rx) = unbounded_channel();
        let stream = futures::stream::iter(vec![
            info("", "Pulling from library/busybox", (0, 0)),
            info("abc", "Downloading", (1_000_000, 10_000_000)),
            info("abc", "Downloading", (2_000_000, 10_000_000)),
            info("abc", "Download complete", (0, 0)),
        ]);
        follow_pull("busybox", stream, Duration::from_secs(5), &tx, unexpected)
            .await
            .unwrap();
        drop(tx);
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line);
        }
        assert_eq!(
            lines,
            vec![
                "pull: Pulling from library/busybox",
                "pull: abc: Downloading 1MB/10MB",
                "pull: abc: Download complete",
            ]
        );
    }

    #[test]
    fn sizes_read_like_the_docker_cli() {
        assert_eq!(human_size(532), "532B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(45_600_000), "45.6MB");
        assert_eq!(human_size(812_300_000), "812.3MB");
        assert_eq!(human_size(3_000_000_000), "3GB");
        let detail = |current, total| ProgressDetail {
            current: Some(current),
            total: Some(total),
        };
        assert_eq!(progress_figures(&detail(0, 10)), None);
        assert_eq!(
            progress_figures(&detail(1_500_000, 0)).as_deref(),
            Some("1.5MB")
        );
    }

    #[tokio::test]
    async fn engine_errors_are_image_unavailable() {
        let (tx, _rx) = unbounded_channel();
        let stream = futures::stream::iter(vec![
            info("", "Pulling", (0, 0)),
            Err(BollardError::DockerStreamError {
                error: "manifest unknown".to_owned(),
            }),
        ]);
        let err = follow_pull("x:1", stream, Duration::from_secs(5), &tx, unexpected)
            .await
            .unwrap_err();
        match err {
            RuntimeError::ImageUnavailable { image, reason } => {
                assert_eq!(image, "x:1");
                assert_eq!(reason, "manifest unknown");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_silent_pull_stalls() {
        let (tx, _rx) = unbounded_channel();
        let stream = futures::stream::pending::<Result<CreateImageInfo, BollardError>>();
        let err = follow_pull("x:1", stream, Duration::from_millis(50), &tx, unexpected)
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::PullStalled { .. }), "{err:?}");
    }
}
