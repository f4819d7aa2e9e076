//! Retrying store operations with backoff while the store is unavailable.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::StoreError;

/// First pause after a failure.
const FIRST_DELAY: Duration = Duration::from_millis(50);
/// Longest pause between two tries.
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Runs `op` until it succeeds, fails with an error other than
/// [`StoreError::Unavailable`], or `budget` is spent; returns its last result.
///
/// Only `Unavailable` is retried: the store promises that such an operation applied
/// completely or not at all, and every operation the agent retries is idempotent or
/// harmless to repeat (`finish`, `mark_running` answer a repeat with `changed: false` or a
/// clear error; a repeated `append_logs` may at worst duplicate one batch).
pub(super) async fn with_backoff<T, F, Fut>(
    what: &'static str,
    budget: Duration,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let started = Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        match op().await {
            Err(error @ StoreError::Unavailable { .. }) if started.elapsed() + delay <= budget => {
                tracing::warn!(operation = what, error = %error, retry_in = ?delay, "store unavailable, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
            result => return result,
        }
    }
}

/// True for errors worth retrying later.
pub(super) fn is_transient(error: &StoreError) -> bool {
    matches!(error, StoreError::Unavailable { .. })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::ids::JobId;

    fn unavailable() -> StoreError {
        StoreError::Unavailable {
            operation: "test",
            source: "down".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_within_budget() {
        let calls = AtomicU32::new(0);
        let result = with_backoff("op", Duration::from_secs(10), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0..=2 => Err(unavailable()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_budget_and_never_retries_other_errors() {
        let started = Instant::now();
        let result: Result<(), _> = with_backoff("op", Duration::from_secs(3), || async {
            Err(unavailable())
        })
        .await;
        assert!(matches!(result, Err(StoreError::Unavailable { .. })));
        assert!(started.elapsed() <= Duration::from_secs(3));

        let calls = AtomicU32::new(0);
        let id = JobId::new();
        let result: Result<(), _> = with_backoff("op", Duration::from_secs(3), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::JobNotFound { id })
        })
        .await;
        assert!(matches!(result, Err(StoreError::JobNotFound { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
