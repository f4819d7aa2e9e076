//! The heartbeat task.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::StoreError;
use crate::executor::ExecutorRegistration;
use crate::probe::HostProbe;
use crate::store::JobStore;

/// Heartbeats forever; registers again when the store has expired the executor, and then
/// rings `reregistered` so the agent stops the containers of the jobs the expiry failed.
pub(super) async fn heartbeat(
    store: Arc<dyn JobStore>,
    host: Arc<dyn HostProbe>,
    registration: ExecutorRegistration,
    interval: Duration,
    reregistered: Arc<Notify>,
) {
    let id = registration.id.clone();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.heartbeat(&id, &host.usage()).await {
            Ok(()) => tracing::trace!(executor = %id, "heartbeat"),
            Err(StoreError::ExecutorNotFound { .. }) => {
                tracing::warn!(executor = %id, "executor was expired; registering again");
                match store.register_executor(&registration).await {
                    Ok(_) => reregistered.notify_one(),
                    Err(error) => {
                        tracing::warn!(executor = %id, error = %error, "registering again failed");
                    }
                }
            }
            Err(error) => tracing::warn!(executor = %id, error = %error, "heartbeat failed"),
        }
    }
}
