//! Wake-ups (see the module docs): waiting on a `Notify` with a deadline without missing a
//! change, and ringing the waiters once the lock is released.

use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::state::State;
use super::InMemoryJobStore;
use crate::error::StoreError;

impl InMemoryJobStore {
    /// Wakes every scheduler waiting in `wait_for_work`, and leaves one permit so a scheduler
    /// that is between two calls does not miss the change.
    pub(super) fn wake_schedulers(&self) {
        self.work.notify_waiters();
        self.work.notify_one();
    }

    /// Waits up to `wait` for `ready`, checked under the lock, to break with a value; while
    /// it continues, it names the notifier a change will ring. `None` on timeout.
    pub(super) async fn wait_for<T>(
        &self,
        wait: Duration,
        mut ready: impl FnMut(&mut State) -> Result<ControlFlow<T, Arc<Notify>>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let deadline = deadline_after(wait);
        loop {
            let notify = match ready(&mut self.lock())? {
                ControlFlow::Break(value) => return Ok(Some(value)),
                ControlFlow::Continue(notify) => notify,
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before the re-check: a change after it rings this waiter.
            notified.as_mut().enable();
            if let ControlFlow::Break(value) = ready(&mut self.lock())? {
                return Ok(Some(value));
            }
            if !until(deadline, notified).await {
                return Ok(None);
            }
        }
    }
}

/// The instant `wait` from now, or `None` when that is too far to represent (wait forever).
pub(super) fn deadline_after(wait: Duration) -> Option<Instant> {
    Instant::now().checked_add(wait)
}

/// Awaits `fut` until `deadline`. True when it completed, false on timeout.
pub(super) async fn until<F: Future>(deadline: Option<Instant>, fut: F) -> bool {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, fut).await.is_ok(),
        None => {
            fut.await;
            true
        }
    }
}

pub(super) fn ring(notify: Option<Arc<Notify>>) {
    if let Some(notify) = notify {
        notify.notify_waiters();
    }
}
